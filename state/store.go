package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// FormatVersion is the on-disk layout version (FORMAT.md). Open writes it
// into a new store and refuses a store with another version.
const FormatVersion = 1

// ErrLocked is returned by Open when another process (normally another
// agent) holds the state dir. Stop that agent, or give this one its own
// data_dir: Badger allows one writer per directory.
var ErrLocked = errors.New("state dir is in use by another agent")

var errClosed = errors.New("state store is closed")

const (
	defaultGCInterval = 10 * time.Minute
	defaultCacheKeys  = 100_000
	// gcDiscardRatio: rewrite a value-log file once half of it is garbage.
	gcDiscardRatio = 0.5
	// minWallTTL: Badger keeps expiry in whole seconds.
	minWallTTL = time.Second
)

// Options configure a Store. The zero value of every field but Dir is a
// usable default.
type Options struct {
	// Dir is the store's directory, normally <agent data_dir>/state. It is
	// created if missing. Only one process may open it at a time.
	Dir string
	// SyncWrites makes Commit return only after the batch is fsynced
	// (Badger's SyncWrites). Callers pass true by default: without it a
	// power loss or kernel crash can lose commits whose batches were already
	// acknowledged upstream, breaking "nothing is lost". The cost is one
	// fsync per commit (Badger shares it between concurrent commits), which
	// is why the processor commits once per batch and not per message.
	// A process crash (kill -9) loses nothing either way.
	SyncWrites bool
	// GCInterval is the period of value-log garbage collection; 0 means 10m.
	// Each tick rewrites value-log files that are at least half garbage until
	// none is left. Values below 1 MiB live in the LSM tree, not the value
	// log, so for typical state this is cheap.
	GCInterval time.Duration
	// CacheKeys bounds the in-memory cache of hot keys' current values;
	// 0 means 100_000. The bound is in keys, so memory is roughly
	// CacheKeys * (value size + ~150 bytes). Commit updates the cache, so it
	// never serves a value older than the last returned Commit.
	CacheKeys int
	// Logger receives Badger's own warnings and errors (its info and debug
	// output is dropped) and the store's warnings. nil means slog.Default().
	Logger *slog.Logger
}

// validate reports every problem with the options at once and fills in
// defaults.
func (o Options) validate() (Options, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("dir is empty"))
	}
	if o.GCInterval < 0 {
		errs = append(errs, fmt.Errorf("gc interval %s is negative", o.GCInterval))
	}
	if o.CacheKeys < 0 {
		errs = append(errs, fmt.Errorf("cache keys %d is negative", o.CacheKeys))
	}
	if len(errs) > 0 {
		return o, errors.Join(errs...)
	}
	if o.GCInterval == 0 {
		o.GCInterval = defaultGCInterval
	}
	if o.CacheKeys == 0 {
		o.CacheKeys = defaultCacheKeys
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Namespace is one step's state: keys are entity keys (e.g. user_id) within
// it. Steps never share a namespace unless configured to.
type Namespace struct {
	// Name is [a-z0-9_-]{1,64}.
	Name string
	// TTL is how long an entity's state outlives its last update; 0 means
	// forever.
	TTL time.Duration
	// EventTime measures TTL in event time: Load treats an entity whose
	// LastEvent is older than TTL before the batch's event time as absent,
	// so a replay gives the same answer as the live run. Such entities stay
	// on disk until overwritten or deleted. Otherwise TTL is wall time:
	// Badger expires the entry TTL after the commit (whole seconds, so TTL
	// must be 0 or at least 1s) and compaction reclaims it.
	EventTime bool
}

// Entry is what Load and Get return per key.
type Entry struct {
	// Value is the plugin's bytes, nil if the key is absent or expired
	// (a present empty value is a non-nil empty slice). From Load it is
	// shared with the cache: the caller must not modify it. From Get it is
	// the caller's own copy.
	Value []byte
	// LastEvent is the LastEvent of the last Write of the key (unix nanos of
	// the last event applied, in event-time namespaces).
	LastEvent int64
}

// Write is one key's new state. Delete removes it (Value and LastEvent are
// then ignored). Commit copies Key and Value before it returns; the caller
// may reuse them afterwards.
type Write struct {
	Key       []byte
	Value     []byte
	LastEvent int64
	Delete    bool
}

// Offset is the position of the last message of a batch applied, per input
// source and partition. Source must not contain a NUL byte.
type Offset struct {
	Source, Partition string
	Offset            int64
}

// Stats is a snapshot of the store's counters for metrics.
type Stats struct {
	KeysCached  int
	CacheHits   uint64
	CacheMisses uint64
	// LSMBytes and VlogBytes are Badger's on-disk sizes; Badger refreshes
	// them about once a minute.
	LSMBytes, VlogBytes int64
	// Commits counts Commit and Delete calls that wrote something; Writes
	// the keyed writes they carried.
	Commits, Writes uint64
	// SplitCommits counts commits Badger refused as too big for one
	// transaction, which were therefore written in several (not atomic).
	SplitCommits      uint64
	LastCommitLatency time.Duration
	// GCRewrites counts value-log files rewritten by GC.
	GCRewrites uint64
}

// Store is the state of every namespace of one agent, in one Badger
// database. All methods are safe for concurrent use.
type Store struct {
	db    *badger.DB
	dir   string
	log   *slog.Logger
	cache *cache

	// opMu is held shared by every operation and exclusively by Close and
	// Restore (Badger's Load must not run beside other transactions).
	opMu   sync.RWMutex
	closed bool

	done      chan struct{}
	gcDone    sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	commits, writes, splits, gcRewrites atomic.Uint64
	lastCommit                          atomic.Int64
}

// Open opens (or creates) the store in opts.Dir. ctx bounds the opening
// only; the store lives until Close. A dir held by another process fails
// with ErrLocked; a dir written with another FormatVersion fails with an
// error naming both versions.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	dir := opts.Dir
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open state dir %q: %w", dir, err)
	}
	log := opts.Logger.With("component", "state", "dir", dir)
	bopts := badger.DefaultOptions(dir).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{log: log.With("source", "badger")}).
		// The store never reads inside a write transaction (Load happens
		// before the plugin runs, Commit only writes), so Badger's conflict
		// tracking would cost per-key bookkeeping and never fire.
		WithDetectConflicts(false).
		// One version per key: the store has no use for history, and
		// compaction can drop the rest.
		WithNumVersionsToKeep(1)
	db, err := badger.Open(bopts)
	if err != nil {
		// Badger formats its lock error with %+v, not %w, so its text is
		// all there is to recognise; TestErrLocked guards it across upgrades.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open state dir %q: %w: only one agent may use a data dir at a time; stop the other agent or give this one its own data_dir", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if err := ctx.Err(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if err := checkFormat(db, dir); err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{
		db:    db,
		dir:   dir,
		log:   log,
		cache: newCache(opts.CacheKeys),
		done:  make(chan struct{}),
	}
	s.gcDone.Add(1)
	go s.gcLoop(opts.GCInterval)
	return s, nil
}

