// Package agent is Sluice's runtime: it builds the one service.Environment
// every pipeline runs on (Benthos' components plus Sluice's own: the `wasm`
// processor and the `sample_events` input), resolves the pipelines the
// config names, runs them under the supervisor, and lints them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"   // stdin, stdout, files, HTTP
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // mapping, generate, catch, switch, ...
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/aggregate"
	"github.com/sluice-dev/sluice/agent/config"
	"github.com/sluice-dev/sluice/agent/csvinput"
	"github.com/sluice-dev/sluice/agent/csvout"
	"github.com/sluice-dev/sluice/agent/diskbuffer"
	"github.com/sluice-dev/sluice/agent/distinct"
	"github.com/sluice-dev/sluice/agent/fill"
	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/httpapi"
	"github.com/sluice-dev/sluice/agent/ingest"
	"github.com/sluice-dev/sluice/agent/kafka"
	"github.com/sluice-dev/sluice/agent/metrics"
	"github.com/sluice-dev/sluice/agent/sampleinput"
	"github.com/sluice-dev/sluice/agent/statecache"
	"github.com/sluice-dev/sluice/agent/supervisor"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
	"github.com/sluice-dev/sluice/state"
	"github.com/sluice-dev/sluice/state/changelog"
)

// BuiltinPrefix names a pipeline embedded in the binary, as in builtin:demo.
const BuiltinPrefix = "builtin:"

// Agent holds what every pipeline shares.
type Agent struct {
	cfg    config.Config
	logger *slog.Logger
	env    *service.Environment
	engine *wasm.Engine
	store  *state.Store
	reg    *metrics.Registry
	dev    devKafka
	runs   runTotals
	// reloads lets running pipelines pick up changed files (reload.go).
	reloads supervisor.Reloader
	// assignments records the Kafka partitions this agent owns, for
	// state that follows them (state/changelog).
	assignments *changelog.Assignments
	// partitioned are the namespaces the pipelines keep per Kafka
	// partition, known from their configs before their steps are built.
	partitioned map[string]bool
	// tmpState is a throwaway state dir, for lint, which must not take the
	// lock of a data dir a running agent holds.
	tmpState string
	// httpOptional: see Options.DefaultHTTPAddress.
	httpOptional bool
}

// Options change how New prepares the agent.
type Options struct {
	// ScratchState opens an empty state store in a temporary directory
	// instead of the one under the data dir: for lint, which loads stateful
	// plugins but must not contend with a running agent for its state.
	ScratchState bool
	// LazyState opens the state dir only when a pipeline's step needs it
	// (a keyed step, a sluice_state cache) or the state API is used, so an
	// agent running only stateless pipelines (the batch jobs) never takes
	// the dir's lock and can run beside an agent that holds it. For a run;
	// the state commands open it at once.
	LazyState bool
	// Prefetch starts loading the builtin plugins the configured pipelines
	// name as soon as the Wasm engine exists, while the rest of the agent
	// is set up (for a run; lint and state commands have no use for it).
	Prefetch bool
	// Prefetched, if set, is called once the plugins Prefetch started
	// have loaded (or failed to), on a goroutine of its own; at once if it
	// started none. The agent's start holds the garbage collector off until
	// then (internal/gcpause).
	Prefetched func()
	// DefaultHTTPAddress says the HTTP address is the built-in default,
	// set by no config layer. If another process holds it (typically the
	// dev agent of the same checkout, beside which a batch job is run) the
	// agent runs without its HTTP server and warns, as Benthos does for
	// any address; an address the operator set must be bound, and so must
	// the default when a pipeline keeps partitioned state, whose lookups
	// other agents forward to this address.
	DefaultHTTPAddress bool
}

