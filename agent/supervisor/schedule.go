package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/runscope"
)

// Schedule makes a pipeline a batch job: it runs until its input ends,
// then again on the schedule, and a failed run is retried with back-off,
// as the seed's hourly Airflow DAG is.
type Schedule struct {
	// Every runs the pipeline at this interval, measured from each run's
	// start. Zero with no Cron: run once.
	Every time.Duration
	// Cron is a standard five-field cron expression (or @hourly, @daily,
	// ...), in UTC, or in the zone a CRON_TZ= prefix names
	// ("CRON_TZ=Europe/Berlin 0 9 * * *").
	Cron string
	// Retries is how many times a failed run is tried again before the
	// run is given up (the next scheduled run still happens).
	Retries int
	// Backoff is the wait before the first retry; it doubles per retry,
	// capped at 10 minutes.
	Backoff time.Duration
	// Timeout fails a run that has not finished (its input ended and
	// everything was written) by then: the stream is drained and the run
	// retried. A Benthos input that cannot connect (a missing file, a
	// broker down) retries forever; this is where a batch job gives up.
	// Zero: Every, or no limit.
	Timeout time.Duration
	// RowsOut and RowsRejected are the labels of the outputs whose sent
	// messages are a run's rows out and rows rejected, for its outcome
	// (a fan-out sends a row to several outputs, so the total would
	// count it more than once); the rows of several outputs are summed
	// (the DAG's three sources, each loaded by its own). Empty: not
	// reported.
	RowsOut, RowsRejected []string

	cron cron.Schedule
}

// RunOutcome is one run of a scheduled pipeline, for the logs and metrics.
type RunOutcome struct {
	Pipeline string
	Attempt  int // from 1
	Start    time.Time
	Duration time.Duration
	Err      error
	// Schedule is the pipeline's, naming the outputs that count rows.
	Schedule *Schedule
}

// scheduleYAML is the `schedule:` block a pipeline file may carry beside
// its Benthos config.
type scheduleYAML struct {
	Every   string `yaml:"every"`
	Cron    string `yaml:"cron"`
	Retries int    `yaml:"retries"`
	Backoff string `yaml:"backoff"`
	Timeout string `yaml:"timeout"`

	RowsOut      labelList `yaml:"rows_out"`
	RowsRejected labelList `yaml:"rows_rejected"`
}

// labelList is one output's label, or a list of them.
type labelList []string

func (l *labelList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = labelList{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return fmt.Errorf("want an output's label or a list of them: %w", err)
	}
	*l = list
	return nil
}

// SplitSchedule takes the top-level `schedule:` block out of a pipeline's
// YAML, since Benthos would reject the unknown key. Its lines are blanked
// rather than cut, so Benthos' line numbers still match the file. It
// returns nil when there is no block.
func SplitSchedule(doc []byte) (*Schedule, []byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, doc, nil // Benthos reports what is wrong with it
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value != "schedule" {
			continue
		}
		var raw scheduleYAML
		if err := strictDecode(v, &raw); err != nil {
			return nil, nil, fmt.Errorf("line %d: schedule: %w", k.Line, err)
		}
		s, err := raw.parse()
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: schedule: %w", k.Line, err)
		}
		for field, names := range map[string][]string{"rows_out": s.RowsOut, "rows_rejected": s.RowsRejected} {
			for _, label := range names {
				if !hasLabel(m, label) {
					return nil, nil, fmt.Errorf("line %d: schedule: %s: no component is labelled %q in this pipeline", k.Line, field, label)
				}
			}
		}
		end := -1 // the block runs to the next top-level key, or the end
		if i+2 < len(m.Content) {
			end = m.Content[i+2].Line - 1
		}
		return s, blankLines(doc, k.Line, end), nil
	}
	return nil, doc, nil
}

// hasLabel reports whether some component under n has `label: want`.
func hasLabel(n *yaml.Node, want string) bool {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "label" && n.Content[i+1].Value == want {
				return true
			}
		}
	}
	for _, c := range n.Content {
		if hasLabel(c, want) {
			return true
		}
	}
	return false
}

