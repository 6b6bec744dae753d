package main

// End-to-end tests of the agent binary: each test builds nothing itself but
// runs the real `agent` built once in TestMain, in a scratch working
// directory, the way a user would run it from a shell.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// Built once by TestMain.
var (
	agentBin      string // the agent binary
	transformWasm string // examples/wasm/transform
	echoWasm      string // agent/wasm/testdata/plugins/echo: rejects unknown config fields
	counterWasm   string // agent/wasm/testdata/plugins/counter: keyed per-user counts
)

// runTimeout bounds every run of the binary so that a hang fails the test
// instead of blocking it; it is far above what any run needs.
const runTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-agent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	agentBin = filepath.Join(dir, "agent")
	transformWasm = filepath.Join(dir, "transform.wasm")
	echoWasm = filepath.Join(dir, "echo.wasm")
	counterWasm = filepath.Join(dir, "counter.wasm")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	builds := []func() error{
		func() error {
			out, err := exec.CommandContext(ctx, "go", "build", "-o", agentBin, ".").CombinedOutput()
			if err != nil {
				return fmt.Errorf("build agent: %w\n%s", err, out)
			}
			return nil
		},
		func() error { return wasmbuild.Build(ctx, "../../examples/wasm/transform", transformWasm) },
		func() error { return wasmbuild.Build(ctx, "../../agent/wasm/testdata/plugins/echo", echoWasm) },
		func() error { return wasmbuild.Build(ctx, "../../agent/wasm/testdata/plugins/counter", counterWasm) },
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Go(func() { errs[i] = b() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is what a run of the binary left behind.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit code %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// baseEnv is the test process's environment without any SLUICE_* variable,
// so that a developer's own settings cannot leak into a run.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return env
}

// testEnv is baseEnv with the agent's state kept in a fresh temporary
// directory, plus extra.
func testEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	return append(baseEnv(), append([]string{"SLUICE_DATA_DIR=" + filepath.Join(t.TempDir(), "data")}, extra...)...)
}

// output collects a running agent's stdout or stderr. Tests read it
// while exec's copier goroutine still writes it, so it is locked.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// command prepares the agent to run in dir with env and args.
func command(ctx context.Context, dir string, env []string, args ...string) (*exec.Cmd, *output, *output) {
	cmd := exec.CommandContext(ctx, agentBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr output
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	return cmd, &stdout, &stderr
}

// runAgent runs the agent to completion in dir.
func runAgent(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, stdout, stderr := command(ctx, dir, env, args...)
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("agent %s did not finish within %s\n--- stdout:\n%s\n--- stderr:\n%s", strings.Join(args, " "), runTimeout, stdout, stderr)
	}
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run agent: %v", err)
	}
	return res
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readLines returns the lines of a file, failing the test if it does not
// end with a newline (a torn last write).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Errorf("%s: last line is not terminated: %q", filepath.Base(path), b[max(0, len(b)-200):])
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// lineOf returns the 1-based number of the one line of doc containing
// marker, so that expected positions follow the YAML as it is written.
func lineOf(t *testing.T, doc, marker string) int {
	t.Helper()
	n := 0
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, marker) {
			if n != 0 {
				t.Fatalf("marker %q is on lines %d and %d", marker, n, i+1)
			}
			n = i + 1
		}
	}
	if n == 0 {
		t.Fatalf("marker %q not in document", marker)
	}
	return n
}

// features are the fields the transform plugin derives.
type features struct {
	HourOfDay int  `json:"hour_of_day"`
	DayOfWeek int  `json:"day_of_week"`
	IsWeekend bool `json:"is_weekend"`
}

// expectFeatures computes the derived fields from an instant with Go's time
// package: UTC, Monday = 0.
func expectFeatures(ts time.Time) features {
	ts = ts.UTC()
	dow := (int(ts.Weekday()) + 6) % 7
	return features{HourOfDay: ts.Hour(), DayOfWeek: dow, IsWeekend: ts.Weekday() == time.Saturday || ts.Weekday() == time.Sunday}
}

func mustParseTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestZeroSetup runs `agent` with no arguments, no config and no SLUICE_*
// variables in an empty directory: the embedded demo prints one readable
// line per embedded sample event.
// TestDemoPipeline runs the builtin demo: the seed's transform step over
// the embedded sample, no broker and no files.
func TestDemoPipeline(t *testing.T) {
	dir := t.TempDir()
	res := runAgent(t, dir, baseEnv(), "--pipeline", "builtin:demo")
	if res.code != 0 {
		t.Fatalf("want exit 0\n%s", res)
	}
	if strings.Contains(res.stderr, "level=ERROR") {
		t.Errorf("errors logged\n%s", res)
	}

	// The sample the demo reads, in order (the demo runs one thread).
	sample, err := os.ReadFile("../../pipelines/sample/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(string(sample)), "\n") {
		var ev struct {
			Timestamp string `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.Timestamp)
	}
	if len(want) != 24 {
		t.Fatalf("the embedded sample has %d events, the demo is documented with 24", len(want))
	}

	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) != 24 {
		t.Fatalf("want 24 lines on stdout, got %d\n%s", len(lines), res)
	}
	// Weekday/weekend coverage, so that the checks below cannot all pass on
	// a plugin that always writes the same values.
	seenDays := map[int]bool{}
	byTime := map[string]features{}
	for i, line := range lines {
		// user 1   page_view    2025-01-01T05:28:42.268Z  hour_of_day=5  day_of_week=2 is_weekend=false
		f := strings.Fields(line)
		if len(f) != 7 || f[0] != "user" {
			t.Errorf("line %d is not a readable event line: %q", i+1, line)
			continue
		}
		if f[3] != want[i] {
			t.Errorf("line %d: timestamp %s, want the sample's %dth event %s", i+1, f[3], i+1, want[i])
		}
		got, err := parseDemoFeatures(f[4:])
		if err != nil {
			t.Errorf("line %d: %v: %q", i+1, err, line)
			continue
		}
		exp := expectFeatures(mustParseTime(t, f[3]))
		if got != exp {
			t.Errorf("line %d (%s): got %+v, want %+v", i+1, f[3], got, exp)
		}
		seenDays[got.DayOfWeek] = true
		byTime[f[3]] = got
	}
	if !seenDays[0] || !seenDays[5] || !seenDays[6] {
		t.Errorf("the sample should cover Monday and the weekend; days seen: %v", seenDays)
	}

	// Spot checks against the calendar, independent of any computation.
	for _, c := range []struct {
		ts   string
		want features
	}{
		{"2025-01-01T05:28:42.268Z", features{5, 2, false}}, // Wednesday
		{"2025-01-04T02:24:28.811Z", features{2, 5, true}},  // Saturday
		{"2025-01-05T21:04:13.717Z", features{21, 6, true}}, // Sunday
		{"2025-01-06T06:38:18.453Z", features{6, 0, false}}, // Monday
	} {
		if got, ok := byTime[c.ts]; !ok || got != c.want {
			t.Errorf("%s: got %+v (printed: %v), want %+v", c.ts, got, ok, c.want)
		}
	}

	// With no configuration the agent keeps its state in .sluice under its
	// working directory.
	if _, err := os.Stat(filepath.Join(dir, ".sluice")); err != nil {
		t.Errorf("default data dir: %v", err)
	}
}

func parseDemoFeatures(kvs []string) (features, error) {
	var f features
	vals := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, fmt.Errorf("%q is not key=value", kv)
		}
		vals[k] = v
	}
	var err1, err2, err3 error
	f.HourOfDay, err1 = strconv.Atoi(vals["hour_of_day"])
	f.DayOfWeek, err2 = strconv.Atoi(vals["day_of_week"])
	f.IsWeekend, err3 = strconv.ParseBool(vals["is_weekend"])
	return f, errors.Join(err1, err2, err3)
}

// event is one line of the test's input, with what the agent must do to it.
type event struct {
	line string
	// when is the instant the timestamp denotes, for good events; zero for
	// events that must be rejected.
	when time.Time
}

// testEvents are the input of the routing tests: valid timestamps in the
// forms the agent documents, and events whose timestamp is bad or missing.
// Every event has a unique user_id.
func testEvents(t *testing.T) []event {
	return []event{
		{line: `{"user_id":1,"event_type":"click","timestamp":"2025-01-04T02:24:28.811Z"}`, when: mustParseTime(t, "2025-01-04T02:24:28.811Z")},
		{line: `{"user_id":2,"event_type":"click","timestamp":"not-a-time"}`},
		{line: `{"user_id":3,"event_type":"page_view","event_data":{"page":"/p/1"}}`},
		// An offset: 01:30 on Sunday in UTC+2 is 23:30 on Saturday in UTC.
		{line: `{"user_id":4,"event_type":"view","timestamp":"2025-01-05T01:30:00+02:00","event_data":{"page":"/p/4"}}`, when: mustParseTime(t, "2025-01-04T23:30:00Z")},
		{line: `{"user_id":5,"event_type":"search","timestamp":""}`},
		// No zone, as Python's isoformat() writes naive datetimes: UTC.
		{line: `{"user_id":6,"event_type":"purchase","timestamp":"2025-01-06T06:38:18"}`, when: mustParseTime(t, "2025-01-06T06:38:18Z")},
		{line: `{"user_id":7,"event_type":"click","timestamp":"2025-13-01T00:00:00Z"}`},
		// Epoch seconds: 2025-01-07T17:53:21Z, a Tuesday.
		{line: `{"user_id":8,"event_type":"click","timestamp":1736272401}`, when: time.Unix(1736272401, 0)},
		{line: `{"user_id":9,"event_type":"click","timestamp":true}`},
		// Before 1970: a Wednesday.
		{line: `{"user_id":10,"event_type":"click","timestamp":"1969-12-31T23:59:59Z"}`, when: mustParseTime(t, "1969-12-31T23:59:59Z")},
		{line: `{"user_id":11,"event_type":"click","timestamp":null}`},
		{line: `{"user_id":12,"event_type":"add_to_cart","timestamp":"2025-01-12T18:33:38.650Z"}`, when: mustParseTime(t, "2025-01-12T18:33:38.650Z")},
	}
}

func userID(t *testing.T, doc []byte) int {
	t.Helper()
	var v struct {
		UserID *int `json:"user_id"`
	}
	if err := json.Unmarshal(doc, &v); err != nil || v.UserID == nil {
		t.Fatalf("no user_id in %s (%v)", doc, err)
	}
	return *v.UserID
}

// checkRouted checks that every good event is in out with its fields intact
// and the derived ones right, that every bad one is in rejects with its
// original bytes and a reason naming the timestamp field, and that nothing
// is lost or duplicated. An empty rejectsPath means no event is bad.
func checkRouted(t *testing.T, events []event, outPath, rejectsPath string) {
	t.Helper()
	byID := map[int]event{}
	var good, bad int
	for _, ev := range events {
		byID[userID(t, []byte(ev.line))] = ev
		if ev.when.IsZero() {
			bad++
		} else {
			good++
		}
	}
	seen := map[int]string{}
	see := func(id int, where string) {
		if prev, ok := seen[id]; ok {
			t.Errorf("user_id %d is in %s and in %s", id, prev, where)
		}
		seen[id] = where
	}

	out := readLines(t, outPath)
	for _, line := range out {
		id := userID(t, []byte(line))
		see(id, "output")
		ev, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("output has an event that was never sent: %s", line)
			continue
		case ev.when.IsZero():
			t.Errorf("bad event reached the output: %s", line)
			continue
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Errorf("output line is not JSON: %v: %s", err, line)
			continue
		}
		var orig map[string]any
		if err := json.Unmarshal([]byte(ev.line), &orig); err != nil {
			t.Fatal(err)
		}
		for k, v := range orig {
			if gv, err1 := json.Marshal(got[k]); err1 != nil || string(gv) != mustJSON(t, v) {
				t.Errorf("user %d: field %s is %s, sent %s", id, k, gv, mustJSON(t, v))
			}
		}
		var f features
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Errorf("user %d: derived fields: %v: %s", id, err, line)
		}
		for _, k := range []string{"hour_of_day", "day_of_week", "is_weekend"} {
			if _, ok := got[k]; !ok {
				t.Errorf("user %d: no %s in %s", id, k, line)
			}
		}
		if want := expectFeatures(ev.when); f != want {
			t.Errorf("user %d (%s): got %+v, want %+v", id, ev.when.UTC().Format(time.RFC3339), f, want)
		}
		if len(got) != len(orig)+3 {
			t.Errorf("user %d: want the %d fields sent plus 3 derived, got %s", id, len(orig), line)
		}
	}

	var rejects []string
	if rejectsPath != "" {
		rejects = readLines(t, rejectsPath)
	}
	for _, line := range rejects {
		var rej struct {
			Original *string `json:"original"`
			Reason   string  `json:"reason"`
		}
		if err := json.Unmarshal([]byte(line), &rej); err != nil || rej.Original == nil {
			t.Errorf("reject line is not {original, reason}: %v: %s", err, line)
			continue
		}
		id := userID(t, []byte(*rej.Original))
		see(id, "rejects")
		ev, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("rejects have an event that was never sent: %s", line)
			continue
		case !ev.when.IsZero():
			t.Errorf("good event %s was rejected: %s", ev.line, rej.Reason)
			continue
		}
		if *rej.Original != ev.line {
			t.Errorf("user %d: rejected bytes changed:\n got %s\nwant %s", id, *rej.Original, ev.line)
		}
		if !strings.Contains(rej.Reason, `"timestamp"`) {
			t.Errorf("user %d: reason does not name the timestamp field: %q", id, rej.Reason)
		}
	}

	if len(out) != good || len(rejects) != bad || len(seen) != len(events) {
		t.Errorf("sent %d events (%d good, %d bad); output has %d, rejects %d, distinct %d",
			len(events), good, bad, len(out), len(rejects), len(seen))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunRoutesRejects runs a user's pipeline file: JSON lines from a file
// through the transform plugin, errored messages routed to a reject file
// with their original bytes and the reason, the rest to an output file, in
// the ways Benthos users write it. The pipeline is named by --pipeline or by
// the agent config file.
func TestRunRoutesRejects(t *testing.T) {
	// Each routing is the tail of a pipeline after the wasm step. The
	// output paths are relative to the agent's working directory.
	routings := map[string]string{
		"switch on errored()": `
output:
  switch:
    cases:
      - check: errored()
        output:
          file:
            path: ./rejects.jsonl
            codec: lines
          processors:
            - mapping: |
                root.original = content().string()
                root.reason = error()
      - output:
          file:
            path: ./out.jsonl
            codec: lines
`,
		"reject_errored with fallback": `
output:
  fallback:
    - reject_errored:
        file:
          path: ./out.jsonl
          codec: lines
    - file:
        path: ./rejects.jsonl
        codec: lines
      processors:
        - mapping: |
            root.original = content().string()
            root.reason = error()
`,
		"catch to metadata": `
    - catch:
        - mapping: |
            meta reason = error()
output:
  switch:
    cases:
      - check: '@reason != null'
        output:
          file:
            path: ./rejects.jsonl
            codec: lines
          processors:
            - mapping: |
                root.original = content().string()
                root.reason = @reason
      - output:
          file:
            path: ./out.jsonl
            codec: lines
`,
	}
	tests := []struct {
		name    string
		routing string
		// viaConfig names the pipeline in an agent config file given with
		// -c instead of with --pipeline.
		viaConfig bool
	}{
		{"switch on errored() with --pipeline", "switch on errored()", false},
		{"switch on errored() with -c", "switch on errored()", true},
		{"reject_errored with fallback with --pipeline", "reject_errored with fallback", false},
		{"catch to metadata with -c", "catch to metadata", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			events := testEvents(t)
			var in strings.Builder
			for _, ev := range events {
				in.WriteString(ev.line + "\n")
			}
			writeFile(t, filepath.Join(dir, "events.jsonl"), in.String())
			pipeline := fmt.Sprintf(`input:
  file:
    paths: [ ./events.jsonl ]
    scanner:
      lines: {}
pipeline:
  processors:
    - wasm:
        path: %q
`, transformWasm) + strings.TrimPrefix(routings[tc.routing], "\n")
			writeFile(t, filepath.Join(dir, "pipelines", "events.yaml"), pipeline)

			args := []string{"run", "--pipeline", "pipelines/events.yaml"}
			if tc.viaConfig {
				writeFile(t, filepath.Join(dir, "agent.yaml"), "pipelines:\n  - pipelines/events.yaml\nlog_level: warn\n")
				args = []string{"run", "-c", "agent.yaml"}
			}
			res := runAgent(t, dir, testEnv(t), args...)
			if res.code != 0 {
				t.Fatalf("want exit 0\n%s", res)
			}
			checkRouted(t, events, filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "rejects.jsonl"))
		})
	}
}

// TestLintPipelineProblems lints a pipeline file with several mistakes and
// expects every one, at its line.
func TestLintPipelineProblems(t *testing.T) {
	dir := t.TempDir()
	doc := fmt.Sprintf(`# A pipeline with four mistakes.
input:
  file:
    paths: [ ./events.jsonl ]
pipeline:
  processors:
    - wasm:
        path: ./no-such-plugin.wasm
    - mapping: root = this
      mapping_typo: root = this
    - not_a_processor: {}
    - wasm:
        path: %q
    - wasm:
        path: %q
        config:
          tag: ok
          colour: blue
output:
  drop: {}
`, transformWasm, echoWasm)
	writeFile(t, filepath.Join(dir, "broken.yaml"), doc)

	res := runAgent(t, dir, testEnv(t), "lint", "broken.yaml")
	if res.code == 0 {
		t.Fatalf("want a non-zero exit\n%s", res)
	}
	want := []struct {
		line int
		msg  string
	}{
		{lineOf(t, doc, "no-such-plugin.wasm"), "no-such-plugin.wasm"},
		{lineOf(t, doc, "mapping_typo"), "mapping_typo"},
		{lineOf(t, doc, "not_a_processor"), "not_a_processor"},
		// The plugin's own error, blamed on the config it rejected.
		{lineOf(t, doc, "config:"), `unknown field "colour"`},
	}
	got := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(got) != len(want) {
		t.Errorf("want %d problems, got %d\n%s", len(want), len(got), res)
	}
	for _, w := range want {
		prefix := fmt.Sprintf("broken.yaml:%d: ", w.line)
		if !slices.ContainsFunc(got, func(l string) bool {
			return strings.HasPrefix(l, prefix) && strings.Contains(l, w.msg)
		}) {
			t.Errorf("no problem %q...%q\n%s", prefix, w.msg, res)
		}
	}
	if !strings.Contains(res.stderr, fmt.Sprintf("%d problem(s)", len(want))) {
		t.Errorf("stderr does not count %d problems\n%s", len(want), res)
	}
}

// TestLintAgentConfig: `agent lint` checks the agent config first; a typo in
// it is reported with the file, line and key, and nothing else runs.
func TestLintAgentConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := "# agent config\nlog_level: info\n\npipelinez:\n  - builtin:demo\n"
	writeFile(t, filepath.Join(dir, "agent.yaml"), cfg)
	res := runAgent(t, dir, testEnv(t), "lint", "-c", "agent.yaml")
	if res.code == 0 {
		t.Fatalf("want a non-zero exit\n%s", res)
	}
	line := lineOf(t, cfg, "pipelinez")
	loc := regexp.MustCompile(fmt.Sprintf(`agent\.yaml(:| line )%d\b`, line))
	if !loc.MatchString(res.stderr) || !strings.Contains(res.stderr, `"pipelinez"`) {
		t.Errorf("want the error to name agent.yaml, line %d and the key pipelinez\n%s", line, res)
	}
}

// TestLintDefaults: with nothing configured, lint checks the embedded demo,
// which is clean.
func TestLintDefaults(t *testing.T) {
	res := runAgent(t, t.TempDir(), testEnv(t), "lint")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "" {
		t.Fatalf("want exit 0 and no problems\n%s", res)
	}
}

// TestConfigPrecedence: each layer overrides the one below it, and `agent
// config` says which one won.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "agent.yaml"), "log_level: warn\n")
	tests := []struct {
		name     string
		env      []string
		args     []string
		want     string
		wantFrom string
	}{
		{"default", nil, nil, "info", "default"},
		{"file", nil, []string{"-c", "agent.yaml"}, "warn", "file agent.yaml"},
		{"env over file", []string{"SLUICE_LOG_LEVEL=error"}, []string{"-c", "agent.yaml"}, "error", "env SLUICE_LOG_LEVEL"},
		{"flag over env", []string{"SLUICE_LOG_LEVEL=error"}, []string{"-c", "agent.yaml", "--log-level", "debug"}, "debug", "flag --log-level"},
		{"file named by env", []string{"SLUICE_CONFIG=agent.yaml"}, nil, "warn", "file agent.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runAgent(t, dir, testEnv(t, tc.env...), append([]string{"config"}, tc.args...)...)
			if res.code != 0 {
				t.Fatalf("want exit 0\n%s", res)
			}
			got := configLines(t, res.stdout)
			if l := got["log_level"]; l.value != tc.want || l.from != tc.wantFrom {
				t.Errorf("log_level = %s (%s), want %s (%s)\n%s", l.value, l.from, tc.want, tc.wantFrom, res)
			}
			if l := got["log_format"]; l.value != "text" || l.from != "default" {
				t.Errorf("log_format = %s (%s), want text (default)\n%s", l.value, l.from, res)
			}
		})
	}

	t.Run("unknown variable", func(t *testing.T) {
		res := runAgent(t, dir, testEnv(t, "SLUICE_LOG_LEVL=debug"), "config")
		if res.code == 0 || !strings.Contains(res.stderr, "SLUICE_LOG_LEVL") || res.stdout != "" {
			t.Errorf("want a non-zero exit naming SLUICE_LOG_LEVL and no config printed\n%s", res)
		}
	})
}

type configLine struct{ value, from string }

// configLines parses `agent config` output: `key = value  (from)` lines.
func configLines(t *testing.T, out string) map[string]configLine {
	t.Helper()
	re := regexp.MustCompile(`^(\S+)\s*=\s*(.*?)\s+\((.*)\)$`)
	m := map[string]configLine{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		sub := re.FindStringSubmatch(l)
		if sub == nil {
			t.Fatalf("not a `key = value  (from)` line: %q", l)
		}
		m[sub[1]] = configLine{sub[2], sub[3]}
	}
	return m
}

func TestVersion(t *testing.T) {
	res := runAgent(t, t.TempDir(), testEnv(t), "version")
	if res.code != 0 || !strings.Contains(res.stdout, "plugin-abi v1") {
		t.Errorf("want exit 0 and plugin-abi v1\n%s", res)
	}
}

// TestGracefulShutdown stops an endless pipeline with SIGTERM: the agent
// drains and exits cleanly, every line it wrote is a whole, transformed
// event, and every event read before the signal was written. The input logs
// each event it reads, and a sleep after the plugin keeps events in flight
// when the signal comes, so that a shutdown which abandons them is seen.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "endless.yaml"), fmt.Sprintf(`input:
  generate:
    interval: 1ms
    mapping: |
      root.user_id = counter()
      root.timestamp = "2025-01-04T02:24:28Z"
  processors:
    - log:
        message: 'read event ${! this.user_id }'
pipeline:
  processors:
    - wasm:
        path: %q
    - sleep:
        duration: 20ms
output:
  file:
    path: ./out.jsonl
    codec: lines
`, transformWasm))
	out := filepath.Join(dir, "out.jsonl")

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, stdout, stderr := command(ctx, dir, testEnv(t), "run", "--pipeline", "endless.yaml", "--shutdown-timeout", "5s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait, without a timing assertion, until the pipeline is flowing.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for flowing := false; !flowing; {
		select {
		case err := <-exited:
			t.Fatalf("agent exited before being stopped: %v\n--- stderr:\n%s", err, stderr)
		case <-ctx.Done():
			t.Fatalf("no output within %s\n--- stderr:\n%s", runTimeout, stderr)
		case <-tick.C:
			b, _ := os.ReadFile(out)
			flowing = bytes.Count(b, []byte("\n")) >= 20
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-ctx.Done():
		t.Fatalf("agent did not exit after SIGTERM\n--- stderr:\n%s", stderr)
	}
	if err != nil {
		t.Fatalf("want exit 0 after SIGTERM, got %v\n--- stdout:\n%s\n--- stderr:\n%s", err, stdout, stderr)
	}

	lines := readLines(t, out)
	ids := make([]int, 0, len(lines))
	for i, l := range lines {
		var ev struct {
			UserID    int   `json:"user_id"`
			HourOfDay *int  `json:"hour_of_day"`
			DayOfWeek *int  `json:"day_of_week"`
			IsWeekend *bool `json:"is_weekend"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %d of %d is not whole JSON: %v: %q", i+1, len(lines), err, l)
		}
		if ev.HourOfDay == nil || *ev.HourOfDay != 2 || ev.DayOfWeek == nil || *ev.DayOfWeek != 5 || ev.IsWeekend == nil || !*ev.IsWeekend {
			t.Fatalf("line %d of %d was not transformed: %s", i+1, len(lines), l)
		}
		ids = append(ids, ev.UserID)
	}
	// Every event read before the drain was delivered, once.
	var read []int
	for _, m := range regexp.MustCompile(`msg="read event (\d+)"`).FindAllStringSubmatch(stderr.String(), -1) {
		id, _ := strconv.Atoi(m[1])
		read = append(read, id)
	}
	slices.Sort(read)
	slices.Sort(ids)
	if len(read) == 0 {
		t.Fatalf("the input logged no reads\n--- stderr:\n%s", stderr)
	}
	if !slices.Equal(read, ids) {
		t.Errorf("read %d events, wrote %d: events in flight at shutdown were lost or duplicated\nread:  %v\nwrote: %v",
			len(read), len(ids), read, ids)
	}
}

