package model

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigErrors: every mistake is reported with the config path of the
// key at fault first, so the agent's lint can point at the YAML line.
func TestConfigErrors(t *testing.T) {
	const w = `"model": {"weights": {"a": 1}}`
	for _, tc := range []struct {
		config string
		want   string // the whole message
	}{
		{`null`, `model: no model: set model (inline rules, linear or logistic) or model_file`},
		{`{}`, `model: no model: set model (inline rules, linear or logistic) or model_file`},
		{`[]`, `want an object, got a list`},
		{`{"modle": {}}`, `modle: unknown key (want one of classes, confidence, default_label, default_value, defaults, features, input_prefix, labels, model, model_file, outputs, threshold)`},
		{`{"model": {"weights": {"a": 1}}, "model_file": "/m.json"}`, `model_file: model is set too: give the model inline or in a file, not both`},
		{`{"model_file": "models/m.json"}`, `model_file: "models/m.json" is not absolute: give the path the plugin sees, inside one of the processor's mounts (e.g. /models/model.json)`},
		{`{"model_file": 3}`, `model_file: want a string, got a number`},
		{`{"model": {"conditions": [
			{"feature": "a", "op": ">", "value": 1, "add": 1},
			{"feature": "b", "op": "<", "value": 1, "add": 1},
			{"feature": "c", "op": "=>", "value": 1, "add": 1}]}}`,
			`model.conditions[2].op: unknown operator "=>" (want >, >=, <, <=, == or !=)`},
		{`{"model": {"conditions": [{"feature": "a", "value": 1, "add": 1}]}}`, `model.conditions[0].op: missing: one of >, >=, <, <=, == or !=`},
		{`{"model": {"conditions": [{"feature": "a", "op": ">", "add": 1}]}}`, `model.conditions[0].value: missing: the number the feature is compared with`},
		{`{"model": {"conditions": [{"feature": "a", "op": ">", "value": "1", "add": 1}]}}`, `model.conditions[0].value: want a number, got a string`},
		{`{"model": {"conditions": [{"feature": "a", "op": ">", "value": 1}]}}`, `model.conditions[0].add: missing: what the condition adds to the score when it holds`},
		{`{"model": {"conditions": [{"op": ">", "value": 1, "add": 1}]}}`, `model.conditions[0].feature: missing: which feature the condition tests`},
		{`{"model": {"conditions": [{"feature": "a", "op": ">", "value": 1, "add": 1, "then": 2}]}}`, `model.conditions[0].then: unknown key (want one of add, feature, op, value)`},
		{`{"model": {"conditions": {"feature": "a"}}}`, `model.conditions: want a list, got an object`},
		{`{"model": {"weights": {"a": "heavy"}}}`, `model.weights.a: want a number, got a string`},
		{`{"model": {"weights": {"a": 1e999}}}`, `model.weights.a: 1e999 is not a finite number`},
		{`{"model": {"weights": {"a": 1}, "bais": 1}}`, `model.bais: unknown key (want one of bias, conditions, features, type, weights)`},
		{`{"model": {"bias": 1}}`, `model.type: missing: cannot tell the model's type: set type (rules, linear or logistic), or give an XGBoost model (learner) or a scikit-learn dump (coef_)`},
		{`{"model": {"type": "rules", "bias": 1}}`, `model.weights: rules need weights, conditions or both`},
		{`{"model": {"type": "forest"}}`, `model.type: unknown model type "forest" (want rules, linear or logistic; XGBoost models are recognised by their learner key)`},
		{`{"features": ["a"], "model": {"weights": {"a": 1, "b": 2}}}`, `model.weights.b: feature "b" is not in features (a)`},
		{`{"features": ["a", "b", "a"], ` + w + `}`, `features[2]: "a" is listed twice (also at [0])`},
		{`{"features": ["a", ""], ` + w + `}`, `features[1]: is empty`},
		{`{"features": "a", ` + w + `}`, `features: want a list, got a string`},
		{`{"defaults": {"a": true}, ` + w + `}`, `defaults.a: want a number, got a boolean`},
		{`{"default_value": "0", ` + w + `}`, `default_value: want a number, got a string`},
		{`{` + w + `, "labels": [{"label": "hi", "above": 0.7}]}`, `default_label: missing: labels needs a default_label for scores below every threshold`},
		{`{` + w + `, "default_label": "lo"}`, `default_label: set without labels: it is the label for scores below every threshold in labels`},
		{`{` + w + `, "labels": [{"label": "hi"}], "default_label": "lo"}`, `labels[0]: no threshold: give above (score > x) or at_least (score >= x)`},
		{`{` + w + `, "labels": [{"label": "hi", "above": 1, "at_least": 1}], "default_label": "lo"}`, `labels[0].at_least: above is set too: give one of above (score > x) and at_least (score >= x)`},
		{`{` + w + `, "labels": [{"above": 1}], "default_label": "lo"}`, `labels[0].label: missing: each entry needs a label`},
		{`{` + w + `, "labels": [{"label": "mid", "above": 0.3}, {"label": "hi", "above": 0.7}], "default_label": "lo"}`,
			`labels[1]: can never match: labels[0] (mid) already takes every score this one would; list thresholds from the highest down`},
		{`{` + w + `, "labels": [{"label": "a", "at_least": 0.5}, {"label": "b", "above": 0.5}], "default_label": "lo"}`,
			`labels[1]: can never match: labels[0] (a) already takes every score this one would; list thresholds from the highest down`},
		{`{` + w + `, "labels": [{"label": "a", "above": 0.5, "below": 1}], "default_label": "lo"}`, `labels[0].below: unknown key (want one of above, at_least, label)`},
		{`{` + w + `, "threshold": 1.5}`, `threshold: 1.5 is not a probability between 0 and 1`},
		{`{` + w + `, "confidence": 0.85}`, `confidence: want an object, got a number`},
		{`{` + w + `, "confidence": {}}`, `confidence: want exactly one of constant: x, score_plus: x (with max, default 1) or probability: true`},
		{`{` + w + `, "confidence": {"constant": 0.8, "score_plus": 0.2}}`, `confidence: want exactly one of constant: x, score_plus: x (with max, default 1) or probability: true`},
		{`{` + w + `, "confidence": {"constant": 0.8, "max": 1}}`, `confidence.max: only goes with score_plus`},
		{`{` + w + `, "confidence": {"probability": true}}`, `confidence.probability: this rules model gives no probability; use constant or score_plus`},
		{`{` + w + `, "confidence": {"probabilty": true}}`, `confidence.probabilty: unknown key (want one of constant, max, probability, score_plus)`},
		{`{` + w + `, "classes": ["lo", "hi"]}`, `classes: the model is not a classifier, so it has no classes to name; use labels for thresholds on the score`},
		{`{` + w + `, "outputs": {"lable": "x"}}`, `outputs.lable: unknown key (want one of confidence, label, model_version, probability, score)`},
		{`{` + w + `, "outputs": {"label": 1}}`, `outputs.label: want a string, got a number`},
		{`{"model": {"type": "logistic", "coefficients": [1, 2]}}`, `model.features: the model does not name its features: list them in the config's features, in the model's column order`},
		{`{"model": {"type": "logistic", "features": ["a"], "coefficients": [1, 2]}}`, `model.coefficients: has 2 coefficients for 1 features ([a])`},
		{`{"model": {"type": "logistic", "features": ["a"], "coefficients": [1], "classes": ["x", "y", "z"]}}`, `model.classes: has 3 classes; logistic models here are binary (2 classes)`},
		{`{"model": {"type": "linear", "features": ["a"], "coefficients": [1], "classes": ["x", "y"]}}`, `model.classes: a linear regression has no classes (did you mean type: logistic?)`},
		{`{"model": {"features": ["a"], "coef_": [[1], [2]]}}`, `model.coef_: has 2 rows; only binary classifiers and single-target regressions (one row) are supported`},
		{`{"model": {"features": ["a"], "coef_": [1], "coefficients": [1]}}`, `model.coef_: coefficients is set too: give one of them`},
		{`{"model": {"features": ["a"], "coef_": [1], "intercept_": [1, 2]}}`, `model.intercept_: has 2 values, want one`},
		{`{"model": {"features": ["a"], "coef_": [1], "classes_": [0, 1], "n_features_in_": 2}}`, `model.n_features_in_: is 2, but there are 1 coefficients`},
		{`{"model": {"features": ["a"], "coef_": [1], "classes_": [0, 1], "n_iter_": [5]}}`, `model.n_iter_: unknown key (want one of classes, classes_, coef_, coefficients, feature_names_in_, features, intercept, intercept_, n_features_in_, type)`},
		{`{"model": {"type": "logistic", "features": ["a"], "coefficients": [1]}, "classes": ["x"]}`, `classes: names 1 classes, the model has 2`},
	} {
		_, err := ParseConfig([]byte(tc.config))
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.config, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.config, err.Error(), tc.want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Path == "" && !strings.HasPrefix(tc.config, "[") {
			t.Errorf("%s: error %v carries no config path", tc.config, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := mustConfig(t, `{"model": {"weights": {"a": 1}}}`)
	want := Outputs{"prediction.label", "prediction.score", "prediction.probability", "prediction.confidence", "prediction.model_version"}
	if c.Outputs != want || c.InputPrefix != "features." {
		t.Errorf("defaults: outputs %+v prefix %q", c.Outputs, c.InputPrefix)
	}
	c = mustConfig(t, `{"model": {"weights": {"a": 1}}, "input_prefix": "", "outputs": {"label": "segment", "model_version": ""}}`)
	want = Outputs{"segment", "prediction.score", "prediction.probability", "prediction.confidence", ""}
	if c.Outputs != want || c.InputPrefix != "" {
		t.Errorf("overrides: outputs %+v prefix %q", c.Outputs, c.InputPrefix)
	}
	// YAML's `key: ~` arrives as null and means "not set".
	c = mustConfig(t, `{"model": {"weights": {"a": 1}}, "labels": null, "threshold": null}`)
	if c.post.threshold != 0.5 {
		t.Errorf("threshold %v after null, want the default 0.5", c.post.threshold)
	}
}

// TestVersion: the model version names the model's bytes.
func TestVersion(t *testing.T) {
	a := mustLoad(t, `{"model": {"weights": {"a": 1}}}`, nil)
	b := mustLoad(t, `{"model": {"weights": {"a": 2}}}`, nil)
	if len(a.Version()) != 12 || a.Version() == b.Version() {
		t.Errorf("inline versions %q and %q: want 12 hex digits, different for different rules", a.Version(), b.Version())
	}
	file := []byte(`{"type": "linear", "features": ["a"], "coefficients": [1]}`)
	// sha256 of the file, known independently: printf '%s' "$file" | sha256sum
	if got := mustLoad(t, `{"model_file": "/m.json"}`, file).Version(); got != "6ea459be4cdb" {
		t.Errorf("file version %s", got)
	}
}

func TestBind(t *testing.T) {
	c := mustConfig(t, `{"model_file": "/m.json", "defaults": {"b": 5}, "default_value": -1}`)
	m, err := c.Load([]byte(`{"type": "linear", "features": ["c", "b"], "coefficients": [1, 1]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bind([]string{"a", "b", "c"}, m)
	if err != nil {
		t.Fatal(err)
	}
	if b.Cols[0] != 2 || b.Cols[1] != 1 || b.Defaults[0] != -1 || b.Defaults[1] != 5 {
		t.Errorf("binding %+v", b)
	}
	if _, err := c.Bind([]string{"a", "b"}, m); err == nil || !strings.HasPrefix(err.Error(), `model_file: the model needs feature "c", which is not among the inputs (a, b)`) {
		t.Errorf("model with a new feature: %v", err)
	}
	if _, err := c.Bind([]string{"c"}, m); err == nil || err.Error() != "defaults.b: not an input (inputs: c)" {
		t.Errorf("default for an unknown input: %v", err)
	}
}