// New prepares the agent: the data dir, the Wasm engine with its on-disk
// compilation cache, and the environment with Sluice's components.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (*Agent, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", cfg.DataDir, err)
	}
	a := &Agent{cfg: cfg, logger: logger, assignments: changelog.NewAssignments(), httpOptional: opts.DefaultHTTPAddress}
	stateDir := filepath.Join(cfg.DataDir, "state")
	if opts.ScratchState {
		dir, err := os.MkdirTemp("", "sluice-lint-state-")
		if err != nil {
			return nil, fmt.Errorf("create scratch state dir: %w", err)
		}
		a.tmpState, stateDir = dir, dir
	}
	sopts := state.Options{Dir: stateDir, SyncWrites: true, Logger: logger}
	if cfg.StateMemory == "small" {
		sopts.MemTableBytes, sopts.BlockCacheBytes = 8<<20, 16<<20
	}
	var st *state.Store
	var err error
	if opts.LazyState {
		st, err = state.OpenLazy(sopts)
	} else {
		st, err = state.Open(ctx, sopts)
	}
	if err != nil {
		a.removeScratch()
		return nil, err
	}
	a.store = st
	eng, err := wasm.NewEngine(wasm.EngineConfig{
		CacheDir:     filepath.Join(cfg.DataDir, "wasm-cache"),
		Builtins:     builtin.Lookup,
		BuiltinFiles: pipelines.File,
		State:        st,
		Changelog: wasm.ChangelogDeps{
			Assignments: a.assignments,
			ClientOpts:  a.changelogClientOpts,
			Logger:      logger,
		},
	})
	if err != nil {
		_ = st.Close()
		a.removeScratch()
		return nil, err
	}
	// A fresh environment holding the globally registered Benthos
	// components; Sluice's own are added to it alone, never to the global.
	env := service.NewEnvironment()
	a.env, a.engine = env, eng
	var loads []<-chan struct{}
	if opts.Prefetch {
		// Sources that do not resolve are left to Run to report.
		if pls, err := a.Pipelines(); err == nil {
			loads = a.prefetchPlugins(ctx, pls)
		}
	}
	if opts.Prefetched != nil {
		go func() {
			for _, done := range loads {
				<-done
			}
			opts.Prefetched()
		}()
	}
	a.reg = metrics.New()
	a.reg.RegisterState(st)
	if err := a.reg.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register metrics exporter: %w", err)
	}
	if err := wasm.Register(env, eng); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register wasm processor: %w", err)
	}
	// grpc_plugin, parquet and sqlite: components_full.go, or
	// placeholders saying they are not in a lean build.
	if err := registerOptional(env, st); err != nil {
		_ = a.Close(ctx)
		return nil, err
	}
	if err := statecache.Register(env, st); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register sluice_state cache: %w", err)
	}
	if err := kafka.Register(env, kafka.Defaults{Brokers: a.kafkaBrokers, Assignments: a.assignments, Advertise: cfg.Advertised()}); err != nil {
		_ = a.Close(ctx)
		return nil, err
	}
	if err := aggregate.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register aggregate processor: %w", err)
	}
	if err := fill.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register fill processor: %w", err)
	}
	if err := frame.RegisterUnframe(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register unframe processor: %w", err)
	}
	if err := distinct.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register distinct processor: %w", err)
	}
	if err := csvinput.Register(env, pipelines.File); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register csv_file input: %w", err)
	}
	if err := csvout.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register csv_file output: %w", err)
	}
	// A buffer with no path gets <data_dir>/buffers/<pipeline>.
	if err := diskbuffer.Register(env, diskbuffer.Options{PipelineOf: a.reg.PipelineOf, Root: filepath.Join(cfg.DataDir, "buffers")}); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register sluice_disk buffer: %w", err)
	}
	if err := ingest.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register http_ingest input: %w", err)
	}
	if err := sampleinput.Register(env); err != nil {
		_ = a.Close(ctx)
		return nil, fmt.Errorf("register sample_events input: %w", err)
	}
	return a, nil
}

func (a *Agent) removeScratch() {
	if a.tmpState != "" {
		_ = os.RemoveAll(a.tmpState)
	}
}

// Environment is the environment pipelines run on.
func (a *Agent) Environment() *service.Environment { return a.env }

// Close releases the Wasm engine and the state store; call it after every
// pipeline has stopped.
func (a *Agent) Close(ctx context.Context) error {
	err := errors.Join(a.engine.Close(ctx), a.store.Close())
	a.removeScratch()
	return err
}

