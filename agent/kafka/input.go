package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/state/changelog"
)

const (
	fTopics          = "topics"
	fRegexpTopics    = "regexp_topics"
	fConsumerGroup   = "consumer_group"
	fStartOffset     = "start_offset"
	fMaxBatchRecords = "max_batch_records"
	fCommitPeriod    = "commit_period"
	fSessionTimeout  = "session_timeout"
	fRackID          = "rack_id"

	fExactlyOnce        = "exactly_once"
	fTransactionalID    = "transactional_id"
	fTransactionTimeout = "transaction_timeout"
)

func inputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Consumes Kafka topics as a member of a consumer group, at least once: a batch's offsets are committed only after the batch is acknowledged downstream.").
		Description(`
Each batch holds records of one partition, in order. A partition's offset is committed only when every batch read from it before is acknowledged too, so a crash or a failed output loses nothing: the group resumes from the last acknowledged record and the rest is delivered again. A stateful `+"`wasm`"+` step that records `+"`kafka_topic`, `kafka_partition` and `kafka_offset`"+` in its `+"`offsets`"+` recognises those redelivered records and does not apply their state updates twice.

When a rebalance takes a partition away, the offsets acknowledged so far are committed before it goes, records read but not yet handed downstream are dropped, and batches still in flight are abandoned: their acknowledgements no longer commit anything, and the partition's new owner reads them again.

### Exactly-once

With `+"`exactly_once: true`"+` the input reads only committed records (`+"`read_committed`"+`) and processes each poll of up to four times `+"`max_batch_records`"+` records in one Kafka transaction (consume-transform-produce, KIP-447). Its batches go downstream as above, one per partition at a time; what `+"`kafka`"+` outputs and changelog-backed steps write for them is written in the transaction, and once every batch of the poll is acknowledged the transaction commits with the poll's offsets. Either all of it becomes visible to `+"`read_committed`"+` consumers, offsets included, or none of it does: the transaction aborts, and the records are read again. It aborts when a batch fails downstream, when a write in it fails, and when a rebalance takes a partition away while it is open (the records of the partitions kept are read again too). Outputs that are not Kafka stay at least once: an aborted poll writes to them again. `+"`commit_period`"+` is not used.

A transaction covers one cluster: a `+"`kafka`"+` output must write to the input's `+"`seed_brokers`"+`, and it writes through the input's transactional producer (by key, `+"`murmur2_hash`"+`, whatever its `+"`partitioner`"+`). Each poll pays a transaction's round trips to the brokers before the next poll begins.

On a graceful shutdown the open transaction commits if every batch it handed downstream was acknowledged; records read but not handed downstream are left to the group, their offsets not committed. Otherwise it aborts, and the group reads its records again.

### Metadata

- kafka_key
- kafka_topic
- kafka_partition
- kafka_offset
- kafka_timestamp_unix (seconds)
- kafka_timestamp_ms
- kafka_tombstone_message (true when the record has no value)
- every record header, by its name`).
		Fields(connectionFields()...).
		Fields(
			service.NewStringListField(fTopics).Description("Topics to consume; with `regexp_topics`, regular expressions matched against every topic.").Example([]string{"user_events"}),
			service.NewBoolField(fRegexpTopics).Description("Treat `topics` as regular expressions.").Default(false),
			service.NewStringField(fConsumerGroup).Description("Consumer group: its members share the topics' partitions, and it stores the committed offsets."),
			service.NewStringEnumField(fStartOffset, "earliest", "latest").Description("Where a partition with no committed offset starts.").Default("earliest"),
			service.NewIntField(fMaxBatchRecords).Description("Most records in one batch.").Default(1024).Advanced(),
			service.NewDurationField(fCommitPeriod).Description("How often acknowledged offsets are committed to the group. They are also committed on rebalance and on shutdown.").Default("1s").Advanced(),
			service.NewDurationField(fSessionTimeout).Description("How long the group waits for a silent member before giving its partitions to the others.").Default("45s").Advanced(),
			service.NewStringField(fRackID).Description("Rack of this agent, to fetch from a replica in the same rack where the cluster allows it.").Default("").Advanced(),
			service.NewBoolField(fExactlyOnce).Description("Exactly-once: consume `read_committed` and wrap each poll cycle in a Kafka transaction: what `kafka` outputs and changelog-backed steps write for the cycle's records, and the records' offsets, commit or abort together (consume-transform-produce, KIP-447). Outputs that are not Kafka stay at least once. Needs Kafka 2.5 or later and, where ACLs are on, the WRITE and DESCRIBE permissions on the transactional ID.").Default(false),
			service.NewStringField(fTransactionalID).Description("Transactional ID of the input's producer, with `exactly_once`. It must be unique per running agent: two producers with one ID fence each other, and each of their transactions fails. A stable one lets a restarted agent fence its previous incarnation at once, aborting the transaction it left open. Empty: `<consumer_group>-<client_id>-<address>` when the agent advertises an address, else `<consumer_group>-<client_id>-<hostname>-<pid>`, which changes at every restart. Two `kafka` inputs of one agent sharing a consumer group and a client ID need distinct ones.").Default("").Advanced(),
			service.NewDurationField(fTransactionTimeout).Description("With `exactly_once`, how long the brokers let a transaction stay open, counted from its first write, before they abort it. A poll whose processing takes longer aborts and is read again, so it must exceed the time one poll of records takes downstream. It also bounds the stall after a crash: the crashed agent's open transaction holds back `read_committed` consumers of the topics it wrote, and keeps the group's offsets unstable so the partitions' new owner cannot start, until the brokers abort it at this timeout (at once if the agent restarts with the same `transactional_id`). Must not exceed the brokers' `transaction.max.timeout.ms` (15 minutes by default).").Default("10s").Advanced(),
		).
		LintRule(`root = if !this.exactly_once.or(false) && this.transactional_id.or("") != "" { ["transactional_id is used only with exactly_once: true; without it this input writes no transactions"] }`)
}

