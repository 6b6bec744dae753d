package expect

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// expectationCases run each expectation on records in order. Each record
// is prefixed with what the expectation must make of it: pass, fail, or
// skip (a missing value, which GX does not evaluate).
var expectationCases = []struct {
	name    string
	exp     string
	horizon string
	records []string
}{
	{name: "column exists", exp: `expect_column_to_exist: {column: v}`, records: []string{
		`pass {"v":1}`, `pass {"v":null}`, `pass {"a":1,"v":{}}`, `fail {"w":1}`, `fail {}`,
	}},
	{name: "column exists at index", exp: `expect_column_to_exist: {column: v, column_index: 1}`, records: []string{
		`pass {"a":1,"v":2}`, `fail {"v":1,"a":2}`, `fail {"a":1}`, `fail [1,2]`,
	}},
	{name: "ordered columns", exp: `expect_table_columns_to_match_ordered_list: {column_list: [a, b]}`, records: []string{
		`pass {"a":1,"b":2}`, `pass {"a":null,"b":"x"}`, `fail {"b":1,"a":2}`, `fail {"a":1}`, `fail {"a":1,"b":2,"c":3}`, `fail [1,2]`,
	}},
	{name: "column set, exact", exp: `expect_table_columns_to_match_set: {column_set: [a, b]}`, records: []string{
		`pass {"b":1,"a":2}`, `pass {"a":1,"b":2}`, `fail {"a":1}`, `fail {"a":1,"b":2,"c":3}`,
	}},
	{name: "column set, subset", exp: `expect_table_columns_to_match_set: {column_set: [a, b], exact_match: false}`, records: []string{
		`pass {"b":1,"a":2}`, `pass {"c":0,"a":1,"b":2}`, `fail {"a":1,"c":2}`,
	}},
	{name: "column count", exp: `expect_table_column_count_to_equal: {value: 2}`, records: []string{
		`pass {"a":1,"b":2}`, `fail {"a":1}`, `fail {"a":1,"b":2,"c":3}`,
	}},
	{name: "column count between", exp: `expect_table_column_count_to_be_between: {min_value: 1, max_value: 2}`, records: []string{
		`pass {"a":1}`, `pass {"a":1,"b":2}`, `fail {}`, `fail {"a":1,"b":2,"c":3}`,
	}},
	{name: "not null", exp: `expect_column_values_to_not_be_null: {column: v}`, records: []string{
		`pass {"v":0}`, `pass {"v":""}`, `pass {"v":false}`, `pass {"v":[]}`, `fail {"v":null}`, `fail {}`,
	}},
	{name: "null", exp: `expect_column_values_to_be_null: {column: v}`, records: []string{
		`pass {"v":null}`, `pass {}`, `fail {"v":0}`, `fail {"v":"x"}`,
	}},
	{name: "type int64", exp: `expect_column_values_to_be_of_type: {column: v, type_: int64}`, records: []string{
		`pass {"v":1}`, `pass {"v":-9223372036854775808}`, `fail {"v":1.5}`, `fail {"v":1.0}`, `fail {"v":1e3}`,
		`fail {"v":"1"}`, `fail {"v":true}`, `fail {"v":9223372036854775808}`, `skip {"v":null}`, `skip {}`,
	}},
	{name: "type INTEGER", exp: `expect_column_values_to_be_of_type: {column: v, type_: INTEGER}`, records: []string{
		`pass {"v":7}`, `fail {"v":7.5}`,
	}},
	{name: "type int8", exp: `expect_column_values_to_be_of_type: {column: v, type_: int8}`, records: []string{
		`pass {"v":127}`, `pass {"v":-128}`, `fail {"v":128}`,
	}},
	{name: "type uint8", exp: `expect_column_values_to_be_of_type: {column: v, type_: uint8}`, records: []string{
		`pass {"v":0}`, `pass {"v":255}`, `fail {"v":-1}`,
	}},
	{name: "type float64", exp: `expect_column_values_to_be_of_type: {column: v, type_: float64}`, records: []string{
		`pass {"v":1}`, `pass {"v":1.5}`, `pass {"v":-2e-3}`, `fail {"v":"1.5"}`, `fail {"v":true}`,
	}},
	{name: "type str", exp: `expect_column_values_to_be_of_type: {column: v, type_: str}`, records: []string{
		`pass {"v":"x"}`, `pass {"v":""}`, `fail {"v":1}`, `fail {"v":{}}`,
	}},
	{name: "type bool", exp: `expect_column_values_to_be_of_type: {column: v, type_: bool}`, records: []string{
		`pass {"v":true}`, `pass {"v":false}`, `fail {"v":"true"}`, `fail {"v":1}`,
	}},
	{name: "type dict", exp: `expect_column_values_to_be_of_type: {column: v, type_: dict}`, records: []string{
		`pass {"v":{}}`, `pass {"v":{"a":[1]}}`, `fail {"v":[]}`, `fail {"v":"{}"}`,
	}},
	{name: "type list", exp: `expect_column_values_to_be_of_type: {column: v, type_: list}`, records: []string{
		`pass {"v":[]}`, `fail {"v":{}}`,
	}},
	{name: "type object", exp: `expect_column_values_to_be_of_type: {column: v, type_: object}`, records: []string{
		`pass {"v":"x"}`, `pass {"v":{}}`, `pass {"v":[1]}`, `fail {"v":1}`, `fail {"v":true}`,
	}},
	{name: "type datetime64", exp: `expect_column_values_to_be_of_type: {column: v, type_: "datetime64[ns]"}`, records: []string{
		`pass {"v":"2025-01-01T05:28:42.268000"}`, `pass {"v":"2025-01-01"}`, `pass {"v":"2025-01-01T05:28:42+02:00"}`,
		`fail {"v":"yesterday"}`, `fail {"v":1700000000}`, `fail {"v":"2025-02-30"}`,
	}},
	{name: "type list of types", exp: `expect_column_values_to_be_in_type_list: {column: v, type_list: [int, str]}`, records: []string{
		`pass {"v":1}`, `pass {"v":"x"}`, `fail {"v":1.5}`, `fail {"v":[]}`, `skip {"v":null}`,
	}},
	{name: "between", exp: `expect_column_values_to_be_between: {column: v, min_value: 0, max_value: 10}`, records: []string{
		`pass {"v":0}`, `pass {"v":10}`, `pass {"v":5.5}`, `pass {"v":1e1}`, `fail {"v":-1}`, `fail {"v":10.001}`,
		`fail {"v":"5"}`, `fail {"v":true}`, `fail {"v":{}}`, `skip {"v":null}`, `skip {}`,
	}},
	{name: "between, strict", exp: `expect_column_values_to_be_between: {column: v, min_value: 0, max_value: 10, strict_min: true, strict_max: true}`, records: []string{
		`pass {"v":5}`, `pass {"v":0.001}`, `fail {"v":0}`, `fail {"v":10}`,
	}},
	{name: "between, min only", exp: `expect_column_values_to_be_between: {column: v, min_value: 0}`, records: []string{
		`pass {"v":1e9}`, `pass {"v":0}`, `fail {"v":-0.1}`,
	}},
	{name: "between, max only", exp: `expect_column_values_to_be_between: {column: v, max_value: 0}`, records: []string{
		`pass {"v":-1e9}`, `fail {"v":0.1}`,
	}},
	{name: "between date-times", exp: `expect_column_values_to_be_between: {column: v, min_value: "2025-01-01", max_value: "2025-12-31T23:59:59Z"}`, records: []string{
		`pass {"v":"2025-06-01T00:00:00Z"}`, `pass {"v":"2025-01-01"}`, `pass {"v":"2026-01-01T00:59:59+01:00"}`,
		`fail {"v":"2024-12-31T23:59:59Z"}`, `fail {"v":"2026-01-01"}`, `fail {"v":1700000000}`, `fail {"v":"not a date"}`,
	}},
	{name: "in set", exp: `expect_column_values_to_be_in_set: {column: v, value_set: [a, 1, true]}`, records: []string{
		`pass {"v":"a"}`, `pass {"v":1}`, `pass {"v":1.0}`, `pass {"v":1e0}`, `pass {"v":true}`,
		`fail {"v":"b"}`, `fail {"v":"1"}`, `fail {"v":2}`, `fail {"v":false}`, `fail {"v":{}}`, `fail {"v":["a"]}`, `skip {"v":null}`,
	}},
	{name: "not in set", exp: `expect_column_values_to_not_be_in_set: {column: v, value_set: [a, 1]}`, records: []string{
		`pass {"v":"b"}`, `pass {"v":2}`, `pass {"v":"1"}`, `pass {"v":{}}`, `pass {"v":true}`, `fail {"v":"a"}`, `fail {"v":1.0}`, `skip {}`,
	}},
	{name: "regex searches", exp: `expect_column_values_to_match_regex: {column: v, regex: '\d{4}-\d{2}'}`, records: []string{
		`pass {"v":"2025-01"}`, `pass {"v":"on 2025-01-31!"}`, `fail {"v":"25-01"}`, `fail {"v":2025}`, `fail {"v":["2025-01"]}`, `skip {"v":null}`,
	}},
	{name: "regex anchored", exp: `expect_column_values_to_match_regex: {column: v, regex: '^a'}`, records: []string{
		`pass {"v":"ab"}`, `fail {"v":"ba"}`,
	}},
	{name: "not regex", exp: `expect_column_values_to_not_match_regex: {column: v, regex: 'bad'}`, records: []string{
		`pass {"v":"good"}`, `fail {"v":"so bad"}`, `fail {"v":5}`,
	}},
	{name: "regex list, any", exp: `expect_column_values_to_match_regex_list: {column: v, regex_list: ['^a', 'b$']}`, records: []string{
		`pass {"v":"ab"}`, `pass {"v":"ax"}`, `pass {"v":"xb"}`, `fail {"v":"xx"}`,
	}},
	{name: "regex list, all", exp: `expect_column_values_to_match_regex_list: {column: v, regex_list: ['^a', 'b$'], match_on: all}`, records: []string{
		`pass {"v":"ab"}`, `fail {"v":"ax"}`, `fail {"v":"xb"}`,
	}},
	{name: "not regex list", exp: `expect_column_values_to_not_match_regex_list: {column: v, regex_list: ['^a', 'b$']}`, records: []string{
		`pass {"v":"xx"}`, `fail {"v":"ax"}`, `fail {"v":"xb"}`,
	}},
	{name: "lengths between", exp: `expect_column_value_lengths_to_be_between: {column: v, min_value: 2, max_value: 3}`, records: []string{
		`pass {"v":"ab"}`, `pass {"v":"héé"}`, `fail {"v":"a"}`, `fail {"v":"abcd"}`, `fail {"v":12}`, `skip {}`,
	}},
	{name: "length equal", exp: `expect_column_value_lengths_to_equal: {column: v, value: 2}`, records: []string{
		`pass {"v":"ab"}`, `pass {"v":"日本"}`, `fail {"v":"abc"}`,
	}},
	{name: "strftime", exp: `expect_column_values_to_match_strftime_format: {column: v, strftime_format: "%Y-%m-%d %H:%M:%S"}`, records: []string{
		`pass {"v":"2025-01-31 23:59:59"}`, `pass {"v":"2025-1-1 1:2:3"}`, `pass {"v":"2024-02-29 00:00:00"}`,
		`fail {"v":"2025-02-30 00:00:00"}`, `fail {"v":"2025-01-31T23:59:59"}`, `fail {"v":"2025-01-31"}`, `fail {"v":5}`,
	}},
	{name: "dateutil", exp: `expect_column_values_to_be_dateutil_parseable: {column: v}`, records: []string{
		`pass {"v":"2025-01-31"}`, `pass {"v":"2025-01-31T05:28:42.268Z"}`, `pass {"v":"01/31/2025"}`, `pass {"v":"31/01/2025"}`,
		`pass {"v":"Jan 31, 2025"}`, `pass {"v":"Fri, 31 Jan 2025 10:00:00 GMT"}`, `pass {"v":"2025-01-31 10:00"}`, `pass {"v":" 2025/01/31 10:00:00 "}`,
		`fail {"v":"yesterday"}`, `fail {"v":"2025-13-01"}`, `fail {"v":20250131}`,
	}},
	{name: "json parseable", exp: `expect_column_values_to_be_json_parseable: {column: v}`, records: []string{
		`pass {"v":"{\"a\":1}"}`, `pass {"v":"[1]"}`, `pass {"v":"3"}`, `fail {"v":"{a:1}"}`, `fail {"v":5}`,
	}},
	{name: "unique", exp: `expect_column_values_to_be_unique: {column: v}`, horizon: `{count: 10}`, records: []string{
		`pass {"v":1}`, `pass {"v":2}`, `fail {"v":1}`, `fail {"v":1.0}`, `pass {"v":"a"}`, `fail {"v":"a"}`, `skip {"v":null}`, `skip {"v":null}`,
	}},
	{name: "compound unique", exp: `expect_compound_columns_to_be_unique: {column_list: [u, t]}`, horizon: `{count: 10}`, records: []string{
		`pass {"u":1,"t":"a"}`, `pass {"u":1,"t":"b"}`, `fail {"u":1,"t":"a"}`, `pass {"u":2,"t":"a"}`,
		`pass {"u":1,"t":null}`, `fail {"u":1}`, `skip {"u":null,"t":null}`,
	}},
	{name: "compound unique, any missing skipped", exp: `expect_compound_columns_to_be_unique: {column_list: [u, t], ignore_row_if: any_value_is_missing}`, horizon: `{count: 10}`, records: []string{
		`skip {"u":1,"t":null}`, `skip {"u":1,"t":null}`, `pass {"u":1,"t":"a"}`,
	}},
}

