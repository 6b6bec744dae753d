package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/internal/filewatch"
)

// Results of a pipeline reload, as PipelineReload.Result says them.
const (
	ReloadOK        = "reloaded"  // the old stream drained and the new one started
	ReloadUnchanged = "unchanged" // the file holds the config already running
	ReloadRefused   = "refused"   // the new config failed; the old stream keeps running
)

// reloadDebounce is how long a pipeline file must stay quiet before it is
// read: an editor or a deploy writes it in several steps.
const reloadDebounce = 200 * time.Millisecond

// PipelineReload is what a reload did to one pipeline.
type PipelineReload struct {
	Pipeline string `json:"pipeline"`
	Source   string `json:"source"`
	Result   string `json:"result"`
	Error    string `json:"error,omitempty"`
}

// Reloader lets the pipelines Run started from files pick up a changed
// file: when asked (Reload) and, once Watch runs, when the file changes.
// A new config is built and checked beside the running stream; only if it
// passes is the old stream drained (so what it read is delivered and
// acknowledged, and the input's committed position is where the new one
// resumes) and the new one started. Builtin and scheduled pipelines are not
// reloaded.
type Reloader struct {
	mu      sync.Mutex
	runners []*runner
	fw      *filewatch.Watcher // nil unless Watch runs
	logger  *slog.Logger
}

// NewReloader returns a Reloader to pass in Options.Reloader.
func NewReloader() *Reloader { return &Reloader{} }

// runner is one running file-based pipeline, as the Reloader sees it.
type runner struct {
	source string // absolute
	reqs   chan chan PipelineReload
	done   chan struct{}
	// unwatch ends the file watch's subscription; nil unless Watch runs.
	// Guarded by the Reloader's mutex.
	unwatch func()
}

func (r *Reloader) subscribe(p Pipeline) *runner {
	if r == nil || p.Schedule != nil || strings.HasPrefix(p.Source, "builtin:") {
		return nil
	}
	abs, err := filepath.Abs(p.Source)
	if err != nil {
		return nil
	}
	if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() {
		return nil // not a file of its own (a test's inline YAML)
	}
	rn := &runner{source: abs, reqs: make(chan chan PipelineReload), done: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runners = append(r.runners, rn)
	if r.fw != nil {
		r.watch(rn)
	}
	return rn
}

func (r *Reloader) unsubscribe(rn *runner) {
	if rn == nil {
		return
	}
	close(rn.done)
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.runners, rn); i >= 0 {
		r.runners = slices.Delete(r.runners, i, i+1)
	}
	if rn.unwatch != nil {
		rn.unwatch()
		rn.unwatch = nil
	}
}

// request asks rn to reload and waits for its answer; ok is false if the
// pipeline stopped first.
func (rn *runner) request(ctx context.Context) (PipelineReload, bool) {
	reply := make(chan PipelineReload, 1)
	select {
	case rn.reqs <- reply:
	case <-rn.done:
		return PipelineReload{}, false
	case <-ctx.Done():
		return PipelineReload{}, false
	}
	select {
	case res := <-reply:
		return res, true
	case <-ctx.Done():
		return PipelineReload{}, false
	}
}

// Reload asks every running file-based pipeline to read its file again,
// and returns what each did.
func (r *Reloader) Reload(ctx context.Context) []PipelineReload {
	r.mu.Lock()
	runners := slices.Clone(r.runners)
	r.mu.Unlock()
	var out []PipelineReload
	for _, rn := range runners {
		if res, ok := rn.request(ctx); ok {
			out = append(out, res)
		}
	}
	return out
}

// Watch reloads a pipeline when its file changes, until ctx is done or
// stop is called. Directories are watched, since editors and deploy tools
// replace a file rather than write it.
func (r *Reloader) Watch(ctx context.Context, logger *slog.Logger) (stop func(), err error) {
	fw, err := filewatch.New(ctx, logger.With("watching", "pipeline files"), reloadDebounce)
	if err != nil {
		return nil, fmt.Errorf("watch pipeline files: %w", err)
	}
	r.mu.Lock()
	if r.fw != nil {
		r.mu.Unlock()
		_ = fw.Close()
		return nil, errors.New("watch pipeline files: already watching")
	}
	r.fw, r.logger = fw, logger
	for _, rn := range r.runners {
		r.watch(rn)
	}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.fw = nil
			for _, rn := range r.runners {
				rn.unwatch = nil // Close ends every subscription
			}
			r.mu.Unlock()
			// Outside the mutex: Close waits for a reload request in flight,
			// and a pipeline stopping meanwhile needs the mutex to
			// unsubscribe.
			_ = fw.Close()
		})
	}, nil
}

// watch subscribes rn to the file watch; r.mu is held.
func (r *Reloader) watch(rn *runner) {
	unwatch, err := r.fw.Add([]string{rn.source}, func(ctx context.Context) { rn.request(ctx) })
	if err != nil {
		r.logger.Warn("cannot watch pipeline directory; reload with SIGHUP or POST /admin/reload", "source", rn.source, "error", err)
	}
	rn.unwatch = unwatch
}

// next reads p's file again and, if it holds a new config that builds and
// passes opts.Check, returns it with its stream, not yet run.
func next(ctx context.Context, p Pipeline, opts Options, log *slog.Logger) (Pipeline, *service.Stream, PipelineReload) {
	res := PipelineReload{Pipeline: p.Name, Source: p.Source, Result: ReloadUnchanged}
	refuse := func(err error) (Pipeline, *service.Stream, PipelineReload) {
		res.Result, res.Error = ReloadRefused, err.Error()
		log.Error("pipeline reload refused; the running version keeps running", "source", p.Source, "reason", err)
		return p, nil, res
	}
	doc, err := os.ReadFile(p.Source)
	if err != nil {
		return refuse(fmt.Errorf("read pipeline: %w", err))
	}
	sched, y, err := SplitSchedule(doc)
	switch {
	case err != nil:
		return refuse(err)
	case sched != nil:
		return refuse(errors.New("the file now has a schedule: a pipeline becomes a scheduled job only at a restart"))
	case bytes.Equal(y, p.YAML):
		return p, nil, res
	}
	np := p
	np.YAML = y
	strm, err := build(np, opts.Env, log, opts.Metrics)
	if err != nil {
		return refuse(fmt.Errorf("build: %w", err))
	}
	if opts.Check != nil {
		if err := opts.Check(ctx, np); err != nil {
			return refuse(err)
		}
	}
	res.Result = ReloadOK
	return np, strm, res
}