type input struct {
	opts  []kgo.Opt
	group string
	regex bool
	// conn is how the input reaches its cluster (brokers, TLS, SASL),
	// shared with changelogs of state read from its topics.
	conn     []kgo.Opt
	assign   *changelog.Assignments
	brokers  []string
	topics   []string
	maxBatch int
	log      *service.Logger

	mu sync.Mutex
	cl *kgo.Client
	// owned has an entry per partition with a batch downstream.
	owned map[topicPartition]*partition
	// ready holds records polled but not yet handed downstream, one entry
	// per partition per poll, in poll order.
	ready    []polled
	buffered int
	// wake is closed, and replaced, when a batch is acknowledged: its
	// partition may now hand out the next one.
	wake chan struct{}

	// Exactly-once mode (eos); the fields below are unused without it.
	eos   bool
	txnID string
	// txnTimeout is how long the brokers let a transaction stay open,
	// and bounds its End: by then they have aborted it themselves.
	txnTimeout time.Duration
	txns       *service.MetricCounter
	// sessMu serialises the session's Poll, Begin, End and Close between
	// ReadBatch and Close, which franz-go forbids running concurrently.
	// Taken before mu.
	sessMu sync.Mutex
	// sess is cl's transact session. Whoever sets it to nil closes it.
	sess *kgo.GroupTransactSession
	// cycle is the open transaction, nil between polls.
	cycle *cycle
	// rebalances counts partitions revoked or lost, so a poll can tell
	// whether a rebalance happened while it ran.
	rebalances int
}

// cycle is one poll's records in exactly-once mode and the transaction
// they are processed in. Its fields are guarded by input.mu.
type cycle struct {
	txn      *changelog.Txn
	records  int
	inflight int
	// abort is why the transaction must abort, or nil.
	abort error
}

// doomed is why the cycle cannot commit, or nil.
func (c *cycle) doomed() error {
	if c.abort != nil {
		return c.abort
	}
	return c.txn.Err()
}

// partition is one partition's batch downstream. A partition has at most
// one batch downstream at a time, so its records are processed and written
// in offset order even with several pipeline threads: a user's events stay
// in order (event-time features depend on it), a committed offset never
// passes a batch still in flight, and a stateful step's offsets only grow,
// which is how it tells a redelivered record from a new one.
type partition struct {
	// revoked: the partition went to another consumer while the batch was
	// downstream; its acknowledgement must not move that consumer's
	// position.
	revoked bool
}

type topicPartition struct {
	topic     string
	partition int32
}

type polled struct {
	tp      topicPartition
	records []*kgo.Record
}