// checkFormat stamps a new store with FormatVersion and refuses a store
// stamped with another one, or holding data without a stamp.
func checkFormat(db *badger.DB, dir string) error {
	var found uint32
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaFormatKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			found, err = decodeFormat(v)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("open state dir %q: read format version: %w", dir, err)
	}
	switch {
	case found == FormatVersion:
		return nil
	case found != 0:
		return fmt.Errorf("open state dir %q: on-disk format version %d, but this agent speaks format version %d; use an agent that speaks version %d, or move the dir away and restore a backup made by such an agent", dir, found, FormatVersion, found)
	}
	empty, err := isEmpty(db)
	if err != nil {
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if !empty {
		return fmt.Errorf("open state dir %q: the dir holds a Badger database without a sluice format version; it is not a sluice state store, refusing to use it", dir)
	}
	err = db.Update(func(txn *badger.Txn) error {
		return txn.Set(metaFormatKey, encodeFormat(FormatVersion))
	})
	if err != nil {
		return fmt.Errorf("open state dir %q: write format version: %w", dir, err)
	}
	return nil
}

func isEmpty(db *badger.DB) (bool, error) {
	empty := true
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	return empty, err
}

// Close stops value-log GC and closes Badger, flushing its memtables. Later
// calls return the first call's result; other methods then fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.gcDone.Wait()
		s.opMu.Lock()
		defer s.opMu.Unlock()
		s.closed = true
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close state dir %q: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// acquire holds the store open for one operation.
func (s *Store) acquire() (release func(), err error) {
	s.opMu.RLock()
	if s.closed {
		s.opMu.RUnlock()
		return nil, errClosed
	}
	return s.opMu.RUnlock, nil
}

// gcLoop runs value-log GC every interval until Close.
func (s *Store) gcLoop(interval time.Duration) {
	defer s.gcDone.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.runGC()
		}
	}
}

// runGC rewrites value-log files until Badger finds none worth rewriting.
func (s *Store) runGC() {
	release, err := s.acquire()
	if err != nil {
		return
	}
	defer release()
	for {
		select {
		case <-s.done:
			return
		default:
		}
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			s.gcRewrites.Add(1)
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing (more) to rewrite, or another GC is running.
		default:
			s.log.Warn("value-log gc failed", "err", err)
		}
		return
	}
}

// Load returns the current entry of each key of namespace ns, in the order
// of keys (duplicates allowed). Cached keys cost no I/O; the rest are read in
// one Badger read transaction. For an EventTime namespace with a TTL, an
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
	token, misses := s.cache.lookup(prefix, keys, got, found)
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

