package fsum_test

import (
	"database/sql"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver" // SQLite's own sum(), the oracle

	"github.com/sluice-dev/sluice/internal/fsum"
)

func sum(xs []float64) float64 {
	var s fsum.Sum
	for _, x := range xs {
		s.Add(x)
	}
	return s.Value()
}

// exact is the float64 nearest the exact sum of xs.
func exact(xs []float64) float64 {
	var r big.Rat
	for _, x := range xs {
		var v big.Rat
		v.SetFloat64(x)
		r.Add(&r, &v)
	}
	f, _ := r.Float64()
	return f
}

func cents(rng *rand.Rand, n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		// The seed's total_amount: a quantity of 1-5 times a price in cents.
		xs[i] = float64(1+rng.IntN(5)) * (float64(rng.IntN(100000)) / 100)
	}
	return xs
}

func TestSum(t *testing.T) {
	tens := make([]float64, 10)
	for i := range tens {
		tens[i] = 0.1
	}
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"ten times 0.1", tens, 1}, // a running sum gives 0.9999999999999999
		{"a small value between two large ones", []float64{1e16, 1, -1e16}, 1},
		{"the small value first", []float64{1, 1e16, -1e16}, 1},
		{"overflow", []float64{math.MaxFloat64, math.MaxFloat64}, math.Inf(1)},
		{"negative overflow", []float64{-math.MaxFloat64, -math.MaxFloat64, 1}, math.Inf(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sum(tc.xs); got != tc.want {
				t.Errorf("sum = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSumIsExact: over the seed's kind of amounts, the compensated sum is
// the float nearest the exact sum, where a running sum drifts from it.
func TestSumIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 13))
	drifted := 0
	for range 50 {
		xs := cents(rng, 20000)
		want := exact(xs)
		if got := sum(xs); got != want {
			t.Fatalf("sum of %d amounts = %v, exact %v", len(xs), got, want)
		}
		var plain float64
		for _, x := range xs {
			plain += x
		}
		if plain != want {
			drifted++
		}
	}
	if drifted == 0 {
		t.Error("a running sum was exact every time: the data does not show what compensation is for")
	}
}

// TestSumMatchesSQLite: the same values in the same order give, bit for
// bit, what SQLite's sum() and avg() give, so a summary computed in Go and
// one computed in SQL agree.
func TestSumMatchesSQLite(t *testing.T) {
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(7, 21))
	for round := range 20 {
		xs := cents(rng, 5000)
		if round%2 == 1 {
			xs = append(xs, 1e17, -1e17) // large values cancelling
		}
		if _, err := db.Exec("DROP TABLE IF EXISTS t; CREATE TABLE t (x REAL)"); err != nil {
			t.Fatal(err)
		}
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range xs {
			if _, err := tx.Exec("INSERT INTO t VALUES (?)", x); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var s, avg float64
		if err := db.QueryRow("SELECT sum(x), avg(x) FROM t").Scan(&s, &avg); err != nil {
			t.Fatal(err)
		}
		got := sum(xs)
		if got != s || got/float64(len(xs)) != avg {
			t.Fatalf("round %d: sum %v avg %v, SQLite %v %v", round, got, got/float64(len(xs)), s, avg)
		}
	}
}
