package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// txnWriter writes entries in as few transactions as Badger accepts, for
// work that need not be atomic: checkpoints (replaying the log over a half
// written checkpoint gives the same state) and deleting garbage.
type txnWriter struct {
	db  *badger.DB
	txn *badger.Txn
}

func (s *Store) newTxnWriter() *txnWriter {
	return &txnWriter{db: s.db, txn: s.db.NewTransaction(true)}
}

func (w *txnWriter) do(op func(*badger.Txn) error) error {
	err := op(w.txn)
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	if err := w.txn.Commit(); err != nil {
		return err
	}
	w.txn = w.db.NewTransaction(true)
	return op(w.txn)
}

func (w *txnWriter) set(e *badger.Entry) error {
	return w.do(func(txn *badger.Txn) error { return txn.SetEntry(e) })
}

func (w *txnWriter) delete(key []byte) error {
	return w.do(func(txn *badger.Txn) error { return txn.Delete(key) })
}

func (w *txnWriter) flush() error { return w.txn.Commit() }
func (w *txnWriter) discard()     { w.txn.Discard() }

// checkpoint writes every dirty key's value under its own state key, marks
// the keys clean, then deletes the log records those values came from.
//
// Order matters for crashes: log records are deleted only after the values
// are written (Badger replays its write-ahead log in order, so a surviving
// deletion implies surviving values), and each record's header chunk is
// deleted before its other chunks (a record without its header is garbage;
// one with a header but missing chunks would be corruption). A crash at any
// point leaves records that Open replays over the values: the same state.
func (s *Store) checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	// After a failed commit snapshot returns nothing: materialising a later
	// commit's values under the failed one's record, which replay would
	// apply last, would undo them.
	items, logs := s.mem.snapshot()
	if len(items) == 0 && len(logs) == 0 {
		return nil
	}
	start := time.Now()
	nowSec := uint64(start.Unix())

	w := s.newTxnWriter()
	for _, it := range items {
		key := []byte(it.key)
		var err error
		if it.c.live(nowSec) {
			err = w.set(&badger.Entry{Key: key, Value: encodeValue(it.c.val, it.c.lastEvent), ExpiresAt: it.c.expiresAt})
		} else {
			err = w.delete(key)
		}
		if err != nil {
			w.discard()
			return fmt.Errorf("checkpoint %d keys: %w", len(items), err)
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("checkpoint %d keys: %w", len(items), err)
	}
	s.mem.materialised(items)

	w = s.newTxnWriter()
	for _, l := range logs {
		for i := range l.chunks {
			if err := w.delete(logKey(l.seq, uint32(i))); err != nil {
				w.discard()
				return fmt.Errorf("checkpoint: delete %d log records: %w", len(logs), err)
			}
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("checkpoint: delete %d log records: %w", len(logs), err)
	}
	s.mem.logsDeleted(len(logs))
	s.checkpoints.Add(1)
	s.lastCheckpoint.Store(int64(time.Since(start)))
	return nil
}

// recoverLogs replays the log records left by commits that were not
// checkpointed (a crash, or Restore of a backup), in seq order, into
// memory, deletes chunks of records whose header never landed, and
// checkpoints. It runs with nothing else touching the store.
func (s *Store) recoverLogs() error {
	var (
		orphans  [][]byte
		replayed int
		cur      struct {
			seq    uint64
			chunks uint32
			next   uint32
			rec    []byte
		}
	)
	apply := func() error {
		ns, ops, err := decodeRecord(cur.rec)
		if err != nil {
			return fmt.Errorf("log record %d: %w", cur.seq, err)
		}
		if err := validateNamespace(ns); err != nil {
			return fmt.Errorf("log record %d: %w", cur.seq, err)
		}
		prefix := nsPrefix(ns)
		keys := make([]string, len(ops))
		vals := make([]cached, len(ops))
		for i, op := range ops {
			keys[i] = string(append(append([]byte(nil), prefix...), op.key...))
			if !op.deleteOp {
				// Copy: the record buffer is reused for the next one.
				vals[i] = op.c
				vals[i].val = append(make([]byte, 0, len(op.c.val)), op.c.val...)
			}
		}
		s.mem.replay(cur.seq, keys, vals, logRef{seq: cur.seq, chunks: int(cur.chunks), bytes: int64(len(cur.rec))})
		replayed++
		return nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{kindLog}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			seq, idx, err := parseLogKey(item.Key())
			if err != nil {
				return err
			}
			if cur.chunks != 0 && seq != cur.seq {
				return fmt.Errorf("log record %d: %d of %d chunks present", cur.seq, cur.next, cur.chunks)
			}
			if cur.chunks == 0 && idx != 0 {
				// A chunk of a commit whose header never landed.
				orphans = append(orphans, item.KeyCopy(nil))
				continue
			}
			if idx != cur.next {
				return fmt.Errorf("log record %d: chunk %d found where %d was expected", seq, idx, cur.next)
			}
			err = item.Value(func(v []byte) error {
				if idx == 0 {
					if len(v) < 4 {
						return fmt.Errorf("log record %d: header chunk is %d bytes", seq, len(v))
					}
					cur.seq, cur.chunks, cur.next = seq, uint32(v[0])<<24|uint32(v[1])<<16|uint32(v[2])<<8|uint32(v[3]), 0
					if cur.chunks == 0 {
						return fmt.Errorf("log record %d: header says 0 chunks", seq)
					}
					cur.rec = append(cur.rec[:0], v[4:]...)
				} else {
					cur.rec = append(cur.rec, v...)
				}
				return nil
			})
			if err != nil {
				return err
			}
			cur.next++
			if cur.next == cur.chunks {
				if err := apply(); err != nil {
					return err
				}
				cur.chunks, cur.next = 0, 0
			}
		}
		if cur.chunks != 0 {
			return fmt.Errorf("log record %d: %d of %d chunks present", cur.seq, cur.next, cur.chunks)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay commit log (restore from a backup if this persists): %w", err)
	}
	if len(orphans) > 0 {
		w := s.newTxnWriter()
		for _, k := range orphans {
			if err := w.delete(k); err != nil {
				w.discard()
				return fmt.Errorf("delete chunks of unfinished commits: %w", err)
			}
		}
		if err := w.flush(); err != nil {
			return fmt.Errorf("delete chunks of unfinished commits: %w", err)
		}
	}
	if replayed > 0 {
		s.log.Info("replayed commits not yet checkpointed", "records", replayed)
	}
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("checkpoint replayed commits: %w", err)
	}
	return nil
}
