// Package supervisor runs several Benthos pipelines side by side in one
// process, each as its own stream built from a shared service.Environment.
//
// Pipelines are isolated from each other's failures: one that does not build,
// or that fails while running, is reported and logged but leaves the others
// running. Cancelling the context asks every stream to drain gracefully, so
// batches already read from an input are delivered and acknowledged before
// Run returns.
//
// The per-stream HTTP server of Benthos (metrics, /ready, /debug on :4195 by
// default) is not supported: every stream would try to bind the same address
// and all but one would silently lose the race, because Benthos ignores the
// listener's error. A pipeline whose config sets `http.enabled: true` is
// therefore rejected at build time rather than quietly overridden, so that its
// author learns the endpoints they asked for do not exist.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/runscope"
)

// DefaultShutdownTimeout is used when Options.ShutdownTimeout is not positive;
// it matches the `shutdown_timeout` default of a standalone Benthos.
const DefaultShutdownTimeout = 20 * time.Second

// errStreamNotRunYet is the text of the unexported error service.Stream.Stop
// returns when Stream.Run has not yet constructed the stream (Benthos v4.60).
// There is no sentinel to match against, and telling this case apart matters:
// stopping too early would otherwise leave a stream that starts afterwards
// running with nobody to stop it.
const errStreamNotRunYet = "stream has not been run yet"

// Pipeline is one pipeline to run.
type Pipeline struct {
	// Name identifies the pipeline in logs and in the Report.
	Name string
	// Source says where YAML came from (a file path or builtin:NAME), so that
	// line numbers in lint errors can be traced back by the reader.
	Source string
	// YAML is a full Benthos stream config.
	YAML []byte
	// Schedule, if set, makes the pipeline a batch job run on a schedule
	// with retries; see SplitSchedule.
	Schedule *Schedule
}

// Options configure Run.
type Options struct {
	// Env holds the registered components. It must be the caller's own
	// environment, never service.GlobalEnvironment, so plugins registered by
	// one agent cannot leak into another in the same process.
	Env *service.Environment
	// Logger receives Benthos' logs, tagged with pipeline=<name>. If nil,
	// slog.Default() is used.
	Logger *slog.Logger
	// ShutdownTimeout bounds how long each stream may take to drain once ctx
	// is cancelled. If not positive, DefaultShutdownTimeout is used.
	ShutdownTimeout time.Duration
	// Metrics, if set, returns the metrics section for a pipeline's stream,
	// replacing whatever the pipeline's YAML says: the agent exports every
	// pipeline's metrics through one registry, labelled by pipeline.
	Metrics func(p Pipeline) string
	// OnRun, if set, is told the outcome of every run of a scheduled
	// pipeline, retries included.
	OnRun func(RunOutcome)
	// Reloader, if set, lets the caller have pipelines read from files
	// pick up a changed file while they run (see Reloader).
	Reloader *Reloader
	// Check, if set, is run on a reloaded pipeline's config after it
	// builds and before the running stream is stopped for it: the agent
	// loads its plugins here, so a config whose plugin fails to load is
	// refused while the old stream still runs.
	Check func(ctx context.Context, p Pipeline) error
}

// Result is what happened to one pipeline.
type Result struct {
	Name   string
	Source string
	// Err is nil if the pipeline ran and either finished or drained cleanly.
	Err error
}

// Report is what happened to every pipeline, in the order they were given.
type Report struct {
	Results []Result
}

// Failed returns the results whose pipeline did not finish cleanly.
func (r Report) Failed() []Result {
	var failed []Result
	for _, res := range r.Results {
		if res.Err != nil {
			failed = append(failed, res)
		}
	}
	return failed
}

// Err returns nil if every pipeline finished cleanly, else an error naming
// each failed pipeline.
func (r Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	errs := make([]error, len(failed))
	for i, res := range failed {
		errs[i] = res.Err
	}
	return fmt.Errorf("%d of %d pipelines failed: %w", len(failed), len(r.Results), errors.Join(errs...))
}

// Run builds and runs every pipeline as its own stream, concurrently. It
// returns when every stream has finished on its own (e.g. a finite input is
// exhausted), or when ctx is cancelled and every stream has been stopped with
// StopWithin(ShutdownTimeout), which drains in-flight batches and acknowledges
// them.
//
// A pipeline that fails to build or fails while running is logged with its
// name and source and does not stop the others. A pipeline whose turn to
// start comes after ctx is already cancelled is not started, and its Result
// carries an error wrapping ctx.Err().
func Run(ctx context.Context, pipelines []Pipeline, opts Options) Report {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}

	report := Report{Results: make([]Result, len(pipelines))}
	var wg sync.WaitGroup
	for i, p := range pipelines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := opts.Logger.With("pipeline", p.Name)
			var err error
			if p.Schedule != nil {
				err = runScheduled(ctx, p, opts, log)
			} else {
				err = runOne(ctx, p, opts, log)
			}
			if err != nil {
				log.Error("pipeline failed", "source", p.Source, "error", err)
			} else {
				log.Info("pipeline finished", "source", p.Source)
			}
			// Each goroutine owns its own slot, so no lock is needed.
			report.Results[i] = Result{Name: p.Name, Source: p.Source, Err: err}
		}()
	}
	wg.Wait()
	return report
}

