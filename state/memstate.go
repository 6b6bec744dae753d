package state

import (
	"sync"
)

// cached is what memory knows about one key: its current value, or that it
// has none.
type cached struct {
	// val is the plugin's bytes, shared with every Load that returns it;
	// nobody may modify it. nil when !present.
	val       []byte
	lastEvent int64
	// expiresAt is the wall-clock expiry in unix seconds, 0 = never, with
	// Badger's rule: expired when expiresAt <= now.
	expiresAt uint64
	present   bool
}

func (c cached) live(nowSec uint64) bool {
	return c.present && (c.expiresAt == 0 || c.expiresAt > nowSec)
}

// node is one key in memory. A dirty node holds a value whose only durable
// copy is a log record (dirty = that record's seq): it is pinned until a
// checkpoint materialises it. A clean node mirrors Badger and sits in the LRU.
type node struct {
	key        string
	c          cached
	dirty      uint64
	prev, next *node // in the LRU ring when clean, in the dirty ring when dirty
}

type ring struct{ root node }

func (r *ring) init()        { r.root.next, r.root.prev = &r.root, &r.root }
func (r *ring) front() *node { return r.root.next }
func (r *ring) back() *node  { return r.root.prev }
func (r *ring) end() *node   { return &r.root }
func (r *ring) pushFront(n *node) {
	n.prev, n.next = &r.root, r.root.next
	r.root.next.prev = n
	r.root.next = n
}
func unlink(n *node) { n.prev.next, n.next.prev = n.next, n.prev }

// logRef is a log record of a commit applied to memory, which exists in
// Badger until a checkpoint deletes it.
type logRef struct {
	seq    uint64
	chunks int
	bytes  int64
}

// memState is the store's in-memory view: every dirty key, an LRU of clean
// hot keys, and the ordering of commits.
//
// It never serves a stale value:
//
//   - Commits are applied to memory in log-sequence order, the order replay
//     uses after a crash, whatever order Badger finished them in: each
//     commit takes a seq up front and waits for its turn after Badger
//     returns. Memory and disk therefore agree on the last writer of a key.
//   - A dirty key is never evicted, so a key missing from memory has its
//     current value materialised in Badger.
//   - A Load that read Badger inserts what it read only if the key is still
//     not in memory and no commit applied it since the Load started
//     (touched), nor a flush happened: otherwise it could re-insert an old
//     value over a commit that was applied, materialised and evicted while
//     the Load was reading.
type memState struct {
	mu    sync.Mutex
	turn  *sync.Cond // broadcast when applied advances
	cap   int        // bound on clean nodes
	m     map[string]*node
	lru   ring // clean nodes, most recent first
	dirty ring // dirty nodes
	nDirt int

	hits, misses uint64

	gen      uint64            // bumped by every applied commit and flush
	flushGen uint64            // gen of the last flush
	loads    map[uint64]int    // start gens of Loads reading Badger
	touched  map[string]uint64 // key -> gen of its last commit, while loads run
	pruneAt  int

	nextSeq  uint64   // seq the next commit gets
	applied  uint64   // every seq <= applied has been applied (or failed)
	logs     []logRef // records not yet deleted, in seq order
	logBytes int64
	// failed is set by the first failed commit; snapshot then returns
	// nothing. Set under mu in seq order, so no checkpoint can take a later
	// commit's values while the failed one's record may still be replayed.
	failed bool
}

const minPrune = 4096

func newMemState(capacity int) *memState {
	c := &memState{
		cap:     capacity,
		m:       make(map[string]*node, min(capacity, 1<<16)),
		loads:   map[uint64]int{},
		touched: map[string]uint64{},
		pruneAt: minPrune,
		nextSeq: 1,
	}
	c.turn = sync.NewCond(&c.mu)
	c.lru.init()
	c.dirty.init()
	return c
}

// evictLocked drops least recently used clean nodes beyond the bound.
func (c *memState) evictLocked() {
	for len(c.m)-c.nDirt > c.cap {
		old := c.lru.back()
		unlink(old)
		delete(c.m, old.key)
	}
}

// lookup fills out[i] and found[i] for every key of the batch in memory
// (Badger key = prefix + keys[i]). If some are missing it registers a Load
// in flight and returns its token, to be passed to endLoad.
func (c *memState) lookup(prefix []byte, keys [][]byte, out []cached, found []bool) (token uint64, misses int) {
	scratch := make([]byte, 0, 128)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		scratch = append(append(scratch[:0], prefix...), k...)
		n := c.m[string(scratch)]
		if n == nil {
			misses++
			continue
		}
		if n.dirty == 0 && c.lru.front() != n {
			unlink(n)
			c.lru.pushFront(n)
		}
		out[i], found[i] = n.c, true
	}
	c.hits += uint64(len(keys) - misses)
	c.misses += uint64(misses)
	if misses > 0 {
		token = c.gen
		c.loads[token]++
	}
	return token, misses
}

// get returns one key from memory without touching the LRU order.
func (c *memState) get(key []byte) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.m[string(key)]; n != nil {
		return n.c, true
	}
	return cached{}, false
}