// strictDecode decodes a mapping node into v, refusing unknown keys, so a
// misspelt `retires:` is an error rather than no retries.
func strictDecode(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func (r scheduleYAML) parse() (*Schedule, error) {
	s := &Schedule{Retries: r.Retries, Cron: r.Cron, Backoff: 10 * time.Second, RowsOut: r.RowsOut, RowsRejected: r.RowsRejected}
	var err error
	if r.Every != "" {
		if s.Every, err = time.ParseDuration(r.Every); err != nil || s.Every <= 0 {
			return nil, fmt.Errorf("every: %q is not a positive duration like \"1h\"", r.Every)
		}
	}
	if r.Cron != "" {
		if s.Every > 0 {
			return nil, errors.New("every and cron are both set: choose one")
		}
		if s.cron, err = cron.ParseStandard(r.Cron); err != nil {
			return nil, fmt.Errorf("cron: %q: %w", r.Cron, err)
		}
	}
	if r.Retries < 0 {
		return nil, fmt.Errorf("retries: %d is negative", r.Retries)
	}
	if r.Backoff != "" {
		if s.Backoff, err = time.ParseDuration(r.Backoff); err != nil || s.Backoff <= 0 {
			return nil, fmt.Errorf("backoff: %q is not a positive duration like \"30s\"", r.Backoff)
		}
	}
	s.Timeout = s.Every
	if r.Timeout != "" {
		if s.Timeout, err = time.ParseDuration(r.Timeout); err != nil || s.Timeout <= 0 {
			return nil, fmt.Errorf("timeout: %q is not a positive duration like \"50m\"", r.Timeout)
		}
	}
	return s, nil
}

// blankLines empties lines from..to (1-based, inclusive; to -1 = the end).
func blankLines(doc []byte, from, to int) []byte {
	lines := strings.SplitAfter(string(doc), "\n")
	for i := range lines {
		n := i + 1
		if n >= from && (to < 0 || n <= to) {
			if strings.HasSuffix(lines[i], "\n") {
				lines[i] = "\n"
			} else {
				lines[i] = ""
			}
		}
	}
	return []byte(strings.Join(lines, ""))
}

// RunOnce makes s run once, with its retries, backoff and timeout, instead
// of on its every or cron: the agent's `once`, for a job an outside
// scheduler starts. The timeout a bare `every` implied stays.
func (s *Schedule) RunOnce() { s.Every, s.Cron, s.cron = 0, "", nil }

// next returns when the run after one that started at start is due.
func (s *Schedule) next(start time.Time) (time.Time, bool) {
	switch {
	case s.cron != nil:
		return s.cron.Next(start.UTC()), true
	case s.Every > 0:
		return start.Add(s.Every), true
	}
	return time.Time{}, false
}

// runScheduled runs p on its schedule until ctx ends: each run, with its
// retries, to completion; then the next when it is due. A run that fails
// all its attempts is logged and reported, and the schedule goes on; if
// the pipeline runs once (no every, no cron), its error is returned.
func runScheduled(ctx context.Context, p Pipeline, opts Options, log *slog.Logger) error {
	s := p.Schedule
	for {
		start := time.Now()
		err := runWithRetries(ctx, p, opts, log)
		next, again := s.next(start)
		if !again || ctx.Err() != nil {
			return err
		}
		wait := time.Until(next)
		if wait > 0 {
			log.Info("next run", "at", next.UTC().Format(time.RFC3339), "in", wait.Round(time.Second))
		} else {
			// Once, not once per time it was due: a run that outlasts its
			// interval does not pile up runs behind it.
			log.Info("next run now: the last one outlasted its schedule", "due", next.UTC().Format(time.RFC3339), "late", (-wait).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func runWithRetries(ctx context.Context, p Pipeline, opts Options, log *slog.Logger) error {
	s := p.Schedule
	backoff := s.Backoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		runCtx, cancel := ctx, context.CancelFunc(func() {})
		if s.Timeout > 0 {
			runCtx, cancel = context.WithTimeout(ctx, s.Timeout)
		}
		err := runOne(runCtx, p, opts, log)
		timedOut := ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded)
		cancel()
		if timedOut && (err == nil || errors.Is(err, runscope.ErrStopped)) {
			err = fmt.Errorf("pipeline %q (%s): the run did not finish within its timeout of %s, so it was stopped", p.Name, p.Source, s.Timeout)
		}
		out := RunOutcome{Pipeline: p.Name, Attempt: attempt, Start: start, Duration: time.Since(start), Err: err, Schedule: s}
		if opts.OnRun != nil {
			opts.OnRun(out)
		}
		if err == nil {
			log.Info("run succeeded", "attempt", attempt, "duration", out.Duration.Round(time.Millisecond))
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if attempt > s.Retries {
			log.Error("run failed, no retries left", "attempts", attempt, "error", err)
			return err
		}
		// A config the linter refuses fails every attempt the same way:
		// retrying only delays the error; so does a component that says
		// its error is permanent (a Wasm plugin refusing its config, a
		// component refusing its options: internal/configerr). A
		// component that fails to build for another reason, a plugin or
		// model file not there yet, say, is retried.
		var lint *sourcedLintError
		var perm interface{ Permanent() bool }
		if errors.As(err, &lint) || errors.As(err, &perm) && perm.Permanent() {
			log.Error("run failed: the pipeline's config is invalid, not retried", "error", err)
			return err
		}
		log.Warn("run failed, retrying", "attempt", attempt, "retry_in", backoff, "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Minute)
	}
}