func TestExpectations(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range expectationCases {
		t.Run(tc.name, func(t *testing.T) {
			y := "expectations:\n  - " + tc.exp + "\n"
			if tc.horizon != "" {
				y += "horizon: " + tc.horizon + "\n"
			}
			s := mustParse(t, y)
			covered[s.exps[0].name] = true
			st := newStream(t, s)
			var wantMissing, wantFail int
			for i, rec := range tc.records {
				want, body, _ := strings.Cut(rec, " ")
				out, _ := st.check(body, false)
				got := "pass"
				if out.Violations > 0 {
					got = "fail"
				}
				res := st.v.Report().Results[0]
				if res.MissingCount > wantMissing {
					got = "skip"
				}
				switch want {
				case "skip":
					wantMissing++
				case "fail":
					wantFail++
				}
				if got != want {
					t.Errorf("record %d %s: got %s, want %s (%s)", i, body, got, want, st.v.AppendReason(nil))
				}
				// Evaluate has its own loops for common checks; evalValue,
				// the general path, must agree with them.
				if e := s.exps[0]; e.col >= 0 && !e.table && e.op != opColumnExists && e.op != opUnique {
					val := rowFor(t, s, body).Values[e.col]
					generic := "pass"
					switch {
					case e.ignoresMissing && val.Kind.missing():
						generic = "skip"
					case e.evalValue(val) == vFail:
						generic = "fail"
					}
					if generic != want {
						t.Errorf("record %d %s: evalValue says %s, want %s", i, body, generic, want)
					}
				}
				if res.UnexpectedCount != wantFail || res.ElementCount != i+1 {
					t.Errorf("record %d: counts element %d unexpected %d, want %d %d", i, res.ElementCount, res.UnexpectedCount, i+1, wantFail)
				}
				if want == "fail" && (out.Action != Fail || out.Valid) {
					t.Errorf("record %d: a broken expectation without mostly must fail the record (on_failure: fail), got action %d valid %v", i, out.Action, out.Valid)
				}
			}
		})
	}
	var missing []string
	for _, n := range Names() {
		if _, agg := aggSpecs[n]; !covered[n] && !agg { // window-level ones: window_test.go
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("expectations without a test case: %s", strings.Join(missing, ", "))
	}
}

// TestWrongTypesAreFailures: a value of the wrong JSON type is what a
// validator exists to report, as a failed expectation with what was there.
func TestWrongTypesAreFailures(t *testing.T) {
	s := shippedSuite(t, "user_events.yaml")
	st := newStream(t, s)
	out, _ := st.check(`{"user_id":"abc","event_type":5,"event_data":"x","timestamp":true}`, false)
	if out.Action != Fail || out.Valid {
		t.Fatalf("outcome %+v, want a failed record", out)
	}
	got := map[string]any{}
	for _, v := range violations(t, st.v) {
		got[fmt.Sprint(v["expectation"], "(", v["column"], ")")] = v["observed_value"]
	}
	want := map[string]any{
		"expect_column_values_to_be_of_type(user_id)":    "abc",
		"expect_column_values_to_be_between(user_id)":    "abc",
		"expect_column_values_to_be_in_set(event_type)":  5.0,
		"expect_column_values_to_be_of_type(event_data)": "x",
		"expect_column_values_to_be_of_type(timestamp)":  true,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("violations\n got %v\nwant %v", got, want)
	}
}

func TestReasonAndViolations(t *testing.T) {
	s := mustParse(t, `
suite: user_data
expectations:
  - expect_column_values_to_not_be_null: {column: user_id}
  - expect_column_values_to_be_between: {column: page_views, min_value: 0, max_value: 1000}
  - expect_column_values_to_match_regex: {column: note, regex: '^ok', mostly: 0.5}
  - expect_table_columns_to_match_ordered_list: {column_list: [user_id, page_views]}
`)
	st := newStream(t, s)
	out, _ := st.check(`{"page_views":5000,"note":"a \"quoted\"\nline"}`, false)
	if out.Violations != 4 || out.Action != Fail {
		t.Fatalf("outcome %+v", out)
	}
	wantReason := `user_data: expect_column_values_to_not_be_null(user_id) observed missing; ` +
		`expect_column_values_to_be_between(page_views) observed 5000; ` +
		`expect_column_values_to_match_regex(note) observed "a \"quoted\"\nline" (mostly 0.5); ` +
		`expect_table_columns_to_match_ordered_list observed ["page_views","note"]`
	if got := string(st.v.AppendReason(nil)); got != wantReason {
		t.Errorf("reason\n got %s\nwant %s", got, wantReason)
	}
	wantJSON := `[{"expectation":"expect_column_values_to_not_be_null","column":"user_id","observed_value":null},` +
		`{"expectation":"expect_column_values_to_be_between","column":"page_views","observed_value":5000},` +
		`{"expectation":"expect_column_values_to_match_regex","column":"note","observed_value":"a \"quoted\"\nline","mostly":0.5},` +
		`{"expectation":"expect_table_columns_to_match_ordered_list","observed_value":["page_views","note"]}]`
	if got := string(st.v.AppendViolations(nil)); got != wantJSON {
		t.Errorf("violations\n got %s\nwant %s", got, wantJSON)
	}
	violations(t, st.v) // and it is JSON
}

// TestColumnSetWithoutKeys: "at least these columns" is judged on the
// columns' values, without the record's key list, and says what is
// missing; a name that is not a plain key still needs the list.
func TestColumnSetWithoutKeys(t *testing.T) {
	s := mustParse(t, `expectations: [{expect_table_columns_to_match_set: {column_set: [a, b, c], exact_match: false}}]`)
	if s.NeedsKeys() {
		t.Error("a column set without exact_match needs no key list")
	}
	st := newStream(t, s)
	st.check(`{"b":1,"x":null}`, false)
	if got := violations(t, st.v)[0]["observed_value"]; fmt.Sprint(got) != "map[missing:[a c]]" {
		t.Errorf("observed %v, want the missing columns", got)
	}
	for _, y := range []string{
		`expectations: [{expect_table_columns_to_match_set: {column_set: [a.b], exact_match: false}}]`,
		`expectations: [{expect_table_columns_to_match_set: {column_set: ["a b"], exact_match: false}}]`,
		`expectations: [{expect_table_columns_to_match_set: {column_set: [a]}}]`,
	} {
		if !mustParse(t, y).NeedsKeys() {
			t.Errorf("%s: needs the key list", y)
		}
	}
}

func TestLongValuesAreCut(t *testing.T) {
	s := mustParse(t, `expectations: [{expect_column_values_to_be_of_type: {column: v, type_: int}}]`)
	st := newStream(t, s)
	long := strings.Repeat("é", 200)
	st.check(`{"v":"`+long+`"}`, false)
	v := violations(t, st.v)[0]["observed_value"].(string)
	if !strings.HasSuffix(v, "…") || len(v) > observeLimit+len("…") {
		t.Errorf("observed %d bytes %q: want at most %d bytes and an ellipsis", len(v), v, observeLimit)
	}
	st.check(`{"v":[`+strings.Repeat(`1,`, 100)+`1]}`, false)
	if v := violations(t, st.v)[0]["observed_value"]; v != "<array of 203 bytes>" {
		t.Errorf("long array observed as %v", v)
	}
}

func TestOnFailure(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		action Action
	}{{"fail", Fail}, {"flag", Keep}, {"drop", Drop}} {
		t.Run(tc.mode, func(t *testing.T) {
			s := mustParse(t, "on_failure: "+tc.mode+"\nexpectations: [{expect_column_values_to_not_be_null: {column: v}}]")
			st := newStream(t, s)
			if out, _ := st.check(`{"v":1}`, false); out.Action != Keep || !out.Valid || out.Violations != 0 {
				t.Errorf("good record: %+v", out)
			}
			if out, _ := st.check(`{"v":null}`, false); out.Action != tc.action || out.Valid || out.Violations != 1 {
				t.Errorf("bad record: %+v, want action %d and invalid", out, tc.action)
			}
		})
	}
}

