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

	// Checkpoints materialise dirty keys and delete the log records they
	// came from. They run every checkpointInterval, and sooner when the
	// dirty keys or the undeleted log pass the soft limits. Past the hard
	// limits Commit checkpoints inline before writing, which bounds memory
	// (dirty keys are pinned) and replay time after a crash.
	checkpointInterval = time.Second
	softDirtyKeys      = 32 << 10
	softLogBytes       = 32 << 20
	hardDirtyKeys      = 4 * softDirtyKeys
	hardLogBytes       = 4 * softLogBytes

	// maxPooledRecord: larger record buffers are left to the GC.
	maxPooledRecord = 4 << 20
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
	// fsync per commit (Badger shares it between concurrent commits): on
	// the reference 2-core VM a one-write commit takes ~0.3-0.5 ms with it,
	// a 1024 x 128-byte commit ~3 ms. That is why the processor commits once
	// per batch, never per message. A process crash (kill -9) loses nothing
	// either way: the data is in the page cache.
	SyncWrites bool
	// GCInterval is the period of value-log garbage collection; 0 means 10m.
	// Each tick rewrites value-log files that are at least half garbage until
	// none is left. Values and log chunks below 1 MiB live in the LSM tree,
	// not the value log, so for typical state this finds little to do.
	GCInterval time.Duration
	// CacheKeys bounds the in-memory cache of hot keys' current values;
	// 0 means 100_000. Keys committed but not yet checkpointed (about a
	// second's worth, at most ~128 Ki keys; see FORMAT.md) are held in
	// memory on top of it. Memory is roughly (CacheKeys + dirty keys) *
	// (value size + ~150 bytes). Commit updates memory, so it never serves a
	// stale value.
	CacheKeys int
	// InMemory keeps everything in memory (Badger's in-memory mode), with
	// Dir empty: nothing survives Close. It is for benchmarks and tests that
	// compare the cost of durability with the same code path; the agent
	// never uses it.
	InMemory bool
	// MemTableBytes and BlockCacheBytes size Badger's write buffer and
	// block cache; 0 keeps Badger's defaults (64 MiB, 256 MiB), which
	// dominate an idle agent's memory.
	MemTableBytes, BlockCacheBytes int64
	// Logger receives Badger's own warnings and errors (its info and debug
	// output is dropped) and the store's. nil means slog.Default().
	Logger *slog.Logger
}

