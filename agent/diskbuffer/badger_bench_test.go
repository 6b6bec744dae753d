package diskbuffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// badgerBuffer is the alternative the segment log was measured against: a
// queue in Badger, one key per message (its sequence number, big endian),
// written with SyncWrites and Badger's own group commit (CommitWith), read
// with an iterator, and deleted on acknowledgement. It has what the
// benchmark needs only: one batch in flight, no redelivery, no limits.
type badgerBuffer struct {
	db *badger.DB

	mu         sync.Mutex
	cond       *sync.Cond
	nextSeq    uint64            // next to write
	committed  uint64            // every key before is durable
	commits    map[uint64]uint64 // durable batches past committed: first → end
	readSeq    uint64
	inFlight   bool
	endOfInput bool
	closed     bool
	enc        []byte
}

func openBadger(dir string) (*badgerBuffer, error) {
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithDetectConflicts(false))
	if err != nil {
		return nil, fmt.Errorf("open badger in %s: %w", dir, err)
	}
	b := &badgerBuffer{db: db, commits: map[uint64]uint64{}}
	b.cond = sync.NewCond(&b.mu)
	return b, nil
}

func badgerKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func (b *badgerBuffer) WriteBatch(ctx context.Context, batch service.MessageBatch, ackFn service.AckFunc) error {
	b.mu.Lock()
	first := b.nextSeq
	b.nextSeq += uint64(len(batch))
	txn := b.db.NewTransaction(true)
	for i, m := range batch {
		var err error
		if b.enc, err = appendRecord(b.enc[:0], first+uint64(i), 0, true, m); err != nil {
			b.mu.Unlock()
			txn.Discard()
			return err
		}
		// Badger keeps the value slice until the commit.
		if err := txn.Set(badgerKey(first+uint64(i)), append([]byte(nil), b.enc...)); err != nil {
			b.mu.Unlock()
			txn.Discard()
			return err
		}
	}
	b.mu.Unlock()
	end := first + uint64(len(batch))
	txn.CommitWith(func(err error) {
		if err == nil {
			b.mu.Lock()
			b.commits[first] = end
			for e, ok := b.commits[b.committed]; ok; e, ok = b.commits[b.committed] {
				delete(b.commits, b.committed)
				b.committed = e
			}
			b.cond.Broadcast()
			b.mu.Unlock()
		}
		_ = ackFn(ctx, err)
	})
	return nil
}

func (b *badgerBuffer) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	stop := context.AfterFunc(ctx, func() { b.mu.Lock(); b.cond.Broadcast(); b.mu.Unlock() })
	defer stop()
	b.mu.Lock()
	for !b.closed && ctx.Err() == nil && (b.inFlight || b.readSeq >= b.committed) {
		if b.endOfInput && !b.inFlight && b.readSeq == b.nextSeq {
			b.mu.Unlock()
			return nil, nil, service.ErrEndOfBuffer
		}
		b.cond.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return nil, nil, service.ErrEndOfBuffer
	}
	if err := ctx.Err(); err != nil {
		b.mu.Unlock()
		return nil, nil, err
	}
	from, to := b.readSeq, min(b.committed, b.readSeq+1024)
	b.inFlight = true
	b.mu.Unlock()

	batch := make(service.MessageBatch, 0, to-from)
	err := b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Seek(badgerKey(from)); it.Valid() && uint64(len(batch)) < to-from; it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			rec, _, _, err := parseRecord(v, int64(len(v)), true)
			if err != nil {
				return err
			}
			m, err := rec.message()
			if err != nil {
				return err
			}
			batch = append(batch, m)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return batch, func(ctx context.Context, err error) error {
		wb := b.db.NewWriteBatch()
		for s := from; s < to; s++ {
			if err := wb.Delete(badgerKey(s)); err != nil {
				return err
			}
		}
		ferr := wb.Flush()
		b.mu.Lock()
		b.readSeq = to
		b.inFlight = false
		b.cond.Broadcast()
		b.mu.Unlock()
		return ferr
	}, nil
}

func (b *badgerBuffer) EndOfInput() {
	b.mu.Lock()
	b.endOfInput = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *badgerBuffer) Close(context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	return b.db.Close()
}
