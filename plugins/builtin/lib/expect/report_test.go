package expect

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
)

// TestReportFields checks the GX result of a batch: counts, percentages
// over non-missing values, the 20 first unexpected values with their row
// indexes, and success.
func TestReportFields(t *testing.T) {
	s := mustParse(t, `
suite: users
report: batch
expectations:
  - expect_column_values_to_be_between: {column: n, min_value: 0, max_value: 10}
  - expect_column_values_to_not_be_null: {column: n}
  - expect_table_columns_to_match_set: {column_set: [n]}
`)
	st := newStream(t, s)
	// rows 0-2 good, 3-4 missing, 5-29 out of range (25 of them)
	for i := 0; i < 30; i++ {
		switch {
		case i < 3:
			st.check(`{"n":5}`, false)
		case i < 5:
			st.check(`{"n":null}`, false)
		default:
			st.check(fmt.Sprintf(`{"n":%d}`, 100+i), false)
		}
	}
	r := st.v.Report()
	between := r.Results[0]
	if between.ElementCount != 30 || between.MissingCount != 2 || between.UnexpectedCount != 25 || between.Success {
		t.Errorf("between: %+v", between)
	}
	if want := 25.0 / 28 * 100; math.Abs(between.UnexpectedPercent-want) > 1e-9 {
		t.Errorf("unexpected_percent %v, want %v (of the 28 non-missing values, as GX)", between.UnexpectedPercent, want)
	}
	if want := 25.0 / 30 * 100; math.Abs(between.UnexpectedPercentTotal-want) > 1e-9 {
		t.Errorf("unexpected_percent_total %v, want %v", between.UnexpectedPercentTotal, want)
	}
	if len(between.PartialUnexpected) != 20 {
		t.Fatalf("partial_unexpected_list has %d values, want the first 20", len(between.PartialUnexpected))
	}
	for j, u := range between.PartialUnexpected {
		if u.Row != 5+j || string(u.Value) != fmt.Sprint(105+j) {
			t.Errorf("partial[%d] = row %d value %s, want row %d value %d", j, u.Row, u.Value, 5+j, 105+j)
		}
	}
	notNull := r.Results[1]
	if notNull.MissingCount != 0 || notNull.UnexpectedCount != 2 || notNull.UnexpectedPercent != 2.0/30*100 {
		t.Errorf("not_null counts nulls as unexpected, not missing: %+v", notNull)
	}
	set := r.Results[2]
	if !set.Success || string(set.ObservedValue) != `["n"]` {
		t.Errorf("column set: success %v observed %s", set.Success, set.ObservedValue)
	}
	if st := r.Statistics; r.Success || st.Evaluated != 3 || st.Successful != 1 || st.Unsuccessful != 2 || math.Abs(st.SuccessPercent-100.0/3) > 1e-9 {
		t.Errorf("statistics %+v success %v", r.Statistics, r.Success)
	}
	if r.Rows != 30 || r.ValidRows != 3 || r.DataQualityScore != 10 {
		t.Errorf("rows %d valid %d score %v, want 30 3 10", r.Rows, r.ValidRows, r.DataQualityScore)
	}

	// The JSON is what a pipeline routes: GX's names, None as null.
	var doc struct {
		Suite      string
		Success    bool
		Statistics struct {
			EvaluatedExpectations, SuccessfulExpectations, UnsuccessfulExpectations int
			SuccessPercent                                                          float64
		}
		Results []struct {
			ExpectationConfig struct {
				ExpectationType string          `json:"expectation_type"`
				Kwargs          json.RawMessage `json:"kwargs"`
			} `json:"expectation_config"`
			Success bool
			Result  struct {
				ElementCount               int      `json:"element_count"`
				MissingCount               int      `json:"missing_count"`
				UnexpectedCount            int      `json:"unexpected_count"`
				UnexpectedPercent          *float64 `json:"unexpected_percent"`
				PartialUnexpectedList      []any    `json:"partial_unexpected_list"`
				PartialUnexpectedIndexList []int    `json:"partial_unexpected_index_list"`
				ObservedValue              any      `json:"observed_value"`
			}
		}
		DataQualityScore float64 `json:"data_quality_score"`
	}
	b := r.AppendJSON(nil)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	res := doc.Results[0]
	if doc.Suite != "users" || doc.Success || doc.DataQualityScore != 10 ||
		res.ExpectationConfig.ExpectationType != "expect_column_values_to_be_between" ||
		string(res.ExpectationConfig.Kwargs) != `{"column":"n","max_value":10,"min_value":0}` ||
		res.Result.ElementCount != 30 || res.Result.UnexpectedCount != 25 || len(res.Result.PartialUnexpectedList) != 20 ||
		len(res.Result.PartialUnexpectedIndexList) != 20 || res.Result.PartialUnexpectedIndexList[19] != 24 {
		t.Errorf("report JSON:\n%s", b)
	}
}

func TestReportWithNothingToJudge(t *testing.T) {
	s := mustParse(t, `{report: batch, expectations: [{expect_column_values_to_be_between: {column: n, min_value: 0}}]}`)
	st := newStream(t, s)
	st.check(`{}`, false)
	r := st.v.Report()
	if !r.Results[0].Success || !math.IsNaN(r.Results[0].UnexpectedPercent) {
		t.Errorf("all values missing: success %v unexpected_percent %v, want true and None", r.Results[0].Success, r.Results[0].UnexpectedPercent)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.AppendJSON(nil), &doc); err != nil {
		t.Fatal(err)
	}
	result := doc["results"].([]any)[0].(map[string]any)["result"].(map[string]any)
	if v, ok := result["unexpected_percent"]; !ok || v != nil {
		t.Errorf("unexpected_percent = %v, want null", v)
	}
}

func TestReportResetsPerBatch(t *testing.T) {
	s := mustParse(t, `{report: batch, expectations: [{expect_column_values_to_not_be_null: {column: n}}]}`)
	st := newStream(t, s)
	st.check(`{}`, false)
	st.v.Begin()
	st.check(`{"n":1}`, false)
	if r := st.v.Report(); r.Rows != 1 || r.Results[0].UnexpectedCount != 0 || len(r.Results[0].PartialUnexpected) != 0 {
		t.Errorf("second batch carries the first's counts: %+v", r.Results[0])
	}
}

func TestReportsWhen(t *testing.T) {
	for _, tc := range []struct {
		y    string
		want bool
	}{
		{`{expectations: [{expect_column_values_to_not_be_null: {column: n}}]}`, false},
		{`{expectations: [{expect_column_values_to_not_be_null: {column: n, mostly: 0.9}}]}`, true},
		{`{expectations: [{expect_column_values_to_not_be_null: {column: n, mostly: 1}}]}`, false},
		{`{report: batch, expectations: [{expect_column_values_to_not_be_null: {column: n}}]}`, true},
		{`{report: none, expectations: [{expect_column_values_to_not_be_null: {column: n, mostly: 0.9}}]}`, false},
	} {
		if got := mustParse(t, tc.y).Reports(); got != tc.want {
			t.Errorf("%s: reports %v, want %v", tc.y, got, tc.want)
		}
	}
}