// TestMostly: an expectation with mostly never fails a record; the batch
// passes it when enough of its values are as expected.
func TestMostly(t *testing.T) {
	s := mustParse(t, `
expectations:
  - expect_column_values_to_be_between: {column: page_views, min_value: 0, max_value: 1000, mostly: 0.95}
`)
	if !s.Reports() {
		t.Fatal("a suite with mostly must report per batch")
	}
	for _, tc := range []struct {
		good    int
		success bool
	}{{94, false}, {95, true}, {96, true}} {
		t.Run(fmt.Sprint(tc.good), func(t *testing.T) {
			st := newStream(t, s)
			for i := 0; i < 100; i++ {
				pv := 10
				if i >= tc.good {
					pv = 5000
				}
				out, _ := st.check(fmt.Sprintf(`{"page_views":%d}`, pv), false)
				if out.Action != Keep || !out.Valid {
					t.Fatalf("row %d: %+v: a mostly expectation must not fail or invalidate a record", i, out)
				}
				if want := pv == 5000; (out.Violations == 1) != want {
					t.Fatalf("row %d: %d violations, want them listed: %v", i, out.Violations, want)
				}
				if out.Violations == 1 && violations(t, st.v)[0]["mostly"] != 0.95 {
					t.Errorf("row %d: violation does not say mostly: %s", i, st.v.AppendViolations(nil))
				}
			}
			r := st.v.Report()
			if r.Results[0].Success != tc.success || r.Success != tc.success {
				t.Errorf("%d%% good against mostly 0.95: success %v, want %v", tc.good, r.Results[0].Success, tc.success)
			}
			if r.DataQualityScore != 100 || r.ValidRows != 100 {
				t.Errorf("score %v valid %d: no record was invalid", r.DataQualityScore, r.ValidRows)
			}
		})
	}
}

