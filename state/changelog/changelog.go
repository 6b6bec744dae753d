// Package changelog backs a keyed state namespace with a compacted Kafka
// topic, so that the state of a source partition moves with the partition
// when the consumer group gives it to another agent, as Kafka Streams'
// changelog topics do.
//
// The state of a step fed by Kafka is kept per source partition (in
// state.PartitionNamespace(ns, p)), and every commit of a partition's state
// is first produced to the same partition of the changelog topic: the key
// is the entity key, the value the entity's state (8 bytes of last event
// time, big endian unix nanoseconds, then the plugin's bytes), a deletion a
// tombstone, and each record carries in its header `sluice_source_offset`
// the source offset the state includes. Only once the broker has
// acknowledged the records is the local Badger commit made, with the
// changelog offset it reached and the source offset, in one transaction.
//
// So the changelog is always at or ahead of any agent's local copy, and a
// partition's new owner rebuilds the state from its local copy (possibly
// empty, possibly stale from an earlier assignment) plus the changelog's
// tail, and learns from the headers which source records the state already
// includes, so their redelivery does not count them twice. docs/SCALEOUT.md
// gives the whole argument, step by step through a crash.
package changelog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
)

// HeaderSourceOffset names the record header holding the source offset a
// changelog record's state includes.
const HeaderSourceOffset = "sluice_source_offset"

// ErrNotOwned means a batch's partition is not, or no longer, this
// agent's: nothing of it was written.
var ErrNotOwned = errors.New("partition not assigned to this agent")

// restoreChunk is how many changelog records one local commit of a restore
// carries: big enough to amortise the commit, small enough to bound memory.
const restoreChunk = 4096

// Config configures a Log.
type Config struct {
	// Namespace is the step's namespace; each source partition's state
	// lives in state.PartitionNamespace(Namespace.Name, p).
	Namespace state.Namespace
	// Topic is the changelog topic. Empty means "<group>-<namespace>-changelog",
	// with the consumer group the source topic is read in (Kafka Streams
	// names its changelogs "<application.id>-<store>-changelog").
	Topic string
	// ReplicationFactor of a created topic; -1 is the broker's default.
	ReplicationFactor int16
	Store             *state.Store
	Assignments       *Assignments
	// ClientOpts returns the options that reach the cluster (seed brokers,
	// TLS, SASL). A function: the dev broker's address is known late.
	ClientOpts func() ([]kgo.Opt, error)
	Logger     *slog.Logger
	// Standby keeps the local copies of the partitions this agent does
	// not own current by following their changelog (standby.go), so a
	// failover restores little.
	Standby bool
}

// Log is one namespace's changelog: it restores partitions and writes
// their commits. Safe for concurrent use.
type Log struct {
	cfg Config

	mu      sync.Mutex
	cl      *kgo.Client
	adm     *kadm.Client
	sources map[string]*source
	// restored is the assignment epoch each partition's state was last
	// restored at.
	restored map[sourcePartition]uint64
	// restoring serialises restores, so two batches of a new partition do
	// not both replay its tail.
	restoring sync.Mutex
	// partMus exclude a partition's restore and its standby apply.
	partMus map[sourcePartition]*sync.Mutex
	// txns are the open transactions that wrote partitions, for their
	// end (eos.go).
	txns map[*Txn]map[sourcePartition]string
	// stopStandby ends the standby follower; standbyDone is closed when
	// it has.
	stopStandby context.CancelFunc
	standbyDone chan struct{}

	stats counters
	obs   Observer
}

// Observer receives the log's events for metrics; nil fields are skipped.
type Observer struct {
	// Restored is told each restore that read records.
	Restored func(records, bytes int64, took time.Duration)
	// Produced is told each batch of records written to the changelog.
	Produced func(records int64)
}

// Observe sets the log's observer; call it before the log is used.
func (l *Log) Observe(o Observer) { l.obs = o }

type sourcePartition struct {
	topic string
	part  int32
}

// source is a source topic whose changelog topic is known to exist with
// the right shape.
type source struct {
	changelog  string
	partitions int32
}

type counters struct {
	restoredRecords, restoredBytes, restores, produced atomic.Int64
	standbyRecords                                     atomic.Int64
	lastRestoreRecords                                 atomic.Int64
}

// Stats are the log's counters since it was made.
type Stats struct {
	// Restores counts restores that read at least one record;
	// RestoredRecords and RestoredBytes what they read in all, and
	// LastRestoreRecords what the latest one read.
	Restores, RestoredRecords, RestoredBytes, LastRestoreRecords int64
	// Produced counts records written to the changelog; StandbyRecords
	// those a standby applied from other agents' partitions.
	Produced, StandbyRecords int64
}