// Run runs every configured pipeline until each finishes or ctx is
// cancelled, then drains them within the shutdown timeout. A pipeline that
// fails does not stop the others; the error names every one that failed.
func (a *Agent) Run(ctx context.Context) error {
	pls, err := a.Pipelines()
	if err != nil {
		return err
	}
	if a.cfg.Once {
		for _, p := range pls {
			if p.Schedule == nil {
				// Said, since "once" could be read as "each pipeline once".
				a.logger.Warn("once applies to scheduled pipelines; this one has no schedule and runs as always: until its input ends or the agent stops", "pipeline", p.Name)
			}
		}
	}
	for _, p := range pls {
		// A config Benthos runs, so a warning here; lint fails it.
		for _, pr := range memoryBufferedRun(p.Source, p.YAML) {
			a.logger.Warn(pr.String(), "pipeline", p.Name)
		}
	}
	a.partitioned = partitionedNamespaces(pls)
	stopDev, err := a.startDevKafka(pls)
	if err != nil {
		return err
	}
	// Deferred first so it runs last: pipelines drain into the broker.
	defer stopDev()
	stopWatch := a.watch(ctx)
	defer stopWatch()
	var ready atomic.Bool
	if a.cfg.HTTPAddress != "" {
		ln, err := net.Listen("tcp", a.cfg.HTTPAddress)
		switch {
		case err != nil && (!a.httpOptional || len(a.partitioned) > 0):
			return fmt.Errorf("start HTTP server on %s (set http_address, or empty to turn it off): %w", a.cfg.HTTPAddress, err)
		case err != nil:
			a.logger.Warn("running without the HTTP server (no /metrics, health or state API): the default address is taken, by another agent perhaps; set http_address to another address, or empty to turn it off", "address", a.cfg.HTTPAddress, "error", err)
		default:
			stop := a.serveHTTP(ln, ready.Load)
			defer stop()
		}
	}
	// Ready once the pipelines are handed to the supervisor: each is built
	// and started right away, and a failing one is reported on its own.
	ready.Store(true)
	report := supervisor.Run(ctx, pls, supervisor.Options{
		Env:             a.env,
		Logger:          a.logger,
		ShutdownTimeout: a.cfg.ShutdownTimeout,
		Metrics: func(p supervisor.Pipeline) string {
			return fmt.Sprintf("%s: {pipeline: %q}", metrics.ExporterName, p.Name)
		},
		OnRun:    a.recordRun,
		Reloader: &a.reloads,
		Check:    a.checkPipeline,
	})
	return report.Err()
}

// serveHTTP serves the agent's HTTP API on ln until the returned stop
// is called.
func (a *Agent) serveHTTP(ln net.Listener, ready func() bool) (stop func()) {
	srv := &http.Server{Handler: httpapi.New(httpapi.Config{Store: a.store, Token: a.cfg.HTTPToken, Ready: ready, Metrics: a.reg.Handler(), Views: a.stateView, Reload: a.reloadHTTP, Locate: a.locate, Partitioned: a.isPartitioned, Erase: a.erase, Self: a.cfg.Advertised()}), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("HTTP server stopped", "error", err)
		}
	}()
	a.logger.Info("HTTP server listening", "address", ln.Addr().String(), "state_api", a.cfg.HTTPToken != "")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}

// Pipelines resolves the configured sources: files, directories (every
// .yaml and .yml in them, sorted) and builtin:NAME.
func (a *Agent) Pipelines() ([]supervisor.Pipeline, error) {
	var out []supervisor.Pipeline
	var errs []error
	for _, src := range a.cfg.Pipelines {
		pls, err := Resolve(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, pls...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no pipelines found in %s", strings.Join(a.cfg.Pipelines, ", "))
	}
	if a.cfg.Once {
		for _, p := range out {
			if p.Schedule != nil {
				p.Schedule.RunOnce()
			}
		}
	}
	return out, nil
}

// Resolve reads one pipeline source.
func Resolve(src string) ([]supervisor.Pipeline, error) {
	if name, ok := strings.CutPrefix(src, BuiltinPrefix); ok {
		y, ok := pipelines.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("pipeline %q: no builtin pipeline named %q", src, name)
		}
		return withSchedule(supervisor.Pipeline{Name: name, Source: src, YAML: y})
	}
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", src, err)
	}
	files := []string{src}
	if st.IsDir() {
		files = nil
		entries, err := os.ReadDir(src)
		if err != nil {
			return nil, fmt.Errorf("pipeline dir %q: %w", src, err)
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(src, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("pipeline dir %q: no .yaml or .yml files", src)
		}
	}
	out := make([]supervisor.Pipeline, 0, len(files))
	for _, f := range files {
		y, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("pipeline %q: %w", f, err)
		}
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		pl, err := withSchedule(supervisor.Pipeline{Name: name, Source: f, YAML: y})
		if err != nil {
			return nil, err
		}
		out = append(out, pl...)
	}
	return out, nil
}

// withSchedule takes a pipeline file's `schedule:` block, if any, out of
// the YAML Benthos sees.
func withSchedule(p supervisor.Pipeline) ([]supervisor.Pipeline, error) {
	s, y, err := supervisor.SplitSchedule(p.YAML)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", p.Source, err)
	}
	p.Schedule, p.YAML = s, y
	return []supervisor.Pipeline{p}, nil
}

