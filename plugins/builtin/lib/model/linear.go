package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

type linear struct {
	intercept float64
	coef      []float64
}

// parseLinear reads a linear or logistic model in either of two shapes:
//
//	{"type": "logistic", "features": [...], "coefficients": [...],
//	 "intercept": 0.1, "classes": ["low", "high"]}
//
// or what a scikit-learn user dumps from a fitted estimator:
//
//	{"coef_": [[...]], "intercept_": [0.1], "classes_": [0, 1],
//	 "feature_names_in_": [...]}
//
// where coef_ may also be a flat list and intercept_ a number.
func (c *Config) parseLinear(o *object, logistic bool) (*Model, error) {
	m := &Model{kind: kindLinear}
	if logistic {
		m.kind, m.probability, m.binary = kindLogistic, true, true
	}
	coefKey := pick(o, "coefficients", "coef_")
	interceptKey := pick(o, "intercept", "intercept_")
	classesKey := pick(o, "classes", "classes_")
	for _, pair := range [][2]string{{"coefficients", "coef_"}, {"intercept", "intercept_"}, {"classes", "classes_"}, {"features", "feature_names_in_"}} {
		if o.has(pair[0]) && o.has(pair[1]) {
			return nil, errorf(o.at(pair[1]), "%s is set too: give one of them", pair[0])
		}
	}
	raw, ok := o.raw(coefKey)
	if !ok {
		return nil, errorf(o.at("coefficients"), "missing: a linear model needs coefficients (or scikit-learn's coef_)")
	}
	var err error
	if m.linear.coef, err = parseCoef(o.at(coefKey), raw); err != nil {
		return nil, err
	}
	if raw, ok := o.raw(interceptKey); ok {
		if m.linear.intercept, err = parseIntercept(o.at(interceptKey), raw); err != nil {
			return nil, err
		}
	}
	if m.features, err = c.modelFeatures(o, pick(o, "features", "feature_names_in_")); err != nil {
		return nil, err
	}
	if m.features == nil {
		return nil, wrap(o.at("features"), errNoFeatures)
	}
	if len(m.features) != len(m.linear.coef) {
		return nil, errorf(o.at(coefKey), "has %d coefficients for %d features (%v)", len(m.linear.coef), len(m.features), m.features)
	}
	var n float64
	if ok, err := o.number("n_features_in_", &n); err != nil {
		return nil, err
	} else if ok && n != float64(len(m.linear.coef)) {
		return nil, errorf(o.at("n_features_in_"), "is %v, but there are %d coefficients", n, len(m.linear.coef))
	}
	items, hasClasses, err := o.list(classesKey)
	if err != nil {
		return nil, err
	}
	switch {
	case hasClasses && !logistic:
		return nil, errorf(o.at(classesKey), "a linear regression has no classes (did you mean type: logistic?)")
	case hasClasses && len(items) != 2:
		return nil, errorf(o.at(classesKey), "has %d classes; logistic models here are binary (2 classes)", len(items))
	case hasClasses:
		for i, it := range items {
			s, err := className(it)
			if err != nil {
				return nil, wrap(index(o.at(classesKey), i), err)
			}
			m.classes = append(m.classes, s)
		}
	case logistic:
		m.classes = []string{"0", "1"}
	}
	return m, nil
}

func pick(o *object, ours, sklearn string) string {
	o.known = append(o.known, ours, sklearn)
	if o.has(sklearn) {
		return sklearn
	}
	return ours
}

// parseCoef accepts a flat list or a list holding one list, as
// scikit-learn's coef_ is for a binary classifier.
func parseCoef(at string, raw json.RawMessage) ([]float64, error) {
	items, err := parseList(at, raw)
	if err != nil {
		return nil, err
	}
	if len(items) > 0 && kind(items[0]) == "a list" {
		if len(items) != 1 {
			return nil, errorf(at, "has %d rows; only binary classifiers and single-target regressions (one row) are supported", len(items))
		}
		return parseNumbers(index(at, 0), items[0])
	}
	if len(items) == 0 {
		return nil, errorf(at, "is empty")
	}
	return parseNumbers(at, raw)
}

func parseIntercept(at string, raw json.RawMessage) (float64, error) {
	if kind(raw) == "a list" {
		v, err := parseNumbers(at, raw)
		if err != nil {
			return 0, err
		}
		if len(v) != 1 {
			return 0, errorf(at, "has %d values, want one", len(v))
		}
		return v[0], nil
	}
	v, err := parseNumber(raw)
	return v, wrap(at, err)
}

// className turns a class as scikit-learn dumps it (string, number or
// boolean) into the label written for it.
func className(raw json.RawMessage) (string, error) {
	switch kind(raw) {
	case "a string":
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case "a number", "a boolean":
		return string(bytes.TrimSpace(raw)), nil
	}
	return "", fmt.Errorf("want a string, number or boolean, got %s", kind(raw))
}

func (l *linear) margin(x []float64) float64 {
	s := l.intercept
	for j, w := range l.coef {
		s += float64(w * x[j]) // no FMA: see rules.score
	}
	return s
}

// sigmoid is the logistic function, computed so exp never overflows.
func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