func newInput(conf *service.ParsedConfig, mgr *service.Resources, d Defaults) (*input, error) {
	opts, brokers, err := clientOpts(conf, d)
	if err != nil {
		return nil, err
	}
	in := &input{brokers: brokers, log: mgr.Logger(), owned: map[topicPartition]*partition{}, wake: make(chan struct{})}
	if in.topics, err = conf.FieldStringList(fTopics); err != nil {
		return nil, err
	}
	if len(in.topics) == 0 {
		return nil, errors.New("topics: at least one topic is required")
	}
	regex, err := conf.FieldBool(fRegexpTopics)
	if err != nil {
		return nil, err
	}
	in.regex = regex
	if regex {
		for i, t := range in.topics {
			if _, err := regexp.Compile(t); err != nil {
				return nil, fmt.Errorf("topics[%d]: %q is not a regular expression: %w", i, t, err)
			}
		}
		opts = append(opts, kgo.ConsumeRegex())
	}
	group, err := conf.FieldString(fConsumerGroup)
	if err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("consumer_group: required; offsets are committed to the group")
	}
	start, err := conf.FieldString(fStartOffset)
	if err != nil {
		return nil, err
	}
	reset := kgo.NewOffset().AtStart()
	if start == "latest" {
		reset = kgo.NewOffset().AtEnd()
	}
	if in.maxBatch, err = conf.FieldInt(fMaxBatchRecords); err != nil {
		return nil, err
	}
	if in.maxBatch < 1 {
		return nil, fmt.Errorf("max_batch_records: must be at least 1, got %d", in.maxBatch)
	}
	period, err := conf.FieldDuration(fCommitPeriod)
	if err != nil {
		return nil, err
	}
	session, err := conf.FieldDuration(fSessionTimeout)
	if err != nil {
		return nil, err
	}
	rack, err := conf.FieldString(fRackID)
	if err != nil {
		return nil, err
	}
	if rack != "" {
		opts = append(opts, kgo.Rack(rack))
	}
	if in.eos, err = conf.FieldBool(fExactlyOnce); err != nil {
		return nil, err
	}
	clientID, err := conf.FieldString(fClientID)
	if err != nil {
		return nil, err
	}
	in.group, in.assign = group, d.Assignments
	// The changelog's client is no group member: the plain client ID.
	in.conn = slices.Clone(opts)
	if d.Advertise != "" {
		opts = append(opts, kgo.ClientID(clientID+changelog.AdvertiseSeparator+d.Advertise))
	}
	opts = append(opts,
		kgo.ConsumeTopics(in.topics...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(reset),
		kgo.SessionTimeout(session),
		kgo.OnPartitionsAssigned(in.assigned),
		kgo.OnPartitionsRevoked(in.revoked),
		kgo.OnPartitionsLost(in.lost),
	)
	if !in.eos {
		in.opts = append(opts,
			// Only offsets marked after a batch's acknowledgement are
			// committed, on this period and on revoke.
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(period),
		)
		return in, nil
	}
	if in.txnID, err = conf.FieldString(fTransactionalID); err != nil {
		return nil, err
	}
	if in.txnID == "" {
		if in.txnID, err = defaultTransactionalID(group, clientID, d.Advertise); err != nil {
			return nil, err
		}
	}
	if in.txnTimeout, err = conf.FieldDuration(fTransactionTimeout); err != nil {
		return nil, err
	}
	if in.txnTimeout < time.Second {
		return nil, fmt.Errorf("transaction_timeout: must be at least 1s, got %v", in.txnTimeout)
	}
	in.txns = mgr.Metrics().NewCounter("sluice_kafka_transactions_total", "result")
	// Offsets are committed by the transactions, never on their own.
	in.opts = append(opts,
		kgo.TransactionalID(in.txnID),
		kgo.TransactionTimeout(in.txnTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// One producer writes the outputs (by key) and the changelogs
		// (to their source partition's number).
		kgo.RecordPartitioner(changelog.TxnPartitioner()),
		// A batch is written whole by ProduceSync; lingering only delays
		// the transaction's end.
		kgo.ProducerLinger(0),
	)
	return in, nil
}

// defaultTransactionalID is unique per running agent: an agent that
// advertises an address is the only one at it, and otherwise the host and
// process tell agents apart.
func defaultTransactionalID(group, clientID, advertise string) (string, error) {
	if advertise != "" {
		return group + "-" + clientID + "-" + advertise, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("transactional_id: empty, and no default without a hostname (set one): %w", err)
	}
	return fmt.Sprintf("%s-%s-%s-%d", group, clientID, host, os.Getpid()), nil
}

func (in *input) Connect(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cl != nil {
		return nil
	}
	var (
		cl   *kgo.Client
		sess *kgo.GroupTransactSession
		err  error
	)
	if in.eos {
		if sess, err = kgo.NewGroupTransactSession(in.opts...); err != nil {
			return fmt.Errorf("kafka input: transactional id %q: %w", in.txnID, err)
		}
		cl = sess.Client()
	} else if cl, err = kgo.NewClient(in.opts...); err != nil {
		return fmt.Errorf("kafka input: %w", err)
	}
	if err := ping(ctx, cl, in.brokers); err != nil {
		cl.Close()
		return err
	}
	if in.assign != nil && !in.regex {
		// Known before any assignment, so a member with no partitions
		// yet can still find who owns a key's.
		for _, t := range in.topics {
			if err := in.assign.SetConnection(in.group, t, in.conn); err != nil {
				cl.Close()
				return err
			}
		}
	}
	in.cl, in.sess = cl, sess
	return nil
}

// assigned logs the partitions this agent now owns: with several agents in
// a group, this is where an operator sees how the work is split.
func (in *input) assigned(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	for topic, ps := range parts {
		slices.Sort(ps)
		in.log.Infof("kafka partitions assigned: topic %s partitions %v", topic, ps)
		if in.assign != nil {
			if err := in.assign.SetConnection(in.group, topic, in.conn); err != nil {
				in.log.Errorf("kafka input: %v", err)
			}
			if err := in.assign.Assigned(in.group, topic, ps); err != nil {
				in.log.Errorf("kafka input: %v", err)
			}
		}
	}
}

// release tells state that follows partitions they left; it waits for
// commits in flight on them to finish writing their changelog.
func (in *input) release(parts map[string][]int32) {
	if in.assign == nil {
		return
	}
	for topic, ps := range parts {
		in.assign.Revoked(topic, ps)
	}
}

// revoked commits what was acknowledged on the partitions leaving us, and
// abandons the rest; franz-go guarantees no later poll returns them.
func (in *input) revoked(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	for topic, ps := range lost {
		if len(ps) > 0 {
			slices.Sort(ps)
			in.log.Infof("kafka partitions revoked: topic %s partitions %v", topic, ps)
		}
	}
	in.release(lost)
	in.drop(lost, "revoked", false)
	if in.eos {
		// The session aborts the open transaction at its End: the
		// offsets it would commit may be the partitions' new owner's.
		return
	}
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		in.log.Warnf("commit offsets on rebalance: %v", err)
	}
}