// New returns a Log; it connects on first use.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil || cfg.Assignments == nil || cfg.ClientOpts == nil {
		return nil, errors.New("changelog: store, assignments and client options are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Log{cfg: cfg, sources: map[string]*source{}, restored: map[sourcePartition]uint64{}, partMus: map[sourcePartition]*sync.Mutex{}, txns: map[*Txn]map[sourcePartition]string{}}
	if cfg.Standby {
		var ctx context.Context
		ctx, l.stopStandby = context.WithCancel(context.Background())
		l.standbyDone = make(chan struct{})
		go l.standbyLoop(ctx)
	}
	return l, nil
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Restores:           l.stats.restores.Load(),
		RestoredRecords:    l.stats.restoredRecords.Load(),
		RestoredBytes:      l.stats.restoredBytes.Load(),
		LastRestoreRecords: l.stats.lastRestoreRecords.Load(),
		Produced:           l.stats.produced.Load(),
		StandbyRecords:     l.stats.standbyRecords.Load(),
	}
}

// Close releases the log's Kafka client.
func (l *Log) Close() {
	if l.stopStandby != nil {
		l.stopStandby()
		<-l.standbyDone
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cl != nil {
		l.cl.Close()
		l.cl, l.adm = nil, nil
	}
}

// connOpts reach the cluster of sourceTopic: the connection (brokers,
// TLS, SASL) of the kafka input consuming it, so the changelog lives on
// the source's cluster with the same credentials, or else the agent's
// kafka_brokers.
func (l *Log) connOpts(sourceTopic string) ([]kgo.Opt, error) {
	if opts, ok := l.cfg.Assignments.Connection(sourceTopic); ok {
		return opts, nil
	}
	return l.cfg.ClientOpts()
}

func (l *Log) client(sourceTopic string) (*kgo.Client, *kadm.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cl != nil {
		return l.cl, l.adm, nil
	}
	opts, err := l.connOpts(sourceTopic)
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(append(opts,
		// Every record names its partition: the source partition's.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, nil, fmt.Errorf("changelog client: %w", err)
	}
	l.cl, l.adm = cl, kadm.NewClient(cl)
	return l.cl, l.adm, nil
}

// Namespace is the namespace holding partition p's state.
func (l *Log) Namespace(p int32) state.Namespace {
	ns := l.cfg.Namespace
	ns.Name = state.PartitionNamespace(ns.Name, p)
	return ns
}

// TopicFor returns the changelog topic of sourceTopic, creating it on
// first use with the source topic's partition count and cleanup.policy
// compact, or checking that an existing one has both.
func (l *Log) TopicFor(ctx context.Context, sourceTopic string) (topic string, partitions int32, err error) {
	l.mu.Lock()
	s, ok := l.sources[sourceTopic]
	l.mu.Unlock()
	if ok {
		return s.changelog, s.partitions, nil
	}
	_, adm, err := l.client(sourceTopic)
	if err != nil {
		return "", 0, err
	}
	topic = l.cfg.Topic
	if topic == "" {
		group, ok := l.cfg.Assignments.Group(sourceTopic)
		if !ok {
			return "", 0, fmt.Errorf("changelog for source topic %q: no consumer group reads it in this agent", sourceTopic)
		}
		topic = group + "-" + l.cfg.Namespace.Name + "-changelog"
	}
	details, err := adm.ListTopics(ctx, sourceTopic)
	if err != nil {
		return "", 0, fmt.Errorf("changelog: describe source topic %q: %w", sourceTopic, err)
	}
	sd, ok := details[sourceTopic]
	if !ok || sd.Err != nil {
		return "", 0, fmt.Errorf("changelog: describe source topic %q: %v", sourceTopic, errOr(sd.Err, "not found"))
	}
	partitions = int32(len(sd.Partitions))
	if err := l.ensure(ctx, adm, topic, partitions); err != nil {
		return "", 0, err
	}
	l.mu.Lock()
	l.sources[sourceTopic] = &source{changelog: topic, partitions: partitions}
	l.mu.Unlock()
	return topic, partitions, nil
}

func (l *Log) ensure(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, partitions, l.cfg.ReplicationFactor, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		l.cfg.Logger.Info("changelog topic created", "topic", topic, "partitions", partitions)
		return nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return fmt.Errorf("changelog: create topic %q: %w", topic, err)
	}
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("changelog: describe topic %q: %w", topic, err)
	}
	if got := int32(len(details[topic].Partitions)); got != partitions {
		return fmt.Errorf("changelog topic %q has %d partitions, its source topic %d: a partition's state would be restored from another's changelog; delete the changelog topic or name another one (changelog.topic)", topic, got, partitions)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("changelog: describe configs of topic %q: %w", topic, err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil {
		return fmt.Errorf("changelog: describe configs of topic %q: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && !slices.Contains(strings.Split(c.MaybeValue(), ","), "compact") {
			return fmt.Errorf("changelog topic %q has cleanup.policy %q: without compact, retention deletes state that was never overwritten; set cleanup.policy=compact on it", topic, c.MaybeValue())
		}
	}
	return nil
}

// offsetSource is the local offset record of a changelog topic.
func offsetSource(topic string) string { return "changelog:" + topic }

// Ready makes partition p of sourceTopic's state current before a batch
// of it is processed: if this agent has not restored it since the group
// last assigned it here, it replays the changelog from the offset its
// local copy reached to the end. It returns the partition's namespace and
// the assignment epoch the batch's commit must still hold.
func (l *Log) Ready(ctx context.Context, sourceTopic string, p int32) (state.Namespace, uint64, error) {
	epoch, owned, _ := l.cfg.Assignments.Owner(sourceTopic, p)
	if !owned {
		return state.Namespace{}, 0, fmt.Errorf("partition %s/%d: %w (revoked while its batch was on the way)", sourceTopic, p, ErrNotOwned)
	}
	sp := sourcePartition{sourceTopic, p}
	l.mu.Lock()
	done := l.restored[sp] == epoch
	l.mu.Unlock()
	if done {
		return l.Namespace(p), epoch, nil
	}
	l.restoring.Lock()
	defer l.restoring.Unlock()
	l.mu.Lock()
	done = l.restored[sp] == epoch
	l.mu.Unlock()
	if !done {
		mu := l.partMu(sourceTopic, p)
		mu.Lock()
		_, err := l.restore(ctx, sourceTopic, p)
		mu.Unlock()
		if err != nil {
			return state.Namespace{}, 0, err
		}
		l.mu.Lock()
		l.restored[sp] = epoch
		l.mu.Unlock()
	}
	return l.Namespace(p), epoch, nil
}

// restore replays partition p's changelog tail into the local store.
func (l *Log) restore(ctx context.Context, sourceTopic string, p int32) (int, error) {
	topic, _, err := l.TopicFor(ctx, sourceTopic)
	if err != nil {
		return 0, err
	}
	_, adm, err := l.client(sourceTopic)
	if err != nil {
		return 0, err
	}
	if _, err := l.discardUncommitted(ctx, topic, sourceTopic, p); err != nil {
		return 0, err
	}
	from, err := l.localOffset(topic, p)
	if err != nil {
		return 0, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("changelog: start offsets of %q: %w", topic, err)
	}
	// The last stable offset: records past it may belong to a transaction
	// still open, which a read_committed reader cannot read yet.
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("changelog: end offsets of %q: %w", topic, err)
	}
	start, _ := starts.Lookup(topic, p)
	end, ok := ends.Lookup(topic, p)
	if !ok || end.Err != nil {
		return 0, fmt.Errorf("changelog: end offset of %s/%d: %v", topic, p, errOr(end.Err, "partition not found"))
	}
	if from < start.Offset {
		// Records below the log start were removed by retention: the local
		// copy is older than what the changelog still has, so rebuild from
		// what remains rather than mix the two.
		from = start.Offset
	}
	if from >= end.Offset {
		return 0, nil
	}
	began := time.Now()
	opts, err := l.connOpts(sourceTopic)
	if err != nil {
		return 0, err
	}
	rc, err := kgo.NewClient(append(opts, readCommitted(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(from)}}))...)...)
	if err != nil {
		return 0, fmt.Errorf("changelog: restore client: %w", err)
	}
	defer rc.Close()

	ap, err := l.newApplier(topic, sourceTopic, p, from)
	if err != nil {
		return 0, err
	}
	for ap.next < end.Offset {
		fetches := rc.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return ap.records, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return ap.records, fmt.Errorf("changelog: read %s/%d: %w", topic, p, ferr)
		}
		for _, rec := range fetches.Records() {
			if err := ap.add(ctx, rec); err != nil {
				return ap.records, err
			}
		}
	}
	if err := ap.flush(ctx); err != nil {
		return ap.records, err
	}
	records, bytes := ap.records, ap.bytes
	l.stats.restores.Add(1)
	l.stats.restoredRecords.Add(int64(records))
	l.stats.restoredBytes.Add(bytes)
	l.stats.lastRestoreRecords.Store(int64(records))
	if l.obs.Restored != nil {
		l.obs.Restored(int64(records), bytes, time.Since(began))
	}
	l.cfg.Logger.Info("changelog restored", "topic", topic, "partition", p, "from_offset", from, "records", records, "bytes", bytes, "seconds", time.Since(began).Seconds())
	return records, nil
}

