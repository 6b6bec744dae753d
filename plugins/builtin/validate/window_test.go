//go:build !wasip1

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
)

// windowReport is the part of a window report the tests read.
type windowReport struct {
	Suite  string `json:"suite"`
	Window struct {
		Start    string `json:"start"`
		End      string `json:"end"`
		FirstRow int    `json:"first_row"`
		LastRow  int    `json:"last_row"`
		Rows     int    `json:"rows"`
	} `json:"window"`
	Success    bool `json:"success"`
	Statistics struct {
		Evaluated  int     `json:"evaluated_expectations"`
		Successful int     `json:"successful_expectations"`
		Percent    float64 `json:"success_percent"`
	} `json:"statistics"`
	Results []struct {
		Config struct {
			Type string `json:"expectation_type"`
		} `json:"expectation_config"`
		Success bool           `json:"success"`
		Result  map[string]any `json:"result"`
	} `json:"results"`
	Rows        int     `json:"rows"`
	ValidRows   int     `json:"valid_rows"`
	DQS         float64 `json:"data_quality_score"`
	ExpectScore float64 `json:"expectations_score"`
}

// windowReports returns the reports carried by out, by global record
// index (offset is the index of out[0] in the stream).
func windowReports(t *testing.T, out []*service.Message, offset int, into map[int]windowReport) {
	t.Helper()
	for i, m := range out {
		raw := meta(m, "sluice_quality_report")
		if raw == "" {
			continue
		}
		var r windowReport
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("record %d: report is not JSON: %v\n%s", offset+i, err, raw)
		}
		into[offset+i] = r
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// stats is the independent computation the reports are checked against.
func stats(xs []float64) (mean, lo, hi, sd float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		mean += x
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sd += (x - mean) * (x - mean)
	}
	return mean, lo, hi, math.Sqrt(sd / float64(len(xs)-1))
}

// TestCountWindow: windows of 4 records over batches of 3; each report is
// on the window's last record, with its statistics computed here
// independently; records are never failed by window-level expectations.
func TestCountWindow(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), inline(`
suite: counted
on_failure: flag
window: {count: 4}
expectations:
  - expect_column_values_to_be_between: {column: x, min_value: 0, max_value: 100}
  - expect_table_row_count_to_be_between: {min_value: 4, max_value: 4}
  - expect_column_mean_to_be_between: {column: x, min_value: 0, max_value: 50}
  - expect_column_min_to_be_between: {column: x, min_value: 0}
  - expect_column_max_to_be_between: {column: x, max_value: 100}
  - expect_column_stdev_to_be_between: {column: x, max_value: 40}
  - expect_column_proportion_of_unique_values_to_be_between: {column: u, min_value: 0.75}
  - expect_column_proportion_of_non_null_values_to_be_between: {column: u, min_value: 1}
`))
	xs := []float64{1, 5, 9, 20, 3, 300, 7, 7, 50, 60, 70, 80}
	us := []string{`"a"`, `"b"`, `"c"`, `"d"`, `"a"`, `"a"`, `null`, `"b"`, `1`, `1.0`, `"1"`, `2`}
	reports := map[int]windowReport{}
	for b := 0; b < len(xs); b += 3 {
		var recs []string
		for i := b; i < b+3; i++ {
			recs = append(recs, fmt.Sprintf(`{"x":%v,"u":%s}`, xs[i], us[i]))
		}
		out := process(t, p, bodies(recs...)...)
		if len(out) != 3 {
			t.Fatalf("%d records out", len(out))
		}
		windowReports(t, out, b, reports)
	}
	if len(reports) != 3 {
		t.Fatalf("reports on records %v, want 3, 7, 11", reports)
	}
	// unique proportions and non-null proportions of u per window, by hand
	uniq := []float64{1, 2.0 / 3, 3.0 / 4}
	nonNull := []float64{1, 0.75, 1}
	for w := 0; w < 3; w++ {
		r, ok := reports[4*w+3]
		if !ok {
			t.Fatalf("window %d: no report on record %d: %v", w, 4*w+3, reports)
		}
		win := xs[4*w : 4*w+4]
		mean, lo, hi, sd := stats(win)
		valid, inRange := 0, 0
		for _, x := range win {
			if x <= 100 {
				valid++
				inRange++
			}
		}
		want := []float64{math.NaN(), 4, mean, lo, hi, sd, uniq[w], nonNull[w]}
		passed := 0
		for i, res := range r.Results {
			if i == 0 {
				if int(res.Result["unexpected_count"].(float64)) != 4-inRange {
					t.Errorf("window %d: between %v", w, res.Result)
				}
			} else if got, ok := res.Result["observed_value"].(float64); !ok || !near(got, want[i]) {
				t.Errorf("window %d: %s observed %v, want %v", w, res.Config.Type, res.Result["observed_value"], want[i])
			}
			if res.Success {
				passed++
			}
		}
		if r.Window.FirstRow != 4*w || r.Window.LastRow != 4*w+3 || r.Window.Rows != 4 || r.Rows != 4 || r.ValidRows != valid {
			t.Errorf("window %d: %+v rows %d valid %d", w, r.Window, r.Rows, r.ValidRows)
		}
		if !near(r.DQS, float64(valid)/4*100) || !near(r.ExpectScore, float64(passed)/8*100) || r.Statistics.Evaluated != 8 || r.Statistics.Successful != passed {
			t.Errorf("window %d: dqs %v expectations_score %v stats %+v", w, r.DQS, r.ExpectScore, r.Statistics)
		}
	}
	// Window 1 (3, 300, 7, 7): only the row count and min hold.
	if r := reports[7]; r.Success || r.Statistics.Successful != 2 {
		t.Errorf("window 1: %+v", r)
	}
}

