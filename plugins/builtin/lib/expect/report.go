package expect

import (
	"math"
	"strconv"
	"time"
)

// Report is a batch's validation result in the shape of Great
// Expectations' (an ExpectationSuiteValidationResult with result_format
// SUMMARY), plus the seed's data quality score. It aliases the Validator's
// buffers until its next Begin.
type Report struct {
	Suite      string
	Success    bool
	Statistics Statistics
	Results    []Result
	// Rows is the number of records checked, ValidRows those that broke no
	// expectation without `mostly`; DataQualityScore is ValidRows / Rows ×
	// 100.
	Rows, ValidRows  int
	DataQualityScore float64
	// Window places the report of a windowed suite (nil per batch), and
	// ExpectationsScore is then also given: expectations passed / run ×
	// 100, the same number as Statistics.SuccessPercent.
	Window            *WindowInfo
	ExpectationsScore float64
}

// Statistics are GX's suite-level counts.
type Statistics struct {
	Evaluated, Successful, Unsuccessful int
	SuccessPercent                      float64
}

// Result is one expectation's outcome over the batch. Percentages are NaN
// where GX has None: no value to divide by.
type Result struct {
	ExpectationType string
	Kwargs          []byte // as configured, JSON
	Success         bool
	Mostly          float64

	ElementCount, MissingCount, UnexpectedCount int
	MissingPercent                              float64
	UnexpectedPercent                           float64 // of non-missing values, as GX
	UnexpectedPercentTotal                      float64 // of all values
	// PartialUnexpected holds up to 20 unexpected values, in row order,
	// each with its row's index in the batch.
	PartialUnexpected []Unexpected
	// ObservedValue is the observed column list (JSON) of a table
	// expectation: from its first unexpected record, else the first.
	ObservedValue []byte

	// Aggregate marks a window-level expectation, whose result is only
	// Observed (GX's observed_value; NaN where GX has None, when there
	// was nothing to aggregate, which fails it). DistinctCapped says a
	// proportion of unique values stopped counting new values at 100000
	// distinct ones, so Observed is a lower bound.
	Aggregate      bool
	Observed       float64
	DistinctCapped bool
}

// Unexpected is an example of an unexpected value: its JSON and the index
// of its row in the batch (counting the records the validator saw).
type Unexpected struct {
	Row   int
	Value []byte
}

// Report builds the GX result of the rows checked since Begin.
func (v *Validator) Report() *Report {
	r := &v.report
	r.Suite, r.Rows, r.ValidRows = v.s.Name, v.rows, v.valid
	r.DataQualityScore = percent(v.valid, v.rows)
	if v.rows == 0 {
		r.DataQualityScore = 100
	}
	if cap(r.Results) < len(v.s.exps) {
		r.Results = make([]Result, len(v.s.exps))
	}
	r.Results = r.Results[:len(v.s.exps)]
	r.Statistics = Statistics{Evaluated: len(v.s.exps)}
	r.Window = nil
	if v.s.Windowed() {
		r.Window = v.windowInfo()
	}
	for i, e := range v.s.exps {
		st := &v.stats[i]
		res := &r.Results[i]
		if e.agg {
			obs := v.observed(e)
			*res = Result{ExpectationType: e.name, Kwargs: e.kwargs, Mostly: 1, Aggregate: true, Observed: obs,
				Success: !math.IsNaN(obs) && e.inBounds(obs), PartialUnexpected: res.PartialUnexpected[:0]}
			if e.op == opUniqueProportion {
				res.DistinctCapped = v.aggs[i].capped
			}
			if res.Success {
				r.Statistics.Successful++
			} else {
				r.Statistics.Unsuccessful++
			}
			continue
		}
		applicable := st.elements - st.missing
		*res = Result{
			ExpectationType:        e.name,
			Kwargs:                 e.kwargs,
			Mostly:                 e.mostly,
			ElementCount:           st.elements,
			MissingCount:           st.missing,
			UnexpectedCount:        st.unexpected,
			MissingPercent:         percent(st.missing, st.elements),
			UnexpectedPercent:      percent(st.unexpected, applicable),
			UnexpectedPercentTotal: percent(st.unexpected, st.elements),
			PartialUnexpected:      res.PartialUnexpected[:0],
		}
		// GX: success when at least `mostly` of the non-missing values are
		// as expected; with none to judge, the expectation holds.
		res.Success = applicable == 0 || float64(applicable-st.unexpected)/float64(applicable) >= e.mostly
		for _, p := range st.partial {
			res.PartialUnexpected = append(res.PartialUnexpected, Unexpected{p.row, v.arena[p.start:p.end]})
		}
		if st.hasObserved {
			res.ObservedValue = v.arena[st.observed.start:st.observed.end]
		}
		if res.Success {
			r.Statistics.Successful++
		} else {
			r.Statistics.Unsuccessful++
		}
	}
	r.Success = r.Statistics.Unsuccessful == 0
	r.Statistics.SuccessPercent = percent(r.Statistics.Successful, r.Statistics.Evaluated)
	r.ExpectationsScore = r.Statistics.SuccessPercent
	return r
}