// lost is a fatal group error: the partitions may already be someone
// else's, so nothing is committed.
func (in *input) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	in.release(lost)
	in.drop(lost, "lost", true)
}

var errRebalanced = errors.New("a rebalance took partitions away while the transaction was open")

// drop forgets parts: their buffered records and their batches in flight.
// In exactly-once mode a revoke of any partition, or a loss (fatal), dooms
// the open transaction, as the session does.
func (in *input) drop(parts map[string][]int32, why string, fatal bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.eos && (fatal || len(parts) > 0) {
		in.rebalances++
		// The session aborts the transaction, and the abort rewinds
		// every partition kept to its committed offset: what is still
		// buffered would be processed only to be thrown away.
		if c := in.cycle; c != nil && c.abort == nil {
			c.abort = errRebalanced
		}
	}
	gone := map[topicPartition]bool{}
	for topic, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			gone[tp] = true
			if b, ok := in.owned[tp]; ok {
				b.revoked = true
				delete(in.owned, tp)
				in.log.Infof("partition %s/%d %s with a batch in flight: it will not be committed, and the partition's next owner reads it again", topic, p, why)
			}
		}
	}
	kept := in.ready[:0]
	for _, r := range in.ready {
		if gone[r.tp] {
			in.buffered -= len(r.records)
		} else {
			kept = append(kept, r)
		}
	}
	clear(in.ready[len(kept):])
	in.ready = kept
	// A ReadBatch waiting for room may have it now.
	in.signal()
}

// signal wakes a ReadBatch waiting for an ack or for room. The caller
// holds in.mu.
func (in *input) signal() {
	close(in.wake)
	in.wake = make(chan struct{})
}