// endLoad caches what a Load read from Badger (keys[i] -> vals[i]) where
// that is safe (see memState), and ends the Load. keys is nil if the read
// failed.
func (c *memState) endLoad(token uint64, keys []string, vals []cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flushGen <= token {
		for i, k := range keys {
			if c.m[k] == nil && c.touched[k] <= token {
				n := &node{key: k, c: vals[i]}
				c.m[k] = n
				c.lru.pushFront(n)
			}
		}
		c.evictLocked()
	}
	if c.loads[token]--; c.loads[token] <= 0 {
		delete(c.loads, token)
	}
	if len(c.loads) == 0 {
		clear(c.touched)
	}
}

// reserve hands out the next log seq. Every reserved seq must be passed to
// finish exactly once, or later commits wait forever.
func (c *memState) reserve() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := c.nextSeq
	c.nextSeq++
	return seq
}

// finish waits for seq's turn, then, if the commit succeeded, applies its
// writes to memory as dirty (keys and vals in write order: the last write
// of a key wins) and records its log record for deletion by a checkpoint.
// A failed commit's record is not recorded: it may have reached the disk,
// and the next Open must replay it. It returns the dirty key count and the
// bytes of undeleted log, for the checkpoint policy.
func (c *memState) finish(seq uint64, keys []string, vals []cached, ok bool, ref logRef) (dirty int, logBytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.applied != seq-1 {
		c.turn.Wait()
	}
	if ok {
		c.applyLocked(seq, keys, vals, ref)
	} else {
		c.failed = true
	}
	c.applied = seq
	c.turn.Broadcast()
	return c.nDirt, c.logBytes
}

// replay applies a log record found at Open or after Restore, when nothing
// else runs.
func (c *memState) replay(seq uint64, keys []string, vals []cached, ref logRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(seq, keys, vals, ref)
	if seq >= c.nextSeq {
		c.nextSeq = seq + 1
		c.applied = seq
	}
}

func (c *memState) applyLocked(seq uint64, keys []string, vals []cached, ref logRef) {
	c.gen++
	track := len(c.loads) > 0
	for i, k := range keys {
		n := c.m[k]
		switch {
		case n == nil:
			n = &node{key: k}
			c.m[k] = n
			c.dirty.pushFront(n)
			c.nDirt++
		case n.dirty == 0:
			unlink(n)
			c.dirty.pushFront(n)
			c.nDirt++
		}
		n.c, n.dirty = vals[i], seq
		if track {
			c.touched[k] = c.gen
		}
	}
	if track && len(c.touched) > c.pruneAt {
		c.pruneLocked()
	}
	c.logs = append(c.logs, ref)
	c.logBytes += ref.bytes
}

// pruneLocked forgets touched keys older than every Load in flight: those
// Loads started after the commit and already see it.
func (c *memState) pruneLocked() {
	oldest := c.gen
	for g := range c.loads {
		oldest = min(oldest, g)
	}
	for k, g := range c.touched {
		if g <= oldest {
			delete(c.touched, k)
		}
	}
	c.pruneAt = max(minPrune, 2*len(c.touched))
}

// ckItem is one dirty key as a checkpoint found it.
type ckItem struct {
	key string
	c   cached
	seq uint64
}

// snapshot returns every dirty key and every undeleted log record. Commits
// apply in seq order, so the dirty values reflect exactly the records
// returned: once the values are materialised, the records can go.
func (c *memState) snapshot() ([]ckItem, []logRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed {
		return nil, nil
	}
	items := make([]ckItem, 0, c.nDirt)
	for n := c.dirty.front(); n != c.dirty.end(); n = n.next {
		items = append(items, ckItem{key: n.key, c: n.c, seq: n.dirty})
	}
	return items, append([]logRef(nil), c.logs...)
}

// materialised marks the snapshotted keys clean, unless a later commit
// dirtied them again meanwhile.
func (c *memState) materialised(items []ckItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		n := c.m[it.key]
		if n == nil || n.dirty != it.seq {
			continue
		}
		unlink(n)
		n.dirty = 0
		c.nDirt--
		c.lru.pushFront(n)
	}
	c.evictLocked()
}

// logsDeleted forgets the first n log records, which a checkpoint deleted.
func (c *memState) logsDeleted(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.logs[:n] {
		c.logBytes -= l.bytes
	}
	c.logs = append(c.logs[:0], c.logs[n:]...)
}

// dirtyIn returns the dirty keys whose Badger key starts with prefix and
// sorts at or after from, for Scan to overlay on Badger.
func (c *memState) dirtyIn(prefix string, from string) map[string]cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]cached{}
	for n := c.dirty.front(); n != c.dirty.end(); n = n.next {
		if len(n.key) >= len(prefix) && n.key[:len(prefix)] == prefix && n.key >= from {
			out[n.key] = n.c
		}
	}
	return out
}

// reset forgets everything in memory, for Restore (which checkpoints
// first, so nothing dirty is lost), and makes Loads in flight skip caching.
func (c *memState) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.flushGen = c.gen
	clear(c.m)
	c.lru.init()
	c.dirty.init()
	c.nDirt = 0
	c.logs, c.logBytes = nil, 0
}

// dropClean empties the LRU of clean keys (tests and benchmarks use it to
// read cold); dirty keys stay, as they must.
func (c *memState) dropClean() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.flushGen = c.gen
	for n := c.lru.front(); n != c.lru.end(); n = n.next {
		delete(c.m, n.key)
	}
	c.lru.init()
}

func (c *memState) stats() (keys, dirty int, hits, misses uint64, logs int, logBytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m), c.nDirt, c.hits, c.misses, len(c.logs), c.logBytes
}
