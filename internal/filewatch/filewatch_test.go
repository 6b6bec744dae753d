package filewatch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is short so the tests run fast; nothing here depends on it
// being met precisely, except that a burst of writes from one goroutine
// takes less than it.
const debounce = 50 * time.Millisecond

func newWatcher(t *testing.T, debounce time.Duration) *Watcher {
	t.Helper()
	w, err := New(t.Context(), nil, debounce)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// counter is a subscriber that counts its calls.
type counter struct{ n atomic.Int32 }

func (c *counter) fn(context.Context) { c.n.Add(1) }

func (c *counter) calls() int { return int(c.n.Load()) }

func add(t *testing.T, w *Watcher, fn func(context.Context), paths ...string) (remove func()) {
	t.Helper()
	remove, err := w.Add(paths, fn)
	if err != nil {
		t.Fatal(err)
	}
	return remove
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline
// far beyond any debounce.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idle says no subscriber of path has a call pending or running.
func (w *Watcher) idle(path string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs {
		if slices.Contains(s.paths, path) && (s.timer != nil || s.running) {
			return false
		}
	}
	return true
}

// barrier returns a func that waits until the Watcher has handled every
// event caused before it is called. It writes to a file of its own, in
// dir, watched by a subscriber of its own: inotify reports one watcher's
// events in order, and the Watcher handles them in order, so once that
// write reaches its subscriber the earlier events have been handled. It
// is sound only while nothing creates, renames or removes entries of dir,
// which would call its subscriber early, so it is to be set up before
// any other file of dir is watched.
func barrier(t *testing.T, w *Watcher, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "barrier")
	write(t, path, "0")
	var c counter
	add(t, w, c.fn, path)
	return func() {
		t.Helper()
		before := c.calls()
		write(t, path, "1")
		waitFor(t, "the barrier's write to be seen", func() bool { return c.calls() > before })
	}
}

func TestWatcherCallsOnChange(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, path string)
		want   bool
	}{
		{"write", func(t *testing.T, path string) { write(t, path, "v2") }, true},
		{"rename over", func(t *testing.T, path string) {
			write(t, path+".tmp", "v2")
			if err := os.Rename(path+".tmp", path); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"remove", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"entry created beside it", func(t *testing.T, path string) {
			// As a ConfigMap update does, swapping a symlink beside the file.
			if err := os.Symlink("x", filepath.Join(filepath.Dir(path), "..data_tmp")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"unrelated file written", func(t *testing.T, path string) {
			write(t, filepath.Join(filepath.Dir(path), "other"), "v2")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "watched")
			write(t, path, "v1")
			write(t, filepath.Join(dir, "other"), "v1")
			w := newWatcher(t, debounce)
			sync := barrier(t, w, dir)
			var c counter
			add(t, w, c.fn, path)
			if !tt.want {
				tt.change(t, path)
				sync()
				if !w.idle(path) || c.calls() != 0 {
					t.Fatalf("called or about to be (%d calls) for a change to another file", c.calls())
				}
				return
			}
			tt.change(t, path)
			waitFor(t, "a call", func() bool { return c.calls() > 0 })
		})
	}
}

// TestWatcherDebounces: a burst of writes makes one call.
func TestWatcherDebounces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	write(t, path, "v0")
	// Long enough that the burst below is one window however slow the
	// machine; the barrier shares it, so it also waits out the burst.
	w := newWatcher(t, 500*time.Millisecond)
	sync := barrier(t, w, dir)
	var c counter
	add(t, w, c.fn, path)
	for i := range 5 {
		write(t, path, strings.Repeat("v", i+1))
	}
	sync()
	waitFor(t, "the call", func() bool { return c.calls() > 0 })
	waitFor(t, "the watcher to be idle", func() bool { return w.idle(path) })
	if n := c.calls(); n != 1 {
		t.Fatalf("%d calls for one burst of writes, want 1", n)
	}
	write(t, path, "again")
	waitFor(t, "a call for a write after the window", func() bool { return c.calls() == 2 })
}

// TestWatcherSharedDirectory: subscribers in one directory share its
// watch, which goes when the last of them does.
func TestWatcherSharedDirectory(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "v1")
	write(t, b, "v1")
	w := newWatcher(t, debounce)
	var ca, cb counter
	removeA := add(t, w, ca.fn, a)
	removeB := add(t, w, cb.fn, b)
	if got := w.fsw.WatchList(); !slices.Equal(got, []string{dir}) {
		t.Fatalf("watching %q, want %q once", got, dir)
	}

	removeA()
	removeA() // a second remove does nothing
	if got := w.fsw.WatchList(); !slices.Equal(got, []string{dir}) {
		t.Fatalf("after removing one of two subscribers watching %q, want %q", got, dir)
	}
	write(t, a, "v2")
	write(t, b, "v2") // after a's write: b's call says a's event was handled
	waitFor(t, "b's call", func() bool { return cb.calls() > 0 })
	if n := ca.calls(); n != 0 {
		t.Fatalf("removed subscriber called %d times", n)
	}

	removeB()
	if got := w.fsw.WatchList(); len(got) != 0 {
		t.Fatalf("still watching %q with no subscribers", got)
	}
	w.mu.Lock()
	dirs := len(w.dirs)
	w.mu.Unlock()
	if dirs != 0 {
		t.Fatalf("%d directories counted with no subscribers", dirs)
	}

	// A directory can be watched again after its last subscriber went.
	var again counter
	add(t, w, again.fn, a)
	write(t, a, "v3")
	waitFor(t, "a call after watching the directory again", func() bool { return again.calls() > 0 })
}

