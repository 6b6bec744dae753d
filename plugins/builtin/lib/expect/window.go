package expect

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Window is a suite's tumbling window: Count records each, or Duration of
// event time (read from TimeColumn) each, aligned on the epoch, so record
// time t falls in window floor(t / Duration).
type Window struct {
	Count      int
	Duration   time.Duration
	TimeColumn string
}

// maxDistinct bounds the distinct values a window remembers per
// expect_column_proportion_of_unique_values_to_be_between (8 bytes each):
// up to it the proportion is exact; past it, values not yet seen are
// counted as repeats, so the observed proportion is a lower bound.
const maxDistinct = 100_000

// aggSpecs are the window-level expectations: GX's column aggregate
// expectations and the table row count, judged over a window's rows.
var aggSpecs = map[string]spec{
	"expect_table_row_count_to_be_between":                      {op: opRowCount, args: boundArgs, build: buildAgg},
	"expect_column_mean_to_be_between":                          {op: opMean, args: colBoundArgs, build: buildAgg},
	"expect_column_min_to_be_between":                           {op: opMin, args: colBoundArgs, build: buildAgg},
	"expect_column_max_to_be_between":                           {op: opMax, args: colBoundArgs, build: buildAgg},
	"expect_column_stdev_to_be_between":                         {op: opStdev, args: colBoundArgs, build: buildAgg},
	"expect_column_proportion_of_unique_values_to_be_between":   {op: opUniqueProportion, args: colBoundArgs, build: buildAgg},
	"expect_column_proportion_of_non_null_values_to_be_between": {op: opNonNullProportion, args: colBoundArgs, build: buildAgg},
}

var (
	boundArgs    = []string{"min_value", "max_value", "strict_min", "strict_max"}
	colBoundArgs = []string{"column", "min_value", "max_value", "strict_min", "strict_max"}
)

func buildAgg(b *builder) error {
	e := b.e
	e.agg = true
	if e.op != opRowCount {
		var err error
		if e.col, e.colName, err = b.column("column"); err != nil {
			return err
		}
		e.cols = []int{e.col} // for hashTuple
	}
	if err := buildBounds(b, false); err != nil {
		return err
	}
	if e.op == opUniqueProportion || e.op == opNonNullProportion {
		for _, bound := range []struct {
			arg string
			set bool
			v   float64
		}{{"min_value", e.hasLo, e.lo}, {"max_value", e.hasHi, e.hi}} {
			if bound.set && (bound.v < 0 || bound.v > 1) {
				return fmt.Errorf("%s: want a proportion from 0 to 1, got %v", b.argPath(bound.arg), bound.v)
			}
		}
	}
	return nil
}

func (s *Suite) parseWindow(f *field) error {
	if f == nil {
		if len(s.aggs) > 0 {
			e := s.aggs[0]
			return fmt.Errorf("%s: %s is judged over a window of records, so the suite needs window: {count: N} or {duration: 1h, time_column: FIELD}", e.path, e.name)
		}
		return nil
	}
	if s.reportSet {
		return errors.New("window: set, so a report is made per window; remove report: (or set it to auto)")
	}
	fs, err := objectFields("window", f.raw)
	if err != nil {
		return err
	}
	w := &s.Window
	for _, wf := range fs {
		path := "window." + wf.key
		switch wf.key {
		case "count":
			n, err := wantInt(path, wf.raw)
			if err != nil {
				return err
			}
			if n < 1 || n > 1<<40 {
				return fmt.Errorf("%s: want a positive number of records, got %d", path, n)
			}
			w.Count = int(n)
		case "duration":
			str, err := wantString(path, wf.raw)
			if err != nil {
				return err
			}
			d, err := time.ParseDuration(str)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: want a positive duration such as 1h or 5m, got %q", path, str)
			}
			w.Duration = d
		case "time_column":
			col, err := wantString(path, wf.raw)
			if err != nil {
				return err
			}
			if err := checkColumn(path, col); err != nil {
				return err
			}
			w.TimeColumn = col
		default:
			return fmt.Errorf("%s: unknown key (want count, or duration and time_column)", path)
		}
	}
	switch {
	case w.Count > 0 && w.Duration > 0:
		return errors.New("window: set count or duration, not both")
	case w.Count == 0 && w.Duration == 0:
		return errors.New("window: set count (records per window) or duration with time_column (event time per window)")
	case w.Duration > 0 && w.TimeColumn == "":
		return errors.New("window.duration: needs window.time_column, the field holding each record's event time")
	case w.Count > 0 && w.TimeColumn != "":
		return errors.New("window.time_column: only used with window.duration; a count window needs no time")
	}
	if w.TimeColumn != "" {
		s.winCol = s.addColumn(w.TimeColumn)
	}
	return nil
}

// agg is what a window-level expectation accumulates over a window.
type agg struct {
	values     int     // numbers seen (mean, min, max, stdev)
	mean, m2   float64 // Welford's running mean and sum of squared deviations
	min, max   float64
	nonNull    int      // non-missing values (proportions)
	distinct   []uint64 // open-addressing set of value hashes, 0 = empty
	nDistinct  int
	capped     bool // maxDistinct was reached
	hasZeroKey bool // the hash 0, which cannot be stored in the set
}

func (a *agg) reset() {
	a.values, a.mean, a.m2, a.min, a.max = 0, 0, 0, 0, 0
	a.nonNull, a.nDistinct, a.capped, a.hasZeroKey = 0, 0, false, false
	clear(a.distinct)
}