func TestParseISO(t *testing.T) {
	for _, tc := range []struct {
		in   string
		unix float64
		ok   bool
	}{
		{"1970-01-01", 0, true},
		{"2025-01-01T05:28:42.268Z", 1735709322.268, true},
		{"2025-01-01T05:28:42.268000", 1735709322.268, true},
		{"2025-01-01 05:28", 1735709280, true},
		{"2025-01-01T05:28:42+02:00", 1735702122, true},
		{"2025-01-01T05:28:42-0130", 1735714722, true},
		{"2024-02-29T00:00:00Z", 1709164800, true},
		{"1969-12-31T23:59:59Z", -1, true},
		{"2023-02-29", 0, false},
		{"2025-1-01", 0, false},
		{"2025-01-01T25:00", 0, false},
		{"2025-01-01T05:28:42Zjunk", 0, false},
		{"2025-01-01T05", 0, false},
		{"", 0, false},
	} {
		got, ok := parseISO([]byte(tc.in))
		if ok != tc.ok || ok && fmt.Sprintf("%.3f", float64(got.sec)+float64(got.nsec)/1e9) != fmt.Sprintf("%.3f", tc.unix) {
			t.Errorf("parseISO(%q) = %v %v, want %v %v", tc.in, got, ok, tc.unix, tc.ok)
		}
	}
}

