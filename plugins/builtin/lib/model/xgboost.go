package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// XGBoost's JSON model format, as Booster.save_model("m.json") writes it
// (XGBoost 1.0 and later). Only what prediction needs is decoded. The
// semantics follow XGBoost's source (src/predictor/predict_fn.h,
// src/learner.cc, src/objective/*): a split sends a value left when
// float32(value) < split_condition, and a missing one (NaN) to its default
// side; a leaf's value is its split_conditions entry; a row's margin per
// output group is ProbToMargin(base_score) plus the leaves of the group's
// trees (tree_info), summed in float32 in tree order; the objective's
// transform turns margins into the prediction.

// What prediction needs of the file, decoded by readLearner.
type xgbLearner struct {
	featureNames []string
	baseScore    string
	numClass     string
	numFeature   string
	numTarget    string
	objective    string
	booster      xgbBooster
}

type xgbBooster struct {
	name       string
	model      *xgbTrees
	gbtree     *xgbBooster // dart wraps a gbtree
	weightDrop []float64
}

type xgbTrees struct {
	trees    []xgbTree
	treeInfo []int64
}

type xgbTree struct {
	numNodes, sizeLeafVector string
	left, right              []int64
	splitIndices             []int64
	splitConditions          []float64
	defaultLeft              []int64
	splitType                []int64
}

// readLearner decodes the learner object; unknown keys are skipped, as
// the format has many prediction does not need.
func readLearner(s *scanner, at string, l *xgbLearner) error {
	return s.object(at, func(key string) error {
		kat := join(at, key)
		var err error
		switch key {
		case "feature_names":
			l.featureNames, err = s.strings(kat)
		case "learner_model_param":
			return s.object(kat, func(key string) error {
				var dst *string
				switch key {
				case "base_score":
					dst = &l.baseScore
				case "num_class":
					dst = &l.numClass
				case "num_feature":
					dst = &l.numFeature
				case "num_target":
					dst = &l.numTarget
				default:
					return s.skip(join(kat, key))
				}
				v, err := s.str()
				*dst = v
				return wrap(join(kat, key), err)
			})
		case "objective":
			return s.object(kat, func(key string) error {
				if key != "name" {
					return s.skip(join(kat, key))
				}
				v, err := s.str()
				l.objective = v
				return wrap(join(kat, key), err)
			})
		case "gradient_booster":
			return readBooster(s, kat, &l.booster)
		default:
			return s.skip(kat)
		}
		return err
	})
}

func readBooster(s *scanner, at string, b *xgbBooster) error {
	return s.object(at, func(key string) error {
		kat := join(at, key)
		var err error
		switch key {
		case "name":
			b.name, err = s.str()
			err = wrap(kat, err)
		case "weight_drop":
			b.weightDrop, err = s.numbers(kat)
		case "gbtree":
			b.gbtree = &xgbBooster{}
			err = readBooster(s, kat, b.gbtree)
		case "model":
			b.model = &xgbTrees{}
			err = s.object(kat, func(key string) error {
				mat := join(kat, key)
				var err error
				switch key {
				case "trees":
					err = s.array(mat, func(i int) error {
						b.model.trees = append(b.model.trees, xgbTree{})
						return readTree(s, index(mat, i), &b.model.trees[i])
					})
				case "tree_info":
					b.model.treeInfo, err = s.integers(mat)
				default:
					err = s.skip(mat)
				}
				return err
			})
		default:
			err = s.skip(kat)
		}
		return err
	})
}

func readTree(s *scanner, at string, t *xgbTree) error {
	return s.object(at, func(key string) error {
		kat := join(at, key)
		var err error
		switch key {
		case "tree_param":
			err = s.object(kat, func(key string) error {
				var dst *string
				switch key {
				case "num_nodes":
					dst = &t.numNodes
				case "size_leaf_vector":
					dst = &t.sizeLeafVector
				default:
					return s.skip(join(kat, key))
				}
				v, err := s.str()
				*dst = v
				return wrap(join(kat, key), err)
			})
		case "left_children":
			t.left, err = s.integers(kat)
		case "right_children":
			t.right, err = s.integers(kat)
		case "split_indices":
			t.splitIndices, err = s.integers(kat)
		case "split_conditions":
			t.splitConditions, err = s.numbers(kat)
		case "default_left":
			t.defaultLeft, err = s.integers(kat)
		case "split_type":
			t.splitType, err = s.integers(kat)
		default:
			err = s.skip(kat)
		}
		return err
	})
}

