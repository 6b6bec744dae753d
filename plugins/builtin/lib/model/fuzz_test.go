package model

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the model-file parsers: they may refuse
// them, never panic, and a model they accept must score any row.
func FuzzLoad(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join(fixtures, "xgb_*.json"))
	for _, n := range names {
		if filepath.Base(n) == "xgb_expected.json" {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(xgbJSON("multi:softmax", "[1E0,2E0]", 2, nil, 4, []testTree{stump, stump}))
	f.Add(randomEnsemble(2, 3, 4))
	f.Add([]byte(`{"type": "logistic", "features": ["a", "b", "c", "d"], "coefficients": [1, 2, 3, 4], "intercept": 0.5, "classes": ["n", "y"]}`))
	f.Add([]byte(`{"coef_": [[1, 2, 3, 4]], "intercept_": [0.5], "classes_": [false, true]}`))
	f.Add([]byte(`{"weights": {"a": 1, "d": 2}, "bias": 1, "conditions": [{"feature": "b", "op": "!=", "value": 0, "add": 1}]}`))
	f.Add([]byte(`{"learner": {}}`))
	f.Add([]byte(`[1, 2]`))
	cfg, err := ParseConfig([]byte(`{"model_file": "/m.json", "features": ["a", "b", "c", "d"],
		"labels": [{"label": "hi", "above": 0.5}], "default_label": "lo", "confidence": {"score_plus": 0.1}}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := cfg.Load(data)
		if err != nil {
			return
		}
		var r Result
		for _, v := range []float64{0, 1, -1e300, math.NaN()} {
			x := make([]float64, len(m.Features()))
			for i := range x {
				x[i] = v
			}
			m.Score(x, &r)
			if r.Label < -1 || r.Label >= len(m.Labels()) {
				t.Fatalf("label index %d of %d labels", r.Label, len(m.Labels()))
			}
		}
	})
}

// FuzzParseConfig: any config is accepted or refused with an error, never
// a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(seedValueConfig))
	f.Add([]byte(seedEngagementConfig))
	f.Add([]byte(`{"model_file": "/m.json", "defaults": {"a": 1}, "outputs": {"label": ""}, "classes": ["a", "b"], "threshold": 0.2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil || !c.Inline() {
			return
		}
		m, err := c.Load(nil)
		if err != nil {
			t.Fatalf("an inline model that parsed once fails to load: %v", err)
		}
		var r Result
		m.Score(make([]float64, len(m.Features())), &r)
	})
}
