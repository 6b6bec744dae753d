package expect

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
)

// closed is a window report and the record it was produced at: for a
// time window the record that closed it (the next window's first), for a
// count window the window's last record.
type closed struct {
	at     int
	raw    string
	report map[string]any
}

// runWindows feeds records to a windowed suite in batches of batch, the
// way the plugin does (WindowSegment, Evaluate, Finish, and at a close
// Report then Begin), and returns the reports of the windows that closed.
func runWindows(t testing.TB, s *Suite, records []string, batch int) ([]closed, []Outcome) {
	t.Helper()
	v := s.NewValidator()
	v.Begin()
	var out []closed
	var outcomes []Outcome
	for b := 0; b < len(records); b += batch {
		end := min(b+batch, len(records))
		rows := make([]Row, 0, end-b)
		for _, rec := range records[b:end] {
			rows = append(rows, *rowFor(t, s, rec))
		}
		for start := 0; start < len(rows); {
			n, closes := v.WindowSegment(v.columnsOf(rows[start:]), len(rows)-start)
			seg := rows[start : start+n]
			v.Evaluate(seg)
			for j := range seg {
				var out Outcome
				v.Finish(j, &seg[j], &out)
				outcomes = append(outcomes, out)
			}
			start += n
			if closes {
				raw := string(v.Report().AppendJSON(nil))
				var m map[string]any
				if err := json.Unmarshal([]byte(raw), &m); err != nil {
					t.Fatalf("report is not JSON: %v\n%s", err, raw)
				}
				at := b + start // the record that closed it
				if s.Window.Count > 0 {
					at-- // the window's last record
				}
				out = append(out, closed{at, raw, m})
				v.Begin()
			}
		}
	}
	return out, outcomes
}

func result(t testing.TB, r map[string]any, i int) (success bool, observed any, res map[string]any) {
	t.Helper()
	results := r["results"].([]any)
	e := results[i].(map[string]any)
	res = e["result"].(map[string]any)
	return e["success"].(bool), res["observed_value"], res
}

