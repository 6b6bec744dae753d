//go:build !wasip1

// The tests compile the plugin and drive it through the agent's real wasm
// processor, as a pipeline would, with a real state store for uniqueness.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/expect"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/state"
)

var plugin string // the compiled validate.wasm

func TestMain(m *testing.M) {
	var remove func()
	var err error
	if plugin, remove, err = wasmbuild.ForTestMain("validate.wasm"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	remove()
	os.Exit(code)
}

const suites = "../../../pipelines/suites/"

func newEngine(t *testing.T, st *state.Store) *wasm.Engine {
	t.Helper()
	eng, err := wasm.NewEngine(wasm.EngineConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

func openStore(t *testing.T, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// logBuffer collects what the plugin logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// load builds a wasm processor running the plugin; conf is the rest of
// the processor's YAML (config, config_file, key, ...). The deadline is
// raised so that a busy test machine cannot fail a call; nothing here
// tests timing.
func load(t *testing.T, eng *wasm.Engine, conf string, logs *logBuffer) (*wasm.Processor, error) {
	t.Helper()
	pc, err := wasm.ConfigSpec().ParseYAML("path: "+plugin+"\ntimeout: 60s\n"+conf, nil)
	if err != nil {
		t.Fatalf("processor config: %v\n%s", err, conf)
	}
	logger := slog.New(slog.DiscardHandler)
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	p, err := wasm.NewProcessor(context.Background(), eng, pc, logger)
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return p, err
}

func mustLoad(t *testing.T, eng *wasm.Engine, conf string) *wasm.Processor {
	t.Helper()
	p, err := load(t, eng, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inline is a processor config with the suite in its config block.
func inline(suite string) string {
	return "config:\n  " + strings.ReplaceAll(strings.TrimSpace(suite), "\n", "\n  ") + "\n"
}

func process(t *testing.T, p *wasm.Processor, msgs ...*service.Message) []*service.Message {
	t.Helper()
	out, err := p.ProcessBatch(context.Background(), msgs)
	if err != nil {
		t.Fatalf("ProcessBatch: %v", err)
	}
	if len(out) == 0 {
		return nil
	}
	return out[0]
}

func bodies(records ...string) []*service.Message {
	msgs := make([]*service.Message, len(records))
	for i, r := range records {
		msgs[i] = service.NewMessage([]byte(r))
	}
	return msgs
}

func meta(m *service.Message, key string) string {
	v, _ := m.MetaGet(key)
	return v
}

type violation struct {
	Expectation string          `json:"expectation"`
	Column      string          `json:"column"`
	ColumnList  []string        `json:"column_list"`
	Observed    json.RawMessage `json:"observed_value"`
	Mostly      float64         `json:"mostly"`
	Error       string          `json:"error"`
}

func (v violation) title() string {
	switch {
	case v.Column != "":
		return v.Expectation + "(" + v.Column + ")"
	case v.ColumnList != nil:
		return v.Expectation + "(" + strings.Join(v.ColumnList, ",") + ")"
	}
	return v.Expectation
}

// broken lists what a message's sluice_validation says it broke, sorted.
func broken(t *testing.T, m *service.Message) []string {
	t.Helper()
	vs := violationsOf(t, m)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.title()
	}
	sort.Strings(out)
	return out
}

func violationsOf(t *testing.T, m *service.Message) []violation {
	t.Helper()
	raw := meta(m, "sluice_validation")
	if raw == "" {
		return nil
	}
	var vs []violation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		t.Fatalf("sluice_validation is not JSON: %v: %s", err, raw)
	}
	return vs
}

func sorted(s ...string) []string {
	sort.Strings(s)
	return s
}

// TestExpectationsInThePlugin runs a representative suite through the
// compiled plugin. Values of the wrong JSON type reach the plugin (the
// host does not fail them) and are reported as broken expectations with
// what the record held.
func TestExpectationsInThePlugin(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), inline(`
suite: events
on_failure: flag
expectations:
  - expect_table_columns_to_match_set: {column_set: [id, kind, score, at], exact_match: false}
  - expect_column_values_to_not_be_null: {column: id}
  - expect_column_values_to_be_of_type: {column: id, type_: int64}
  - expect_column_values_to_be_in_set: {column: kind, value_set: [a, b]}
  - expect_column_values_to_be_between: {column: score, min_value: 0, max_value: 1}
  - expect_column_values_to_match_regex: {column: at, regex: '\d{4}-\d{2}-\d{2}'}
  - expect_column_values_to_match_strftime_format: {column: at, strftime_format: '%Y-%m-%dT%H:%M:%S'}
  - expect_column_value_lengths_to_be_between: {column: kind, min_value: 1, max_value: 1}
  - expect_column_values_to_be_of_type: {column: meta.tags, type_: list}
  - expect_column_values_to_be_dateutil_parseable: {column: at}
`))
	cases := []struct {
		record string
		broken []string
	}{
		{`{"id":1,"kind":"a","score":0.5,"at":"2025-01-01T00:00:00","meta":{"tags":["x"]}}`, nil},
		{`{"id":"1","kind":"c","score":2,"at":"01/01/2025"}`, sorted(
			"expect_column_values_to_be_of_type(id)", "expect_column_values_to_be_in_set(kind)",
			"expect_column_values_to_be_between(score)", "expect_column_values_to_match_regex(at)",
			"expect_column_values_to_match_strftime_format(at)")},
		{`{"kind":"a","score":null,"at":"2025-01-01T00:00:00","meta":{"tags":"x"}}`, sorted(
			"expect_table_columns_to_match_set", "expect_column_values_to_not_be_null(id)", "expect_column_values_to_be_of_type(meta.tags)")},
		{`{"id":1.5,"kind":"ab","score":"0.5","at":5}`, sorted(
			"expect_column_values_to_be_of_type(id)", "expect_column_values_to_be_in_set(kind)", "expect_column_values_to_be_between(score)",
			"expect_column_values_to_match_regex(at)", "expect_column_values_to_match_strftime_format(at)",
			"expect_column_value_lengths_to_be_between(kind)", "expect_column_values_to_be_dateutil_parseable(at)")},
		{`[1,2]`, sorted("expect_table_columns_to_match_set", "expect_column_values_to_not_be_null(id)")},
	}
	var records []string
	for _, c := range cases {
		records = append(records, c.record)
	}
	out := process(t, p, bodies(records...)...)
	if len(out) != len(cases) {
		t.Fatalf("%d messages out of %d", len(out), len(cases))
	}
	for i, c := range cases {
		m := out[i]
		if m.GetError() != nil {
			t.Errorf("%s: flagged records pass, got error %v", c.record, m.GetError())
		}
		wantValid := fmt.Sprint(len(c.broken) == 0)
		if got := meta(m, "sluice_valid"); got != wantValid {
			t.Errorf("%s: sluice_valid %q, want %q", c.record, got, wantValid)
		}
		if got := broken(t, m); fmt.Sprint(got) != fmt.Sprint(c.broken) {
			t.Errorf("%s: broke\n  %v\nwant\n  %v", c.record, got, c.broken)
		}
	}
	// What was there, as it was there.
	observed := map[string]string{}
	for _, v := range violationsOf(t, out[3]) {
		observed[v.title()] = string(v.Observed)
	}
	for title, want := range map[string]string{
		"expect_column_values_to_be_of_type(id)":          `1.5`,
		"expect_column_values_to_be_between(score)":       `"0.5"`,
		"expect_column_values_to_match_regex(at)":         `5`,
		"expect_column_value_lengths_to_be_between(kind)": `"ab"`,
	} {
		if observed[title] != want {
			t.Errorf("%s observed %s, want %s", title, observed[title], want)
		}
	}
}

// TestOnFailure loads the shipped user_events suite from its file, with
// on_failure overridden inline, in each mode.
func TestOnFailure(t *testing.T) {
	eng := newEngine(t, nil)
	good := `{"user_id":1,"event_type":"click","event_data":{"page":"/p/1"},"timestamp":"2025-01-01T05:28:42.268"}`
	bad := `{ "user_id" : "x",  "event_type":"login", "event_data":{}, "timestamp":"2025-01-01T05:28:42Z" }`
	wantReason := `user_events: expect_column_values_to_be_of_type(user_id) observed "x"; ` +
		`expect_column_values_to_be_between(user_id) observed "x"; expect_column_values_to_be_in_set(event_type) observed "login"`
	for _, mode := range []string{"fail", "flag", "drop"} {
		t.Run(mode, func(t *testing.T) {
			p := mustLoad(t, eng, "config_file: "+suites+"user_events.yaml\nconfig: {on_failure: "+mode+"}\n")
			out := process(t, p, bodies(good, bad)...)
			if mode == "drop" {
				if len(out) != 1 || string(mustBytes(t, out[0])) != good {
					t.Fatalf("drop: %d messages out, want only the good one", len(out))
				}
				return
			}
			if len(out) != 2 {
				t.Fatalf("%d messages out, want 2", len(out))
			}
			if out[0].GetError() != nil || meta(out[0], "sluice_valid") != "true" || meta(out[0], "sluice_validation") != "" {
				t.Errorf("good record: error %v valid %q validation %q", out[0].GetError(), meta(out[0], "sluice_valid"), meta(out[0], "sluice_validation"))
			}
			m := out[1]
			if got := string(mustBytes(t, m)); got != bad {
				t.Errorf("the invalid record's bytes changed:\n got %s\nwant %s", got, bad)
			}
			if meta(m, "sluice_valid") != "false" || len(violationsOf(t, m)) != 3 {
				t.Errorf("bad record metadata: valid %q validation %s", meta(m, "sluice_valid"), meta(m, "sluice_validation"))
			}
			err := m.GetError()
			switch mode {
			case "fail":
				if err == nil || !strings.HasSuffix(err.Error(), ": "+wantReason) {
					t.Errorf("error %v\nwant it to end with %s", err, wantReason)
				}
			case "flag":
				if err != nil {
					t.Errorf("flag: the record must pass, got %v", err)
				}
			}
		})
	}
}

func mustBytes(t *testing.T, m *service.Message) []byte {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type gxReport struct {
	Suite      string `json:"suite"`
	Success    bool   `json:"success"`
	Statistics struct {
		Evaluated    int     `json:"evaluated_expectations"`
		Successful   int     `json:"successful_expectations"`
		Unsuccessful int     `json:"unsuccessful_expectations"`
		Percent      float64 `json:"success_percent"`
	} `json:"statistics"`
	Results []struct {
		Config struct {
			Type   string         `json:"expectation_type"`
			Kwargs map[string]any `json:"kwargs"`
		} `json:"expectation_config"`
		Success bool `json:"success"`
		Result  struct {
			ElementCount      int     `json:"element_count"`
			MissingCount      int     `json:"missing_count"`
			UnexpectedCount   int     `json:"unexpected_count"`
			UnexpectedPercent float64 `json:"unexpected_percent"`
			Partial           []any   `json:"partial_unexpected_list"`
			PartialIndex      []int   `json:"partial_unexpected_index_list"`
		} `json:"result"`
	} `json:"results"`
	Rows  int     `json:"rows"`
	Score float64 `json:"data_quality_score"`
}

// reportOf returns the batch report and the index of the message carrying
// it; it fails the test unless exactly one message carries one.
func reportOf(t *testing.T, out []*service.Message) (gxReport, int) {
	t.Helper()
	var r gxReport
	at := -1
	for i, m := range out {
		raw := meta(m, "sluice_quality_report")
		if raw == "" {
			continue
		}
		if at >= 0 {
			t.Fatalf("messages %d and %d both carry a report", at, i)
		}
		at = i
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("report is not JSON: %v\n%s", err, raw)
		}
	}
	if at < 0 {
		t.Fatal("no message carries sluice_quality_report")
	}
	return r, at
}

// TestMostly: 94% and 96% of a batch in range against mostly 0.95. No
// record fails for it; the batch report on the last record says whether
// the expectation held.
func TestMostly(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), inline(`
suite: sessions
expectations:
  - expect_column_values_to_be_between: {column: page_views, min_value: 0, max_value: 1000, mostly: 0.95}
  - expect_column_values_to_not_be_null: {column: user_id}
`))
	for _, good := range []int{94, 96} {
		t.Run(fmt.Sprint(good), func(t *testing.T) {
			var records []string
			for i := 0; i < 100; i++ {
				pv := i
				if i >= good {
					pv = 5000 + i
				}
				records = append(records, fmt.Sprintf(`{"user_id":%d,"page_views":%d}`, i, pv))
			}
			out := process(t, p, bodies(records...)...)
			for i, m := range out {
				if m.GetError() != nil || meta(m, "sluice_valid") != "true" {
					t.Fatalf("record %d: error %v valid %q: mostly never fails a record", i, m.GetError(), meta(m, "sluice_valid"))
				}
				if vs := violationsOf(t, m); (len(vs) == 1) != (i >= good) || len(vs) == 1 && vs[0].Mostly != 0.95 {
					t.Errorf("record %d: violations %s", i, meta(m, "sluice_validation"))
				}
			}
			r, at := reportOf(t, out)
			res := r.Results[0]
			if at != 99 || r.Suite != "sessions" || r.Rows != 100 || r.Score != 100 {
				t.Errorf("report on message %d: suite %q rows %d score %v", at, r.Suite, r.Rows, r.Score)
			}
			if res.Success != (good >= 95) || r.Success != (good >= 95) || res.Result.UnexpectedCount != 100-good ||
				res.Result.ElementCount != 100 || res.Result.UnexpectedPercent != float64(100-good) {
				t.Errorf("%d%% in range: %+v", good, res)
			}
			if len(res.Result.Partial) != 100-good || res.Result.PartialIndex[0] != good || res.Result.Partial[0] != float64(5000+good) {
				t.Errorf("partial list %v at %v", res.Result.Partial, res.Result.PartialIndex)
			}
			if res.Config.Type != "expect_column_values_to_be_between" || res.Config.Kwargs["mostly"] != 0.95 {
				t.Errorf("expectation_config %+v", res.Config)
			}
			wantStats := fmt.Sprint(2, 1+btoi(good >= 95), 1-btoi(good >= 95))
			if got := fmt.Sprint(r.Statistics.Evaluated, r.Statistics.Successful, r.Statistics.Unsuccessful); got != wantStats {
				t.Errorf("statistics %s, want %s", got, wantStats)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReportCapAndCarrier: the report lists at most 20 examples, and rides
// on the last record that is kept even when later ones are dropped.
func TestReportCapAndCarrier(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), inline(`
suite: s
on_failure: drop
report: batch
expectations:
  - expect_column_values_to_be_in_set: {column: k, value_set: [ok]}
`))
	var records []string
	for i := 0; i < 30; i++ {
		records = append(records, `{"k":"bad"}`)
	}
	records[3] = `{"k":"ok"}`
	out := process(t, p, bodies(records...)...)
	if len(out) != 1 {
		t.Fatalf("%d messages kept, want 1", len(out))
	}
	r, _ := reportOf(t, out)
	res := r.Results[0].Result
	if res.UnexpectedCount != 29 || len(res.Partial) != 20 || len(res.PartialIndex) != 20 || res.PartialIndex[3] != 4 || r.Results[0].Success {
		t.Errorf("report %+v", r.Results[0])
	}
	if want := 100.0 / 30; r.Score < want-1e-9 || r.Score > want+1e-9 {
		t.Errorf("data_quality_score %v, want %v", r.Score, want)
	}
}

func TestNoReportWithoutMostly(t *testing.T) {
	p := mustLoad(t, newEngine(t, nil), "config_file: "+suites+"user_events.yaml\n")
	for _, m := range process(t, p, bodies(`{"user_id":1}`, `{"user_id":2}`)...) {
		if meta(m, "sluice_quality_report") != "" {
			t.Error("a suite without mostly or report: batch attaches no report")
		}
	}
}

// userData is a record of the seed's user data, in its column order.
func userData(user, pv, sd any, ts string) string {
	return fmt.Sprintf(`{"user_id":%s,"page_views":%s,"session_duration":%s,"timestamp":%q}`, js(user), js(pv), js(sd), ts)
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const keyedUserData = "config_file: " + suites + "user_data.yaml\nkey: user_id\nstate: {namespace: user_data_unique}\n"

// TestUserDataSuite: the shipped user_data suite flags exactly the records
// the seed's validate_user_data checks would.
func TestUserDataSuite(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustLoad(t, newEngine(t, st), keyedUserData)
	const ts = "2025-01-01T00:00:00"
	cases := []struct {
		record string
		broken []string
		err    string // a host error instead
	}{
		{record: userData(1, 10, 300, ts)},
		{record: userData(2, 5000, 300, ts), broken: []string{"expect_column_values_to_be_between(page_views)"}},
		{record: userData(3, 10, 9000, ts), broken: []string{"expect_column_values_to_be_between(session_duration)"}},
		{record: userData(4, 10.5, 300, ts), broken: []string{"expect_column_values_to_be_of_type(page_views)"}},
		{record: userData(5, -1, -5, ts), broken: sorted("expect_column_values_to_be_between(page_views)", "expect_column_values_to_be_between(session_duration)")},
		{record: `{"user_id":6,"page_views":10,"session_duration":300,"timestamp":null}`, broken: []string{"expect_column_values_to_not_be_null(timestamp)"}},
		{record: `{"user_id":7,"session_duration":300,"page_views":10,"timestamp":"2025-01-01T00:00:00"}`, broken: []string{"expect_table_columns_to_match_ordered_list"}},
		{record: `{"user_id":8,"page_views":10,"session_duration":300,"timestamp":"2025-01-01T00:00:00","extra":1}`, broken: []string{"expect_table_columns_to_match_ordered_list"}},
		{record: userData(9, 10, 300, "Jan 1 2025"), broken: []string{"expect_column_values_to_match_regex(timestamp)"}},
		{record: userData("10", 10, 300, ts), broken: []string{"expect_column_values_to_be_of_type(user_id)"}},
		{record: userData(1, 20, 600, ts), broken: []string{"expect_compound_columns_to_be_unique(user_id,timestamp)"}},
		{record: userData(1, 20, 600, "2025-01-01T01:00:00")},
		// The step is keyed by user_id: a record without one cannot be
		// placed, and the host fails it before the suite sees it.
		{record: `{"page_views":10,"session_duration":300,"timestamp":"2025-01-01T00:00:00"}`, err: `key field "user_id" is missing`},
	}
	var records []string
	for _, c := range cases {
		records = append(records, c.record)
	}
	out := process(t, p, bodies(records...)...)
	for i, c := range cases {
		m := out[i]
		if c.err != "" {
			if m.GetError() == nil || !strings.Contains(m.GetError().Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.record, m.GetError(), c.err)
			}
			continue
		}
		if got := broken(t, m); fmt.Sprint(got) != fmt.Sprint(c.broken) {
			t.Errorf("%s: broke %v, want %v", c.record, got, c.broken)
		}
		if (m.GetError() != nil) != (len(c.broken) > 0) {
			t.Errorf("%s: error %v", c.record, m.GetError())
		}
	}
}

// TestUniquenessAcrossBatchesAndRestarts: what a key has seen is committed
// with each batch and survives closing the processor and the store.
func TestUniquenessAcrossBatchesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	p := mustLoad(t, newEngine(t, st), keyedUserData)
	dup := "expect_compound_columns_to_be_unique(user_id,timestamp)"
	check := func(p *wasm.Processor, want []bool, records ...string) {
		t.Helper()
		out := process(t, p, bodies(records...)...)
		for i, m := range out {
			isDup := fmt.Sprint(broken(t, m)) == fmt.Sprint([]string{dup})
			if isDup != want[i] || isDup != (m.GetError() != nil) {
				t.Errorf("%s: duplicate %v (error %v), want %v", records[i], isDup, m.GetError(), want[i])
			}
		}
	}
	check(p, []bool{false, false, false}, userData(1, 1, 1, "2025-01-01T00:00:00"), userData(2, 1, 1, "2025-01-01T00:00:00"), userData(1, 1, 1, "2025-01-01T01:00:00"))
	check(p, []bool{true, true, false}, userData(2, 9, 9, "2025-01-01T00:00:00"), userData(1, 9, 9, "2025-01-01T01:00:00"), userData(3, 1, 1, "2025-01-01T00:00:00"))
	_ = p.Close(context.Background())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	p = mustLoad(t, newEngine(t, st), keyedUserData)
	check(p, []bool{true, false}, userData(1, 1, 1, "2025-01-01T00:00:00"), userData(1, 1, 1, "2025-01-02T00:00:00"))
}

// TestUniquenessHorizon: values fall out of memory past the horizon's
// count, and past its duration in event time.
func TestUniquenessHorizon(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustLoad(t, newEngine(t, st), inline(`
suite: codes
horizon: {count: 2, duration: 24h, time_column: ts}
expectations:
  - expect_compound_columns_to_be_unique: {column_list: [user, code]}
`)+"key: user\nstate: {namespace: codes}\n")
	rec := func(code, ts string) string { return fmt.Sprintf(`{"user":"u","code":%q,"ts":%q}`, code, ts) }
	for i, step := range []struct {
		rec string
		dup bool
	}{
		{rec("A", "2025-01-01T00:00:00Z"), false},
		{rec("A", "2025-01-01T12:00:00Z"), true},  // within the day
		{rec("A", "2025-01-02T00:00:01Z"), false}, // a day and a second after the first A
		{rec("B", "2025-01-02T00:00:02Z"), false},
		{rec("C", "2025-01-02T00:00:03Z"), false}, // count 2: the second A is forgotten
		{rec("A", "2025-01-02T00:00:04Z"), false},
		{rec("C", "2025-01-02T00:00:05Z"), true},
	} {
		// One batch per record: expiry must hold across commits.
		out := process(t, p, bodies(step.rec)...)
		if got := out[0].GetError() != nil; got != step.dup {
			t.Errorf("step %d %s: duplicate %v, want %v (%v)", i, step.rec, got, step.dup, out[0].GetError())
		}
	}
}

// TestRedeliveryNotFlagged: a batch redelivered after a crash finds its own
// values in state; they are not duplicates of themselves.
func TestRedeliveryNotFlagged(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustLoad(t, newEngine(t, st), keyedUserData+`
offsets:
  source: test
  partition: "0"
  offset: '${! meta("seq") }'
`)
	batch := func(records ...string) []*service.Message {
		msgs := bodies(records...)
		for i, m := range msgs {
			m.MetaSetMut("seq", fmt.Sprint(i+1))
		}
		return msgs
	}
	first := []string{userData(1, 1, 1, "2025-01-01T00:00:00"), userData(1, 1, 1, "2025-01-01T01:00:00")}
	for _, m := range process(t, p, batch(first...)...) {
		if m.GetError() != nil {
			t.Fatalf("first delivery: %v", m.GetError())
		}
	}
	again := append(append([]string{}, first...), userData(1, 1, 1, "2025-01-01T00:00:00"))
	out := process(t, p, batch(again...)...)
	for i, want := range []bool{false, false, true} {
		if got := out[i].GetError() != nil; got != want {
			t.Errorf("redelivered batch, message %d: failed %v, want %v (%v)", i, got, want, out[i].GetError())
		}
	}
}

// TestKeyRule: keyed by a column the expectation does not hold, a record
// fails with the rule spelled out, and an unkeyed step does not load.
func TestKeyRule(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	eng := newEngine(t, st)
	p := mustLoad(t, eng, "config_file: "+suites+"user_data.yaml\nkey: page_views\nstate: {namespace: wrong_key}\n")
	out := process(t, p, bodies(userData(1, 10, 300, "2025-01-01T00:00:00"))...)
	err := out[0].GetError()
	for _, want := range []string{`the step's key "10" is not the value of user_id or timestamp`, "key: user_id"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}

	logs := &logBuffer{}
	_, err = load(t, eng, "config_file: "+suites+"user_data.yaml\n", logs)
	if err == nil || !strings.Contains(err.Error(), "keeps per-key state: configure key and state.namespace") {
		t.Errorf("unkeyed load: error %v", err)
	}
	if !strings.Contains(logs.String(), "suite user_data checks uniqueness") || !strings.Contains(logs.String(), "one of user_id, timestamp") {
		t.Errorf("the plugin's log does not say which key the step needs:\n%s", logs)
	}
	// A suite without uniqueness keeps no state and needs no key.
	if _, err := load(t, eng, "config_file: "+suites+"user_events.yaml\n", nil); err != nil {
		t.Errorf("user_events: %v", err)
	}
}

func TestProductDataSuite(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustLoad(t, newEngine(t, st), "config_file: "+suites+"product_data.yaml\nkey: product_id\nstate: {namespace: products}\n")
	prod := func(id any, cat string, price, rating any) string {
		return fmt.Sprintf(`{"product_id":%s,"category":%q,"price":%s,"rating":%s}`, js(id), cat, js(price), js(rating))
	}
	cases := []struct {
		record string
		broken []string
	}{
		{prod(1, "books", 12.5, 4.5), nil},
		{prod(2, "books", 10, 4), nil}, // an integral price is a float64 value too
		{prod(3, "toys", 12.5, 4.5), []string{"expect_column_values_to_be_in_set(category)"}},
		{prod(4, "home", 20000, 6), sorted("expect_column_values_to_be_between(price)", "expect_column_values_to_be_between(rating)")},
		{prod(5, "home", "12.5", 4), sorted("expect_column_values_to_be_of_type(price)", "expect_column_values_to_be_between(price)")},
		{prod(1, "books", 12.5, 4.5), []string{"expect_column_values_to_be_unique(product_id)"}},
		{`{"product_id":6,"price":1,"category":"home","rating":1}`, []string{"expect_table_columns_to_match_ordered_list"}},
	}
	var records []string
	for _, c := range cases {
		records = append(records, c.record)
	}
	out := process(t, p, bodies(records...)...)
	for i, c := range cases {
		if got := broken(t, out[i]); fmt.Sprint(got) != fmt.Sprint(c.broken) {
			t.Errorf("%s: broke %v, want %v", c.record, got, c.broken)
		}
	}
}

// TestConfigErrors: a bad suite refuses the load with the path of the
// mistake first, which lint maps to its line.
func TestConfigErrors(t *testing.T) {
	eng := newEngine(t, nil)
	for _, tc := range []struct{ name, conf, want string }{
		{"no config", "", "no suite configured"},
		{"unknown expectation", inline(`
expectations:
  - expect_column_values_to_not_be_null: {column: a}
  - expect_colum_to_exist: {column: a}`), `expectations[1]: unknown expectation "expect_colum_to_exist"`},
		{"bad bound", inline(`
expectations:
  - expect_column_values_to_be_between: {column: a, min_value: [1]}`),
			"expectations[0].expect_column_values_to_be_between.min_value: want a number, got [1]"},
		{"GX form", inline(`
expectations:
  - {expectation_type: expect_column_values_to_be_of_type, kwargs: {column: a, type_: int128}}`),
			`expectations[0].kwargs.type_: unknown type "int128"`},
		{"override", "config_file: " + suites + "user_events.yaml\nconfig: {on_failure: explode}\n", `on_failure: want fail, flag or drop, got "explode"`},
		{"regex", inline(`
expectations:
  - expect_column_values_to_match_regex: {column: a, regex: '(?!x)'}`), "expectations[0].expect_column_values_to_match_regex.regex: not a regular expression Go's regexp (RE2) accepts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, eng, tc.conf, nil)
			var pe *wasm.PluginError
			if !errors.As(err, &pe) || !strings.HasPrefix(pe.Msg, tc.want) {
				t.Fatalf("got %v\nwant a plugin error starting %q", err, tc.want)
			}
		})
	}
}

// TestShippedSuitesLoad parses the suite files from pipelines/suites and
// loads each in the plugin as its pipeline would.
func TestShippedSuitesLoad(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	eng := newEngine(t, st)
	for file, keyed := range map[string]string{
		"user_events.yaml":  "",
		"user_data.yaml":    "key: user_id\nstate: {namespace: a}\n",
		"product_data.yaml": "key: product_id\nstate: {namespace: b}\n",
	} {
		if _, err := load(t, eng, "config_file: "+suites+file+"\n"+keyed, nil); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// TestREADMEListsEveryExpectation keeps the docs and the code in step.
func TestREADMEListsEveryExpectation(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range expect.Names() {
		if !strings.Contains(string(b), "### "+name) {
			t.Errorf("README.md has no section for %s", name)
		}
	}
}

// BenchmarkUserEvents runs 1024-event batches of the seed's event shape
// through the plugin with the user_events suite, as a pipeline would, with
// the agent's default loop interrupts and without them (what a trusted
// plugin may run with). The figure is per event, host parsing and
// metadata included; "fail" events break 6 expectations each.
func BenchmarkUserEvents(b *testing.B) {
	types := []string{"page_view", "click", "add_to_cart", "purchase", "search"}
	for _, good := range []bool{true, false} {
		raw := make([][]byte, 1024)
		for i := range raw {
			if good {
				raw[i] = []byte(fmt.Sprintf(`{"user_id":%d,"event_type":%q,"event_data":{"page":"/products/%d"},"timestamp":"2025-01-01T05:28:42.268Z"}`, 1+i%100, types[i%5], i))
			} else {
				raw[i] = []byte(fmt.Sprintf(`{"user_id":"u%d","event_type":"login","event_data":[%d],"timestamp":"yesterday"}`, i, i))
			}
		}
		for _, interrupt := range []bool{true, false} {
			name := map[bool]string{true: "pass", false: "fail"}[good] + map[bool]string{true: "", false: "/nointerrupt"}[interrupt]
			b.Run(name, func(b *testing.B) {
				eng, err := wasm.NewEngine(wasm.EngineConfig{})
				if err != nil {
					b.Fatal(err)
				}
				defer eng.Close(context.Background())
				conf, err := wasm.ConfigSpec().ParseYAML(fmt.Sprintf("path: %s\ninterrupt_on_timeout: %v\nconfig_file: %suser_events.yaml\n", plugin, interrupt, suites), nil)
				if err != nil {
					b.Fatal(err)
				}
				p, err := wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				batch := make(service.MessageBatch, len(raw))
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					for i, r := range raw {
						batch[i] = service.NewMessage(r)
					}
					out, err := p.ProcessBatch(context.Background(), batch)
					if err != nil || len(out) != 1 || (out[0][0].GetError() == nil) != good {
						b.Fatalf("%v %d", err, len(out))
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raw)), "ns/event")
			})
		}
	}
}

// BenchmarkSalesFrame: the sales ETL's validate step, the sales_data
// suite over one frame of 8192 sales rows (as csv_file reads them), as the
// pipeline runs it (a builtin: no loop interrupts): all good, and one in
// 200 with a price of 0, about as often as gen_sales.py's rows break the
// suite (so nearly every frame has a bad row). The figure is per row, the
// host's side included; the same suite natively is BenchmarkSalesData in
// lib/expect.
//
//	go test -run '^$' -bench SalesFrame -count 6 ./plugins/builtin/validate/
func BenchmarkSalesFrame(b *testing.B) {
	const rows = 8192
	for _, bad := range []int{0, 200} {
		name := "all-good"
		if bad > 0 {
			name = fmt.Sprintf("one-in-%d-bad", bad)
		}
		b.Run(name, func(b *testing.B) { benchmarkSalesFrame(b, rows, bad) })
	}
}

func benchmarkSalesFrame(b *testing.B, rows, bad int) {
	cols := []frame.Values{
		{Name: "date", Type: abi.TypeString}, {Name: "product_id", Type: abi.TypeInt}, {Name: "quantity", Type: abi.TypeInt},
		{Name: "price", Type: abi.TypeFloat}, {Name: "customer_id", Type: abi.TypeInt},
	}
	for i := range rows {
		cols[0].Rows = append(cols[0].Rows, fmt.Sprintf("2025-01-%02d", 1+i%28))
		cols[1].Rows = append(cols[1].Rows, i%500)
		cols[2].Rows = append(cols[2].Rows, 1+i%5)
		price := float64(i%100) + 0.5
		if bad > 0 && i%bad == bad-1 {
			price = 0
		}
		cols[3].Rows = append(cols[3].Rows, price)
		cols[4].Rows = append(cols[4].Rows, i%5000)
	}
	body, err := frame.FromValues(cols, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	eng, err := wasm.NewEngine(wasm.EngineConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(ctx)
	conf, err := wasm.ConfigSpec().ParseYAML(fmt.Sprintf("path: %s\ninterrupt_on_timeout: false\nconfig_file: %ssales_data.yaml\n", plugin, suites), nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := wasm.NewProcessor(ctx, eng, conf, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	for b.Loop() {
		out, err := p.ProcessBatch(ctx, service.MessageBatch{service.NewMessage(body)})
		if err != nil || len(out) != 1 {
			b.Fatalf("%v %d", err, len(out))
		}
		got, _ := out[0][0].AsBytes()
		want := rows
		if bad > 0 {
			want -= rows / bad
		}
		f, err := frame.Decode(got)
		if err != nil {
			b.Fatal(err)
		}
		if f.Accepted() != want {
			b.Fatalf("%d rows accepted, want %d", f.Accepted(), want)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
