// Package model is the scoring logic of the builtin `score` plugin, kept
// free of the plugin SDK so that it compiles both natively (tests, the
// agent's benchmarks) and for wasip1 (the plugin).
//
// It parses and validates the plugin's config (ParseConfig) and the models a
// config or model file describes (Config.Load):
//
//   - rules: a weighted sum of features plus a bias, plus condition terms
//     (feature op value → add), the shape of the seed tutorial's scorers;
//   - linear and logistic regression from a JSON weights file, ours or a
//     scikit-learn coef_/intercept_ dump;
//   - gradient-boosted tree ensembles in XGBoost's JSON model format.
//
// A Model scores one feature vector at a time (Model.Score): a []float64 in
// the model's feature order, with missing values already replaced by their
// defaults, or NaN (missing) for tree models. Parsing allocates; scoring
// does not, once a Result has grown its scratch space.
package model

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

type modelKind int

const (
	kindRules modelKind = iota
	kindLinear
	kindLogistic
	kindTrees
)

func (k modelKind) String() string {
	return [...]string{"rules", "linear", "logistic", "XGBoost"}[k]
}

// Model scores feature vectors. It is immutable once loaded, so several
// goroutines may score with it, each with its own Result.
type Model struct {
	kind     modelKind
	features []string
	version  string

	rules  rules
	linear linear
	trees  *ensemble

	probability bool     // the model gives a probability
	binary      bool     // a binary classifier: Probability is P(class 1)
	classes     []string // class names, for classifiers

	post      post
	labels    []string // threshold labels, the default label, then classes
	classBase int      // index in labels of classes[0]
}

// Result is the outcome of scoring one row. Reuse one Result across rows:
// it keeps scratch space, so scoring allocates nothing in steady state.
type Result struct {
	Score float64
	// Probability is the model's probability for the predicted class (for
	// binary classifiers, of the positive class); valid if HasProbability.
	Probability    float64
	HasProbability bool
	// Confidence is valid if HasConfidence.
	Confidence    float64
	HasConfidence bool
	// Label indexes Model.Labels(); -1 means the model gives no label.
	Label int
	// Class is the predicted class index of a classifier, else -1.
	Class int
	// Probs holds a multiclass model's per-class probabilities.
	Probs []float64

	f32     []float32
	margins []float32
}

// Features are the names of the vector's entries, in order.
func (m *Model) Features() []string { return m.features }

// Version identifies the model: the first 12 hex digits of the SHA-256 of
// the model file, or of the config for an inline model.
func (m *Model) Version() string { return m.version }

// Labels are the strings Result.Label indexes.
func (m *Model) Labels() []string { return m.labels }

// HasProbability reports whether the model computes a probability.
func (m *Model) HasProbability() bool { return m.probability }

// Kind names the model's type: rules, linear, logistic or XGBoost.
func (m *Model) Kind() string { return m.kind.String() }

// Score scores x, which holds len(m.Features()) values in that order.
func (m *Model) Score(x []float64, r *Result) {
	r.HasProbability, r.HasConfidence, r.Class = false, false, -1
	switch m.kind {
	case kindRules:
		r.Score = m.rules.score(x)
	case kindLinear:
		r.Score = m.linear.margin(x)
	case kindLogistic:
		p := sigmoid(m.linear.margin(x))
		r.Score, r.Probability, r.HasProbability = p, p, true
		r.Class = m.binaryClass(p)
	case kindTrees:
		m.trees.predict(x, r)
		if m.binary {
			r.Class = m.binaryClass(r.Probability)
		}
	}
	m.finish(r)
}

func (m *Model) binaryClass(p float64) int {
	if p > m.post.threshold {
		return 1
	}
	return 0
}

// finish derives the label and confidence from the score.
func (m *Model) finish(r *Result) {
	p := &m.post
	r.Label = -1
	switch {
	case p.labels != nil:
		r.Label = len(p.labels) // the default label
		for i, t := range p.labels {
			if r.Score > t.at || t.inclusive && r.Score == t.at {
				r.Label = i
				break
			}
		}
	case r.Class >= 0:
		r.Label = m.classBase + r.Class
	}
	classProb := r.Probability
	if r.Class == 0 && m.binary {
		classProb = 1 - r.Probability
	}
	switch p.confidence.kind {
	case confidenceConstant:
		r.Confidence, r.HasConfidence = p.confidence.value, true
	case confidenceScorePlus:
		// min(score + x, max), as the seed computes it.
		r.Confidence, r.HasConfidence = math.Min(r.Score+p.confidence.value, p.confidence.max), true
	case confidenceProbability, confidenceDefault:
		if r.HasProbability {
			r.Confidence, r.HasConfidence = classProb, true
		}
	}
}