// add folds one number in (Welford's online algorithm: numerically stable
// in one pass).
func (a *agg) add(f float64) {
	a.values++
	if a.values == 1 {
		a.min, a.max = f, f
	} else {
		a.min, a.max = min(a.min, f), max(a.max, f)
	}
	d := f - a.mean
	a.mean += d / float64(a.values)
	a.m2 += d * (f - a.mean)
}

// insert adds a hash to the distinct set; the set doubles while under
// maxDistinct and keeps its size from window to window, so a steady
// stream does not allocate.
func (a *agg) insert(h uint64) {
	if h == 0 {
		if !a.hasZeroKey {
			a.hasZeroKey = true
			a.nDistinct++
		}
		return
	}
	if a.nDistinct >= maxDistinct {
		// Known values are still recognised; new ones are not counted.
		if !a.contains(h) {
			a.capped = true
		}
		return
	}
	if (a.nDistinct+1)*4 > len(a.distinct)*3 {
		a.grow()
	}
	mask := uint64(len(a.distinct) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch a.distinct[i] {
		case h:
			return
		case 0:
			a.distinct[i] = h
			a.nDistinct++
			return
		}
	}
}

func (a *agg) contains(h uint64) bool {
	mask := uint64(len(a.distinct) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch a.distinct[i] {
		case h:
			return true
		case 0:
			return false
		}
	}
}

func (a *agg) grow() {
	old := a.distinct
	n := 2 * len(old)
	if n == 0 {
		n = 64
	}
	a.distinct = make([]uint64, n)
	mask := uint64(n - 1)
	for _, h := range old {
		if h == 0 {
			continue
		}
		i := h & mask
		for a.distinct[i] != 0 {
			i = (i + 1) & mask
		}
		a.distinct[i] = h
	}
}

// aggregate folds rows into e's window aggregate. Missing values are left
// out, as pandas' skipna; for the numeric aggregates so are values that
// are not numbers (GX would raise on a mixed column).
func (v *Validator) aggregate(e *expectation, rows []Row) {
	if e.col < 0 {
		return // the row count: Evaluate counts the rows
	}
	a := &v.aggs[e.index]
	col := &v.cols[e.col]
	switch e.op {
	case opMean, opMin, opMax, opStdev:
		for r := range rows {
			val := col.Value(r)
			if val.Kind != KindNumber {
				continue
			}
			if f, ok := val.number(); ok {
				a.add(f)
			}
		}
	case opNonNullProportion:
		for r := range rows {
			if col.Value(r).Kind > KindNull {
				a.nonNull++
			}
		}
	case opUniqueProportion:
		for r := range rows {
			if col.Value(r).Kind <= KindNull {
				continue
			}
			a.nonNull++
			a.insert(hashTuple(e, v.row(rows, r)))
		}
	}
}

// observed is e's statistic over the window; NaN where GX has None (no
// value to aggregate).
func (v *Validator) observed(e *expectation) float64 {
	a := &v.aggs[e.index]
	switch e.op {
	case opRowCount:
		return float64(v.rows)
	case opMean:
		if a.values > 0 {
			return a.mean
		}
	case opMin:
		if a.values > 0 {
			return a.min
		}
	case opMax:
		if a.values > 0 {
			return a.max
		}
	case opStdev:
		if a.values > 1 { // sample standard deviation, ddof=1, as GX
			return math.Sqrt(a.m2 / float64(a.values-1))
		}
	case opNonNullProportion:
		if v.rows > 0 {
			return float64(a.nonNull) / float64(v.rows)
		}
	case opUniqueProportion:
		if a.nonNull > 0 {
			return float64(a.nDistinct) / float64(a.nonNull)
		}
	}
	return math.NaN()
}

// WindowSegment says how many of rows rows, from the first, belong to the
// current window (their values in cols, as for EvaluateColumns), and
// whether the window closes after them. The caller passes those rows to
// Evaluate and Finish, and when closes is true takes the
// window's Report and calls Begin to start the next window; then it calls
// WindowSegment again with the rest.
//
// A count window closes after its Count-th row. A time window closes
// before the first row whose event time is in a later window than the
// current one (which started with the first row with a readable time):
// that row opens the next window. A row without a readable time, or with
// a time before the current window's (late), belongs to the current one.
func (v *Validator) WindowSegment(cols []Column, rows int) (n int, closes bool) {
	w := &v.s.Window
	if w.Count > 0 {
		if rest := w.Count - v.rows; rows >= rest {
			return rest, true
		}
		return rows, false
	}
	d := int64(w.Duration)
	times := &cols[v.s.winCol]
	for i := range rows {
		t, ok := eventTime(times.Value(i))
		if !ok {
			continue
		}
		idx := t / d
		if t < 0 && t%d != 0 {
			idx-- // floor
		}
		if !v.started {
			v.started, v.window = true, idx
			continue
		}
		if idx > v.window {
			return i, true
		}
	}
	return rows, false
}

// WindowInfo places a window's report: the instance's sequence numbers of
// its first and last rows (counting every row the validator saw, from 0)
// and, for a time window, its bounds.
type WindowInfo struct {
	FirstRow, LastRow int64
	Rows              int
	HasTime           bool
	Start, End        time.Time
}

func (v *Validator) windowInfo() *WindowInfo {
	wi := &v.winInfo
	*wi = WindowInfo{FirstRow: v.first, LastRow: v.first + int64(v.rows) - 1, Rows: v.rows}
	if d := v.s.Window.Duration; d > 0 && v.started {
		wi.HasTime = true
		wi.Start = time.Unix(0, v.window*int64(d)).UTC()
		wi.End = wi.Start.Add(d)
	}
	return wi
}