// TestFailedPipelineDoesNotStopOthers runs a directory holding a good
// pipeline and one whose plugin does not exist: the good one delivers
// everything, the agent exits non-zero and names the one that failed.
func TestFailedPipelineDoesNotStopOthers(t *testing.T) {
	dir := t.TempDir()
	var events []event
	for _, ev := range testEvents(t) {
		if !ev.when.IsZero() {
			events = append(events, ev)
		}
	}
	var in strings.Builder
	for _, ev := range events {
		in.WriteString(ev.line + "\n")
	}
	writeFile(t, filepath.Join(dir, "events.jsonl"), in.String())
	const tmpl = `input:
  file:
    paths: [ ./events.jsonl ]
pipeline:
  processors:
    - wasm:
        path: %q
output:
  file:
    path: %q
    codec: lines
`
	writeFile(t, filepath.Join(dir, "pipelines", "good.yaml"), fmt.Sprintf(tmpl, transformWasm, "./good.jsonl"))
	writeFile(t, filepath.Join(dir, "pipelines", "broken.yaml"), fmt.Sprintf(tmpl, "./plugins/missing.wasm", "./broken.jsonl"))

	res := runAgent(t, dir, testEnv(t), "run", "--pipeline", "pipelines")
	if res.code == 0 {
		t.Errorf("want a non-zero exit\n%s", res)
	}
	checkRouted(t, events, filepath.Join(dir, "good.jsonl"), "")

	var failures []string
	sc := bufio.NewScanner(strings.NewReader(res.stderr))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "level=ERROR") {
			failures = append(failures, sc.Text())
		}
	}
	if len(failures) == 0 {
		t.Fatalf("no error logged\n%s", res)
	}
	for _, f := range failures {
		if !strings.Contains(f, "broken") || strings.Contains(f, "good") {
			t.Errorf("error line should name the broken pipeline and only it: %s", f)
		}
	}
	if !strings.Contains(res.stderr, "missing.wasm") {
		t.Errorf("stderr does not say why the pipeline failed\n%s", res)
	}
}