// Commit makes a batch's state changes of partition p durable: it
// produces them to the changelog and waits for the broker's
// acknowledgement, then commits them locally with the source offsets and
// the changelog offset reached. It holds a lease on the partition
// throughout, so a revocation waits for it; if the partition was revoked
// (or revoked and assigned again) since the batch's Ready, nothing is
// written and the batch fails: its state was computed from a copy that
// may be stale, and the partition's owner will process it again.
func (l *Log) Commit(ctx context.Context, sourceTopic string, p int32, epoch uint64, writes []state.Write, offsets []state.Offset) error {
	return l.CommitIn(ctx, nil, sourceTopic, p, epoch, writes, offsets)
}

// CommitIn is Commit inside txn, a kafka input's transaction in
// exactly-once mode (nil: Commit). The changelog records are produced in
// the transaction, so they become visible to read_committed readers (a
// restore, a standby) only if it commits, together with the outputs and
// the source offsets. The local commit is made at once, marked as holding
// an open transaction's writes (txnMarker); the mark is cleared when the
// transaction commits. If it aborts, or the agent dies before it ends, the
// local copy holds writes the changelog does not, so the partition's next
// Ready discards the local copy and restores it whole from the changelog,
// as Kafka Streams wipes a task's stores after an unclean end under
// exactly-once.
func (l *Log) CommitIn(ctx context.Context, txn *Txn, sourceTopic string, p int32, epoch uint64, writes []state.Write, offsets []state.Offset) error {
	release, ok := l.cfg.Assignments.Lease(sourceTopic, p, epoch)
	if !ok {
		return fmt.Errorf("partition %s/%d: %w: revoked while its batch was processed; state not committed, the partition's owner processes the batch again", sourceTopic, p, ErrNotOwned)
	}
	defer release()
	ns := l.Namespace(p)
	part := strconv.Itoa(int(p))
	if txn != nil {
		if err := txn.Err(); err != nil {
			return fmt.Errorf("partition %s/%d: %w: %v", sourceTopic, p, ErrTxnFailed, err)
		}
	} else if len(writes) == 0 {
		return l.cfg.Store.Commit(ctx, ns, nil, offsets)
	}
	topic, _, err := l.TopicFor(ctx, sourceTopic)
	if err != nil {
		return err
	}
	offsets = offsets[:len(offsets):len(offsets)]
	if txn != nil {
		offsets = append(offsets, state.Offset{Source: txnMarker(topic), Partition: part, Offset: 1})
		l.inTxn(txn, sourceTopic, p, topic)
	}
	if len(writes) > 0 {
		last, err := l.produce(ctx, txn, sourceTopic, topic, p, writes, offsets)
		if err != nil {
			return err
		}
		offsets = append(offsets, state.Offset{Source: offsetSource(topic), Partition: part, Offset: last})
	}
	return l.cfg.Store.Commit(ctx, ns, writes, offsets)
}

