package model

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// benchModels are one model of each kind, with a row to score.
func benchModels(t testing.TB) []struct {
	name string
	m    *Model
	x    []float64
} {
	multi, err := os.ReadFile(filepath.Join(fixtures, "xgb_multi.json"))
	if err != nil {
		t.Fatal(err)
	}
	x20 := make([]float64, 20)
	for i := range x20 {
		x20[i] = float64(i%7) * 0.3
	}
	x20[3] = math.NaN()
	return []struct {
		name string
		m    *Model
		x    []float64
	}{
		{"rules_seed_value", mustLoad(t, seedValueConfig, nil), []float64{4, 2, 310.5, 1}},
		{"rules_seed_engagement", mustLoad(t, seedEngagementConfig, nil), []float64{12, 3, 2.5, 4}},
		{"logistic_4", mustLoad(t, `{"model_file": "/m.json", "features": ["a", "b", "c", "d"]}`,
			[]byte(`{"coef_": [[0.3, -0.2, 0.001, 1.5]], "intercept_": [-1], "classes_": [0, 1]}`)), []float64{4, 2, 310.5, 1}},
		{"xgboost_100_trees_depth_6", mustLoad(t, `{"model_file": "/m.json"}`, randomEnsemble(100, 6, 20)), x20},
		{"xgboost_multi_3_classes_24_trees", mustLoad(t, `{"model_file": "/m.json"}`, multi), []float64{12, 3, math.NaN(), 1}},
	}
}

// BenchmarkScore measures one row. The agent's benchmarks run the same code
// natively; inside the plugin it runs under wazero.
func BenchmarkScore(b *testing.B) {
	for _, bm := range benchModels(b) {
		b.Run(bm.name, func(b *testing.B) {
			var r Result
			b.ReportAllocs()
			for b.Loop() {
				bm.m.Score(bm.x, &r)
			}
		})
	}
}

// TestScoreDoesNotAllocate: after the first row has grown the Result's
// scratch space, scoring allocates nothing.
func TestScoreDoesNotAllocate(t *testing.T) {
	for _, bm := range benchModels(t) {
		var r Result
		bm.m.Score(bm.x, &r)
		if n := testing.AllocsPerRun(100, func() { bm.m.Score(bm.x, &r) }); n != 0 {
			t.Errorf("%s: %v allocations per row", bm.name, n)
		}
	}
}

// BenchmarkLoadXGBoost is the cost of (re)loading a model file of 100
// trees of depth 6, paid once per change of the file.
func BenchmarkLoadXGBoost(b *testing.B) {
	file := randomEnsemble(100, 6, 20)
	cfg := mustConfig(b, `{"model_file": "/m.json"}`)
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := cfg.Load(file); err != nil {
			b.Fatal(err)
		}
	}
}
