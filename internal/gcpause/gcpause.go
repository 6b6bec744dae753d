// Package gcpause holds the garbage collector off while the agent starts.
//
// An agent's start allocates a great deal into a heap that is still small:
// Benthos' component specs, each pipeline's config, and above all the
// builtin Wasm modules, decoded and validated from some MB of bytes each.
// With the collector's default pacing (GOGC=100) the heap's goal starts at
// 4 MB, so the start runs a dozen collections over memory that is nearly
// all still live: a fifth of a run-once job's start on two cores
// (docs/BENCHMARKS.md, session 20). Held off until the
// pipelines' modules are loaded, the collector runs once afterwards
// instead; the soft memory limit bounds the heap meanwhile, so a start that
// allocates more (a module compiled afresh on a cache miss) still
// collects, whenever the heap reaches the limit.
package gcpause

import (
	"math"
	"runtime/debug"
	"sync"
)

// Hold turns the collector's pacing off and sets the soft memory limit to
// at most limit bytes (a lower limit already set, from GOMEMLIMIT or the
// cgroup, stays), and returns release, which restores both as they were,
// each unless something else has changed it since (a setting made while
// held is left alone). One Hold at a time: it keeps no count. release may be
// called more than once, and from any goroutine; only the first call does
// anything.
func Hold(limit int64) (release func()) {
	if limit <= 0 {
		limit = math.MaxInt64
	}
	percent := debug.SetGCPercent(-1)
	prevLimit := debug.SetMemoryLimit(-1) // a negative value only reads it
	held := min(prevLimit, limit)
	debug.SetMemoryLimit(held)
	var once sync.Once
	return func() {
		once.Do(func() {
			if now := debug.SetGCPercent(percent); now != -1 {
				debug.SetGCPercent(now)
			}
			if now := debug.SetMemoryLimit(prevLimit); now != held {
				debug.SetMemoryLimit(now)
			}
		})
	}
}
