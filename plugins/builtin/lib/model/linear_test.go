package model

import (
	"math"
	"testing"
)

// logistic is the test's own reference: sklearn's predict_proba for a
// binary LogisticRegression, 1 / (1 + exp(-(intercept + coef·x))).
func logistic(intercept float64, coef, x []float64) float64 {
	z := intercept
	for j := range coef {
		z += coef[j] * x[j]
	}
	return 1 / (1 + math.Exp(-z))
}

func TestLogisticShapes(t *testing.T) {
	coef := []float64{0.8, -1.5, 0.003}
	const intercept = -0.25
	// Every way the same model can be written: ours, and what a
	// scikit-learn user dumps (coef_ flat or as one row, intercept_ as a
	// number or a list of one, classes_ as numbers or strings).
	files := map[string]string{
		"ours": `{"type": "logistic", "features": ["a", "b", "c"], "coefficients": [0.8, -1.5, 0.003], "intercept": -0.25, "classes": ["no", "yes"]}`,
		"sklearn nested": `{"coef_": [[0.8, -1.5, 0.003]], "intercept_": [-0.25], "classes_": ["no", "yes"],
		                    "feature_names_in_": ["a", "b", "c"], "n_features_in_": 3}`,
		"sklearn flat":             `{"coef_": [0.8, -1.5, 0.003], "intercept_": -0.25, "classes_": ["no", "yes"], "feature_names_in_": ["a", "b", "c"]}`,
		"sklearn, names in config": `{"type": "logistic", "coef_": [[0.8, -1.5, 0.003]], "intercept_": [-0.25], "classes_": [0, 1]}`,
	}
	rows := [][]float64{{0, 0, 0}, {1, 0, 0}, {0, 1, 100}, {2.5, -3, 1000}, {-10, 5, 0}, {0.3125, 0, 0}}
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			m := mustLoad(t, `{"model_file": "/models/m.json", "features": ["a", "b", "c"], "classes": ["no", "yes"]}`, []byte(file))
			if !m.HasProbability() || m.Kind() != "logistic" {
				t.Fatalf("kind %s, probability %v", m.Kind(), m.HasProbability())
			}
			var r Result
			for _, x := range rows {
				m.Score(x, &r)
				p := logistic(intercept, coef, x)
				if math.Abs(r.Probability-p) > 1e-12 || r.Score != r.Probability || !r.HasProbability {
					t.Errorf("%v: probability %v score %v, want %v", x, r.Probability, r.Score, p)
				}
				wantLabel, conf := "no", 1-p
				if p > 0.5 {
					wantLabel, conf = "yes", p
				}
				if got := m.Labels()[r.Label]; got != wantLabel {
					t.Errorf("%v: p=%v labelled %s, want %s", x, p, got, wantLabel)
				}
				if !r.HasConfidence || math.Abs(r.Confidence-conf) > 1e-12 {
					t.Errorf("%v: confidence %v, want the predicted class's probability %v", x, r.Confidence, conf)
				}
			}
		})
	}
}

func TestLogisticThresholdAndClasses(t *testing.T) {
	file := []byte(`{"type": "logistic", "features": ["x"], "coefficients": [1], "intercept": 0}`)
	for _, tc := range []struct {
		config string
		x      float64 // p = sigmoid(x)
		want   string
	}{
		{`{"model_file": "/m.json"}`, 0.01, "1"},
		{`{"model_file": "/m.json"}`, 0, "0"}, // p = 0.5 is not above the threshold
		{`{"model_file": "/m.json", "threshold": 0.9}`, 2, "0"},
		{`{"model_file": "/m.json", "threshold": 0.9}`, 2.2, "1"},
		{`{"model_file": "/m.json", "classes": ["churn", "stay"]}`, -1, "churn"},
		{`{"model_file": "/m.json", "labels": [{"label": "hot", "at_least": 0.75}], "default_label": "cold"}`, 1.0986122886681098, "hot"}, // p = 0.75
		{`{"model_file": "/m.json", "labels": [{"label": "hot", "above": 0.75}], "default_label": "cold"}`, 1, "cold"},
	} {
		m := mustLoad(t, tc.config, file)
		var r Result
		m.Score([]float64{tc.x}, &r)
		if got := m.Labels()[r.Label]; got != tc.want {
			t.Errorf("%s, x=%v (p=%v): label %s, want %s", tc.config, tc.x, r.Probability, got, tc.want)
		}
	}
}

func TestLinearRegression(t *testing.T) {
	m := mustLoad(t, `{"model_file": "/m.json", "confidence": {"constant": 0.5}}`,
		[]byte(`{"type": "linear", "features": ["rooms", "age"], "coefficients": [25000, -300.5], "intercept": 50000}`))
	var r Result
	m.Score([]float64{3, 10}, &r)
	if want := 50000 + 3*25000 - 10*300.5; r.Score != want {
		t.Errorf("score %v, want %v", r.Score, want)
	}
	if r.HasProbability || r.Label != -1 {
		t.Errorf("a regression has no probability or class: %+v", r)
	}
	if !r.HasConfidence || r.Confidence != 0.5 {
		t.Errorf("confidence %v (set %v), want the constant 0.5", r.Confidence, r.HasConfidence)
	}
	// A scikit-learn LinearRegression dump (no classes_) is linear.
	m = mustLoad(t, `{"model_file": "/m.json", "features": ["rooms", "age"]}`, []byte(`{"coef_": [25000, -300.5], "intercept_": 50000}`))
	m.Score([]float64{3, 10}, &r)
	if want := 50000 + 3*25000 - 10*300.5; r.Score != want || m.Kind() != "linear" {
		t.Errorf("sklearn linear: %s score %v, want linear %v", m.Kind(), r.Score, want)
	}
}

func TestConfidence(t *testing.T) {
	for _, tc := range []struct {
		conf  string
		score float64
		want  float64
	}{
		{`{"constant": 0.85}`, 0.5, 0.85},
		{`{"score_plus": 0.2}`, 0.9, 1}, // max defaults to 1
		{`{"score_plus": 0.25}`, 0.5, 0.75},
		{`{"score_plus": 1, "max": 3}`, 0.5, 1.5},
		{`{"score_plus": 1.5, "max": 1.75}`, 0.5, 1.75},
	} {
		m := mustLoad(t, `{"model": {"weights": {"f": 1}}, "confidence": `+tc.conf+`}`, nil)
		var r Result
		m.Score([]float64{tc.score}, &r)
		if !r.HasConfidence || r.Confidence != tc.want {
			t.Errorf("%s, score %v: confidence %v, want %v", tc.conf, tc.score, r.Confidence, tc.want)
		}
	}
	// Without a confidence setting, only a model with a probability has one.
	m := mustLoad(t, `{"model": {"weights": {"f": 1}}}`, nil)
	var r Result
	m.Score([]float64{0.5}, &r)
	if r.HasConfidence {
		t.Errorf("rules without confidence config gave confidence %v", r.Confidence)
	}
}
