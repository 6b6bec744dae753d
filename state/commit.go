package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A Load with many keys to read from Badger splits them over up to
// maxReadWorkers goroutines, each with at least minKeysPerReader keys.
const (
	maxReadWorkers   = 4
	minKeysPerReader = 128
)

// Load returns the current entry of each key of namespace ns, in the order
// of keys (duplicates allowed). Keys in memory cost no I/O; the rest are read
// in one Badger read transaction (one per core for a large cold batch),
// each distinct key once. For an EventTime namespace with a TTL, an
// entry whose LastEvent < now-TTL is returned absent; now is the batch's
// event time in unix nanos, and now == 0 skips that check (the caller
// applies the TTL itself, e.g. per message). now is ignored otherwise.
// Returned values are shared: the caller must not modify them.
func (s *Store) Load(ns Namespace, keys [][]byte, now int64) ([]Entry, error) {
	if err := ns.validate(); err != nil {
		return nil, fmt.Errorf("state load: %w", err)
	}
	for i, k := range keys {
		if err := validateKey(ns.Name, k); err != nil {
			return nil, fmt.Errorf("state load ns[%s] key[%d]: %w", ns.Name, i, err)
		}
	}
	release, err := s.acquire()
	if err != nil {
		return nil, fmt.Errorf("state load ns[%s]: %w", ns.Name, err)
	}
	defer release()

	prefix := nsPrefix(ns.Name)
	got := make([]cached, len(keys))
	found := make([]bool, len(keys))
	token, misses := s.mem.lookup(prefix, keys, got, found)
	if misses > 0 {
		if err := s.readMisses(token, prefix, keys, got, found, misses); err != nil {
			return nil, fmt.Errorf("state load ns[%s]: %w", ns.Name, err)
		}
	}

	nowSec := uint64(time.Now().Unix())
	var oldest int64
	checkEvent := ns.EventTime && ns.TTL > 0 && now != 0
	if checkEvent {
		oldest = now - int64(ns.TTL)
	}
	out := make([]Entry, len(keys))
	for i, c := range got {
		if !c.live(nowSec) || (checkEvent && c.lastEvent < oldest) {
			continue
		}
		out[i] = Entry{Value: c.val, LastEvent: c.lastEvent}
	}
	return out, nil
}

// readMisses reads the keys not in memory from Badger, fills got, and
// offers what it read to the cache.
func (s *Store) readMisses(token uint64, prefix []byte, keys [][]byte, got []cached, found []bool, misses int) (err error) {
	// Distinct missing keys, each read once however often it repeats.
	uniq := make([]string, 0, misses)
	at := make(map[string]int, misses)
	pos := make([]int, len(keys)) // index into uniq, for misses
	scratch := make([]byte, 0, 128)
	for i, k := range keys {
		if found[i] {
			continue
		}
		scratch = append(append(scratch[:0], prefix...), k...)
		j, ok := at[string(scratch)]
		if !ok {
			j = len(uniq)
			ks := string(scratch)
			at[ks] = j
			uniq = append(uniq, ks)
		}
		pos[i] = j
	}
	vals := make([]cached, len(uniq))
	defer func() {
		if err != nil {
			s.mem.endLoad(token, nil, nil)
			return
		}
		s.mem.endLoad(token, uniq, vals)
	}()
	read := func(lo, hi int) error {
		return s.db.View(func(txn *badger.Txn) error {
			for j := lo; j < hi; j++ {
				c, err := readState(txn, []byte(uniq[j]))
				if err != nil {
					return fmt.Errorf("read key %q: %w", uniq[j][len(prefix):], err)
				}
				vals[j] = c
			}
			return nil
		})
	}
	// A cold batch costs a few microseconds per key in Badger's lookups;
	// spread large ones over the cores, one read transaction each (each
	// key is read, and raced with commits, on its own; see memState).
	workers := min(runtime.GOMAXPROCS(0), maxReadWorkers, len(uniq)/minKeysPerReader)
	if workers <= 1 {
		err = read(0, len(uniq))
	} else {
		errs := make([]error, workers)
		var wg sync.WaitGroup
		per := (len(uniq) + workers - 1) / workers
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = read(w*per, min(len(uniq), (w+1)*per))
			}()
		}
		wg.Wait()
		err = errors.Join(errs...)
	}
	if err != nil {
		return err
	}
	for i := range keys {
		if !found[i] {
			got[i] = vals[pos[i]]
		}
	}
	return nil
}