type transform int

const (
	identity transform = iota
	binaryLogistic
	regLogistic
	exponential
	softmax
)

// objectives are the supported objectives: how the prediction is made from
// the margin, and how base_score (stored in prediction space) becomes the
// initial margin (the objective's ProbToMargin).
var objectives = map[string]struct {
	transform transform
	toMargin  func(float32) (float32, error)
}{
	"binary:logistic":  {binaryLogistic, logit},
	"reg:logistic":     {regLogistic, logit},
	"reg:squarederror": {identity, same},
	"reg:linear":       {identity, same}, // the old name of reg:squarederror
	"count:poisson":    {exponential, logOf},
	"multi:softprob":   {softmax, same},
	"multi:softmax":    {softmax, same},
}

func same(v float32) (float32, error) { return v, nil }

// logit is LogisticProbToMargin: base_score clamped into [1e-6, 1-1e-6].
func logit(v float32) (float32, error) {
	if !(v >= 0 && v <= 1) {
		return 0, fmt.Errorf("base_score %v is not in [0, 1], as a logistic objective needs", v)
	}
	const eps = 1e-6
	v = min(max(v, eps), 1-eps)
	return float32(-math.Log(float64(1/v - 1))), nil
}

func logOf(v float32) (float32, error) {
	if !(v > 0) {
		return 0, fmt.Errorf("base_score %v is not positive, as count:poisson needs", v)
	}
	return float32(math.Log(float64(v))), nil
}

// node is a tree node, flattened: 16 bytes, so a depth-6 path stays in a
// few cache lines.
type node struct {
	cond  float32 // split threshold, or the leaf value
	feat  uint32  // feature index, with defaultLeft set if missing goes left
	left  int32   // -1 for a leaf
	right int32
}

const defaultLeft = 1 << 31

const maxClasses = 1 << 16

type ensemble struct {
	nodes     []node
	roots     []int32
	groups    []int32   // output group (class) of each tree
	weights   []float32 // dart's per-tree weights; nil for gbtree
	base      []float32 // initial margin per group
	transform transform
}

func (c *Config) parseXGBoost(at string, l *xgbLearner) (*Model, error) {
	at = join(at, "learner")
	obj, ok := objectives[l.objective]
	if !ok {
		return nil, errorf(join(at, "objective.name"), "objective %q is not supported (want binary:logistic, reg:logistic, reg:squarederror, reg:linear, count:poisson, multi:softprob or multi:softmax)", l.objective)
	}
	param := join(at, "learner_model_param")
	numClass, err := atoi(join(param, "num_class"), l.numClass, "0")
	if err != nil {
		return nil, err
	}
	numFeature, err := atoi(join(param, "num_feature"), l.numFeature, "")
	if err != nil {
		return nil, err
	}
	if numTarget, err := atoi(join(param, "num_target"), l.numTarget, "1"); err != nil {
		return nil, err
	} else if numTarget > 1 {
		return nil, errorf(join(param, "num_target"), "%d targets: multi-target models are not supported", numTarget)
	}
	groups := 1
	if numClass > maxClasses {
		// A bound, so a corrupt count cannot make the loader allocate
		// gigabytes of base margins before anything else fails.
		return nil, errorf(join(param, "num_class"), "%d classes is more than the %d supported", numClass, maxClasses)
	}
	if obj.transform == softmax {
		if numClass < 2 {
			return nil, errorf(join(param, "num_class"), "%s needs num_class of 2 or more, got %d", l.objective, numClass)
		}
		groups = numClass
	} else if numClass > 1 {
		return nil, errorf(join(param, "num_class"), "is %d, but objective %s has one output", numClass, l.objective)
	}
	base, err := parseBaseScore(join(param, "base_score"), l.baseScore, groups, obj.toMargin)
	if err != nil {
		return nil, err
	}

	m := &Model{kind: kindTrees}
	switch {
	case len(l.featureNames) > 0:
		m.features = l.featureNames
		if len(m.features) != numFeature {
			return nil, errorf(join(at, "feature_names"), "has %d names for %d features (num_feature)", len(m.features), numFeature)
		}
	case c.Features != nil:
		m.features = c.Features
		if len(m.features) != numFeature {
			return nil, errorf("features", "lists %d names, but the model (which does not name its features) has %d columns (num_feature)", len(m.features), numFeature)
		}
	default:
		return nil, wrap(join(at, "feature_names"), errNoFeatures)
	}

	e := &ensemble{base: base, transform: obj.transform}
	booster, bat := &l.booster, join(at, "gradient_booster")
	dart := booster.name == "dart"
	switch booster.name {
	case "gbtree":
	case "dart":
		if booster.gbtree == nil {
			return nil, errorf(join(bat, "gbtree"), "missing: a dart booster wraps a gbtree")
		}
		e.weights = make([]float32, 0, len(booster.weightDrop))
		for _, w := range booster.weightDrop {
			e.weights = append(e.weights, float32(w))
		}
		booster, bat = booster.gbtree, join(bat, "gbtree")
	default:
		return nil, errorf(join(bat, "name"), "booster %q is not supported (want gbtree or dart)", booster.name)
	}
	if booster.model == nil {
		return nil, errorf(join(bat, "model"), "missing")
	}
	trees := booster.model.trees
	tat := join(bat, "model")
	if dart && len(e.weights) != len(trees) {
		return nil, errorf(join(at, "gradient_booster.weight_drop"), "has %d weights for %d trees", len(e.weights), len(trees))
	}
	if len(booster.model.treeInfo) != len(trees) {
		return nil, errorf(join(tat, "tree_info"), "has %d entries for %d trees", len(booster.model.treeInfo), len(trees))
	}
	for t, g := range booster.model.treeInfo {
		if g < 0 || g >= int64(groups) {
			return nil, errorf(index(join(tat, "tree_info"), t), "group %d is out of range for %d output groups", g, groups)
		}
		e.groups = append(e.groups, int32(g))
	}
	for t := range trees {
		if err := e.addTree(index(join(tat, "trees"), t), &trees[t], numFeature); err != nil {
			return nil, err
		}
	}
	m.trees = e
	switch obj.transform {
	case binaryLogistic:
		m.probability, m.binary, m.classes = true, true, []string{"0", "1"}
	case softmax:
		m.probability = true
		for k := range groups {
			m.classes = append(m.classes, strconv.Itoa(k))
		}
	}
	return m, nil
}