func (in *input) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	if in.eos {
		return in.readTxn(ctx)
	}
	for {
		in.mu.Lock()
		cl := in.cl
		if cl == nil {
			in.mu.Unlock()
			return nil, nil, service.ErrNotConnected
		}
		if b, ack := in.next(); b != nil {
			in.mu.Unlock()
			return b, ack, nil
		}
		full := in.buffered >= 4*in.maxBatch
		wake := in.wake
		in.mu.Unlock()

		if full {
			// Everything buffered waits on partitions with a batch
			// downstream: wait for an ack rather than buffer more.
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		// An ack while we wait for records may free a partition whose
		// records are already buffered: it interrupts the poll.
		fetches := pollUntil(ctx, wake, func(ctx context.Context) kgo.Fetches { return cl.PollRecords(ctx, 4*in.maxBatch) })
		if fetches.IsClientClosed() {
			return nil, nil, service.ErrEndOfInput
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if err := in.fetchErrors(fetches); err != nil {
			return nil, nil, err
		}
		in.mu.Lock()
		in.buffer(fetches)
		in.mu.Unlock()
	}
}

// pollUntil polls, interrupted when wake is closed.
func pollUntil(ctx context.Context, wake <-chan struct{}, poll func(context.Context) kgo.Fetches) kgo.Fetches {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-wake:
			cancel()
		case <-pctx.Done():
		}
	}()
	return poll(pctx)
}

// buffer queues a poll's records for next, and returns how many. The
// caller holds in.mu.
func (in *input) buffer(fetches kgo.Fetches) int {
	n := 0
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			in.ready = append(in.ready, polled{topicPartition{p.Topic, p.Partition}, p.Records})
			n += len(p.Records)
		}
	})
	in.buffered += n
	return n
}

// fetchErrors fails a poll that returned errors and no records; errors
// beside records are logged.
func (in *input) fetchErrors(fetches kgo.Fetches) error {
	var errs []error
	fetches.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("fetch %s/%d: %w", topic, p, err))
		}
	})
	if len(errs) > 0 && fetches.NumRecords() == 0 {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		in.log.Warnf("kafka input: %v", err)
	}
	return nil
}

// readTxn is ReadBatch in exactly-once mode. It polls once and begins a
// transaction, hands the poll's records out as ReadBatch does, and ends the
// transaction once every one of them is acknowledged, before it polls
// again: End commits the offsets of everything polled, so no record may be
// left over.
func (in *input) readTxn(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		in.mu.Lock()
		sess, c := in.sess, in.cycle
		if sess == nil {
			in.mu.Unlock()
			return nil, nil, service.ErrNotConnected
		}
		if c == nil {
			in.mu.Unlock()
			if err := in.begin(ctx, sess); err != nil {
				return nil, nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if c.doomed() != nil {
			// It aborts and its records are read again: whatever of
			// it is processed now is thrown away.
			clear(in.ready)
			in.ready, in.buffered = in.ready[:0], 0
		} else if b, ack := in.next(); b != nil {
			in.mu.Unlock()
			return b, ack, nil
		}
		if c.inflight == 0 && len(in.ready) == 0 {
			in.mu.Unlock()
			if err := in.end(ctx, sess, c); err != nil {
				return nil, nil, err
			}
			continue
		}
		wake := in.wake
		in.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			// On shutdown Benthos waits for the acks, then Close
			// ends the transaction.
			return nil, nil, ctx.Err()
		}
	}
}

// begin polls, and begins a transaction for the records polled.
func (in *input) begin(ctx context.Context, sess *kgo.GroupTransactSession) error {
	in.sessMu.Lock()
	defer in.sessMu.Unlock()
	in.mu.Lock()
	closed := in.sess != sess
	rebalances, wake := in.rebalances, in.wake
	in.mu.Unlock()
	if closed {
		return service.ErrNotConnected
	}
	// Close wakes us: it needs the session, and waits for the poll.
	fetches := pollUntil(ctx, wake, func(ctx context.Context) kgo.Fetches { return sess.PollRecords(ctx, 4*in.maxBatch) })
	if fetches.IsClientClosed() {
		return service.ErrEndOfInput
	}
	in.mu.Lock()
	closed = in.sess != sess
	in.mu.Unlock()
	if closed {
		// What was polled is not committed: the group reads it again.
		return service.ErrNotConnected
	}
	if err := in.fetchErrors(fetches); err != nil {
		return err
	}
	if fetches.NumRecords() == 0 {
		return ctx.Err()
	}
	// Records are kept even when ctx is done: the session's position has
	// passed them, and a later End would commit it.
	if err := sess.Begin(); err != nil {
		in.log.Errorf("kafka input: begin a transaction (transactional id %s): %v; reconnecting", in.txnID, err)
		in.discard(sess)
		return service.ErrNotConnected
	}
	c := &cycle{txn: changelog.NewTxn(sess.Client())}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.rebalances != rebalances {
		// The poll may hold records of partitions no longer ours, and
		// the session aborts this transaction anyway.
		c.abort = errRebalanced
	}
	c.records = in.buffer(fetches)
	in.cycle = c
	return nil
}

