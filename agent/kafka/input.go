package kafka

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

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
)

func inputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Consumes Kafka topics as a member of a consumer group, at least once: a batch's offsets are committed only after the batch is acknowledged downstream.").
		Description(`
Each batch holds records of one partition, in order. A partition's offset is committed only when every batch read from it before is acknowledged too, so a crash or a failed output loses nothing: the group resumes from the last acknowledged record and the rest is delivered again. A stateful `+"`wasm`"+` step that records `+"`kafka_topic`, `kafka_partition` and `kafka_offset`"+` in its `+"`offsets`"+` recognises those redelivered records and does not apply their state updates twice.

When a rebalance takes a partition away, the offsets acknowledged so far are committed before it goes, records read but not yet handed downstream are dropped, and batches still in flight are abandoned: their acknowledgements no longer commit anything, and the partition's new owner reads them again.

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
		)
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
	in.group, in.assign = group, d.Assignments
	// The changelog's client is no group member: the plain client ID.
	in.conn = slices.Clone(opts)
	if d.Advertise != "" {
		id, err := conf.FieldString(fClientID)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.ClientID(id+changelog.AdvertiseSeparator+d.Advertise))
	}
	in.opts = append(opts,
		kgo.ConsumeTopics(in.topics...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(reset),
		kgo.SessionTimeout(session),
		// Only offsets marked after a batch's acknowledgement are
		// committed, on this period and on revoke.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(period),
		kgo.OnPartitionsAssigned(in.assigned),
		kgo.OnPartitionsRevoked(in.revoked),
		kgo.OnPartitionsLost(in.lost),
	)
	return in, nil
}

func (in *input) Connect(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cl != nil {
		return nil
	}
	cl, err := kgo.NewClient(in.opts...)
	if err != nil {
		return fmt.Errorf("kafka input: %w", err)
	}
	if err := ping(ctx, cl, in.brokers); err != nil {
		cl.Close()
		return err
	}
	in.cl = cl
	if in.assign != nil && !in.regex {
		// Known before any assignment, so a member with no partitions
		// yet can still find who owns a key's.
		for _, t := range in.topics {
			if err := in.assign.SetConnection(in.group, t, in.conn); err != nil {
				cl.Close()
				in.cl = nil
				return err
			}
		}
	}
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
	in.drop(lost, "revoked")
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		in.log.Warnf("commit offsets on rebalance: %v", err)
	}
}

// lost is a fatal group error: the partitions may already be someone
// else's, so nothing is committed.
func (in *input) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	in.release(lost)
	in.drop(lost, "lost")
}

func (in *input) drop(parts map[string][]int32, why string) {
	in.mu.Lock()
	defer in.mu.Unlock()
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
		pctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-wake:
				cancel()
			case <-pctx.Done():
			}
		}()
		fetches := cl.PollRecords(pctx, 4*in.maxBatch)
		cancel()
		if fetches.IsClientClosed() {
			return nil, nil, service.ErrEndOfInput
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		var errs []error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("fetch %s/%d: %w", topic, p, err))
			}
		})
		if len(errs) > 0 && fetches.NumRecords() == 0 {
			return nil, nil, errors.Join(errs...)
		}
		for _, err := range errs {
			in.log.Warnf("kafka input: %v", err)
		}
		in.mu.Lock()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				in.ready = append(in.ready, polled{topicPartition{p.Topic, p.Partition}, p.Records})
				in.buffered += len(p.Records)
			}
		})
		in.mu.Unlock()
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
	for i, rec := range recs {
		batch[i] = toMessage(rec)
	}
	last, cl := recs[len(recs)-1], in.cl
	return batch, func(_ context.Context, err error) error {
		in.mu.Lock()
		defer in.mu.Unlock()
		// AutoRetryNacksBatched hands a nacked batch back to Benthos, so
		// err is nil here but on shutdown, when the batch is left
		// uncommitted for the group to deliver again.
		if err == nil && !b.revoked {
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