// TestStrftime follows Python's datetime.strptime on each case.
func TestStrftime(t *testing.T) {
	for _, tc := range []struct {
		format, in string
		ok         bool
	}{
		{"%Y-%m-%d", "2025-01-31", true},
		{"%Y-%m-%d", "2025-1-5", true},
		{"%Y-%m-%d", "2025-02-29", false},
		{"%Y-%m-%d", "2024-02-29", true},
		{"%Y-%m-%d", "2025-01-31 ", false},
		{"%Y%m%d", "20250131", true},
		{"%m/%d/%y", "12/31/99", true},
		{"%d %b %Y", "05 jan 2025", true},
		{"%d %B %Y", "5 January 2025", true},
		{"%d %B %Y", "5 Jan 2025", false},
		{"%d  %b", "05 \t Jan", true},
		{"%H:%M:%S.%f", "23:59:59.123456", true},
		{"%H:%M:%S.%f", "23:59:59.1234567", false},
		{"%H:%M", "24:00", false},
		{"%I:%M %p", "12:30 pm", true},
		{"%I:%M %p", "13:30 PM", false},
		{"%Y-%m-%dT%H:%M:%S%z", "2025-01-31T10:00:00+0100", true},
		{"%Y-%m-%dT%H:%M:%S%z", "2025-01-31T10:00:00+01:00", true},
		{"%Y-%m-%dT%H:%M:%S%z", "2025-01-31T10:00:00Z", true},
		{"%Y-%m-%dT%H:%M:%S%z", "2025-01-31t10:00:00z", false},
		{"%a, %d %b %Y %H:%M:%S %Z", "Fri, 31 Jan 2025 10:00:00 GMT", true},
		{"%j", "366", true},
		{"%j", "367", false},
		{"%m%d", "1231", true},
		{"%m%d", "131", true}, // 1/31: the shorter month lets the day match
		{"%d", " 5", true},
		{"%%%Y", "%2025", true},
		{"%m/%d", "02/29", false}, // no year: 1900, not a leap year
	} {
		f, err := compileStrftime(tc.format)
		if err != nil {
			t.Errorf("compile %q: %v", tc.format, err)
			continue
		}
		if got := f.match([]byte(tc.in)); got != tc.ok {
			t.Errorf("%q on %q: %v, want %v", tc.format, tc.in, got, tc.ok)
		}
	}
	for _, bad := range []string{"", "%Y-%", "%c", "%Q", "%U"} {
		if _, err := compileStrftime(bad); err == nil {
			t.Errorf("compile %q: want an error", bad)
		}
	}
}