// TestWatcherSeveralPaths: one subscriber with files in two directories
// is called for either, and counts each directory once.
func TestWatcherSeveralPaths(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	f1, f2, f3 := filepath.Join(d1, "m.wasm"), filepath.Join(d2, "in.jsonl"), filepath.Join(d2, "want.jsonl")
	for _, f := range []string{f1, f2, f3} {
		write(t, f, "v1")
	}
	w := newWatcher(t, debounce)
	var c counter
	remove := add(t, w, c.fn, f1, f2, f3)
	w.mu.Lock()
	counts := [2]int{w.dirs[d1], w.dirs[d2]}
	w.mu.Unlock()
	if counts != [2]int{1, 1} {
		t.Fatalf("directory counts %v, want each directory counted once", counts)
	}
	write(t, f3, "v2")
	waitFor(t, "a call for the second directory's file", func() bool { return c.calls() == 1 })
	write(t, f1, "v2")
	waitFor(t, "a call for the first directory's file", func() bool { return c.calls() == 2 })
	remove()
	if got := w.fsw.WatchList(); len(got) != 0 {
		t.Fatalf("still watching %q after remove", got)
	}
}

// TestWatcherNotConcurrent: a change while fn runs calls it again after it
// returns, not beside it.
func TestWatcherNotConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	write(t, path, "v0")
	w := newWatcher(t, debounce)
	var running, most, calls atomic.Int32
	release := make(chan struct{})
	add(t, w, func(context.Context) {
		n := running.Add(1)
		defer running.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		if calls.Add(1) == 1 {
			<-release
		}
	}, path)
	write(t, path, "v1")
	waitFor(t, "the first call", func() bool { return calls.Load() == 1 })
	write(t, path, "v2")
	// The second call is due once the write has been debounced; it must
	// wait for the first to return.
	waitFor(t, "the second call to be due", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.subs[0].again
	})
	close(release)
	waitFor(t, "the second call", func() bool { return calls.Load() == 2 })
	if m := most.Load(); m != 1 {
		t.Fatalf("%d calls ran at once, want 1", m)
	}
}

// TestWatcherClose: Close waits for a call running, whose context it
// cancels, and nothing is called after.
func TestWatcherClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	write(t, path, "v0")
	w, err := New(t.Context(), nil, debounce)
	if err != nil {
		t.Fatal(err)
	}
	var started, returned atomic.Bool
	var calls counter
	add(t, w, func(ctx context.Context) {
		calls.fn(ctx)
		started.Store(true)
		<-ctx.Done()
		returned.Store(true)
	}, path)
	write(t, path, "v1")
	waitFor(t, "the call", started.Load)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !returned.Load() {
		t.Fatal("Close returned before the running call")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	write(t, path, "v2")
	if _, err := w.Add([]string{path}, calls.fn); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
	// Close stopped the event loop and the timers, so a change now has no
	// way to call anything; this only checks for a regression there.
	time.Sleep(3 * debounce)
	if n := calls.calls(); n != 1 {
		t.Fatalf("%d calls, want the 1 before Close", n)
	}
}

// TestWatcherCancelledContext: no call starts once the context is done.
func TestWatcherCancelledContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	write(t, path, "v0")
	ctx, cancel := context.WithCancel(t.Context())
	w, err := New(ctx, nil, debounce)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var c counter
	add(t, w, c.fn, path)
	w.mu.Lock()
	w.schedule(w.subs[0]) // as an event would
	cancel()
	w.mu.Unlock()
	waitFor(t, "the pending call to be dropped", func() bool { return w.idle(path) })
	if n := c.calls(); n != 0 {
		t.Fatalf("%d calls after the context was cancelled", n)
	}
}

// TestWatcherMissingDirectory: a directory that cannot be watched is an
// error naming it; the subscription still stands for the others.
func TestWatcherMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "watched")
	write(t, path, "v0")
	missing := filepath.Join(dir, "gone", "file")
	w := newWatcher(t, debounce)
	var c counter
	remove, err := w.Add([]string{missing, path}, c.fn)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Dir(missing)) {
		t.Fatalf("Add with a missing directory: %v, want an error naming it that is fs.ErrNotExist", err)
	}
	write(t, path, "v1")
	waitFor(t, "a call for the watched path", func() bool { return c.calls() > 0 })
	remove()
	w.mu.Lock()
	dirs := len(w.dirs)
	w.mu.Unlock()
	if dirs != 0 {
		t.Fatalf("%d directories counted after remove, want 0", dirs)
	}
}

// TestWatcherOverflow: when the kernel drops events, every subscriber is
// called, since any of the dropped events may have been its.
func TestWatcherOverflow(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	w := newWatcher(t, debounce)
	var c1, c2 counter
	add(t, w, c1.fn, filepath.Join(d1, "f"))
	add(t, w, c2.fn, filepath.Join(d2, "f"))
	w.watchError(fsnotify.ErrEventOverflow)
	waitFor(t, "both calls", func() bool { return c1.calls() == 1 && c2.calls() == 1 })
}

// TestWatcherConcurrentUse exercises Add, remove and events together, for
// the race detector.
func TestWatcherConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	w := newWatcher(t, time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		path := filepath.Join(dir, string(rune('a'+i)))
		write(t, path, "v0")
		wg.Go(func() {
			for j := range 20 {
				remove, err := w.Add([]string{path}, func(context.Context) {})
				if err != nil {
					t.Error(err)
					return
				}
				if err := os.WriteFile(path, []byte{byte(j)}, 0o644); err != nil {
					t.Error(err)
				}
				remove()
			}
		})
	}
	wg.Wait()
	if got := w.fsw.WatchList(); len(got) != 0 {
		t.Fatalf("still watching %q after every subscriber went", got)
	}
}