// readState reads one materialised state key; absent is not an error.
func readState(txn *badger.Txn, key []byte) (cached, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return cached{}, nil
	}
	if err != nil {
		return cached{}, err
	}
	var c cached
	err = item.Value(func(v []byte) error {
		val, le, err := decodeValue(v)
		if err != nil {
			return err
		}
		// Badger's slice is only valid inside the transaction.
		c = cached{val: append(make([]byte, 0, len(val)), val...), lastEvent: le, expiresAt: item.ExpiresAt(), present: true}
		return nil
	})
	return c, err
}

// Commit makes the writes of namespace ns and the batch's offsets durable
// in one Badger transaction, then updates memory, so that the next Load
// sees them. With SyncWrites it returns only once the transaction is on
// disk. Writes of one key apply in order (the last wins). ctx is checked
// before the commit starts; a commit under way is not abandoned, so the
// caller never has to guess whether it landed.
//
// The transaction holds one log record with every write, plus the offsets
// (FORMAT.md); a background checkpoint later writes each key's latest value
// under its own key, so a hot key updated in many batches is written once
// per checkpoint, not once per batch. A batch too big for one Badger
// transaction (more than ~15% of the 64 MiB memtable, far above 1024 writes
// of a few KB) is written in several; it stays atomic, because the record
// only counts once its header, written last with the offsets, lands.
//
// If Badger fails to commit, whether the transaction reached the disk is
// unknown until the next Open replays the log. So the store fails stop:
// this and every later Commit and Delete return an error (wrapping the
// first one) and checkpoints stop, until the agent restarts. The batch must
// not be acknowledged; after the restart its offsets tell whether it landed.
func (s *Store) Commit(ctx context.Context, ns Namespace, writes []Write, offsets []Offset) error {
	if err := ns.validate(); err != nil {
		return fmt.Errorf("state commit: %w", err)
	}
	for i, w := range writes {
		if err := validateKey(ns.Name, w.Key); err != nil {
			return fmt.Errorf("state commit ns[%s] write[%d]: %w", ns.Name, i, err)
		}
	}
	for i, o := range offsets {
		if err := validateSource(o.Source, o.Partition); err != nil {
			return fmt.Errorf("state commit ns[%s] offset[%d]: %w", ns.Name, i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("state commit ns[%s]: %w", ns.Name, err)
	}
	var expiresAt uint64
	if !ns.EventTime && ns.TTL > 0 {
		expiresAt = uint64(time.Now().Add(ns.TTL).Unix())
	}
	return s.commit(ns.Name, expiresAt, writes, offsets)
}

// commit is Commit after validation; Delete uses it too, so that erasure
// goes through the same log and memory protocol.
func (s *Store) commit(ns string, expiresAt uint64, writes []Write, offsets []Offset) error {
	if len(writes) == 0 && len(offsets) == 0 {
		return nil
	}
	release, err := s.acquire()
	if err != nil {
		return fmt.Errorf("state commit ns[%s]: %w", ns, err)
	}
	defer release()
	if err := s.failedErr(); err != nil {
		return fmt.Errorf("state commit ns[%s]: %w", ns, err)
	}
	if _, dirty, _, _, _, logBytes := s.mem.stats(); dirty > hardDirtyKeys || logBytes > hardLogBytes {
		// Checkpoints are not keeping up: pay for one here rather than
		// let pinned memory and replay time grow without bound.
		if err := s.checkpoint(); err != nil {
			return fmt.Errorf("state commit ns[%s]: checkpoint before commit: %w", ns, err)
		}
	}
	start := time.Now()

	// The record is built behind 4 bytes kept for the header chunk's chunk
	// count, so no chunk is copied again; the buffer is reused once Badger,
	// which copies what it commits, is done with it.
	bufp := s.recBufs.Get().(*[]byte)
	buf := slices.Grow((*bufp)[:0], 4+recordSize(ns, writes))
	buf = appendRecord(append(buf, 0, 0, 0, 0), ns, writes, expiresAt)
	defer func() {
		if cap(buf) <= maxPooledRecord {
			*bufp = buf
			s.recBufs.Put(bufp)
		}
	}()
	// Memory gets its own copy of each value: sharing the record would pin
	// all of it for as long as any one of its values stays cached.
	prefix := nsPrefix(ns)
	ckeys := make([]string, len(writes))
	cvals := make([]cached, len(writes))
	scratch := make([]byte, 0, 128)
	for i, w := range writes {
		scratch = append(append(scratch[:0], prefix...), w.Key...)
		ckeys[i] = string(scratch)
		if !w.Delete {
			cvals[i] = cached{val: append(make([]byte, 0, len(w.Value)), w.Value...), lastEvent: w.LastEvent, expiresAt: expiresAt, present: true}
		}
	}

	seq := s.mem.reserve()
	ref, err := s.writeLog(seq, buf, offsets)
	if err != nil {
		s.failed.CompareAndSwap(nil, &err)
		s.log.Error("state commit failed; the store accepts no more commits until the agent restarts and replays its log", "err", err)
	}
	dirty, logBytes := s.mem.finish(seq, ckeys, cvals, err == nil, ref)
	if err != nil {
		return fmt.Errorf("state commit ns[%s] (%d writes, %d offsets): %w", ns, len(writes), len(offsets), err)
	}
	if dirty >= softDirtyKeys || logBytes >= softLogBytes {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.commits.Add(1)
	s.writes.Add(uint64(len(writes)))
	s.lastCommit.Store(int64(time.Since(start)))
	return nil
}

// writeLog writes log record seq (buf[4:], the first 4 bytes free for the
// chunk count) and the offsets in one transaction, or, if Badger finds that
// too big, the record's other chunks first and its header chunk with the
// offsets last. It returns the record's reference even on error.
func (s *Store) writeLog(seq uint64, buf []byte, offsets []Offset) (logRef, error) {
	rec := buf[4:]
	chunks := max(1, (len(rec)+maxChunk-1)/maxChunk)
	ref := logRef{seq: seq, chunks: chunks, bytes: int64(len(rec))}
	// The header chunk carries the chunk count, so replay knows when a
	// record is whole.
	binary.BigEndian.PutUint32(buf, uint32(chunks))
	entries := make([]badger.Entry, 0, chunks+len(offsets))
	entries = append(entries, badger.Entry{Key: logKey(seq, 0), Value: buf[:4+min(len(rec), maxChunk)]})
	for i := 1; i < chunks; i++ {
		entries = append(entries, badger.Entry{Key: logKey(seq, uint32(i)), Value: rec[i*maxChunk : min(len(rec), (i+1)*maxChunk)]})
	}
	for _, o := range offsets {
		entries = append(entries, badger.Entry{Key: offsetKey(o.Source, o.Partition), Value: encodeOffset(o.Offset)})
	}

	if err := s.injectFault("before"); err != nil {
		return ref, err
	}
	txn := s.db.NewTransaction(true)
	err := setAll(txn, entries)
	if err == nil {
		if err := txn.Commit(); err != nil {
			return ref, err
		}
		return ref, s.injectFault("after")
	}
	txn.Discard()
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return ref, err
	}
	s.splits.Add(1)
	s.log.Info("commit too big for one transaction, written in several; still atomic",
		"seq", seq, "record_bytes", len(rec), "chunks", chunks)
	w := s.newTxnWriter()
	for i := 1; i < chunks; i++ {
		if err := w.set(&entries[i]); err != nil {
			w.discard()
			return ref, err
		}
	}
	if err := w.flush(); err != nil {
		return ref, err
	}
	if err := s.injectFault("header"); err != nil {
		return ref, err
	}
	txn = s.db.NewTransaction(true)
	defer txn.Discard()
	last := append([]badger.Entry{entries[0]}, entries[chunks:]...)
	if err := setAll(txn, last); err != nil {
		return ref, fmt.Errorf("record header and %d offsets: %w", len(offsets), err)
	}
	return ref, txn.Commit()
}

func setAll(txn *badger.Txn, entries []badger.Entry) error {
	for i := range entries {
		if err := txn.SetEntry(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// Applied reports the last offset committed for a source and partition (ok
// false if none was). The processor skips the state updates of messages at
// or below it: they were applied before a crash or redelivery.
func (s *Store) Applied(source, partition string) (offset int64, ok bool, err error) {
	if err := validateSource(source, partition); err != nil {
		return 0, false, fmt.Errorf("state applied: %w", err)
	}
	release, err := s.acquire()
	if err != nil {
		return 0, false, fmt.Errorf("state applied source[%s] partition[%s]: %w", source, partition, err)
	}
	defer release()
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(offsetKey(source, partition))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			offset, err = decodeOffset(v)
			ok = err == nil
			return err
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("state applied source[%s] partition[%s]: %w", source, partition, err)
	}
	return offset, ok, nil
}

// failedErr reports whether an earlier commit failed, as an error telling
// the operator what to do.
func (s *Store) failedErr() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("an earlier commit failed, restart the agent to replay the commit log (%w)", *p)
	}
	return nil
}

func (s *Store) injectFault(stage string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(stage)
}