// parseModel reads a model document, telling its type from its keys.
func (c *Config) parseModel(at string, raw []byte) (*Model, error) {
	if kind(raw) != "an object" {
		return nil, errorf(at, "want a JSON object, got %s", kind(raw))
	}
	// One fast pass finds an XGBoost model's learner and decodes it; other
	// documents are small and decoded strictly below.
	sc := &scanner{b: raw}
	var learner *xgbLearner
	err := sc.object(at, func(key string) error {
		if key != "learner" {
			return sc.skip(join(at, key))
		}
		learner = &xgbLearner{}
		return readLearner(sc, join(at, key), learner)
	})
	if err == nil {
		err = wrap(at, sc.end())
	}
	if err != nil {
		return nil, err
	}
	if learner != nil {
		return c.parseXGBoost(at, learner)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, wrap(at, fmt.Errorf("not valid JSON: %w", err))
	}
	o := &object{path: at, fields: top}
	var typ string
	if _, err := o.str("type", &typ); err != nil {
		return nil, err
	}
	switch {
	case typ == "" && (o.has("coef_") || o.has("coefficients")):
		typ = "linear"
		if o.has("classes_") || o.has("classes") {
			typ = "logistic"
		}
	case typ == "" && (o.has("weights") || o.has("conditions")):
		typ = "rules"
	case typ == "":
		return nil, errorf(o.at("type"), "missing: cannot tell the model's type: set type (rules, linear or logistic), or give an XGBoost model (learner) or a scikit-learn dump (coef_)")
	}
	var m *Model
	switch typ {
	case "rules":
		m, err = c.parseRules(o)
	case "linear", "logistic":
		m, err = c.parseLinear(o, typ == "logistic")
	default:
		return nil, errorf(o.at("type"), "unknown model type %q (want rules, linear or logistic; XGBoost models are recognised by their learner key)", typ)
	}
	if err != nil {
		return nil, err
	}
	if err := o.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// modelFeatures reads the features a model document names, falling back to
// the config's.
func (c *Config) modelFeatures(o *object, keys ...string) ([]string, error) {
	for _, k := range keys {
		var names []string
		if ok, err := o.names(k, &names); err != nil || ok {
			return names, err
		}
	}
	return c.Features, nil
}

type rules struct {
	bias  float64
	terms []term
	conds []cond
}

type term struct {
	feature int
	weight  float64
}

type cond struct {
	feature int
	op      int // index into ops
	value   float64
	add     float64
}

func (c *Config) parseRules(o *object) (*Model, error) {
	m := &Model{kind: kindRules}
	var err error
	if m.features, err = c.modelFeatures(o, "features"); err != nil {
		return nil, err
	}
	fixed := m.features != nil
	// Without a feature list the vector is the weights' features, sorted
	// (a JSON object has no order), then the conditions' in order.
	feature := func(at, name string) (int, error) {
		if i := slices.Index(m.features, name); i >= 0 {
			return i, nil
		}
		if fixed {
			return 0, errorf(at, "feature %q is not in features (%s)", name, strings.Join(m.features, ", "))
		}
		m.features = append(m.features, name)
		return len(m.features) - 1, nil
	}
	if _, err := o.number("bias", &m.rules.bias); err != nil {
		return nil, err
	}
	weights := map[string]float64{}
	if v, ok := o.raw("weights"); ok {
		w, err := newObject(o.at("weights"), v)
		if err != nil {
			return nil, err
		}
		for name := range w.fields {
			var f float64
			if _, err := w.number(name, &f); err != nil {
				return nil, err
			}
			weights[name] = f
		}
		names := make([]string, 0, len(weights))
		for name := range weights {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if _, err := feature(w.at(name), name); err != nil {
				return nil, err
			}
		}
	}
	items, _, err := o.list("conditions")
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		at := index(o.at("conditions"), i)
		co, err := newObject(at, it)
		if err != nil {
			return nil, err
		}
		var name, op string
		if ok, err := co.str("feature", &name); err != nil {
			return nil, err
		} else if !ok || name == "" {
			return nil, errorf(co.at("feature"), "missing: which feature the condition tests")
		}
		var cd cond
		if cd.feature, err = feature(co.at("feature"), name); err != nil {
			return nil, err
		}
		if ok, err := co.str("op", &op); err != nil {
			return nil, err
		} else if !ok {
			return nil, errorf(co.at("op"), "missing: one of >, >=, <, <=, == or !=")
		}
		if cd.op = slices.Index(ops, op); cd.op < 0 {
			return nil, errorf(co.at("op"), "unknown operator %q (want >, >=, <, <=, == or !=)", op)
		}
		if ok, err := co.number("value", &cd.value); err != nil {
			return nil, err
		} else if !ok {
			return nil, errorf(co.at("value"), "missing: the number the feature is compared with")
		}
		if ok, err := co.number("add", &cd.add); err != nil {
			return nil, err
		} else if !ok {
			return nil, errorf(co.at("add"), "missing: what the condition adds to the score when it holds")
		}
		if err := co.done(); err != nil {
			return nil, err
		}
		m.rules.conds = append(m.rules.conds, cd)
	}
	if len(weights) == 0 && len(items) == 0 {
		return nil, errorf(o.at("weights"), "rules need weights, conditions or both")
	}
	// Terms are added in feature order, so a sum written out by hand (as
	// the seed's) is reproduced to the last bit when features lists its
	// terms in the same order.
	for j, name := range m.features {
		if w, ok := weights[name]; ok {
			m.rules.terms = append(m.rules.terms, term{j, w})
		}
	}
	return m, nil
}

func (r *rules) score(x []float64) float64 {
	s := r.bias
	for _, t := range r.terms {
		// The conversion stops the compiler fusing the multiply and add
		// (FMA, on arm64), which would round differently from the seed.
		s += float64(t.weight * x[t.feature])
	}
	for i := range r.conds {
		c := &r.conds[i]
		v := x[c.feature]
		var hold bool
		switch c.op {
		case 0:
			hold = v > c.value
		case 1:
			hold = v >= c.value
		case 2:
			hold = v < c.value
		case 3:
			hold = v <= c.value
		case 4:
			hold = v == c.value
		case 5:
			hold = v != c.value
		}
		if hold {
			s += c.add
		}
	}
	return s
}