func TestShippedSuites(t *testing.T) {
	for _, tc := range []struct {
		file, columns string
		keys, state   bool
		n             int
	}{
		// Its column set is checked on the columns' values: no key list.
		{"user_events.yaml", "user_id event_type event_data timestamp event_data.amount", false, false, 11},
		{"user_data.yaml", "user_id page_views session_duration timestamp", true, true, 10},
		{"product_data.yaml", "product_id price rating category", true, true, 8},
	} {
		s := shippedSuite(t, tc.file)
		if got := strings.Join(s.Columns(), " "); got != tc.columns || s.NeedsKeys() != tc.keys || s.Stateful() != tc.state || s.Len() != tc.n {
			t.Errorf("%s: columns %q keys %v state %v %d expectations; want %q %v %v %d", tc.file, got, s.NeedsKeys(), s.Stateful(), s.Len(), tc.columns, tc.keys, tc.state, tc.n)
		}
	}
}

// TestPassed: a row Passed reports finished is one Finish would keep,
// valid, with no violations and no state, and the report counts it the
// same; a row Finish has more to say about, or any row of a suite that
// checks uniqueness, is not Passed.
func TestPassed(t *testing.T) {
	records := []string{`{"id":1,"n":5}`, `{"id":2,"n":null}`, `{"id":3,"n":5000}`, `{"id":1,"n":6}`, `{"n":7}`}
	for _, tc := range []struct {
		name   string
		suite  string
		passed []bool
	}{
		{"hard", `expectations: [{expect_column_values_to_not_be_null: {column: n}}]`, []bool{true, false, true, true, true}},
		{"mostly", `expectations: [{expect_column_values_to_be_between: {column: n, min_value: 0, max_value: 1000, mostly: 0.5}}]`, []bool{true, true, false, true, true}},
		{"unique", "horizon: {count: 5}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]", []bool{false, false, false, false, false}},
		{"every row passes", `expectations: [{expect_column_values_to_be_between: {column: n, min_value: 0, max_value: 1e9}}]`, []bool{true, true, true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, "on_failure: flag\n"+tc.suite)
			rows := make([]Row, len(records))
			for i, rec := range records {
				rows[i] = *rowFor(t, s, rec)
			}
			fast, slow := s.NewValidator(), s.NewValidator()
			fast.Begin()
			slow.Begin()
			fast.Evaluate(rows)
			slow.Evaluate(rows)
			for i := range rows {
				var out Outcome
				slow.Finish(i, &rows[i], &out)
				passed := fast.Passed(i)
				if passed != tc.passed[i] {
					t.Errorf("row %d %s: Passed %v, want %v (Finish: %+v)", i, records[i], passed, tc.passed[i], out)
				}
				if passed && (out.Action != Keep || !out.Valid || out.Violations != 0 || out.SetState) {
					t.Errorf("row %d %s: Passed, but Finish says %+v", i, records[i], out)
				}
				if !passed {
					var o Outcome
					fast.Finish(i, &rows[i], &o)
				}
			}
			if f, w := fast.Report().ValidRows, slow.Report().ValidRows; f != w {
				t.Errorf("%d valid rows with Passed, %d with Finish alone", f, w)
			}
			// PassClean from each row: the rows Passed would pass, skipped
			// and counted, up to the first it would not.
			for from := range rows {
				v := s.NewValidator()
				v.Begin()
				v.Evaluate(rows)
				next := v.PassClean(from)
				want := from
				for want < len(rows) && tc.passed[want] && !strings.Contains(tc.name, "unique") {
					want++
				}
				if next != want || v.Report().ValidRows != next-from {
					t.Errorf("PassClean(%d) = %d, counting %d valid rows; want %d", from, next, v.Report().ValidRows, want)
				}
			}
			// And through the batch, finishing each row it stops at.
			skip := s.NewValidator()
			skip.Begin()
			skip.Evaluate(rows)
			for i := 0; i < len(rows); i++ {
				next := skip.PassClean(i)
				for j := i; j < next; j++ {
					if !tc.passed[j] {
						t.Errorf("PassClean(%d) = %d passes row %d, which Passed does not", i, next, j)
					}
				}
				if next < len(rows) && tc.passed[next] && !strings.Contains(tc.name, "unique") {
					t.Errorf("PassClean(%d) stops at row %d, which Passed passes", i, next)
				}
				if next == len(rows) {
					break
				}
				var o Outcome
				skip.Finish(next, &rows[next], &o)
				i = next
			}
			if f, w := skip.Report().ValidRows, slow.Report().ValidRows; f != w {
				t.Errorf("%d valid rows with PassClean, %d with Finish alone", f, w)
			}
			// PassedAll: only where every row is Passed, and counted so.
			all := s.NewValidator()
			all.Begin()
			all.Evaluate(rows)
			want := !slices.Contains(tc.passed, false)
			if got := all.PassedAll(); got != want {
				t.Errorf("PassedAll %v, want %v", got, want)
			} else if got && all.Report().ValidRows != len(rows) {
				t.Errorf("PassedAll counted %d valid rows of %d", all.Report().ValidRows, len(rows))
			}
		})
	}
}

