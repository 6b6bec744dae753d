// Package fsum adds up float64s with Kahan-Babuska-Neumaier compensation,
// the summation SQLite's sum() and avg() use (func.c) and close to pandas'
// compensated groupby sums: a plain running sum loses the low digits of
// each small value added to a large total, so two tools summing the same
// column in the same order could disagree in the cents. Sluice's
// aggregations (the aggregate processor, the sqlite output's summaries)
// sum through it, so they agree with each other and with SQL.
package fsum

import "math"

// Sum is a compensated running sum; its zero value is 0.
type Sum struct {
	sum float64
	err float64 // what the rounding of sum lost, to add back at the end
}

// New is a sum that starts from the total sum+err, for a caller that
// splits an exact starting value into two floats, as SQLite does with an
// integer sum too large for one.
func New(sum, err float64) Sum { return Sum{sum: sum, err: err} }

// Add adds x. The branch keeps the error term exact whichever of the two
// addends is larger (Neumaier's improvement on Kahan).
func (s *Sum) Add(x float64) {
	t := s.sum + x
	if math.Abs(s.sum) > math.Abs(x) {
		s.err += (s.sum - t) + x
	} else {
		s.err += (x - t) + s.sum
	}
	s.sum = t
}

// Value is the sum. An infinite or NaN error term (an addend overflowed)
// is left out, as SQLite does, so an overflow gives ±Inf, not NaN.
func (s Sum) Value() float64 {
	if math.IsInf(s.err, 0) || math.IsNaN(s.err) {
		return s.sum
	}
	return s.sum + s.err
}