// end ends the transaction of c, none of whose batches is downstream.
func (in *input) end(ctx context.Context, sess *kgo.GroupTransactSession, c *cycle) error {
	in.sessMu.Lock()
	defer in.sessMu.Unlock()
	in.mu.Lock()
	closed := in.sess != sess
	in.mu.Unlock()
	if closed {
		// Close ended it.
		return service.ErrNotConnected
	}
	// Canceling End midway leaves the session in an unknown state; a
	// shutdown lets it finish.
	if err := in.finish(context.WithoutCancel(ctx), sess, c); err != nil {
		in.discard(sess)
		return service.ErrNotConnected
	}
	return nil
}

// finish ends the transaction of c, a commit if every batch of it was
// acknowledged without error and nothing in it failed, else an abort, and
// runs its hooks before anything else happens on the session. The caller
// holds sessMu. An error means the session's transaction state is unknown.
func (in *input) finish(ctx context.Context, sess *kgo.GroupTransactSession, c *cycle) error {
	in.mu.Lock()
	why := c.doomed()
	if why == nil && c.inflight > 0 {
		why = fmt.Errorf("shut down with %d batches downstream", c.inflight)
	}
	if in.cycle == c {
		in.cycle = nil
	}
	in.mu.Unlock()
	try := kgo.TryCommit
	if why != nil {
		try = kgo.TryAbort
	}
	ctx, cancel := context.WithTimeout(ctx, in.txnTimeout)
	defer cancel()
	committed, err := sess.End(ctx, try)
	c.txn.Ended(committed)
	if committed {
		in.txns.Incr(1, "committed")
		return nil
	}
	in.txns.Incr(1, "aborted")
	if err != nil {
		in.log.Errorf("kafka input: end a transaction of %d records (transactional id %s): %v; the records are read again", c.records, in.txnID, err)
		return err
	}
	if why == nil {
		why = errors.New("the commit was refused: the group rebalanced, or the brokers aborted the transaction")
	}
	in.log.Infof("kafka transaction of %d records aborted, they are read again: %v", c.records, why)
	return nil
}

// discard closes a session whose transaction state is unknown; Benthos
// reconnects with a new one, whose transactional ID fences this one and
// aborts its open transaction. The caller holds sessMu.
func (in *input) discard(sess *kgo.GroupTransactSession) {
	in.mu.Lock()
	mine := in.sess == sess
	if mine {
		in.sess, in.cl, in.cycle = nil, nil, nil
		clear(in.ready)
		in.ready, in.buffered = in.ready[:0], 0
	}
	in.mu.Unlock()
	if mine {
		sess.Close()
	}
}

// next hands out up to maxBatch records of the first ready partition with
// no batch downstream, or nil. The caller holds in.mu.
func (in *input) next() (service.MessageBatch, service.AckFunc) {
	i := slices.IndexFunc(in.ready, func(r polled) bool { return in.owned[r.tp] == nil })
	if i < 0 {
		return nil, nil
	}
	// Every ready poll of this partition, in order, up to maxBatch: while
	// its batch is downstream a partition's records arrive in many small
	// polls, and handing them out one poll at a time made batches of a few
	// records, each paying a whole state commit (seconds of latency at low
	// rates).
	tp := in.ready[i].tp
	var recs []*kgo.Record
	for j := i; j < len(in.ready) && len(recs) < in.maxBatch; {
		r := &in.ready[j]
		if r.tp != tp {
			j++
			continue
		}
		n := min(len(r.records), in.maxBatch-len(recs))
		recs = append(recs, r.records[:n]...)
		if n == len(r.records) {
			in.ready = slices.Delete(in.ready, j, j+1)
		} else {
			r.records = r.records[n:]
		}
	}
	in.buffered -= len(recs)
	b := &partition{}
	in.owned[tp] = b
	batch := make(service.MessageBatch, len(recs))
	c := in.cycle
	var txnCtx context.Context
	if c != nil {
		c.inflight++
		txnCtx = changelog.ContextWithTxn(context.Background(), c.txn)
	}
	for i, rec := range recs {
		batch[i] = toMessage(rec)
		if c != nil {
			batch[i] = batch[i].WithContext(txnCtx)
		}
	}
	last, cl := recs[len(recs)-1], in.cl
	return batch, func(_ context.Context, err error) error {
		in.mu.Lock()
		defer in.mu.Unlock()
		switch {
		case c != nil:
			// The transaction's End commits the offsets; a failed
			// batch aborts it.
			c.inflight--
			if err != nil && c.abort == nil {
				c.abort = fmt.Errorf("a batch of %s/%d failed downstream: %w", tp.topic, tp.partition, err)
			}
		// AutoRetryNacksBatched hands a nacked batch back to Benthos, so
		// err is nil here but on shutdown, when the batch is left
		// uncommitted for the group to deliver again.
		case err == nil && !b.revoked:
			cl.MarkCommitRecords(last)
		}
		if in.owned[tp] == b {
			delete(in.owned, tp)
		}
		in.signal()
		return nil
	}
}