// TestTimeWindow: hourly event-time windows; the report rides on the
// record that closed the window (the next window's first), or the next
// one kept when that record is dropped.
func TestTimeWindow(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), inline(`
suite: hourly
on_failure: drop
window: {duration: 1h, time_column: ts}
expectations:
  - expect_column_values_to_not_be_null: {column: x}
  - expect_column_mean_to_be_between: {column: x, min_value: 0, max_value: 10}
  - expect_table_row_count_to_be_between: {min_value: 3}
`))
	type rec struct {
		min int // minutes after midnight
		x   string
	}
	recs := []rec{{5, "1"}, {20, "2"}, {59, "null"}, {61, "null"}, {62, "40"}, {30, "50"}, {130, "7"}, {140, "8"}}
	// 00:05 00:20 00:59(dropped) | 01:01 (dropped, closes hour 0) 01:02 00:30(late) | 02:10 (closes hour 1) 02:20
	var kept []*service.Message
	var keptIdx []int
	for b := 0; b < len(recs); b += 2 {
		var bs []string
		for _, r := range recs[b : b+2] {
			bs = append(bs, fmt.Sprintf(`{"ts":"2025-03-01T%02d:%02d:00Z","x":%s}`, r.min/60, r.min%60, r.x))
		}
		out := process(t, p, bodies(bs...)...)
		for _, m := range out {
			var body struct {
				Ts string `json:"ts"`
			}
			_ = json.Unmarshal(mustBytes(t, m), &body)
			for i, r := range recs {
				if body.Ts == fmt.Sprintf("2025-03-01T%02d:%02d:00Z", r.min/60, r.min%60) {
					keptIdx = append(keptIdx, i)
				}
			}
			kept = append(kept, m)
		}
	}
	if fmt.Sprint(keptIdx) != "[0 1 4 5 6 7]" {
		t.Fatalf("kept %v", keptIdx)
	}
	reports := map[int]windowReport{}
	for i, m := range kept {
		windowReports(t, []*service.Message{m}, keptIdx[i], reports)
	}
	// Hour 0: records 0-2, closed by record 3, which is dropped: the report
	// goes on record 4. Hour 1: records 3-5, closed by record 6.
	h0, ok0 := reports[4]
	h1, ok1 := reports[6]
	if len(reports) != 2 || !ok0 || !ok1 {
		t.Fatalf("reports on %v, want records 4 and 6", reports)
	}
	check := func(name string, r windowReport, start string, rows, valid int, xs []float64, rowCountOK bool) {
		mean, _, _, _ := stats(xs)
		if r.Window.Start != "2025-03-01T"+start+":00:00Z" || r.Window.Rows != rows || r.ValidRows != valid {
			t.Errorf("%s: window %+v valid %d", name, r.Window, r.ValidRows)
		}
		if got := r.Results[1].Result["observed_value"].(float64); !near(got, mean) || r.Results[1].Success != (mean <= 10) {
			t.Errorf("%s: mean %v, want %v", name, got, mean)
		}
		if r.Results[2].Success != rowCountOK || r.Results[2].Result["observed_value"] != float64(rows) {
			t.Errorf("%s: row count %+v", name, r.Results[2])
		}
		if !near(r.DQS, float64(valid)/float64(rows)*100) {
			t.Errorf("%s: dqs %v", name, r.DQS)
		}
	}
	check("hour 0", h0, "00", 3, 2, []float64{1, 2}, true)
	check("hour 1", h1, "01", 3, 2, []float64{40, 50}, true)
	if h1.Window.End != "2025-03-01T02:00:00Z" || h1.Window.FirstRow != 3 || h1.Window.LastRow != 5 {
		t.Errorf("hour 1: %+v", h1.Window)
	}
}