func percent(n, of int) float64 {
	if of == 0 {
		return math.NaN()
	}
	return float64(n) / float64(of) * 100
}

// AppendJSON appends the report as compact JSON: GX's field names, with
// null where GX has None.
func (r *Report) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"suite":`...)
	dst = appendJSONStr(dst, r.Suite)
	if w := r.Window; w != nil {
		dst = append(dst, `,"window":{`...)
		if w.HasTime {
			dst = append(dst, `"start":"`...)
			dst = w.Start.AppendFormat(dst, time.RFC3339Nano)
			dst = append(dst, `","end":"`...)
			dst = w.End.AppendFormat(dst, time.RFC3339Nano)
			dst = append(dst, `",`...)
		}
		dst = append(dst, `"first_row":`...)
		dst = strconv.AppendInt(dst, w.FirstRow, 10)
		dst = append(dst, `,"last_row":`...)
		dst = strconv.AppendInt(dst, w.LastRow, 10)
		dst = append(dst, `,"rows":`...)
		dst = strconv.AppendInt(dst, int64(w.Rows), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"success":`...)
	dst = strconv.AppendBool(dst, r.Success)
	dst = append(dst, `,"statistics":{"evaluated_expectations":`...)
	dst = strconv.AppendInt(dst, int64(r.Statistics.Evaluated), 10)
	dst = append(dst, `,"successful_expectations":`...)
	dst = strconv.AppendInt(dst, int64(r.Statistics.Successful), 10)
	dst = append(dst, `,"unsuccessful_expectations":`...)
	dst = strconv.AppendInt(dst, int64(r.Statistics.Unsuccessful), 10)
	dst = append(dst, `,"success_percent":`...)
	dst = appendPercent(dst, r.Statistics.SuccessPercent)
	dst = append(dst, `},"results":[`...)
	for i := range r.Results {
		res := &r.Results[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"expectation_config":{"expectation_type":`...)
		dst = appendJSONStr(dst, res.ExpectationType)
		dst = append(dst, `,"kwargs":`...)
		if len(res.Kwargs) == 0 {
			dst = append(dst, "{}"...)
		} else {
			dst = append(dst, res.Kwargs...)
		}
		dst = append(dst, `},"success":`...)
		dst = strconv.AppendBool(dst, res.Success)
		if res.Aggregate {
			// GX's column aggregate results hold the observed value only.
			dst = append(dst, `,"result":{"observed_value":`...)
			dst = appendPercent(dst, res.Observed)
			if res.DistinctCapped {
				dst = append(dst, `,"details":{"distinct_values_capped_at":`...)
				dst = strconv.AppendInt(dst, maxDistinct, 10)
				dst = append(dst, '}')
			}
			dst = append(dst, "}}"...)
			continue
		}
		dst = append(dst, `,"result":{"element_count":`...)
		dst = strconv.AppendInt(dst, int64(res.ElementCount), 10)
		dst = append(dst, `,"missing_count":`...)
		dst = strconv.AppendInt(dst, int64(res.MissingCount), 10)
		dst = append(dst, `,"missing_percent":`...)
		dst = appendPercent(dst, res.MissingPercent)
		dst = append(dst, `,"unexpected_count":`...)
		dst = strconv.AppendInt(dst, int64(res.UnexpectedCount), 10)
		dst = append(dst, `,"unexpected_percent":`...)
		dst = appendPercent(dst, res.UnexpectedPercent)
		dst = append(dst, `,"unexpected_percent_total":`...)
		dst = appendPercent(dst, res.UnexpectedPercentTotal)
		dst = append(dst, `,"unexpected_percent_nonmissing":`...)
		dst = appendPercent(dst, res.UnexpectedPercent)
		dst = append(dst, `,"partial_unexpected_list":[`...)
		for j, u := range res.PartialUnexpected {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, u.Value...)
		}
		dst = append(dst, `],"partial_unexpected_index_list":[`...)
		for j, u := range res.PartialUnexpected {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(u.Row), 10)
		}
		dst = append(dst, ']')
		if res.ObservedValue != nil {
			dst = append(dst, `,"observed_value":`...)
			dst = append(dst, res.ObservedValue...)
		}
		dst = append(dst, "}}"...)
	}
	dst = append(dst, `],"rows":`...)
	dst = strconv.AppendInt(dst, int64(r.Rows), 10)
	dst = append(dst, `,"valid_rows":`...)
	dst = strconv.AppendInt(dst, int64(r.ValidRows), 10)
	dst = append(dst, `,"data_quality_score":`...)
	dst = appendPercent(dst, r.DataQualityScore)
	if r.Window != nil {
		dst = append(dst, `,"expectations_score":`...)
		dst = appendPercent(dst, r.ExpectationsScore)
	}
	return append(dst, '}')
}

func appendPercent(dst []byte, f float64) []byte {
	if math.IsNaN(f) {
		return append(dst, "null"...)
	}
	return appendFloat(dst, f)
}
