package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestSplitSchedule(t *testing.T) {
	doc := "input:\n  generate: {count: 1, mapping: 'root = 1'}\nschedule:\n  every: 1h\n  retries: 2\n  backoff: 30s\noutput:\n  drop: {}\n"
	s, rest, err := SplitSchedule([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s == nil || s.Every != time.Hour || s.Retries != 2 || s.Backoff != 30*time.Second || s.Timeout != time.Hour {
		t.Fatalf("schedule %+v", s)
	}
	// Blanked, not cut: output stays on line 7 for Benthos' messages.
	if lines := strings.Split(string(rest), "\n"); len(lines) != 9 || lines[6] != "output:" || strings.Contains(string(rest), "schedule") {
		t.Errorf("rest of the pipeline:\n%s", rest)
	}
	for _, tc := range []struct{ doc, want string }{
		{"schedule: {every: 1h, cron: '@hourly'}\n", "choose one"},
		{"schedule: {cron: 'every tuesday'}\n", "cron"},
		{"schedule: {every: 10}\n", "positive duration"},
		{"schedule: {every: 1h, retires: 3}\n", "retires"},
		{"input: {}\nschedule: {retries: -1}\n", "line 2: schedule: retries: -1 is negative"},
		{"output: {label: loaded, drop: {}}\nschedule: {rows_out: load}\n", `rows_out: no component is labelled "load"`},
		{"output: {label: loaded, drop: {}}\nschedule: {rows_out: [loaded, lodaed]}\n", `rows_out: no component is labelled "lodaed"`},
		{"output: {label: loaded, drop: {}}\nschedule: {rows_out: {label: loaded}}\n", "want an output's label or a list of them"},
	} {
		if _, _, err := SplitSchedule([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
	if s, _, err := SplitSchedule([]byte("output: {switch: {cases: [{output: {label: rejects, drop: {}}}]}}\nschedule: {rows_rejected: rejects}\n")); err != nil || !slices.Equal(s.RowsRejected, []string{"rejects"}) {
		t.Errorf("rows_rejected naming a nested output: %+v, %v", s, err)
	}
	if s, _, err := SplitSchedule([]byte("output: {broker: {outputs: [{label: a, drop: {}}, {label: b, drop: {}}]}}\nschedule: {rows_out: [a, b]}\n")); err != nil || !slices.Equal(s.RowsOut, []string{"a", "b"}) {
		t.Errorf("rows_out naming two outputs: %+v, %v", s, err)
	}
	if s, rest, err := SplitSchedule([]byte("input: {}\n")); s != nil || string(rest) != "input: {}\n" || err != nil {
		t.Errorf("no schedule: %v %q %v", s, rest, err)
	}
}

// TestScheduledRunsRepeat: a pipeline on an interval runs again after each
// run finishes, each run to the end of its input.
func TestScheduledRunsRepeat(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.txt")
	p := Pipeline{Name: "hourly", Source: "test", Schedule: &Schedule{Every: time.Millisecond, Backoff: time.Millisecond, Timeout: time.Minute},
		YAML: []byte("input:\n  generate: {count: 2, interval: '', mapping: 'root = \"row\"'}\noutput:\n  file: {path: " + out + ", codec: lines}\n")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var runs []RunOutcome
	report := Run(ctx, []Pipeline{p}, Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger(), OnRun: func(o RunOutcome) {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, o)
		if len(runs) == 3 {
			cancel()
		}
	}})
	if err := report.Err(); err != nil {
		t.Fatal(err)
	}
	for i, o := range runs {
		if o.Err != nil || o.Attempt != 1 {
			t.Errorf("run %d: %+v", i+1, o)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "row\n"); len(runs) != 3 || n != 6 {
		t.Errorf("%d runs wrote %d rows, want 3 runs of 2", len(runs), n)
	}
}

// TestFailedRunRetried: a run that cannot finish (its input keeps failing)
// is stopped at its timeout and retried; once the retries are spent a
// run-once pipeline fails with the reason.
func TestFailedRunRetried(t *testing.T) {
	p := Pipeline{Name: "broken", Source: "test", Schedule: &Schedule{Retries: 2, Backoff: time.Millisecond, Timeout: 300 * time.Millisecond},
		YAML: []byte("input:\n  generate: {count: 1, interval: '', mapping: 'root = throw(\"source down\")'}\noutput:\n  drop: {}\n")}
	var runs []RunOutcome
	report := Run(context.Background(), []Pipeline{p}, Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger(), ShutdownTimeout: time.Second,
		OnRun: func(o RunOutcome) { runs = append(runs, o) }})
	err := report.Err()
	if err == nil || !strings.Contains(err.Error(), "did not finish within its timeout") {
		t.Fatalf("report: %v, want the run's timeout", err)
	}
	if len(runs) != 3 || runs[2].Attempt != 3 || runs[2].Err == nil {
		t.Errorf("runs %+v, want 3 failed attempts", runs)
	}
}

// TestScheduledLintErrorNotRetried: a scheduled pipeline whose config the
// linter refuses fails once, at once, rather than after its retries.
func TestScheduledLintErrorNotRetried(t *testing.T) {
	p := Pipeline{Name: "broken", Source: "broken.yaml", Schedule: &Schedule{Retries: 3, Backoff: time.Hour, Timeout: time.Minute},
		YAML: []byte("input:\n  generate: {count: 1, mapping: 'root = 1'}\noutput:\n  no_such_output: {}\n")}
	var runs []RunOutcome
	done := make(chan Report, 1)
	go func() {
		done <- Run(context.Background(), []Pipeline{p}, Options{Env: service.NewEnvironment(), Logger: (&logTap{}).logger(), OnRun: func(o RunOutcome) { runs = append(runs, o) }})
	}()
	select {
	case report := <-done:
		err := report.Err()
		if err == nil || !strings.Contains(err.Error(), "broken.yaml:4") {
			t.Errorf("report error %v, want the lint error with its line", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run waited for a retry (backoff 1h) of a config that cannot lint")
	}
	if len(runs) != 1 {
		t.Errorf("%d attempts, want 1", len(runs))
	}
}

// TestCronTimes: a cron schedule's next run is in UTC, as Airflow's
// default is, unless the expression names a zone (CRON_TZ=), which then
// follows that zone's clock across its daylight-saving change.
func TestCronTimes(t *testing.T) {
	for _, tc := range []struct{ cron, after, want string }{
		{"0 * * * *", "2026-11-29T10:15:00Z", "2026-11-29T11:00:00Z"},
		{"0 9 * * *", "2026-11-29T10:15:00Z", "2026-11-30T09:00:00Z"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "2026-11-29T10:15:00Z", "2026-11-30T08:00:00Z"},     // CET, UTC+1
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "2026-03-29T10:15:00Z", "2026-03-30T07:00:00Z"},     // CEST from 29 March
		{"CRON_TZ=America/New_York 30 2 * * *", "2026-01-10T00:00:00Z", "2026-01-10T07:30:00Z"}, // EST, UTC-5
	} {
		s, _, err := SplitSchedule([]byte("schedule: {cron: '" + tc.cron + "'}\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.cron, err)
		}
		after, _ := time.Parse(time.RFC3339, tc.after)
		next, ok := s.next(after)
		if want, _ := time.Parse(time.RFC3339, tc.want); !ok || !next.Equal(want) {
			t.Errorf("%s after %s: next run %s, want %s", tc.cron, tc.after, next.UTC().Format(time.RFC3339), tc.want)
		}
	}
	if _, _, err := SplitSchedule([]byte("schedule: {cron: 'CRON_TZ=Mars/Olympus 0 9 * * *'}\n")); err == nil || !strings.Contains(err.Error(), "Mars/Olympus") {
		t.Errorf("an unknown zone: %v, want an error naming it", err)
	}
}