// TestNotNullWords: the not-null check, which looks at eight rows a word
// at a time, fails exactly the rows whose kind is absent or null, at
// every position of batches of 0 to 20 rows (inside a word, across two,
// in the tail after the last), one or two of them, and with every other
// kind the ABI has around them.
func TestNotNullWords(t *testing.T) {
	s := mustParse(t, "on_failure: flag\nexpectations: [{expect_column_values_to_not_be_null: {column: n}}]")
	// Every kind a value column's row may have: absent, null, and the
	// present ones (string, number, bool, object, array, int, float).
	var present []byte
	for k := byte(2); k <= kindFloat; k++ {
		present = append(present, k)
	}
	for n := range 21 {
		for _, bad := range [][2]int{{-1, -1}, {0, -1}, {7, 8}, {n - 1, -1}, {3, n - 1}, {8, 15}} {
			for _, badKind := range []byte{byte(KindAbsent), byte(KindNull)} {
				kinds := make([]byte, n)
				want := map[int]bool{}
				for r := range kinds {
					kinds[r] = present[r%len(present)]
					if r == bad[0] || r == bad[1] {
						kinds[r], want[r] = badKind, true
					}
				}
				v := s.NewValidator()
				v.Begin()
				v.EvaluateColumns([]Column{{Kinds: kinds, Offs: make([]uint32, n+1)}}, make([]Row, n))
				for r := range kinds {
					if got := !v.clean(r); got != want[r] {
						t.Errorf("%d rows, kinds %v: row %d failed %v, want %v", n, kinds, r, got, want[r])
					}
				}
			}
		}
	}
}

