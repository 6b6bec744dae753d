package jsonnum

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAppendFloatMatchesStrconv: the short-decimal path writes exactly
// what strconv does, on the values it takes (prices, k-decimal values,
// the edges of its range) and on those it must leave to strconv.
func TestAppendFloatMatchesStrconv(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 0.2, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, 0.29, 12.34, 19.99, 1e-6, 1.5e-6, 9.99e-7,
		1e15, 1e15 - 1, 999999999999999.9, 99999999999999.98, 123456789012345, 1e21, 1e-7, 5e-324, math.MaxFloat64,
		1234567.0, 0.000123, 100, 1200, 3.0, 4.35, 0.015, 1.005, 2.675, 9007199254740993, math.NaN(), math.Inf(1), math.Inf(-1)}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		k := rng.IntN(9)
		m := rng.Int64N(1 << uint(1+rng.IntN(52)))
		v := float64(m) / math.Pow(10, float64(k))
		if rng.IntN(2) == 0 {
			v = -v
		}
		vals = append(vals, v, float64(rng.IntN(10_000_000))/100, math.Float64frombits(rng.Uint64()), rng.Float64()*math.Pow(10, float64(rng.IntN(24)-8)))
	}
	taken := 0
	for _, v := range vals {
		got, want := string(AppendFloat([]byte("x"), v)), string(appendFloatStrconv([]byte("x"), v))
		if got != want {
			t.Fatalf("%v (bits %#x): %q, strconv writes %q", v, math.Float64bits(v), got, want)
		}
		if _, ok := appendShortDecimal(nil, v); ok {
			taken++
		}
	}
	if taken < len(vals)/4 {
		t.Errorf("the short path took %d of %d values; the test no longer exercises it", taken, len(vals))
	}
}

// BenchmarkAppendFloat: a sales price, through AppendFloat and through
// strconv alone, side by side.
//
//	go test -run '^$' -bench AppendFloat -count 6 ./plugins/sdk/jsonnum/
func BenchmarkAppendFloat(b *testing.B) {
	prices := make([]float64, 1024)
	for i := range prices {
		prices[i] = float64(1000+i*37%99000) / 100
	}
	for _, tc := range []struct {
		name string
		fn   func([]byte, float64) []byte
	}{{"short-decimal", AppendFloat}, {"strconv", appendFloatStrconv}} {
		b.Run(tc.name, func(b *testing.B) {
			var buf []byte
			i := 0
			for b.Loop() {
				buf = tc.fn(buf[:0], prices[i%len(prices)])
				i++
			}
		})
	}
}