// validate reports every problem with the options at once and fills in
// defaults.
func (o Options) validate() (Options, error) {
	var errs []error
	switch {
	case o.Dir == "" && !o.InMemory:
		errs = append(errs, errors.New("dir is empty"))
	case o.Dir != "" && o.InMemory:
		errs = append(errs, fmt.Errorf("dir %q is set for an in-memory store", o.Dir))
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
// it.
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
	// the entry expires TTL after its commit (whole seconds, so TTL must be
	// 0 or at least 1s) and Badger's compaction reclaims it.
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
// source and partition. Source must not contain a NUL byte. Commit writes it
// as given (it may go down, e.g. after a consumer-group reset); commits
// carrying the same source and partition must not run concurrently, or
// whichever Badger finishes last wins.
type Offset struct {
	Source, Partition string
	Offset            int64
}

// Stats is a snapshot of the store's counters for metrics.
type Stats struct {
	// KeysCached is every key in memory, DirtyKeys those of them committed
	// but not yet checkpointed.
	KeysCached, DirtyKeys int
	// CacheHits and CacheMisses count keys passed to Load found in memory
	// or read from Badger.
	CacheHits, CacheMisses uint64
	// LSMBytes and VlogBytes are Badger's on-disk sizes; Badger refreshes
	// them about once a minute.
	LSMBytes, VlogBytes int64
	// Commits counts Commit and Delete calls that wrote something; Writes
	// the keyed writes they carried.
	Commits, Writes uint64
	// SplitCommits counts commits too big for one Badger transaction,
	// written in several; they stay atomic (FORMAT.md, "Log records").
	SplitCommits      uint64
	LastCommitLatency time.Duration
	// LogRecords and LogBytes are the commits not yet checkpointed.
	LogRecords int
	LogBytes   int64
	// Checkpoints counts checkpoints that wrote something.
	Checkpoints           uint64
	LastCheckpointLatency time.Duration
	// GCRewrites counts value-log files rewritten by GC.
	GCRewrites uint64
}

// Store is the state of every namespace of one agent, in one Badger
// database. All methods are safe for concurrent use.
type Store struct {
	db   *badger.DB
	dir  string
	opts Options
	log  *slog.Logger
	mem  *memState

	// openMu serialises Ready and Close's decision to never open; ready
	// is set once db is open, shut once Close began.
	openMu sync.Mutex
	ready  atomic.Bool
	shut   atomic.Bool

	// opMu is held shared by every operation and the background loops, and
	// exclusively by Close and Restore (Badger's Load must not run beside
	// other transactions).
	opMu   sync.RWMutex
	closed bool
	// ckMu serialises checkpoints.
	ckMu sync.Mutex
	// failed is the first commit error. From then on commits and
	// checkpoints stop: the failed commit may or may not have reached the
	// disk, and only a replay at the next Open, in log order, can tell.
	failed atomic.Pointer[error]

	kick      chan struct{} // asks for a checkpoint now
	done      chan struct{}
	loops     sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// recBufs recycles log record buffers (*[]byte): at 1024 writes a
	// record is ~150 KB, and a fresh one per commit costs zeroing and GC.
	recBufs sync.Pool

	// holdCheckpoints, set by tests, stops the background checkpoints so
	// that the log stays as commits left it.
	holdCheckpoints atomic.Bool
	// fault, when set by a test, is called before ("before") and after
	// ("after") the transaction of a log record, and before the header
	// transaction of a split one ("header"); an error it returns fails the
	// commit as if Badger had.
	fault func(stage string) error

	commits, writes, splits, gcRewrites, checkpoints atomic.Uint64
	lastCommit, lastCheckpoint                       atomic.Int64
}

// Open opens (or creates) the store in opts.Dir, replaying the log records
// of commits not yet checkpointed. ctx bounds the opening only; the store
// lives until Close. A dir held by another process fails with ErrLocked; a
// dir written with another FormatVersion fails with an error naming both
// versions.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s, err := OpenLazy(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenLazy checks opts and returns a store that opens its dir (taking its
// lock, replaying its log) only when first used: by Ready, or by any
// operation but Stats and Close. An agent whose pipelines keep no state
// then never holds the dir, so batch jobs can run beside an agent that
// does; a step that needs state calls Ready when it is built, so a dir it
// cannot have fails the pipeline at its start, not at its first batch.
func OpenLazy(opts Options) (*Store, error) {
	opts, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	s := &Store{
		dir:  opts.Dir,
		opts: opts,
		log:  opts.Logger.With("component", "state", "dir", opts.Dir),
		mem:  newMemState(opts.CacheKeys),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	s.recBufs.New = func() any { return new([]byte) }
	return s, nil
}

// Ready opens the store's dir if it is not open yet. It may be called any
// number of times, from any goroutine; after an error (the dir held by
// another agent) a later call tries again.
func (s *Store) Ready(ctx context.Context) error {
	if s.shut.Load() {
		return fmt.Errorf("open state dir %q: %w", s.dir, errClosed)
	}
	if s.ready.Load() {
		return nil
	}
	s.openMu.Lock()
	defer s.openMu.Unlock()
	switch {
	case s.shut.Load():
		return fmt.Errorf("open state dir %q: %w", s.dir, errClosed)
	case s.ready.Load():
		return nil
	}
	if err := s.open(ctx); err != nil {
		return err
	}
	s.ready.Store(true)
	return nil
}

// Opened reports whether the store's dir is open (OpenLazy's is not until
// it is first used).
func (s *Store) Opened() bool { return s.ready.Load() }

// open opens Badger in the dir, checks its format, replays the log and
// starts the background loops.
func (s *Store) open(ctx context.Context) error {
	opts, dir, log := s.opts, s.dir, s.log
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if !opts.InMemory {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("open state dir %q: %w", dir, err)
		}
	}
	bopts := badger.DefaultOptions(dir).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{log: log.With("source", "badger")}).
		// The store never reads inside a write transaction (Load runs
		// before the plugin, Commit only writes), so Badger's conflict
		// tracking would cost per-key bookkeeping and never fire.
		WithDetectConflicts(false).
		// One version per key: the store has no use for history, and
		// compaction can drop the rest.
		WithNumVersionsToKeep(1).
		WithInMemory(opts.InMemory)
	if opts.MemTableBytes > 0 {
		bopts = bopts.WithMemTableSize(opts.MemTableBytes)
	}
	if opts.BlockCacheBytes > 0 {
		bopts = bopts.WithBlockCacheSize(opts.BlockCacheBytes)
	}
	db, err := badger.Open(bopts)
	if err != nil {
		// Badger formats its lock error with %+v, not %w, so its text is
		// all there is to recognise; TestErrLocked guards it across upgrades.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return fmt.Errorf("open state dir %q: %w: only one agent may use a data dir at a time; stop the other agent or give this one its own data_dir", dir, ErrLocked)
		}
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if err := ctx.Err(); err != nil {
		_ = db.Close()
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	if err := checkFormat(db, dir); err != nil {
		_ = db.Close()
		return err
	}
	s.db = db
	if err := s.recoverLogs(); err != nil {
		// Ready may be called again: it replays the log onto an empty
		// memory, not onto what this attempt left.
		s.db = nil
		s.mem.reset()
		_ = db.Close()
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	s.loops.Add(1)
	go s.checkpointLoop()
	if !opts.InMemory { // Badger has no value log to collect in memory
		s.loops.Add(1)
		go s.gcLoop(opts.GCInterval)
	}
	return nil
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

// Close stops the background work, checkpoints (so the next Open has no
// log to replay) and closes Badger. Later calls return the first call's
// result; other methods then fail.
func (s *Store) Close() error {
	return s.close(true)
}

// close is Close; without checkpoint it leaves the log for the next Open
// to replay, as a crash would (tests use that).
func (s *Store) close(checkpoint bool) error {
	s.closeOnce.Do(func() {
		s.openMu.Lock()
		s.shut.Store(true)
		s.openMu.Unlock()
		close(s.done)
		s.loops.Wait()
		s.opMu.Lock()
		defer s.opMu.Unlock()
		s.closed = true
		if !s.ready.Load() {
			return // never opened: nothing to write or close
		}
		var errs []error
		if checkpoint && s.failed.Load() == nil {
			if err := s.checkpoint(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("close state dir %q: %w", s.dir, errors.Join(errs...))
		}
	})
	return s.closeErr
}

// acquire holds the store open for one operation, opening it first if
// it is not open yet.
func (s *Store) acquire() (release func(), err error) {
	if err := s.Ready(context.Background()); err != nil {
		return nil, err
	}
	s.opMu.RLock()
	if s.closed {
		s.opMu.RUnlock()
		return nil, errClosed
	}
	return s.opMu.RUnlock, nil
}

// gcLoop runs value-log GC every interval until Close.
func (s *Store) gcLoop(interval time.Duration) {
	defer s.loops.Done()
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

// checkpointLoop checkpoints every checkpointInterval and when kicked.
func (s *Store) checkpointLoop() {
	defer s.loops.Done()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
		}
		if s.holdCheckpoints.Load() {
			continue
		}
		release, err := s.acquire()
		if err != nil {
			return
		}
		if err := s.checkpoint(); err != nil {
			// The log keeps every commit safe; the next tick retries.
			s.log.Warn("state checkpoint failed", "err", err)
		}
		release()
	}
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