// TestAggregates: each window-level expectation on a passing and a failing
// window, with the observed value GX would report.
func TestAggregates(t *testing.T) {
	nums := func(vs ...string) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = `{"x":` + v + `,"id":` + fmt.Sprint(i) + `}`
		}
		return out
	}
	// x: 1 2 3 4 null "a" 10 -> numbers 1,2,3,4,10
	mixed := nums("1", "2", "3", "4", "null", `"a"`, "10")
	stdev := math.Sqrt((9 + 4 + 1 + 0 + 36) / 4.0) // mean 4
	cases := []struct {
		exp      string
		records  []string
		observed any // float64, or nil for null
		success  bool
	}{
		{`expect_table_row_count_to_be_between: {min_value: 7, max_value: 7}`, mixed, 7.0, true},
		{`expect_table_row_count_to_be_between: {min_value: 8}`, mixed, 7.0, false},
		{`expect_table_row_count_to_be_between: {max_value: 7, strict_max: true}`, mixed, 7.0, false},
		{`expect_column_mean_to_be_between: {column: x, min_value: 4, max_value: 4}`, mixed, 4.0, true},
		{`expect_column_mean_to_be_between: {column: x, min_value: 4, strict_min: true}`, mixed, 4.0, false},
		{`expect_column_mean_to_be_between: {column: x, min_value: 0}`, nums("null", "null"), nil, false},
		{`expect_column_min_to_be_between: {column: x, min_value: 1, max_value: 2}`, mixed, 1.0, true},
		{`expect_column_min_to_be_between: {column: x, min_value: 2}`, mixed, 1.0, false},
		{`expect_column_max_to_be_between: {column: x, max_value: 10}`, mixed, 10.0, true},
		{`expect_column_max_to_be_between: {column: x, max_value: 9.5}`, mixed, 10.0, false},
		{`expect_column_stdev_to_be_between: {column: x, min_value: 3.5, max_value: 3.6}`, mixed, stdev, true},
		{`expect_column_stdev_to_be_between: {column: x, max_value: 3}`, mixed, stdev, false},
		{`expect_column_stdev_to_be_between: {column: x, max_value: 3}`, nums("5"), nil, false}, // one value: no sample stdev
		// 1 2 2 3 3 3 4 4 4 4: GX's own example, 4 unique of 10
		{`expect_column_proportion_of_unique_values_to_be_between: {column: x, min_value: 0.4, max_value: 0.4}`,
			nums("1", "2", "2", "3", "3", "3", "4", "4", "4", "4", "null"), 0.4, true},
		{`expect_column_proportion_of_unique_values_to_be_between: {column: x, min_value: 0.5}`,
			nums("1", "2", "2", "3", "3", "3", "4", "4", "4", "4"), 0.4, false},
		{`expect_column_proportion_of_unique_values_to_be_between: {column: x, min_value: 1}`, // 7 and 7.0 are one value
			nums("7", "7.0", `"7"`), 2.0 / 3, false},
		{`expect_column_proportion_of_non_null_values_to_be_between: {column: x, min_value: 0.8}`,
			append(nums("1", "2", "3", "null"), `{"id":9}`), 0.6, false},
		{`expect_column_proportion_of_non_null_values_to_be_between: {column: x, min_value: 0.5, max_value: 1}`,
			append(nums("1", "2", "3", "null"), `{"id":9}`), 0.6, true},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		t.Run(c.exp, func(t *testing.T) {
			s := mustParse(t, fmt.Sprintf("window: {count: %d}\nexpectations:\n  - %s\n", len(c.records), c.exp))
			for _, batch := range []int{1, 3, len(c.records)} {
				reports, outcomes := runWindows(t, s, c.records, batch)
				if len(reports) != 1 {
					t.Fatalf("batch %d: %d windows closed, want 1", batch, len(reports))
				}
				success, observed, res := result(t, reports[0].report, 0)
				if success != c.success {
					t.Errorf("batch %d: success %v, want %v: %s", batch, success, c.success, reports[0].raw)
				}
				if f, ok := observed.(float64); c.observed == nil && observed != nil ||
					c.observed != nil && (!ok || math.Abs(f-c.observed.(float64)) > 1e-12) {
					t.Errorf("batch %d: observed_value %v, want %v", batch, observed, c.observed)
				}
				if len(res) != 1 {
					t.Errorf("result %v: GX's aggregate result holds observed_value only", res)
				}
				for i, o := range outcomes {
					if !o.Valid || o.Action != Keep || o.Violations != 0 {
						t.Errorf("record %d: %+v: a window-level expectation never fails a record", i, o)
					}
				}
			}
			covered[s.exps[0].name] = true
		})
	}
	for name := range aggSpecs {
		if !covered[name] {
			t.Errorf("%s: no test case", name)
		}
	}
}

// TestStdevTwoPass: the one-pass (Welford) sample stdev equals the
// textbook two-pass one, on values with a large offset where the naive
// sum-of-squares formula loses digits.
func TestStdevTwoPass(t *testing.T) {
	var vals []float64
	var records []string
	x := uint64(12345)
	for i := 0; i < 5000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		f := 1e9 + float64(x>>40)/1e3
		vals = append(vals, f)
		records = append(records, fmt.Sprintf(`{"x":%s}`, appendFloat(nil, f)))
	}
	var sum float64
	for _, f := range vals {
		sum += f
	}
	mean := sum / float64(len(vals))
	var ss float64
	for _, f := range vals {
		ss += (f - mean) * (f - mean)
	}
	want := math.Sqrt(ss / float64(len(vals)-1))
	s := mustParse(t, `
window: {count: 5000}
expectations:
  - expect_column_stdev_to_be_between: {column: x, min_value: 0}
  - expect_column_mean_to_be_between: {column: x, min_value: 0}
`)
	reports, _ := runWindows(t, s, records, 700)
	_, got, _ := result(t, reports[0].report, 0)
	_, gotMean, _ := result(t, reports[0].report, 1)
	if math.Abs(got.(float64)-want)/want > 1e-9 {
		t.Errorf("stdev %v, two-pass %v", got, want)
	}
	if math.Abs(gotMean.(float64)-mean)/mean > 1e-12 {
		t.Errorf("mean %v, want %v", gotMean, mean)
	}
}

