package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// hangGuard bounds every wait in these tests so a broken shutdown fails the
// test instead of hanging it; it is deliberately far above expected timings.
const hangGuard = 30 * time.Second

// finiteYAML is a pipeline that emits count JSON records {"seq":n,"double":2n}
// into a file, one per line, and then finishes on its own.
func finiteYAML(count int, path string) []byte {
	return fmt.Appendf(nil, `
input:
  generate:
    count: %d
    interval: ""
    mapping: 'root = {"seq": counter()}'
pipeline:
  processors:
    - mapping: 'root = this.merge({"double": this.seq * 2})'
output:
  file:
    path: %q
    codec: lines
`, count, path)
}

// endlessYAML is like finiteYAML but never finishes on its own.
func endlessYAML(path string) []byte {
	return fmt.Appendf(nil, `
input:
  generate:
    interval: 1ms
    mapping: 'root = {"seq": counter(), "padding": "%s"}'
pipeline:
  processors:
    - mapping: 'root = this.merge({"double": this.seq * 2})'
output:
  file:
    path: %q
    codec: lines
`, strings.Repeat("x", 512), path)
}

// readRecords asserts that every line in path is a complete JSON record as
// written by finiteYAML/endlessYAML and returns how many there are. It also
// asserts the seq values are exactly 1..n, i.e. nothing in the middle was lost
// or written twice.
func readRecords(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read output: %v", err)
	}
	if len(data) == 0 {
		return 0
	}
	if data[len(data)-1] != '\n' {
		t.Errorf("%s: last line is not terminated, output was cut mid-record", path)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	seen := make(map[int]bool, len(lines))
	for i, line := range lines {
		var rec struct {
			Seq    *int `json:"seq"`
			Double *int `json:"double"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%s line %d is not valid JSON (%v): %q", path, i+1, err, line)
		}
		if rec.Seq == nil || rec.Double == nil || *rec.Double != 2**rec.Seq {
			t.Fatalf("%s line %d is not a processed record: %q", path, i+1, line)
		}
		if seen[*rec.Seq] {
			t.Fatalf("%s: seq %d written twice", path, *rec.Seq)
		}
		seen[*rec.Seq] = true
	}
	for n := 1; n <= len(lines); n++ {
		if !seen[n] {
			t.Fatalf("%s: %d records but seq %d is missing", path, len(lines), n)
		}
	}
	return len(lines)
}

func countLines(path string) int {
	data, _ := os.ReadFile(path)
	return bytes.Count(data, []byte("\n"))
}

func waitForLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for countLines(path) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d lines written before the hang guard", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logTap records everything logged through it, so tests can check what a user
// would see in the logs and wait for a pipeline to reach a given point.
type logTap struct {
	mu      sync.Mutex
	records []map[string]string
}

func (l *logTap) logger() *slog.Logger { return slog.New(&tapHandler{tap: l}) }

// waitFor polls until some record satisfies match, or fails the test.
func (l *logTap) waitFor(t *testing.T, what string, match func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		if l.find(match) != nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for log record: %s", what)
}

func (l *logTap) find(match func(map[string]string) bool) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if match(r) {
			return r
		}
	}
	return nil
}

type tapHandler struct {
	tap   *logTap
	attrs []slog.Attr
}

func (h *tapHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *tapHandler) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range h.attrs {
		rec[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec[a.Key] = a.Value.String()
		return true
	})
	h.tap.mu.Lock()
	h.tap.records = append(h.tap.records, rec)
	h.tap.mu.Unlock()
	return nil
}

func (h *tapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &tapHandler{tap: h.tap, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *tapHandler) WithGroup(string) slog.Handler { return h }

// runAsync runs Run in the background; the returned func waits for its
// Report, failing the test if that takes longer than bound.
func runAsync(t *testing.T, ctx context.Context, pipelines []Pipeline, opts Options) func(bound time.Duration) Report {
	t.Helper()
	done := make(chan Report, 1)
	go func() { done <- Run(ctx, pipelines, opts) }()
	return func(bound time.Duration) Report {
		t.Helper()
		select {
		case r := <-done:
			return r
		case <-time.After(bound):
			t.Fatalf("Run did not return within %s", bound)
			return Report{}
		}
	}
}

func TestRunFinitePipelinesRunToCompletion(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		count int
	}{
		{name: "small", count: 10},
		{name: "large", count: 2000},
	}
	var pipelines []Pipeline
	for _, tt := range tests {
		path := filepath.Join(dir, tt.name+".jsonl")
		pipelines = append(pipelines, Pipeline{
			Name: tt.name, Source: tt.name + ".yaml", YAML: finiteYAML(tt.count, path),
		})
	}

	// ctx is never cancelled by the test: Run must return because both
	// inputs were exhausted. The timeout only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	tap := &logTap{}
	report := Run(ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: tap.logger(), ShutdownTimeout: 5 * time.Second})
	if ctx.Err() != nil {
		t.Fatal("pipelines did not finish on their own before the hang guard")
	}

	if err := report.Err(); err != nil {
		t.Fatalf("Report.Err() = %v, want nil", err)
	}
	if len(report.Results) != len(tests) {
		t.Fatalf("got %d results, want %d", len(report.Results), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := report.Results[i]; got.Name != tt.name || got.Source != tt.name+".yaml" {
				t.Errorf("result %d = %+v, want name %q in input order", i, got, tt.name)
			}
			if got := readRecords(t, filepath.Join(dir, tt.name+".jsonl")); got != tt.count {
				t.Errorf("output has %d records, want %d", got, tt.count)
			}
			// Benthos' own logs must be attributable to the pipeline.
			if tap.find(func(r map[string]string) bool { return r["pipeline"] == tt.name && r["msg"] != "pipeline finished" }) == nil {
				t.Errorf("no Benthos log record carries pipeline=%s", tt.name)
			}
		})
	}
}

func TestRunBrokenPipelineDoesNotStopOthers(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantErr  *regexp.Regexp // besides name and source, which every error must carry
		wantLint bool
	}{
		{
			name: "unknown processor",
			yaml: `input:
  generate:
    count: 1
    mapping: 'root = {}'
pipeline:
  processors:
    - no_such_processor: {}
output:
  drop: {}
`,
			wantErr:  regexp.MustCompile(`build: lint errors: broken\.yaml:7:\d+: .*no_such_processor`),
			wantLint: true,
		},
		{
			name: "unknown field",
			yaml: `input:
  generate:
    count: 1
    mapping: 'root = {}'
    no_such_field: true
output:
  drop: {}
`,
			wantErr:  regexp.MustCompile(`build: lint errors: broken\.yaml:5:\d+: .*no_such_field`),
			wantLint: true,
		},
		{
			name: "invalid yaml",
			yaml: `input:
  generate:
    count: 1
    mapping: "root = {}
output:
  drop: {}
`,
			wantErr: regexp.MustCompile(`build: yaml: line \d+`),
		},
		{
			// Passes lint, but the input cannot be constructed: this fails
			// when the stream starts rather than when it is built.
			name: "input fails to start",
			yaml: `input:
  generate:
    count: 1
    interval: not-a-duration
    mapping: 'root = {}'
output:
  drop: {}
`,
			wantErr: regexp.MustCompile(`run: .*not-a-duration`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goodOut := filepath.Join(t.TempDir(), "good.jsonl")
			const goodCount = 500
			pipelines := []Pipeline{
				{Name: "broken", Source: "broken.yaml", YAML: []byte(tt.yaml)},
				{Name: "good", Source: "builtin:good", YAML: finiteYAML(goodCount, goodOut)},
			}
			ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
			defer cancel()
			tap := &logTap{}
			report := Run(ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: tap.logger(), ShutdownTimeout: 5 * time.Second})

			failed := report.Failed()
			if len(failed) != 1 || failed[0].Name != "broken" || failed[0].Source != "broken.yaml" {
				t.Fatalf("Failed() = %+v, want only the broken pipeline", failed)
			}
			msg := failed[0].Err.Error()
			if !strings.Contains(msg, `pipeline "broken" (broken.yaml)`) || !tt.wantErr.MatchString(msg) {
				t.Errorf("error %q does not name the pipeline and its source, or does not match %s", msg, tt.wantErr)
			}
			var lints service.LintError
			if tt.wantLint && (!errors.As(failed[0].Err, &lints) || len(lints) == 0 || lints[0].Line == 0) {
				t.Errorf("error %q does not expose service.LintError with a line", msg)
			}
			if err := report.Err(); err == nil || !strings.Contains(err.Error(), `"broken"`) || strings.Contains(err.Error(), `"good"`) {
				t.Errorf("Report.Err() = %v, want it to name broken and not good", err)
			}
			if tap.find(func(r map[string]string) bool {
				return r["level"] == "ERROR" && r["pipeline"] == "broken" && r["source"] == "broken.yaml"
			}) == nil {
				t.Error("failure was not logged at ERROR with pipeline and source")
			}

			if got := readRecords(t, goodOut); got != goodCount {
				t.Errorf("good pipeline wrote %d records, want %d", got, goodCount)
			}
		})
	}
}

// The stream's own HTTP server is rejected rather than silently disabled: see
// the package documentation for why.
func TestRunHTTPServerConfig(t *testing.T) {
	tests := []struct {
		name       string
		http       string
		wantReject bool
	}{
		{name: "enabled", http: "enabled: true\n  address: 127.0.0.1:4195", wantReject: true},
		{name: "enabled through env var default", http: "enabled: ${SLUICE_SUPERVISOR_TEST_UNSET:true}", wantReject: true},
		{name: "explicitly disabled", http: "enabled: false\n  address: 127.0.0.1:4195"},
		{name: "section without enabled", http: "address: 127.0.0.1:4195"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two pipelines with the same http section, as a user copying a
			// standalone config twice would write; they must not contend.
			dir := t.TempDir()
			var pipelines []Pipeline
			for _, name := range []string{"first", "second"} {
				out := filepath.Join(dir, name+".jsonl")
				yaml := append(fmt.Appendf(nil, "http:\n  %s\n", tt.http), finiteYAML(20, out)...)
				pipelines = append(pipelines, Pipeline{Name: name, Source: name + ".yaml", YAML: yaml})
			}
			ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
			defer cancel()
			report := Run(ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger()})

			for i, res := range report.Results {
				out := filepath.Join(dir, pipelines[i].Name+".jsonl")
				if tt.wantReject {
					if res.Err == nil || !strings.Contains(res.Err.Error(), "http.enabled") {
						t.Errorf("%s: Err = %v, want rejection naming http.enabled", res.Name, res.Err)
					}
					if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s: rejected pipeline produced output (stat: %v)", res.Name, err)
					}
					continue
				}
				if res.Err != nil {
					t.Errorf("%s: Err = %v, want nil", res.Name, res.Err)
				}
				if got := readRecords(t, out); got != 20 {
					t.Errorf("%s: wrote %d records, want 20", res.Name, got)
				}
			}
		})
	}
}

func TestRunDrainsOnCancel(t *testing.T) {
	dir := t.TempDir()
	names := []string{"a", "b"}
	var pipelines []Pipeline
	for _, name := range names {
		pipelines = append(pipelines, Pipeline{
			Name: name, Source: name + ".yaml", YAML: endlessYAML(filepath.Join(dir, name+".jsonl")),
		})
	}
	const shutdownTimeout = 5 * time.Second
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := runAsync(t, ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger(), ShutdownTimeout: shutdownTimeout})

	// Cancel only once both streams are demonstrably mid-flight.
	for _, name := range names {
		waitForLines(t, filepath.Join(dir, name+".jsonl"), 50)
	}
	cancel()
	report := wait(shutdownTimeout + hangGuard)

	if err := report.Err(); err != nil {
		t.Fatalf("Report.Err() = %v, want a clean drain", err)
	}
	for _, name := range names {
		path := filepath.Join(dir, name+".jsonl")
		n := readRecords(t, path)
		if n < 50 {
			t.Errorf("%s: %d records after drain, want at least the 50 seen before cancelling", name, n)
		}
		// Once Run has returned the stream is gone: nothing may still write.
		time.Sleep(50 * time.Millisecond)
		if again := countLines(path); again != n {
			t.Errorf("%s: output grew from %d to %d lines after Run returned", name, n, again)
		}
	}
}

func TestRunDrainTimeout(t *testing.T) {
	dir := t.TempDir()
	goodOut := filepath.Join(dir, "good.jsonl")
	pipelines := []Pipeline{
		{Name: "stuck", Source: "stuck.yaml", YAML: []byte(`
input:
  generate:
    interval: 1ms
    mapping: 'root = {}'
pipeline:
  processors:
    - log:
        message: about to sleep
    - sleep:
        duration: 1h
output:
  drop: {}
`)},
		{Name: "good", Source: "good.yaml", YAML: endlessYAML(goodOut)},
	}
	const shutdownTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tap := &logTap{}
	wait := runAsync(t, ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: tap.logger(), ShutdownTimeout: shutdownTimeout})

	// A batch must be inside the sleep processor, otherwise there is nothing
	// in flight and the drain would legitimately succeed.
	tap.waitFor(t, "stuck pipeline reached sleep", func(r map[string]string) bool {
		return r["pipeline"] == "stuck" && r["msg"] == "about to sleep"
	})
	waitForLines(t, goodOut, 1)
	cancel()
	report := wait(shutdownTimeout + hangGuard)

	failed := report.Failed()
	if len(failed) != 1 || failed[0].Name != "stuck" {
		t.Fatalf("Failed() = %+v, want only the stuck pipeline", failed)
	}
	if err := failed[0].Err; !strings.Contains(err.Error(), `pipeline "stuck" (stuck.yaml): drain exceeded shutdown timeout`) ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err = %v, want a drain timeout naming the pipeline", err)
	}
	readRecords(t, goodOut)
}

func TestRunNotStartedWhenAlreadyCancelled(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wait := runAsync(t, ctx, []Pipeline{{Name: "late", Source: "late.yaml", YAML: finiteYAML(10, out)}},
		Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger()})
	report := wait(hangGuard)

	if err := report.Err(); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `pipeline "late" (late.yaml): not started`) {
		t.Errorf("Report.Err() = %v, want not started with context.Canceled", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pipeline produced output although ctx was cancelled before Run (stat: %v)", err)
	}
}

func TestRunWithoutEnvironment(t *testing.T) {
	report := Run(t.Context(), []Pipeline{{Name: "p", Source: "p.yaml", YAML: finiteYAML(1, filepath.Join(t.TempDir(), "o"))}},
		Options{Logger: (&logTap{}).logger()})
	if err := report.Err(); err == nil || !strings.Contains(err.Error(), "Environment") {
		t.Errorf("Report.Err() = %v, want an error about the missing environment", err)
	}
}

func TestReport(t *testing.T) {
	errA := errors.New("boom a")
	errB := errors.New("boom b")
	tests := []struct {
		name       string
		results    []Result
		wantFailed []string
	}{
		{name: "empty"},
		{name: "all clean", results: []Result{{Name: "a"}, {Name: "b"}}},
		{
			name:       "some failed",
			results:    []Result{{Name: "a", Err: errA}, {Name: "ok"}, {Name: "b", Err: errB}},
			wantFailed: []string{"a", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Report{Results: tt.results}
			var gotFailed []string
			for _, res := range r.Failed() {
				gotFailed = append(gotFailed, res.Name)
			}
			if fmt.Sprint(gotFailed) != fmt.Sprint(tt.wantFailed) {
				t.Errorf("Failed() names = %v, want %v", gotFailed, tt.wantFailed)
			}
			err := r.Err()
			if len(tt.wantFailed) == 0 {
				if err != nil {
					t.Errorf("Err() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Err() = nil, want an error")
			}
			for _, res := range tt.results {
				if res.Err != nil && !errors.Is(err, res.Err) {
					t.Errorf("Err() = %v does not wrap %v", err, res.Err)
				}
			}
		})
	}
}

// TestMissingEnv: a ${VAR} with no default that is not set stops the
// pipeline from starting (Benthos alone would run it with ""), while
// defaults, set variables, interpolations and $${escapes} pass.
func TestMissingEnv(t *testing.T) {
	env := map[string]string{"SET": "x", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		doc  string
		want []string
	}{
		{"token: ${TOKEN}", []string{"TOKEN"}},
		{"a: ${B}\nb: ${A}\nc: ${B}", []string{"A", "B"}},
		{"token: ${TOKEN:}", nil},
		{"addr: ${ADDR:127.0.0.1:4196}", nil},
		{"a: ${SET}\nb: ${EMPTY}", nil},
		{`key: ${! meta("kafka_key") }`, nil},
		{"literal: $${NOT_A_VAR}", nil},
	} {
		if got := missingEnv([]byte(tc.doc), lookup); !slices.Equal(got, tc.want) {
			t.Errorf("%q: missing %v, want %v", tc.doc, got, tc.want)
		}
	}

	report := Run(t.Context(), []Pipeline{{Name: "p", Source: "p.yaml", YAML: []byte("input:\n  generate: {count: 1, mapping: 'root = \"${SLUICE_TEST_SURELY_UNSET}\"'}\noutput:\n  drop: {}\n")}},
		Options{Env: service.NewEnvironment(), Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: time.Second})
	if err := report.Err(); err == nil || !strings.Contains(err.Error(), "required environment variables are not set: SLUICE_TEST_SURELY_UNSET") {
		t.Errorf("Run with an unset variable: %v", err)
	}
}
