package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxScanLimit caps one Scan page, so that one request cannot hold a read
// transaction (and its memory) for the whole keyspace.
const maxScanLimit = 10_000

// restorePendingWrites bounds the batches Badger's Load keeps in flight.
const restorePendingWrites = 256

// Get returns one key's entry, read from Badger (not the cache, so that
// operational lookups do not evict the hot keys). ok is false if the key is
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
	var (
		e  Entry
		ok bool
	)
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appendStateKey(nil, ns, []byte(key)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			val, le, err := decodeValue(v)
			if err != nil {
				return err
			}
			e, ok = Entry{Value: append(make([]byte, 0, len(val)), val...), LastEvent: le}, true
			return nil
		})
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("state get ns[%s] key %q: %w", ns, key, err)
	}
	return e, ok, nil
}

// Delete erases one entity of a namespace (GDPR/CCPA erasure), on disk and
// in the cache, durably when SyncWrites. Deleting an absent key is not an
// error. Badger drops the old versions at its next compactions.
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
// Keys expired in wall time are skipped; event-time TTL is not applied.
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
		if s := append(append(append([]byte(nil), base...), after...), 0); bytes.Compare(s, seek) > 0 {
			seek = s
		}
	}
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = full
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(full); it.Next() {
			if len(keys) == limit {
				next = keys[len(keys)-1]
				return nil
			}
			keys = append(keys, string(it.Item().Key()[len(base):]))
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("state scan ns[%s] prefix %q: %w", ns, prefix, err)
	}
	return keys, next, nil
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Commits:           s.commits.Load(),
		Writes:            s.writes.Load(),
		SplitCommits:      s.splits.Load(),
		LastCommitLatency: time.Duration(s.lastCommit.Load()),
		GCRewrites:        s.gcRewrites.Load(),
	}
	st.KeysCached, st.CacheHits, st.CacheMisses = s.cache.stats()
	if release, err := s.acquire(); err == nil {
		st.LSMBytes, st.VlogBytes = s.db.Size()
		release()
	}
	return st
}

// Backup writes a full backup of the store (every namespace, the offsets and
// the format version) to w in Badger's stream backup format, from a
// consistent snapshot, while the store keeps serving.
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

// Restore loads a backup made by Backup into the store. Restore into a
// fresh store: Badger keeps each entry's version, so for a key the store
// already holds, whichever version is newer wins, which is rarely what an
// operator means. Every
// other operation waits until it is done, and the cache is emptied. If the
// backup was written with another FormatVersion the store is left holding
// mixed data and Restore says so: delete the dir and restore with an agent
// of the backup's version.
func (s *Store) Restore(r io.Reader) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return fmt.Errorf("state restore into %q: %w", s.dir, errClosed)
	}
	// Badger's Load must not run beside other transactions: the exclusive
	// opMu keeps Loads, Commits and GC out.
	err := s.db.Load(r, restorePendingWrites)
	s.cache.flush()
	if err != nil {
		return fmt.Errorf("state restore into %q: %w", s.dir, err)
	}
	if err := checkFormat(s.db, s.dir); err != nil {
		return fmt.Errorf("state restore: backup is not compatible, the store now holds mixed data: %w", err)
	}
	return nil
}

// purgeCache empties the cache; tests and benchmarks use it to read cold.
func (s *Store) purgeCache() { s.cache.flush() }
