package gcpause_test

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/sluice-dev/sluice/internal/gcpause"
)

// TestHold: the collector is off and the limit lowered while held, and
// both come back as they were on release, however often it is called; a
// lower limit already set is kept while held; a setting made while held
// is not undone.
func TestHold(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tc := range []struct {
		name             string
		percent          int
		limit, hold      int64
		wantHeldLimit    int64
		wantHeldDisabled bool
	}{
		{"default pacing, no limit", 100, math.MaxInt64, 256 << 20, 256 << 20, true},
		{"a lower limit set already", 100, 64 << 20, 256 << 20, 64 << 20, true},
		{"GOGC=off already", -1, math.MaxInt64, 256 << 20, 256 << 20, true},
		{"no limit asked", 300, 512 << 20, 0, 512 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(tc.percent)
			debug.SetMemoryLimit(tc.limit)
			release := gcpause.Hold(tc.hold)
			if got := debug.SetGCPercent(-1); got != -1 {
				t.Errorf("held: GC percent %d, want -1 (off)", got)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantHeldLimit {
				t.Errorf("held: memory limit %d, want %d", got, tc.wantHeldLimit)
			}
			release()
			if got := debug.SetGCPercent(-1); got != tc.percent {
				t.Errorf("released: GC percent %d, want %d", got, tc.percent)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.limit {
				t.Errorf("released: memory limit %d, want %d", got, tc.limit)
			}
			// A later change that a second release must not undo.
			debug.SetGCPercent(77)
			release()
			if got := debug.SetGCPercent(-1); got != 77 {
				t.Errorf("a second release set the GC percent to %d", got)
			}
			// A change made while held stays.
			debug.SetGCPercent(tc.percent)
			debug.SetMemoryLimit(tc.limit)
			release = gcpause.Hold(tc.hold)
			debug.SetGCPercent(50)
			debug.SetMemoryLimit(1 << 30)
			release()
			if got := debug.SetGCPercent(-1); got != 50 {
				t.Errorf("a GC percent set while held came back as %d, want 50", got)
			}
			if got := debug.SetMemoryLimit(-1); got != 1<<30 {
				t.Errorf("a memory limit set while held came back as %d, want %d", got, 1<<30)
			}
		})
	}
}
