// Package filewatch tells the agent when a file it runs from (a pipeline
// file, a plugin module, a self-test's files) has changed, so it can be
// reloaded.
//
// It watches the files' directories rather than the files: editors, cp,
// mv, deploy tools and Kubernetes ConfigMaps replace a file (by renaming
// another over it, or swapping a symlink beside it) more often than they
// write it, and a watch on the file itself would stay on the old inode.
// A file is usually written in several steps, so a subscriber is called
// only once its files have been quiet for a moment.
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrClosed is returned by Add once the Watcher is closed.
var ErrClosed = errors.New("file watcher is closed")

// Watcher calls subscribers back when their files change. Its methods are
// safe for concurrent use.
type Watcher struct {
	fsw      *fsnotify.Watcher
	logger   *slog.Logger
	debounce time.Duration
	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{}
	// calls counts the callbacks running, for Close to wait out.
	calls sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// dirs counts, per directory watched, the subscribers needing it.
	dirs map[string]int
	subs []*sub
}

// sub is one Add. Its fields other than paths, dirs and fn are guarded by
// the Watcher's mutex.
type sub struct {
	paths []string // absolute, cleaned
	dirs  []string // of paths, each once
	// counted are the dirs this subscriber holds a count of in
	// Watcher.dirs: those fsnotify accepted.
	counted []string
	fn      func(context.Context)

	// timer is armed while an event waits out the debounce; due is when
	// the last event's wait ends. An event moves due rather than resetting
	// the timer, since a Reset racing the timer's firing would call fn twice.
	timer   *time.Timer
	due     time.Time
	running bool
	// again says an event was debounced while fn ran: fn runs once more.
	again   bool
	removed bool
}

// New starts a Watcher that calls a subscriber once none of its files has
// changed for debounce. Callbacks get a context that is cancelled when ctx
// is done or Close is called; none starts after that. Close releases the
// Watcher. logger reports errors of the underlying watch; nil discards them.
func New(ctx context.Context, logger *slog.Logger, debounce time.Duration) (*Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start file watcher: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{
		fsw:      fsw,
		logger:   logger,
		debounce: debounce,
		ctx:      ctx,
		cancel:   cancel,
		loopDone: make(chan struct{}),
		dirs:     map[string]int{},
	}
	go w.loop()
	return w, nil
}

// Add calls fn after one of paths is written, created, renamed or removed,
// or an entry beside it in its directory is created, renamed or removed (a
// ConfigMap swaps a symlink beside the file, not the file), once they have
// been quiet for the debounce. A spurious call is expected to cost the
// caller a read and a hash, which is cheaper than missing a change.
//
// fn is never called concurrently with itself: changes while it runs call
// it once more after it returns. Different subscribers' calls may overlap.
//
// remove ends the subscription: no call starts after it returns, though one
// already running may still be finishing. A directory no longer needed by
// any subscriber is no longer watched.
//
// An error says which directories cannot be watched (a missing directory,
// the inotify watch limit). The subscription stands all the same, for the
// paths whose directories are watched, and remove must still be called.
func (w *Watcher) Add(paths []string, fn func(ctx context.Context)) (remove func(), err error) {
	s := &sub{fn: fn}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return func() {}, fmt.Errorf("watch %q: %w", p, err)
		}
		s.paths = append(s.paths, abs)
		if dir := filepath.Dir(abs); !slices.Contains(s.dirs, dir) {
			s.dirs = append(s.dirs, dir)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return func() {}, ErrClosed
	}
	var errs []error
	for _, dir := range s.dirs {
		if w.dirs[dir] == 0 {
			if err := w.fsw.Add(dir); err != nil {
				errs = append(errs, fmt.Errorf("watch directory %q: %w", dir, err))
				continue
			}
		}
		w.dirs[dir]++
		s.counted = append(s.counted, dir)
	}
	w.subs = append(w.subs, s)
	return func() { w.remove(s) }, errors.Join(errs...)
}

func (w *Watcher) remove(s *sub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.removed {
		return
	}
	s.removed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if i := slices.Index(w.subs, s); i >= 0 {
		w.subs = slices.Delete(w.subs, i, i+1)
	}
	if w.closed {
		return // Close dropped every watch
	}
	for _, dir := range s.counted {
		if w.dirs[dir]--; w.dirs[dir] == 0 {
			delete(w.dirs, dir)
			// Fails only if the directory was deleted, which dropped its watch.
			_ = w.fsw.Remove(dir)
		}
	}
}

// Close stops the Watcher and waits for callbacks running to return; none
// is called after. fn must not call Close, which would wait for it.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	for _, s := range w.subs {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
	w.mu.Unlock()
	w.cancel()
	err := w.fsw.Close()
	<-w.loopDone
	w.calls.Wait()
	if err != nil {
		return fmt.Errorf("close file watcher: %w", err)
	}
	return nil
}

func (w *Watcher) loop() {
	defer close(w.loopDone)
	for {
		select {
		case <-w.ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.event(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.watchError(err)
		}
	}
}

func (w *Watcher) event(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	dirOp := ev.Op.Has(fsnotify.Create) || ev.Op.Has(fsnotify.Rename) || ev.Op.Has(fsnotify.Remove)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs {
		if slices.Contains(s.paths, name) || (dirOp && slices.Contains(s.dirs, filepath.Dir(name))) {
			w.schedule(s)
		}
	}
}

func (w *Watcher) watchError(err error) {
	w.logger.Warn("watching files", "error", err)
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		return
	}
	// Events were dropped, any of which may have been a subscriber's.
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs {
		w.schedule(s)
	}
}

// schedule calls s.fn once the debounce passes with no other event for s.
// w.mu is held.
func (w *Watcher) schedule(s *sub) {
	if w.closed || s.removed {
		return
	}
	s.due = time.Now().Add(w.debounce)
	if s.timer == nil {
		s.timer = time.AfterFunc(w.debounce, func() { w.fire(s) })
	}
}

// fire runs when s's timer goes off: it waits longer if an event came
// since the timer was armed, or else calls s.fn.
func (w *Watcher) fire(s *sub) {
	w.mu.Lock()
	t := s.timer
	if t == nil {
		w.mu.Unlock()
		return // stopped by remove or Close after it went off
	}
	if wait := time.Until(s.due); wait > 0 {
		t.Reset(wait)
		w.mu.Unlock()
		return
	}
	s.timer = nil
	if w.closed || s.removed || w.ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	if s.running {
		s.again = true
		w.mu.Unlock()
		return
	}
	s.running = true
	w.calls.Add(1)
	w.mu.Unlock()
	defer w.calls.Done()
	for {
		s.fn(w.ctx)
		w.mu.Lock()
		if !s.again || w.closed || s.removed || w.ctx.Err() != nil {
			s.running, s.again = false, false
			w.mu.Unlock()
			return
		}
		s.again = false
		w.mu.Unlock()
	}
}