func runOne(ctx context.Context, p Pipeline, opts Options, log *slog.Logger) error {
	strm, err := build(p, opts.Env, log, opts.Metrics)
	if err != nil {
		return fmt.Errorf("pipeline %q (%s): build: %w", p.Name, p.Source, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pipeline %q (%s): not started: %w", p.Name, p.Source, err)
	}
	rn := opts.Reloader.subscribe(p)
	defer opts.Reloader.unsubscribe(rn)
	var reqs chan chan PipelineReload
	if rn != nil {
		reqs = rn.reqs
	}
	for {
		np, nstrm, err := runStream(ctx, p, strm, opts, log, reqs)
		if nstrm == nil {
			if err == nil {
				err = incomplete(p, strm)
			}
			return err
		}
		p, strm = np, nstrm
		log.Info("pipeline reloaded: the new version is starting", "source", p.Source)
	}
}

// incomplete is why a stream that ended without an error did not
// complete its run, or nil: a bounded input's run can end early (its
// files could not be read, a shutdown stopped it) without the stream
// failing, and such a run is not a success. A streaming pipeline has no
// run to complete.
func incomplete(p Pipeline, strm *service.Stream) error {
	run, ok := runscope.Lookup(strm.Resources())
	if !ok {
		return nil
	}
	if err := run.Incomplete(); err != nil {
		return fmt.Errorf("pipeline %q (%s): %w", p.Name, p.Source, err)
	}
	return nil
}

// runStream runs strm until it finishes, ctx is cancelled, or a reload
// asked on reqs finds a new config that builds: then the stream is
// drained and the new config and its stream are returned, to run next.
func runStream(ctx context.Context, p Pipeline, strm *service.Stream, opts Options, log *slog.Logger, reqs chan chan PipelineReload) (Pipeline, *service.Stream, error) {
	// Stream.Run must not see ctx's cancellation: it would return at once
	// without stopping anything, leaving the stream running, undrained and
	// unowned, in the background. Shutdown is driven by StopWithin instead;
	// runCtx is only cancelled afterwards to release Run, which may otherwise
	// wait forever on a stream the drain gave up on.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()

	var runErr error
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		runErr = strm.Run(runCtx)
	}()

	for {
		select {
		case <-runDone:
			if runErr != nil {
				return p, nil, fmt.Errorf("pipeline %q (%s): run: %w", p.Name, p.Source, runErr)
			}
			return p, nil, nil
		case <-ctx.Done():
			return p, nil, drain(p, strm, runDone, &runErr, cancelRun, opts, log)
		case reply := <-reqs:
			np, nstrm, res := next(ctx, p, opts, log)
			if nstrm == nil {
				reply <- res
				continue
			}
			// The old stream is drained before the new one starts, so what it
			// read is delivered and acknowledged and the input's committed
			// position is where the new one resumes.
			log.Info("pipeline file changed: draining the running version", "source", p.Source)
			if err := drain(p, strm, runDone, &runErr, cancelRun, opts, log); err != nil {
				res.Result, res.Error = ReloadRefused, err.Error()
				reply <- res
				return p, nil, err
			}
			reply <- res
			return np, nstrm, nil
		}
	}
}

// drain stops strm within the shutdown timeout and waits for its Run.
func drain(p Pipeline, strm *service.Stream, runDone <-chan struct{}, runErr *error, cancelRun context.CancelFunc, opts Options, log *slog.Logger) error {
	log.Info("draining pipeline", "timeout", opts.ShutdownTimeout)
	failedBeforeStart, stopErr := stop(strm, runDone, opts.ShutdownTimeout)
	cancelRun()
	<-runDone

	switch {
	case failedBeforeStart:
		return fmt.Errorf("pipeline %q (%s): run: %w", p.Name, p.Source, *runErr)
	case errors.Is(stopErr, context.DeadlineExceeded):
		return fmt.Errorf("pipeline %q (%s): drain exceeded shutdown timeout of %s: %w",
			p.Name, p.Source, opts.ShutdownTimeout, stopErr)
	case stopErr != nil:
		return fmt.Errorf("pipeline %q (%s): stop: %w", p.Name, p.Source, stopErr)
	}
	// Once the drain succeeded, Run has either raced it with a redundant Stop
	// of its own or been released by cancelRun; cancellation reported by
	// either is an artefact of that, not a problem with the pipeline.
	if *runErr != nil && !errors.Is(*runErr, context.Canceled) {
		return fmt.Errorf("pipeline %q (%s): run: %w", p.Name, p.Source, *runErr)
	}
	return nil
}