// readMisses reads the keys not found in the cache in one read transaction,
// fills got, and offers what it read to the cache.
func (s *Store) readMisses(token uint64, prefix []byte, keys [][]byte, got []cached, found []bool, misses int) (err error) {
	// Distinct missing keys, each read once however often it repeats.
	uniq := make([]string, 0, misses)
	vals := make([]cached, 0, misses)
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
	vals = vals[:len(uniq)]
	defer func() {
		if err != nil {
			s.cache.endLoad(token, nil, nil)
			return
		}
		s.cache.endLoad(token, uniq, vals)
	}()
	err = s.db.View(func(txn *badger.Txn) error {
		for j, k := range uniq {
			item, err := txn.Get([]byte(k))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // vals[j] is the zero value: absent
			}
			if err != nil {
				return fmt.Errorf("read key %q: %w", k[len(prefix):], err)
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
			if err != nil {
				return fmt.Errorf("read key %q: %w", k[len(prefix):], err)
			}
			vals[j] = c
		}
		return nil
	})
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

// Commit writes every write of namespace ns and the offsets in one Badger
// transaction, then updates the cache. With SyncWrites it returns only once
// the transaction is durable. Writes of one key apply in order (the last
// wins). ctx is checked before the commit starts; a commit under way is not
// abandoned, so the caller never has to guess whether it landed.
//
// Atomicity: if Badger refuses the batch as too big for one transaction
// (ErrTxnTooBig: more than ~15% of a 64 MiB memtable, far above 1024
// writes of a few KB), Commit writes it in several transactions, offsets in
// the last, and logs a warning: a crash between them re-applies the earlier
// parts on redelivery. Stats.SplitCommits counts such commits.
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

// commit is Commit after validation; Delete uses it too so that erasure
// goes through the same cache protocol.
func (s *Store) commit(ns string, expiresAt uint64, writes []Write, offsets []Offset) error {
	if len(writes) == 0 && len(offsets) == 0 {
		return nil
	}
	release, err := s.acquire()
	if err != nil {
		return fmt.Errorf("state commit ns[%s]: %w", ns, err)
	}
	defer release()
	start := time.Now()

	// One allocation for every Badger key and entry of the batch: Badger
	// only holds them until the commit returns. Values are allocated one by
	// one because the cache keeps them.
	keyBytes := 0
	for _, w := range writes {
		keyBytes += len(w.Key)
	}
	keyBuf := make([]byte, 0, keyBytes+len(writes)*(len(ns)+2))
	entries := make([]badger.Entry, len(writes)+len(offsets))
	ckeys := make([]string, len(writes))
	cvals := make([]cached, len(writes))
	for i, w := range writes {
		n := len(keyBuf)
		keyBuf = appendStateKey(keyBuf, ns, w.Key)
		k := keyBuf[n:len(keyBuf):len(keyBuf)]
		ckeys[i] = string(k)
		e := &entries[i]
		e.Key = k
		if w.Delete {
			continue
		}
		e.Value = encodeValue(w.Value, w.LastEvent)
		e.ExpiresAt = expiresAt
		cvals[i] = cached{val: e.Value[valueHeader:], lastEvent: w.LastEvent, expiresAt: expiresAt, present: true}
	}
	for i, o := range offsets {
		e := &entries[len(writes)+i]
		e.Key = offsetKey(o.Source, o.Partition)
		e.Value = encodeOffset(o.Offset)
	}

	s.cache.beginCommit(ckeys)
	parts, err := s.writeTxns(writes, entries)
	s.cache.endCommit(ckeys, cvals, err == nil)
	if parts > 1 {
		s.splits.Add(1)
		s.log.Warn("state commit was too big for one transaction and was split: a crash between the parts re-applies the earlier ones on redelivery",
			"namespace", ns, "writes", len(writes), "transactions", parts)
	}
	if err != nil {
		return fmt.Errorf("state commit ns[%s] (%d writes, %d offsets): %w", ns, len(writes), len(offsets), err)
	}
	s.commits.Add(1)
	s.writes.Add(uint64(len(writes)))
	s.lastCommit.Store(int64(time.Since(start)))
	return nil
}

// writeTxns writes entries (the first len(writes) of them are writes, the
// rest offsets) in one transaction, or in as few as Badger accepts. It
// returns how many transactions it committed.
func (s *Store) writeTxns(writes []Write, entries []badger.Entry) (int, error) {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	parts := 0
	add := func(i int) error {
		if i < len(writes) && writes[i].Delete {
			return txn.Delete(entries[i].Key)
		}
		return txn.SetEntry(&entries[i])
	}
	for i := range entries {
		err := add(i)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return parts, err
			}
			parts++
			txn = s.db.NewTransaction(true)
			err = add(i)
			if errors.Is(err, badger.ErrTxnTooBig) {
				return parts, fmt.Errorf("key %q: entry alone is too big for a transaction: %w", entries[i].Key, err)
			}
		}
		if err != nil {
			return parts, err
		}
	}
	if err := txn.Commit(); err != nil {
		return parts, err
	}
	return parts + 1, nil
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

// badgerLogger routes Badger's log to slog at warn and above. Badger's info
// output (compactions, replay) is too chatty for an agent's log.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