func toMessage(rec *kgo.Record) *service.Message {
	msg := service.NewMessage(rec.Value)
	for _, h := range rec.Headers {
		msg.MetaSetMut(h.Key, string(h.Value))
	}
	msg.MetaSetMut("kafka_key", string(rec.Key))
	msg.MetaSetMut("kafka_topic", rec.Topic)
	msg.MetaSetMut("kafka_partition", strconv.Itoa(int(rec.Partition)))
	msg.MetaSetMut("kafka_offset", strconv.FormatInt(rec.Offset, 10))
	msg.MetaSetMut("kafka_timestamp_unix", strconv.FormatInt(rec.Timestamp.Unix(), 10))
	msg.MetaSetMut("kafka_timestamp_ms", strconv.FormatInt(rec.Timestamp.UnixMilli(), 10))
	msg.MetaSetMut("kafka_tombstone_message", strconv.FormatBool(rec.Value == nil))
	return msg
}

func (in *input) Close(ctx context.Context) error {
	if in.eos {
		return in.closeTxn(ctx)
	}
	in.mu.Lock()
	cl := in.cl
	in.cl = nil
	in.mu.Unlock()
	if cl == nil {
		return nil
	}
	// Commit what is acknowledged, then leave the group so the others take
	// our partitions at once rather than after the session timeout.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		in.log.Warnf("commit offsets on close: %v", err)
	}
	cl.Close()
	return nil
}

// closeTxn ends the open transaction and leaves the group. On shutdown
// Benthos stops reading, waits for the acks of the batches it took (unless
// the shutdown is cut short) and then closes the input; a transaction whose
// batches are all acknowledged by then commits (ReadBatch may have ended it
// already). One with a batch never acknowledged aborts, and the group reads
// it again.
func (in *input) closeTxn(ctx context.Context) error {
	in.mu.Lock()
	sess := in.sess
	in.sess, in.cl = nil, nil
	// A ReadBatch polling, or waiting, lets go of the session.
	in.signal()
	in.mu.Unlock()
	if sess == nil {
		return nil
	}
	in.sessMu.Lock()
	defer in.sessMu.Unlock()
	in.mu.Lock()
	c := in.cycle
	// Records read but not handed out are left to the group: the commit
	// stops each partition at its first.
	rewind := map[topicPartition]kgo.EpochOffset{}
	for _, r := range in.ready {
		if _, ok := rewind[r.tp]; !ok {
			rewind[r.tp] = kgo.EpochOffset{Epoch: r.records[0].LeaderEpoch, Offset: r.records[0].Offset}
		}
	}
	clear(in.ready)
	in.ready, in.buffered = in.ready[:0], 0
	in.mu.Unlock()
	if c != nil {
		// The hook only edits the request (franz-go holds its
		// transaction lock while it runs).
		ctx := kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
			for i := range req.Topics {
				t := &req.Topics[i]
				for j := range t.Partitions {
					p := &t.Partitions[j]
					if eo, ok := rewind[topicPartition{t.Topic, p.Partition}]; ok {
						p.Offset, p.LeaderEpoch = eo.Offset, eo.Epoch
					}
				}
			}
			return nil
		})
		_ = in.finish(ctx, sess, c)
	}
	// Leave the group so the others take our partitions at once.
	sess.Close()
	return nil
}