// stop drains strm within timeout. Stream.Run constructs the stream's
// components asynchronously, so ctx may be cancelled before there is anything
// to stop; stop then retries until Run has claimed the stream, or reports
// failedBeforeStart if Run gave up constructing it.
func stop(strm *service.Stream, runDone <-chan struct{}, timeout time.Duration) (failedBeforeStart bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		err = strm.StopWithin(time.Until(deadline))
		if err == nil || err.Error() != errStreamNotRunYet {
			return false, err
		}
		select {
		case <-runDone:
			return true, nil
		case <-time.After(time.Millisecond):
		}
		if !time.Now().Before(deadline) {
			return false, context.DeadlineExceeded
		}
	}
}

func build(p Pipeline, env *service.Environment, log *slog.Logger, metrics func(Pipeline) string) (*service.Stream, error) {
	if env == nil {
		return nil, errors.New("no service.Environment given in Options.Env")
	}
	// Benthos runs a pipeline whose ${VAR} is unset with the empty string
	// in its place (only its linter objects); an unset token variable would
	// then turn authentication off. A variable with no default must be set.
	if missing := missingEnv(p.YAML, os.LookupEnv); len(missing) > 0 {
		return nil, fmt.Errorf("required environment variables are not set: %s (set them, or give a default as ${%s:value})", strings.Join(missing, ", "), missing[0])
	}
	b := env.NewStreamBuilder()
	if err := b.SetYAML(string(p.YAML)); err != nil {
		return nil, withSource(p.Source, err)
	}
	if err := checkHTTPDisabled(b); err != nil {
		return nil, err
	}
	if metrics != nil {
		if err := b.SetMetricsYAML(metrics(p)); err != nil {
			return nil, fmt.Errorf("pipeline %q (%s): metrics: %w", p.Name, p.Source, err)
		}
	}
	b.SetLogger(log)
	return b.Build()
}

// withSource rewrites Benthos lint positions, printed as "(line,col)", into
// the file:line:col form editors and terminals can jump to. Other errors, such
// as YAML syntax errors that already say "line N", are returned unchanged.
func withSource(source string, err error) error {
	var lints service.LintError
	if errors.As(err, &lints) {
		return &sourcedLintError{source: source, lints: lints}
	}
	var lint service.Lint
	if errors.As(err, &lint) {
		return &sourcedLintError{source: source, lints: service.LintError{lint}, wrapped: err}
	}
	return err
}

type sourcedLintError struct {
	source  string
	lints   service.LintError
	wrapped error // what errors.Unwrap yields, if not lints itself
}

func (e *sourcedLintError) Error() string {
	var sb strings.Builder
	sb.WriteString("lint errors: ")
	for i, l := range e.lints {
		if i > 0 {
			sb.WriteString("; ")
		}
		fmt.Fprintf(&sb, "%s:%d:%d: %s", e.source, l.Line, l.Column, l.What)
	}
	return sb.String()
}

// Unwrap keeps service.LintError (with its structured positions) reachable
// through errors.As for callers that want to render lints themselves.
func (e *sourcedLintError) Unwrap() error {
	if e.wrapped != nil {
		return e.wrapped
	}
	return e.lints
}

// checkHTTPDisabled rejects configs that enable the stream's own HTTP server.
// It reads the config back from the builder rather than p.YAML so that the
// decision is made on what Benthos will actually use, after environment
// variable interpolation and defaults.
func checkHTTPDisabled(b *service.StreamBuilder) error {
	resolved, err := b.AsYAML()
	if err != nil {
		return fmt.Errorf("read back config: %w", err)
	}
	var conf struct {
		HTTP struct {
			Enabled bool   `yaml:"enabled"`
			Address string `yaml:"address"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal([]byte(resolved), &conf); err != nil {
		return fmt.Errorf("read back config: %w", err)
	}
	if conf.HTTP.Enabled {
		return fmt.Errorf("http.enabled is true (address %q): the per-stream HTTP server is not supported "+
			"when several pipelines share one process; remove the http section or set http.enabled: false",
			conf.HTTP.Address)
	}
	return nil
}

// envRef matches a Benthos environment reference, ${NAME} or
// ${NAME:default}; ${! ...} is an interpolation, not one.
var envRef = regexp.MustCompile(`\$\{([0-9A-Za-z_.]+)(:[^}]*)?\}`)

// missingEnv lists, sorted and once each, the variables doc refers to
// without a default that lookup does not know.
func missingEnv(doc []byte, lookup func(string) (string, bool)) []string {
	var missing []string
	for _, m := range envRef.FindAllSubmatchIndex(doc, -1) {
		if m[0] > 0 && doc[m[0]-1] == '$' {
			continue // $${NAME} is Benthos' escape for a literal ${NAME}
		}
		name := string(doc[m[2]:m[3]])
		if m[4] >= 0 {
			continue // has a default
		}
		if _, ok := lookup(name); !ok && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}
