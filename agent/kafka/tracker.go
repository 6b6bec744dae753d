package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionTracker orders the acknowledgements of one partition's batches.
// Benthos may acknowledge batches out of order (a pipeline runs several
// threads), and committing a later batch's offset before an earlier batch
// is done would skip the earlier one after a crash. So a batch's last record
// becomes committable only once every batch handed out before it is acked.
type partitionTracker struct {
	mu      sync.Mutex
	pending []*pendingBatch
	revoked bool
}

type pendingBatch struct {
	last *kgo.Record
	done bool
}

// add registers a batch handed out downstream, in hand-out order.
func (t *partitionTracker) add(last *kgo.Record) *pendingBatch {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &pendingBatch{last: last}
	t.pending = append(t.pending, b)
	return b
}

// ack marks b done and returns the last record of the longest prefix of
// done batches, which is now safe to commit, or nil. After revoke it
// returns nil: the partition belongs to another consumer, whose position
// must not be moved by our late acknowledgements.
func (t *partitionTracker) ack(b *pendingBatch) *kgo.Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	b.done = true
	if t.revoked {
		return nil
	}
	var commit *kgo.Record
	for len(t.pending) > 0 && t.pending[0].done {
		commit = t.pending[0].last
		t.pending[0] = nil
		t.pending = t.pending[1:]
	}
	return commit
}

// revoke makes every later ack a no-op, and reports how many batches were
// still in flight, abandoned uncommitted.
func (t *partitionTracker) revoke() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoked = true
	n := 0
	for _, b := range t.pending {
		if !b.done {
			n++
		}
	}
	t.pending = nil
	return n
}