// TestCountWindows: a count window closes at its N-th record, whatever
// the batches, and starts afresh.
func TestCountWindows(t *testing.T) {
	s := mustParse(t, `
suite: w
window: {count: 3}
expectations:
  - expect_table_row_count_to_be_between: {min_value: 3, max_value: 3}
  - expect_column_max_to_be_between: {column: x, max_value: 100}
`)
	var records []string
	for i := 0; i < 8; i++ {
		records = append(records, fmt.Sprintf(`{"x":%d}`, i*10))
	}
	for _, batch := range []int{1, 2, 3, 5, 8} {
		reports, _ := runWindows(t, s, records, batch)
		var got []string
		for _, r := range reports {
			w := r.report["window"].(map[string]any)
			_, max, _ := result(t, r.report, 1)
			got = append(got, fmt.Sprintf("at %d rows %v first %v last %v max %v", r.at, w["rows"], w["first_row"], w["last_row"], max))
		}
		want := []string{"at 2 rows 3 first 0 last 2 max 20", "at 5 rows 3 first 3 last 5 max 50"}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("batch %d: %q, want %q", batch, got, want)
		}
	}
}

// TestTimeWindows: an event-time window closes at the first record whose
// time reaches the next boundary; late and timeless records count in the
// current window; windows without records are skipped.
func TestTimeWindows(t *testing.T) {
	s := mustParse(t, `
suite: hourly
window: {duration: 1h, time_column: ts}
expectations:
  - expect_table_row_count_to_be_between: {min_value: 1}
  - expect_column_mean_to_be_between: {column: x, min_value: 0}
`)
	records := []string{
		`{"ts":"2025-01-01T00:10:00Z","x":1}`,
		`{"x":2}`,                                   // no time: current window
		`{"ts":"2025-01-01T00:59:59.999Z","x":3}`,   // still the first hour
		`{"ts":"2025-01-01T01:00:00Z","x":10}`,      // closes 00:00-01:00 (record 3)
		`{"ts":"2025-01-01T00:30:00Z","x":20}`,      // late: counted in 01:00-02:00
		`{"ts":1735700400,"x":30}`,                  // 03:00 as epoch seconds: closes 01:00-02:00 (record 5)
		`{"ts":"2025-01-01T03:20:00+01:00","x":40}`, // 02:20Z: late again
		`{"ts":"2025-01-01T04:00:00Z","x":50}`,      // closes 03:00-04:00 (record 7)
	}
	for _, batch := range []int{1, 2, 3, 8} {
		reports, _ := runWindows(t, s, records, batch)
		var got []string
		for _, r := range reports {
			w := r.report["window"].(map[string]any)
			_, mean, _ := result(t, r.report, 1)
			got = append(got, fmt.Sprintf("at %d %v..%v rows %v first %v mean %v", r.at, w["start"], w["end"], w["rows"], w["first_row"], mean))
		}
		want := []string{
			"at 3 2025-01-01T00:00:00Z..2025-01-01T01:00:00Z rows 3 first 0 mean 2",
			"at 5 2025-01-01T01:00:00Z..2025-01-01T02:00:00Z rows 2 first 3 mean 15",
			"at 7 2025-01-01T03:00:00Z..2025-01-01T04:00:00Z rows 2 first 5 mean 35",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("batch %d:\n%s\nwant\n%s", batch, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestWindowScores: both data quality scores of a window, and GX's field
// names, with row-level expectations counted over the whole window.
func TestWindowScores(t *testing.T) {
	s := mustParse(t, `
suite: scores
on_failure: flag
window: {count: 10}
expectations:
  - expect_column_values_to_not_be_null: {column: x}
  - expect_column_values_to_be_between: {column: x, min_value: 0, max_value: 5, mostly: 0.5}
  - expect_column_mean_to_be_between: {column: x, max_value: 1}
  - expect_table_row_count_to_be_between: {min_value: 10}
`)
	var records []string
	for i := 0; i < 10; i++ {
		switch {
		case i < 2:
			records = append(records, `{"y":1}`) // breaks not_be_null: invalid
		case i < 5:
			records = append(records, fmt.Sprintf(`{"x":%d}`, 100+i)) // out of range, mostly: still valid
		default:
			records = append(records, `{"x":1}`)
		}
	}
	reports, _ := runWindows(t, s, records, 4)
	if len(reports) != 1 {
		t.Fatalf("%d reports", len(reports))
	}
	r := reports[0].report
	// valid: 8 of 10; expectations: not_null fails, between passes (5 of 8 in range >= 0.5),
	// mean (5*1+102+103+104)/8 fails, row count passes: 2 of 4.
	if r["data_quality_score"] != 80.0 || r["expectations_score"] != 50.0 || r["rows"] != 10.0 || r["valid_rows"] != 8.0 || r["success"] != false {
		t.Errorf("scores: %s", reports[0].raw)
	}
	stats := r["statistics"].(map[string]any)
	if fmt.Sprint(stats["evaluated_expectations"], stats["successful_expectations"], stats["unsuccessful_expectations"], stats["success_percent"]) != "4 2 2 50" {
		t.Errorf("statistics %v", stats)
	}
	_, _, between := result(t, r, 1)
	var keys []string
	for k := range between {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := "element_count missing_count missing_percent partial_unexpected_index_list partial_unexpected_list unexpected_count unexpected_percent unexpected_percent_nonmissing unexpected_percent_total"
	if strings.Join(keys, " ") != want {
		t.Errorf("result fields %s", keys)
	}
	if fmt.Sprint(between["unexpected_count"], between["partial_unexpected_list"], between["partial_unexpected_index_list"]) != "3 [102 103 104] [2 3 4]" {
		t.Errorf("between over the window: %v", between)
	}
	if _, mean, _ := result(t, r, 2); math.Abs(mean.(float64)-314.0/8) > 1e-12 {
		t.Errorf("mean %v", mean)
	}
	for _, k := range []string{"suite", "window", "success", "statistics", "results", "rows", "valid_rows", "data_quality_score", "expectations_score"} {
		if _, ok := r[k]; !ok {
			t.Errorf("report has no %s", k)
		}
	}
}

// TestUniqueProportionCap: past 100000 distinct values a window stops
// counting new ones and says so.
func TestUniqueProportionCap(t *testing.T) {
	s := mustParse(t, `
window: {count: 100010}
expectations:
  - expect_column_proportion_of_unique_values_to_be_between: {column: x, min_value: 1}
`)
	v := s.NewValidator()
	v.Begin()
	rows := make([]Row, 100010)
	for i := range rows {
		rows[i] = Row{Values: []Value{{Kind: KindNumber, Text: []byte(fmt.Sprint(i % 100005))}}}
	}
	v.Evaluate(rows)
	r := v.Report()
	if res := r.Results[0]; !res.DistinctCapped || res.Observed != 100000.0/100010 || res.Success {
		t.Errorf("%+v", res)
	}
	if !strings.Contains(string(r.AppendJSON(nil)), `"details":{"distinct_values_capped_at":100000}`) {
		t.Error("no details")
	}
}

func TestWindowConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{"expectations:\n  - expect_column_mean_to_be_between: {column: x, min_value: 1}",
			"expectations[0].expect_column_mean_to_be_between: expect_column_mean_to_be_between is judged over a window"},
		{"window: {count: 0}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.count: want a positive number"},
		{"window: {count: 2.5}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.count: want a whole number"},
		{"window: {duration: soon, time_column: t}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.duration: want a positive duration"},
		{"window: {duration: 1h}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.duration: needs window.time_column"},
		{"window: {count: 5, time_column: t}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.time_column: only used with window.duration"},
		{"window: {count: 5, duration: 1h, time_column: t}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window: set count or duration, not both"},
		{"window: {}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window: set count"},
		{"window: {size: 5}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.size: unknown key"},
		{"window: {duration: 1h, time_column: 'a b'}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window.time_column: \"a b\" is not a field path"},
		{"report: batch\nwindow: {count: 5}\nexpectations: [{expect_column_values_to_not_be_null: {column: x}}]", "window: set, so a report is made per window"},
		{"window: {count: 5}\nexpectations:\n  - expect_column_values_to_not_be_null: {column: x}\n  - expect_column_values_to_not_be_null: {column: y}\n  - expect_column_values_to_not_be_null: {column: z}\n  - expect_column_values_to_not_be_null: {column: w}\n  - expect_column_stdev_to_be_between: {column: x, min_value: low}",
			"expectations[4].expect_column_stdev_to_be_between.min_value: want a number"},
		{"window: {count: 5}\nexpectations: [{expect_column_stdev_to_be_between: {column: x}}]", "expectations[0].expect_column_stdev_to_be_between: set min_value, max_value or both"},
		{"window: {count: 5}\nexpectations: [{expect_column_mean_to_be_between: {min_value: 1}}]", "expectations[0].expect_column_mean_to_be_between: missing column"},
		{"window: {count: 5}\nexpectations: [{expect_column_mean_to_be_between: {column: x, min_value: 1, mostly: 0.5}}]", "expectations[0].expect_column_mean_to_be_between.mostly: unknown argument"},
		{"window: {count: 5}\nexpectations: [{expect_column_proportion_of_unique_values_to_be_between: {column: x, min_value: 2}}]",
			"expectations[0].expect_column_proportion_of_unique_values_to_be_between.min_value: want a proportion from 0 to 1"},
		{"window: {count: 5}\nexpectations: [{expect_table_row_count_to_be_between: {min_value: 5, max_value: 2}}]", "expectations[0].expect_table_row_count_to_be_between.max_value: 2 is below min_value 5"},
	}
	for _, c := range cases {
		_, err := Parse(yamlJSON(t, c.conf))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s\n got %v\nwant %s...", c.conf, err, c.want)
		}
	}
	// GX's JSON form loads too.
	s := mustParse(t, `
window: {count: 2}
expectations:
  - {expectation_type: expect_column_stdev_to_be_between, kwargs: {column: x, min_value: null, max_value: 3, strict_max: true}, meta: {}}
`)
	if !s.Windowed() || s.Reports() || len(s.aggs) != 1 {
		t.Errorf("windowed %v reports %v aggs %d", s.Windowed(), s.Reports(), len(s.aggs))
	}
}

// windowRows are valid events for the windowed benchmark suite.
func windowRows(tb testing.TB, s *Suite) []Row {
	rows := make([]Row, 1024)
	for i := range rows {
		rows[i] = *rowFor(tb, s, fmt.Sprintf(`{"user_id":%d,"amount":%d.5,"ts":"2025-01-01T%02d:%02d:00Z"}`, i%300, i%200, i/60%24, i%60))
	}
	return rows
}

const windowSuite = `
suite: windowed
window: {count: 500}
expectations:
  - expect_column_values_to_not_be_null: {column: user_id}
  - expect_table_row_count_to_be_between: {min_value: 1}
  - expect_column_mean_to_be_between: {column: amount, min_value: 0, max_value: 1000}
  - expect_column_min_to_be_between: {column: amount, min_value: 0}
  - expect_column_max_to_be_between: {column: amount, max_value: 1000}
  - expect_column_stdev_to_be_between: {column: amount, max_value: 1000}
  - expect_column_proportion_of_unique_values_to_be_between: {column: user_id, min_value: 0.1}
  - expect_column_proportion_of_non_null_values_to_be_between: {column: ts, min_value: 0.99}
`

// windowPass runs one 1024-row batch through a count window of 500, as
// the plugin does, rendering each closed window's report.
func windowPass(v *Validator, rows []Row, text *[]byte) {
	for start := 0; start < len(rows); {
		n, closes := v.WindowSegment(v.columnsOf(rows[start:]), len(rows)-start)
		seg := rows[start : start+n]
		v.Evaluate(seg)
		for j := range seg {
			v.Finish(j, &seg[j], new(Outcome))
		}
		start += n
		if closes {
			*text = v.Report().AppendJSON((*text)[:0])
			v.Begin()
		}
	}
}

// TestWindowedRowsDoNotAllocate: valid rows through a windowed suite with
// every aggregate, windows closing and their reports rendered, allocate
// nothing once the buffers have grown.
func TestWindowedRowsDoNotAllocate(t *testing.T) {
	s := mustParse(t, windowSuite)
	v := s.NewValidator()
	v.Begin()
	rows := windowRows(t, s)
	var text []byte
	windowPass(v, rows, &text)
	windowPass(v, rows, &text)
	if allocs := allocsPerRun(20, func() { windowPass(v, rows, &text) }); allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
}

// BenchmarkWindowRow is the per-row cost of a windowed suite: one
// row-level and seven window-level expectations, in 1024-row batches
// through count windows of 500 (reports rendered at each close).
func BenchmarkWindowRow(b *testing.B) {
	s := mustParse(b, windowSuite)
	v := s.NewValidator()
	v.Begin()
	rows := windowRows(b, s)
	var text []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		windowPass(v, rows, &text)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}