// produce writes a commit's records to changelog partition p, in txn if
// set, and returns the offset of the last.
func (l *Log) produce(ctx context.Context, txn *Txn, sourceTopic, topic string, p int32, writes []state.Write, offsets []state.Offset) (int64, error) {
	cl := (*kgo.Client)(nil)
	if txn != nil {
		cl = txn.Client()
	} else {
		var err error
		if cl, _, err = l.client(sourceTopic); err != nil {
			return 0, err
		}
	}
	part := strconv.Itoa(int(p))
	var hdr []kgo.RecordHeader
	for _, o := range offsets {
		if o.Source == sourceTopic && o.Partition == part {
			hdr = []kgo.RecordHeader{{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(o.Offset, 10))}}
		}
	}
	recs := make([]*kgo.Record, len(writes))
	for i, w := range writes {
		r := &kgo.Record{Topic: topic, Partition: p, Key: w.Key, Headers: hdr}
		if !w.Delete {
			r.Value = binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(w.Value)), uint64(w.LastEvent))
			r.Value = append(r.Value, w.Value...)
		}
		if txn != nil {
			ManualPartition(ctx, r)
		}
		recs[i] = r
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		if txn != nil {
			txn.Fail(err)
			return 0, fmt.Errorf("changelog: produce to %s/%d: %w: %v", topic, p, ErrTxnFailed, err)
		}
		return 0, fmt.Errorf("changelog: produce to %s/%d: %w", topic, p, err)
	}
	last := int64(-1)
	for _, r := range res {
		last = max(last, r.Record.Offset)
	}
	l.stats.produced.Add(int64(len(recs)))
	if l.obs.Produced != nil {
		l.obs.Produced(int64(len(recs)))
	}
	return last, nil
}

// readCommitted are the options of a changelog reader: only committed
// transactions' records (exactly-once mode writes the changelog in the
// input's transactions), and the transaction markers too, which occupy
// offsets: a restore reading up to an offset must see the last one.
func readCommitted(opts ...kgo.Opt) []kgo.Opt {
	return append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}