// TestWindowReportPipeline runs the README's routing through a real
// stream: reports go to their own file, every record goes on.
func TestWindowReportPipeline(t *testing.T) {
	dir := t.TempDir()
	in, out, quality := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "quality.jsonl")
	var lines []string
	for i := 0; i < 10; i++ {
		lines = append(lines, fmt.Sprintf(`{"x":%d}`, i))
	}
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := service.NewEnvironment()
	if err := wasm.Register(env, newEngine(t, nil)); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	err := b.SetYAML(`
input:
  file: {paths: [` + in + `], scanner: {lines: {}}}
pipeline:
  threads: 1
  processors:
    - wasm:
        path: ` + plugin + `
        timeout: 60s
        config:
          suite: tens
          window: {count: 5}
          expectations:
            - expect_column_mean_to_be_between: {column: x, max_value: 5}
output:
  switch:
    cases:
      - check: meta("sluice_quality_report") != null
        continue: true
        output:
          file: {path: ` + quality + `, codec: lines}
          processors:
            - mapping: root = meta("sluice_quality_report").parse_json()
      - output:
          file: {path: ` + out + `, codec: lines}
logger: {level: off}
`)
	if err != nil {
		t.Fatal(err)
	}
	strm, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := strm.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if n := len(strings.Fields(string(got))); n != 10 {
		t.Errorf("%d records out, want 10", n)
	}
	q, _ := os.ReadFile(quality)
	reps := strings.Split(strings.TrimSpace(string(q)), "\n")
	if len(reps) != 2 {
		t.Fatalf("quality file:\n%s", q)
	}
	for i, line := range reps {
		var r windowReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		mean := float64(10*i+4) / 2 // 0..4 -> 2, 5..9 -> 7
		if r.Suite != "tens" || r.Window.FirstRow != 5*i || !near(r.Results[0].Result["observed_value"].(float64), mean) || r.Success != (i == 0) {
			t.Errorf("report %d: %s", i, line)
		}
	}
}

// TestWindowRefusesParallelCalls: a suite with a window counts across
// calls in one instance's memory, so the step refuses parallel_calls (each
// call on an instance of its own would see part of the rows) on any
// machine, 0 included; one call at a time, or a suite without a window,
// loads.
func TestWindowRefusesParallelCalls(t *testing.T) {
	windowed := inline(`
suite: counted
window: {count: 4}
expectations:
  - expect_table_row_count_to_be_between: {min_value: 4, max_value: 4}
`)
	plain := inline(`
suite: rows
expectations:
  - expect_column_values_to_not_be_null: {column: x}
`)
	eng := newEngine(t, nil)
	for _, tc := range []struct {
		name, conf string
		refused    bool
	}{
		{"window, 2 calls at once", windowed + "parallel_calls: 2\n", true},
		{"window, one per core", windowed + "parallel_calls: 0\n", true},
		{"window, one call at a time", windowed + "parallel_calls: 1\n", false},
		{"window, default", windowed, false},
		{"no window, 2 calls at once", plain + "parallel_calls: 2\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, eng, tc.conf, nil)
			switch {
			case tc.refused && err == nil:
				t.Fatal("loaded; want it refused")
			case tc.refused && !strings.Contains(err.Error(), "cannot run on separate instances: set parallel_calls: 1"):
				t.Fatalf("error %q does not say what to set", err)
			case !tc.refused && err != nil:
				t.Fatalf("refused: %v", err)
			}
		})
	}
}