// TestBetweenBinary: a range check over numbers sent as their 8 bytes (a
// frame's int and float columns) fails exactly the rows that the same
// values sent as JSON text fail, with each kind of bound.
func TestBetweenBinary(t *testing.T) {
	floats := []float64{-1, 0, 0.5, 1, 9.99, 10, 10.01, 1e300, math.Inf(1), math.Inf(-1), math.NaN()}
	ints := []int64{-1, 0, 1, 10, 11, math.MaxInt64}
	for _, bounds := range []string{
		"min_value: 0", "min_value: 0, strict_min: true", "max_value: 10", "max_value: 10, strict_max: true",
		"min_value: 0, max_value: 10", "min_value: 0, max_value: 10, strict_min: true, strict_max: true",
	} {
		s := mustParse(t, "on_failure: flag\nexpectations: [{expect_column_values_to_be_between: {column: n, "+bounds+"}}]")
		var col Column
		var texts []string
		for _, f := range floats {
			col.Kinds = append(col.Kinds, kindFloat)
			col.Data = binary.LittleEndian.AppendUint64(col.Data, math.Float64bits(f))
			texts = append(texts, strconv.FormatFloat(f, 'g', -1, 64))
		}
		for _, n := range ints {
			col.Kinds = append(col.Kinds, kindInt)
			col.Data = binary.LittleEndian.AppendUint64(col.Data, uint64(n))
			texts = append(texts, strconv.FormatInt(n, 10))
		}
		for r := range len(col.Kinds) + 1 {
			col.Offs = append(col.Offs, uint32(8*r))
		}
		fast := s.NewValidator()
		fast.Begin()
		fast.EvaluateColumns([]Column{col}, make([]Row, len(col.Kinds)))
		for r, text := range texts {
			var wantFail bool
			switch f := floats[min(r, len(floats)-1)]; {
			case r < len(floats) && (math.IsInf(f, 0) || math.IsNaN(f)):
				// Not JSON numbers: what Value.number makes of the bytes,
				// infinities failing and NaN compared as it is.
				wantFail = math.IsInf(f, 0)
			default:
				row := rowFor(t, s, `{"n":`+text+`}`)
				v := s.NewValidator()
				v.Begin()
				v.Evaluate([]Row{*row})
				wantFail = !v.clean(0)
			}
			if got := !fast.clean(r); got != wantFail {
				t.Errorf("%s: %s failed %v, want %v", bounds, text, got, wantFail)
			}
		}
	}
}