func atoi(at, s, def string) (int, error) {
	if s == "" {
		s = def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errorf(at, "%q is not a count", s)
	}
	return n, nil
}

// parseBaseScore reads base_score: a number ("5E-1"), or since XGBoost 3.1
// a list with one value per output group ("[5E-1,2E-1,3E-1]").
func parseBaseScore(at, s string, groups int, toMargin func(float32) (float32, error)) ([]float32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errorf(at, "missing")
	}
	var vals []float64
	if s[0] == '[' || s[0] == '(' {
		if len(s) < 2 || (s[len(s)-1] != ']' && s[len(s)-1] != ')') {
			return nil, errorf(at, "%q is not a number or a list of numbers", s)
		}
		inner := strings.TrimSpace(s[1 : len(s)-1])
		if inner != "" {
			for p := range strings.SplitSeq(inner, ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
				if err != nil {
					return nil, errorf(at, "%q is not a number or a list of numbers", s)
				}
				vals = append(vals, v)
			}
		}
	} else {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return nil, errorf(at, "%q is not a number or a list of numbers", s)
		}
		vals = []float64{v}
	}
	switch len(vals) {
	case groups:
	case 1:
		for len(vals) < groups {
			vals = append(vals, vals[0])
		}
	default:
		return nil, errorf(at, "has %d values for %d output groups", len(vals), groups)
	}
	out := make([]float32, groups)
	for i, v := range vals {
		m, err := toMargin(float32(v))
		if err != nil {
			return nil, wrap(at, err)
		}
		out[i] = m
	}
	return out, nil
}