// stateView finds the state view of a namespace among the running steps.
func (a *Agent) stateView(ns string) (httpapi.Viewer, bool) {
	v, ok := a.engine.StateView(ns)
	if !ok {
		return nil, false
	}
	return httpapi.Viewer(v), true
}

// runTotals remembers, per scheduled pipeline, the counters at the end of
// its last run, so each run's own figures are the difference.
type runTotals struct {
	mu    sync.Mutex
	last  map[string]map[string]float64 // pipeline -> row kind -> counter
	steps map[string]map[string]float64 // pipeline -> step label -> seconds
}

// recordRun logs a scheduled run's outcome with its rows (read, out to the
// output the schedule names rows_out, rejected to the one it names
// rows_rejected, checked by validate) and its data-quality score (valid
// rows / rows checked, as the seed's quality_score), and records them in
// the metrics.
func (a *Agent) recordRun(o supervisor.RunOutcome) {
	// Components that count rows (csv_file, sqlite, parquet: a frame is
	// one message of many rows) are preferred to Benthos' message counts,
	// even at 0: with transaction: run an output counts its rows when it
	// publishes the run, so a failed run has sent none, though Benthos
	// counted its batches as they were acknowledged.
	count := func(rowsMetric, msgMetric string, labels ...string) float64 {
		if n, ok := a.reg.Lookup(rowsMetric, o.Pipeline, labels...); ok {
			return n
		}
		return a.reg.Sum(msgMetric, o.Pipeline, labels...)
	}
	now := map[string]float64{
		"in":      count("input_rows_received", "input_received"),
		"checked": a.reg.Sum("sluice_quality_rows_total", o.Pipeline),
		"valid":   a.reg.Sum("sluice_quality_rows_valid_total", o.Pipeline),
	}
	if s := o.Schedule; s != nil {
		// output_sent is counted once per output that sent the row, and
		// nested outputs are labelled too, so "label" picks exactly one.
		for kind, labels := range map[string][]string{"out": s.RowsOut, "rejected": s.RowsRejected} {
			for _, label := range labels {
				now[kind] += count("output_rows_sent", "output_sent", "label", label)
			}
		}
	}
	// The time each labelled step spent: processors, the input's reading
	// (csv_file's read_latency_ns) and outputs, which overlap in a
	// streaming run, so they add up to more than its duration.
	steps := map[string]float64{}
	for _, timer := range []string{"processor_latency_ns", "read_latency_ns", "output_latency_ns"} {
		for label, secs := range a.reg.TimeBy(timer, o.Pipeline, "label") {
			steps[label] += secs
		}
	}
	a.runs.mu.Lock()
	if a.runs.last == nil {
		a.runs.last = map[string]map[string]float64{}
		a.runs.steps = map[string]map[string]float64{}
	}
	prev, prevSteps := a.runs.last[o.Pipeline], a.runs.steps[o.Pipeline]
	a.runs.last[o.Pipeline], a.runs.steps[o.Pipeline] = now, steps
	a.runs.mu.Unlock()
	rows := map[string]int64{}
	for kind, n := range now {
		rows[kind] = int64(n - prev[kind])
	}
	if rows["checked"] == 0 {
		// No validate step: no quality figures rather than a DQS of 0/0.
		delete(rows, "checked")
		delete(rows, "valid")
	}
	a.reg.RecordRun(metrics.Run{Pipeline: o.Pipeline, OK: o.Err == nil, End: o.Start.Add(o.Duration), Duration: o.Duration, Rows: rows})
	attrs := []any{"pipeline", o.Pipeline, "attempt", o.Attempt, "ok", o.Err == nil,
		"duration", o.Duration.Round(time.Millisecond), "rows_in", rows["in"]}
	for _, kind := range []string{"out", "rejected", "checked"} {
		if n, ok := rows[kind]; ok {
			attrs = append(attrs, "rows_"+kind, n)
		}
	}
	if checked := rows["checked"]; checked > 0 {
		attrs = append(attrs, "dqs", fmt.Sprintf("%.1f%%", 100*float64(rows["valid"])/float64(checked)))
	}
	if len(steps) > 0 {
		names := make([]string, 0, len(steps))
		for name := range steps {
			names = append(names, name)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, name := range names {
			d := time.Duration((steps[name] - prevSteps[name]) * float64(time.Second))
			fmt.Fprintf(&b, "%s=%s ", name, d.Round(time.Millisecond))
		}
		attrs = append(attrs, "steps", strings.TrimSpace(b.String()))
	}
	a.logger.Info("run outcome", attrs...)
}
