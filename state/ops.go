package state

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxScanLimit caps one Scan page, so that one request cannot hold a read
// transaction (and its memory) for the whole keyspace.
const maxScanLimit = 10_000

// restorePendingWrites bounds the batches Badger's Load keeps in flight.
const restorePendingWrites = 256

// Get returns one key's entry: from memory if the key is there (it then
// matches Badger or is newer), else from Badger, without caching it, so that
// operational lookups do not evict the hot keys. ok is false if the key is
// absent or expired in wall time. Event-time TTL is not applied: Get has no
// event time; compare Entry.LastEvent yourself. The Value is the caller's.
func (s *Store) Get(ns, key string) (Entry, bool, error) {
	if err := validateNamespace(ns); err != nil {
		return Entry{}, false, fmt.Errorf("state get: %w", err)
	}
	if err := validateKey(ns, []byte(key)); err != nil {
		return Entry{}, false, fmt.Errorf("state get ns[%s]: %w", ns, err)
	}
	release, err := s.acquire()
	if err != nil {
		return Entry{}, false, fmt.Errorf("state get ns[%s]: %w", ns, err)
	}
	defer release()
	bk := appendStateKey(nil, ns, []byte(key))
	c, inMem := s.mem.get(bk)
	if !inMem {
		err = s.db.View(func(txn *badger.Txn) error {
			c, err = readState(txn, bk)
			return err
		})
		if err != nil {
			return Entry{}, false, fmt.Errorf("state get ns[%s] key %q: %w", ns, key, err)
		}
	}
	if !c.live(uint64(time.Now().Unix())) {
		return Entry{}, false, nil
	}
	return Entry{Value: append(make([]byte, 0, len(c.val)), c.val...), LastEvent: c.lastEvent}, true, nil
}

// Delete erases one entity of a namespace (GDPR/CCPA erasure), in memory
// and on disk, durably when SyncWrites, like a Commit of one deletion.
// Deleting an absent key is not an error. The old value's bytes leave the
// disk when Badger compacts the levels that hold it.
func (s *Store) Delete(ns, key string) error {
	if err := validateNamespace(ns); err != nil {
		return fmt.Errorf("state delete: %w", err)
	}
	if err := validateKey(ns, []byte(key)); err != nil {
		return fmt.Errorf("state delete ns[%s]: %w", ns, err)
	}
	return s.commit(ns, 0, []Write{{Key: []byte(key), Delete: true}}, nil)
}

// Scan lists the keys of a namespace that start with prefix, in byte order,
// strictly after the key after ("" starts at the beginning), at most limit
// of them (capped at 10,000). next is the last key returned when more may
// follow — pass it as after to get the next page — and "" at the end.
// Committed keys are listed even before a checkpoint writes them out; keys
// expired in wall time are skipped; event-time TTL is not applied.
func (s *Store) Scan(ns, prefix, after string, limit int) (keys []string, next string, err error) {
	if err := validateNamespace(ns); err != nil {
		return nil, "", fmt.Errorf("state scan: %w", err)
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("state scan ns[%s]: limit %d must be positive", ns, limit)
	}
	limit = min(limit, maxScanLimit)
	release, err := s.acquire()
	if err != nil {
		return nil, "", fmt.Errorf("state scan ns[%s]: %w", ns, err)
	}
	defer release()

	base := nsPrefix(ns)
	full := append(append([]byte(nil), base...), prefix...)
	seek := full
	if after != "" {
		// The smallest key strictly greater than after is after + 0x00.
		if a := append(append(append([]byte(nil), base...), after...), 0); bytes.Compare(a, seek) > 0 {
			seek = a
		}
	}
	// Keys committed but not checkpointed decide over Badger: present ones
	// are merged in, deleted or expired ones hide Badger's copy.
	nowSec := uint64(time.Now().Unix())
	overlay := s.mem.dirtyIn(string(full), string(seek))
	var extra []string
	for k, c := range overlay {
		if c.live(nowSec) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)

	done := false
	emit := func(k string) {
		if len(keys) == limit {
			next, done = keys[limit-1], true
			return
		}
		keys = append(keys, k[len(base):])
	}
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = full
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(full) && !done; it.Next() {
			k := string(it.Item().Key())
			if _, ok := overlay[k]; ok {
				continue
			}
			for len(extra) > 0 && extra[0] < k && !done {
				emit(extra[0])
				extra = extra[1:]
			}
			if !done {
				emit(k)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("state scan ns[%s] prefix %q: %w", ns, prefix, err)
	}
	for len(extra) > 0 && !done {
		emit(extra[0])
		extra = extra[1:]
	}
	return keys, next, nil
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Commits:               s.commits.Load(),
		Writes:                s.writes.Load(),
		SplitCommits:          s.splits.Load(),
		LastCommitLatency:     time.Duration(s.lastCommit.Load()),
		Checkpoints:           s.checkpoints.Load(),
		LastCheckpointLatency: time.Duration(s.lastCheckpoint.Load()),
		GCRewrites:            s.gcRewrites.Load(),
	}
	st.KeysCached, st.DirtyKeys, st.CacheHits, st.CacheMisses, st.LogRecords, st.LogBytes = s.mem.stats()
	// Stats alone does not open the store: metrics of an agent that keeps
	// no state must not take its dir.
	if !s.ready.Load() {
		return st
	}
	if release, err := s.acquire(); err == nil {
		st.LSMBytes, st.VlogBytes = s.db.Size()
		release()
	}
	return st
}

// Backup writes a full backup of the store (every namespace, the offsets,
// the commit log not yet checkpointed and the format version) to w in
// Badger's stream backup format, from a consistent snapshot, while the
// store keeps serving.
func (s *Store) Backup(w io.Writer) error {
	release, err := s.acquire()
	if err != nil {
		return fmt.Errorf("state backup of %q: %w", s.dir, err)
	}
	defer release()
	if _, err := s.db.Backup(w, 0); err != nil {
		return fmt.Errorf("state backup of %q: %w", s.dir, err)
	}
	return nil
}

// Restore loads a backup made by Backup into the store and replays the
// commit log it holds. Restore into a fresh store: Badger keeps each
// entry's version, so for a key the store already holds, whichever version
// is newer wins, which is rarely what an operator means. Every other
// operation waits until it is done. If the backup was written with another
// FormatVersion the store is left holding mixed data and Restore says so:
// delete the dir and restore with an agent of the backup's version.
func (s *Store) Restore(r io.Reader) error {
	if err := s.Ready(context.Background()); err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return fmt.Errorf("state restore into %q: %w", s.dir, errClosed)
	}
	if err := s.failedErr(); err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	// Write out what memory holds first: memory is emptied below.
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	// Badger's Load must not run beside other transactions: the exclusive
	// opMu keeps Loads, Commits, checkpoints and GC out.
	err := s.db.Load(r, restorePendingWrites)
	s.mem.reset()
	if err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	if err := checkFormat(s.db, s.dir); err != nil {
		return fmt.Errorf("state restore: backup is not compatible, the store now holds mixed data: %w", err)
	}
	if err := s.recoverLogs(); err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	return nil
}

// purgeCache empties the cache of clean keys; tests and benchmarks use it
// to read cold. Dirty keys stay: see coldRead.
func (s *Store) purgeCache() { s.mem.dropClean() }

// coldRead checkpoints and empties the cache, so the next reads come from
// Badger's state keys alone.
func (s *Store) coldRead() error {
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.mem.dropClean()
	return nil
}