func (e *ensemble) addTree(at string, t *xgbTree, numFeature int) error {
	n := len(t.left)
	if n == 0 {
		return errorf(join(at, "left_children"), "is empty: a tree has at least its root")
	}
	if t.numNodes != "" && t.numNodes != strconv.Itoa(n) {
		return errorf(join(at, "tree_param.num_nodes"), "is %s, but left_children has %d entries", t.numNodes, n)
	}
	if s := t.sizeLeafVector; s != "" && s != "0" && s != "1" {
		return errorf(join(at, "tree_param.size_leaf_vector"), "is %s: vector leaves (multi-target trees) are not supported", s)
	}
	for _, f := range []struct {
		key string
		len int
	}{{"right_children", len(t.right)}, {"split_indices", len(t.splitIndices)}, {"split_conditions", len(t.splitConditions)}, {"default_left", len(t.defaultLeft)}} {
		if f.len != n {
			return errorf(join(at, f.key), "has %d entries, left_children %d", f.len, n)
		}
	}
	for i, st := range t.splitType {
		if st != 0 && i < n && t.left[i] != -1 {
			return errorf(index(join(at, "split_type"), i), "categorical splits are not supported")
		}
	}
	off := int32(len(e.nodes))
	e.roots = append(e.roots, off)
	// Walk from the root so every node is reached once: a malformed file
	// with a cycle or a shared child would otherwise loop forever.
	seen := make([]bool, n)
	seen[0] = true
	stack := []int32{0}
	nodes := make([]node, n)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		nd := &nodes[i]
		nd.cond = float32(t.splitConditions[i])
		l, r := t.left[i], t.right[i]
		if l == -1 {
			nd.left, nd.right = -1, -1
			continue
		}
		f := t.splitIndices[i]
		if f < 0 || f >= int64(numFeature) {
			return errorf(index(join(at, "split_indices"), int(i)), "feature %d is out of range (num_feature %d)", f, numFeature)
		}
		nd.feat = uint32(f)
		if t.defaultLeft[i] != 0 {
			nd.feat |= defaultLeft
		}
		for _, ch := range []struct {
			key string
			v   int64
		}{{"left_children", l}, {"right_children", r}} {
			if ch.v < 0 || ch.v >= int64(n) || seen[ch.v] {
				return errorf(index(join(at, ch.key), int(i)), "child %d is not a new node of this tree (it has %d)", ch.v, n)
			}
			seen[ch.v] = true
			stack = append(stack, int32(ch.v))
		}
		nd.left, nd.right = off+int32(l), off+int32(r)
	}
	e.nodes = append(e.nodes, nodes...)
	return nil
}

func (e *ensemble) leaf(i int32, f []float32) float32 {
	nodes := e.nodes
	for {
		n := &nodes[i]
		if n.left < 0 {
			return n.cond
		}
		v := f[n.feat&^defaultLeft]
		switch {
		case v != v: // NaN: missing
			if n.feat&defaultLeft != 0 {
				i = n.left
			} else {
				i = n.right
			}
		case v < n.cond:
			i = n.left
		default:
			i = n.right
		}
	}
}

func (e *ensemble) predict(x []float64, r *Result) {
	if cap(r.f32) < len(x) {
		r.f32 = make([]float32, len(x))
	}
	f := r.f32[:len(x)]
	for j, v := range x {
		f[j] = float32(v)
	}
	groups := len(e.base)
	if cap(r.margins) < groups {
		r.margins = make([]float32, groups)
	}
	mg := r.margins[:groups]
	copy(mg, e.base)
	if e.weights == nil {
		for t, root := range e.roots {
			mg[e.groups[t]] += e.leaf(root, f)
		}
	} else {
		for t, root := range e.roots {
			mg[e.groups[t]] += e.leaf(root, f) * e.weights[t]
		}
	}
	switch e.transform {
	case identity:
		r.Score = float64(mg[0])
	case binaryLogistic:
		p := float64(sigmoid32(mg[0]))
		r.Score, r.Probability, r.HasProbability = p, p, true
	case regLogistic:
		r.Score = float64(sigmoid32(mg[0]))
	case exponential:
		r.Score = float64(float32(math.Exp(float64(mg[0]))))
	case softmax:
		if cap(r.Probs) < groups {
			r.Probs = make([]float64, groups)
		}
		r.Probs = r.Probs[:groups]
		// As common::Softmax: shift by the max, sum in float64.
		wmax := mg[0]
		for _, v := range mg[1:] {
			wmax = max(wmax, v)
		}
		var sum float64
		for _, v := range mg {
			sum += float64(float32(math.Exp(float64(v - wmax))))
		}
		best := 0 // the first largest margin, as XGBoost's argmax
		for k, v := range mg {
			r.Probs[k] = float64(float32(float64(float32(math.Exp(float64(v-wmax)))) / sum))
			if v > mg[best] {
				best = k
			}
		}
		r.Class = best
		r.Score, r.Probability, r.HasProbability = r.Probs[best], r.Probs[best], true
	}
}

// sigmoid32 is XGBoost's common::Sigmoid, in float32.
func sigmoid32(x float32) float32 {
	x = min(-x, 88.7)
	return 1 / (float32(math.Exp(float64(x))) + 1)
}
