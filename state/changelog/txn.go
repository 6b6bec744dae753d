package changelog

import (
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTxnFailed means a batch's Kafka transaction failed and will abort:
// nothing of the batch becomes visible to read_committed consumers, and the
// group reads its records again after the abort. A step that sees it drops
// the batch instead of failing it: a dead letter for it would be false.
var ErrTxnFailed = errors.New("the batch's Kafka transaction failed and will be aborted")

// Txn is one Kafka transaction of a kafka input in exactly-once mode. The
// input begins it, hands it to every message it reads through the message
// context (ContextWithTxn), and ends it once all of them are acknowledged;
// the kafka output and changelog-backed steps produce through its client, so
// outputs, changelog records and the consumed offsets commit or abort
// together.
//
// Safe for concurrent use.
type Txn struct {
	cl *kgo.Client

	mu     sync.Mutex
	failed error
	ended  bool
	hooks  []func(committed bool)
}

// NewTxn returns a transaction producing through cl, a transactional
// client with a transaction begun.
func NewTxn(cl *kgo.Client) *Txn { return &Txn{cl: cl} }

// Client is the transactional client: what it produces is part of the
// transaction. A record for a fixed partition must be marked with
// ManualPartition (the client partitions with TxnPartitioner).
func (t *Txn) Client() *kgo.Client { return t.cl }

// Fail dooms the transaction: it will abort. Producers call it when a
// write in it failed, since a commit would then lose that write.
func (t *Txn) Fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = err
	}
}

// Err is the reason the transaction will abort, or nil.
func (t *Txn) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// OnEnd registers fn to run when the transaction has ended, told whether
// it committed. Hooks run in registration order, before the input begins
// the next transaction. A hook registered after the end runs at once, as
// after an abort: its writes cannot be in the ended transaction.
func (t *Txn) OnEnd(fn func(committed bool)) {
	t.mu.Lock()
	if !t.ended {
		t.hooks = append(t.hooks, fn)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	fn(false)
}

// Ended records the transaction's outcome and runs the hooks.
func (t *Txn) Ended(committed bool) {
	t.mu.Lock()
	t.ended = true
	hooks := t.hooks
	t.hooks = nil
	t.mu.Unlock()
	for _, h := range hooks {
		h(committed)
	}
}

type txnKey struct{}

// ContextWithTxn returns ctx carrying t, for the messages of the
// transaction.
func ContextWithTxn(ctx context.Context, t *Txn) context.Context {
	return context.WithValue(ctx, txnKey{}, t)
}

// TxnFromContext returns the transaction ctx carries, or nil.
func TxnFromContext(ctx context.Context) *Txn {
	if ctx == nil {
		return nil
	}
	t, _ := ctx.Value(txnKey{}).(*Txn)
	return t
}

type manualKey struct{}

// ManualPartition marks r to be written to r.Partition by a client
// partitioning with TxnPartitioner; other records are partitioned by key.
// One transactional client writes both a step's changelog (the source
// partition's number) and the pipeline's outputs (by key).
func ManualPartition(ctx context.Context, r *kgo.Record) {
	r.Context = context.WithValue(ctx, manualKey{}, true)
}

func isManual(r *kgo.Record) bool {
	return r.Context != nil && r.Context.Value(manualKey{}) != nil
}

// TxnPartitioner partitions a record marked with ManualPartition to its
// Partition field, and every other record as the kafka output's default
// does: murmur2 of the key, as Kafka's Java client, unkeyed records sticky.
func TxnPartitioner() kgo.Partitioner {
	return txnPartitioner{kgo.StickyKeyPartitioner(nil)}
}

type txnPartitioner struct{ byKey kgo.Partitioner }

func (p txnPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return txnTopicPartitioner{p.byKey.ForTopic(topic)}
}

type txnTopicPartitioner struct{ byKey kgo.TopicPartitioner }

func (p txnTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isManual(r) || p.byKey.RequiresConsistency(r)
}

func (p txnTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if isManual(r) {
		return int(r.Partition)
	}
	return p.byKey.Partition(r, n)
}

// OnNewBatch moves the sticky partition of unkeyed records on, as the
// wrapped partitioner would.
func (p txnTopicPartitioner) OnNewBatch() {
	if o, ok := p.byKey.(kgo.TopicPartitionerOnNewBatch); ok {
		o.OnNewBatch()
	}
}
