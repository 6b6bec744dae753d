package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures are made by real XGBoost: see score/testdata/gen_xgboost.py.
const fixtures = "../../score/testdata"

var fixtureFeatures = []string{"event_count", "unique_event_types", "total_value", "is_purchase_event"}

type xgbFixture struct {
	Objective string
	Rows      [][]*float64
	Predict   json.RawMessage
}

func loadFixtures(t testing.TB) map[string]xgbFixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "xgb_expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		XGBoostVersion string `json:"xgboost_version"`
		Models         map[string]xgbFixture
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Models) < 4 {
		t.Fatalf("only %d fixture models", len(exp.Models))
	}
	return exp.Models
}

// TestXGBoostMatchesXGBoost scores the fixture rows, missing values
// included, and compares with XGBoost's own predictions.
func TestXGBoostMatchesXGBoost(t *testing.T) {
	const tol = 1e-6
	for name, fx := range loadFixtures(t) {
		t.Run(name, func(t *testing.T) {
			file, err := os.ReadFile(filepath.Join(fixtures, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			// xgb_reg names no features: the config maps them by position.
			cfg := mustConfig(t, `{"model_file": "/models/m.json", "features": ["event_count", "unique_event_types", "total_value", "is_purchase_event"]}`)
			m, err := cfg.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			bind, err := cfg.Bind(fixtureFeatures, m)
			if err != nil {
				t.Fatal(err)
			}
			multi := fx.Objective == "multi:softprob"
			var flat []float64
			var probs [][]float64
			if multi {
				err = json.Unmarshal(fx.Predict, &probs)
			} else {
				err = json.Unmarshal(fx.Predict, &flat)
			}
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			x := make([]float64, len(m.Features()))
			for i, row := range fx.Rows {
				for j, col := range bind.Cols {
					if v := row[col]; v != nil {
						x[j] = *v
					} else {
						x[j] = bind.Defaults[j] // NaN: missing, as XGBoost saw it
					}
				}
				m.Score(x, &r)
				if !multi {
					if math.Abs(r.Score-flat[i]) > tol {
						t.Errorf("row %d %v: score %.9g, XGBoost %.9g", i, x, r.Score, flat[i])
					}
					if fx.Objective == "binary:logistic" && (!r.HasProbability || r.Probability != r.Score) {
						t.Errorf("row %d: probability %v (set %v), want the score", i, r.Probability, r.HasProbability)
					}
					continue
				}
				best := 0
				for k, p := range probs[i] {
					if math.Abs(r.Probs[k]-p) > tol {
						t.Errorf("row %d %v: class %d probability %.9g, XGBoost %.9g", i, x, k, r.Probs[k], p)
					}
					if p > probs[i][best] {
						best = k
					}
				}
				if r.Class != best || m.Labels()[r.Label] != []string{"0", "1", "2"}[best] || r.Probability != r.Probs[best] {
					t.Errorf("row %d: class %d label %q probability %v, want class %d", i, r.Class, m.Labels()[r.Label], r.Probability, best)
				}
			}
		})
	}
}

// testTree is one tree in XGBoost's JSON layout.
type testTree struct {
	Left, Right, Index []int
	Cond               []float64
	DefaultLeft        []int
	Group              int
}

// xgbJSON writes a model as Booster.save_model does (the keys prediction
// reads, and some it does not).
func xgbJSON(objective, baseScore string, numClass int, names []string, numFeature int, trees []testTree) []byte {
	type tree struct {
		TreeParam       map[string]string `json:"tree_param"`
		Left            []int             `json:"left_children"`
		Right           []int             `json:"right_children"`
		Parents         []int             `json:"parents"`
		SplitIndices    []int             `json:"split_indices"`
		SplitConditions []float64         `json:"split_conditions"`
		DefaultLeft     []int             `json:"default_left"`
		SplitType       []int             `json:"split_type"`
		BaseWeights     []float64         `json:"base_weights"`
	}
	var ts []tree
	var info []int
	for _, t := range trees {
		n := len(t.Left)
		ts = append(ts, tree{
			TreeParam: map[string]string{"num_nodes": itoa(n), "size_leaf_vector": "0"},
			Left:      t.Left, Right: t.Right, Parents: make([]int, n), SplitIndices: t.Index,
			SplitConditions: t.Cond, DefaultLeft: t.DefaultLeft, SplitType: make([]int, n), BaseWeights: make([]float64, n),
		})
		info = append(info, t.Group)
	}
	if names == nil {
		names = []string{}
	}
	doc := map[string]any{
		"version": []int{1, 7, 4},
		"learner": map[string]any{
			"attributes":    map[string]string{},
			"feature_names": names,
			"feature_types": []string{},
			"learner_model_param": map[string]string{
				"base_score": baseScore, "num_class": itoa(numClass), "num_feature": itoa(numFeature), "num_target": "1",
			},
			"objective": map[string]any{"name": objective},
			"gradient_booster": map[string]any{
				"name": "gbtree",
				"model": map[string]any{
					"gbtree_model_param": map[string]string{"num_trees": itoa(len(ts)), "num_parallel_tree": "1"},
					"trees":              ts,
					"tree_info":          info,
				},
			},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// stump splits feature 0 at 0.5: below goes to leaf -1, else +1; missing
// goes left.
var stump = testTree{
	Left: []int{1, -1, -1}, Right: []int{2, -1, -1}, Index: []int{0, 0, 0},
	Cond: []float64{0.5, -1, 1}, DefaultLeft: []int{1, 0, 0},
}

// TestXGBoostByHand checks a model small enough to predict by hand.
func TestXGBoostByHand(t *testing.T) {
	second := testTree{ // splits feature 1 at 10; missing goes right
		Left: []int{1, -1, -1}, Right: []int{2, -1, -1}, Index: []int{1, 0, 0},
		Cond: []float64{10, 0.25, 0.5}, DefaultLeft: []int{0, 0, 0},
	}
	nan := math.NaN()
	reg := []byte(xgbJSON("reg:squarederror", "5E-1", 0, []string{"a", "b"}, 2, []testTree{stump, second}))
	logit := []byte(xgbJSON("binary:logistic", "2E-1", 0, []string{"a", "b"}, 2, []testTree{stump, second}))
	for _, tc := range []struct {
		x      []float64
		margin float64 // base margin + leaves
	}{
		{[]float64{0, 0}, -1 + 0.25},
		{[]float64{0.5, 10}, 1 + 0.5}, // on a threshold goes right
		{[]float64{0.49, 9.99}, -1 + 0.25},
		{[]float64{nan, nan}, -1 + 0.5}, // first tree's default is left, second's right
		{[]float64{2, nan}, 1 + 0.5},
	} {
		var r Result
		mustLoad(t, `{"model_file": "/m.json"}`, reg).Score(tc.x, &r)
		if want := 0.5 + tc.margin; r.Score != want || r.HasProbability {
			t.Errorf("squarederror %v: %v, want %v", tc.x, r.Score, want)
		}
		// binary:logistic stores base_score as a probability: the margin
		// starts at logit(0.2).
		mustLoad(t, `{"model_file": "/m.json"}`, logit).Score(tc.x, &r)
		want := 1 / (1 + math.Exp(-(math.Log(0.2/0.8) + tc.margin)))
		if math.Abs(r.Probability-want) > 1e-6 || r.Score != r.Probability {
			t.Errorf("logistic %v: %v, want %v", tc.x, r.Probability, want)
		}
	}
}

func TestXGBoostMulticlassBaseScore(t *testing.T) {
	// No trees: the prediction is softmax of the base margins. XGBoost 3.1
	// writes one base_score per class; older versions one for all.
	for _, tc := range []struct {
		base string
		want []float64
	}{
		{"[1E0,2E0,3E0]", softmaxOf(1, 2, 3)},
		{"5E-1", softmaxOf(0.5, 0.5, 0.5)},
	} {
		m := mustLoad(t, `{"model_file": "/m.json", "classes": ["a", "b", "c"]}`, xgbJSON("multi:softprob", tc.base, 3, []string{"f"}, 1, nil))
		var r Result
		m.Score([]float64{0}, &r)
		for k := range tc.want {
			if math.Abs(r.Probs[k]-tc.want[k]) > 1e-6 {
				t.Errorf("base_score %s: probabilities %v, want %v", tc.base, r.Probs, tc.want)
				break
			}
		}
		if r.Class != 2 && tc.base[0] == '[' {
			t.Errorf("base_score %s: class %d, want 2", tc.base, r.Class)
		}
		if tc.base[0] == '[' && m.Labels()[r.Label] != "c" {
			t.Errorf("label %s, want the configured class name c", m.Labels()[r.Label])
		}
	}
}

// TestXGBoostTwoClassSoftmax: multi:softprob with two classes is not a
// binary:logistic model: its probability is the predicted class's.
func TestXGBoostTwoClassSoftmax(t *testing.T) {
	m := mustLoad(t, `{"model_file": "/m.json"}`, xgbJSON("multi:softprob", "[1E0,0E0]", 2, []string{"f"}, 1, nil))
	var r Result
	m.Score([]float64{0}, &r)
	want := softmaxOf(1, 0)[0]
	if r.Class != 0 || m.Labels()[r.Label] != "0" || math.Abs(r.Probability-want) > 1e-6 || r.Confidence != r.Probability {
		t.Errorf("class %d label %s probability %v confidence %v, want class 0 with %v", r.Class, m.Labels()[r.Label], r.Probability, r.Confidence, want)
	}
}

func softmaxOf(v ...float64) []float64 {
	var sum float64
	for _, x := range v {
		sum += math.Exp(x)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Exp(x) / sum
	}
	return out
}

// TestTreeMissingValues: a tree model's missing feature follows the
// split's default branch unless the config gives it a value.
func TestTreeMissingValues(t *testing.T) {
	file := xgbJSON("reg:squarederror", "0E0", 0, []string{"a"}, 1, []testTree{stump})
	for _, tc := range []struct {
		config string
		want   float64
	}{
		{`{"model_file": "/m.json"}`, -1},                      // missing: default left
		{`{"model_file": "/m.json", "default_value": 0.7}`, 1}, // 0.7 >= 0.5
		{`{"model_file": "/m.json", "default_value": 0.7, "defaults": {"a": 0.2}}`, -1},
	} {
		cfg := mustConfig(t, tc.config)
		m, err := cfg.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		b, err := cfg.Bind([]string{"a"}, m)
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		m.Score(b.Defaults, &r)
		if r.Score != tc.want {
			t.Errorf("%s: %v, want %v", tc.config, r.Score, tc.want)
		}
	}
}

func TestXGBoostErrors(t *testing.T) {
	good := string(xgbJSON("binary:logistic", "5E-1", 0, []string{"a", "b"}, 2, []testTree{stump}))
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"objective", `"binary:logistic"`, `"rank:pairwise"`, `model_file: /m.json: learner.objective.name: objective "rank:pairwise" is not supported`},
		{"booster", `"name":"gbtree"`, `"name":"gblinear"`, `learner.gradient_booster.name: booster "gblinear" is not supported`},
		{"cycle", `"left_children":[1,-1,-1]`, `"left_children":[1,0,-1]`, `learner.gradient_booster.model.trees[0].left_children[1]: child 0 is not a new node`},
		{"child out of range", `"right_children":[2,-1,-1]`, `"right_children":[7,-1,-1]`, `trees[0].right_children[0]: child 7 is not a new node of this tree (it has 3)`},
		{"short array", `"split_conditions":[0.5,-1,1]`, `"split_conditions":[0.5,-1]`, `trees[0].split_conditions: has 2 entries, left_children 3`},
		{"split feature", `"split_indices":[0,0,0]`, `"split_indices":[5,0,0]`, `trees[0].split_indices[0]: feature 5 is out of range (num_feature 2)`},
		{"categorical", `"split_type":[0,0,0]`, `"split_type":[1,0,0]`, `trees[0].split_type[0]: categorical splits are not supported`},
		{"num_class", `"num_class":"0"`, `"num_class":"3"`, `learner.learner_model_param.num_class: is 3, but objective binary:logistic has one output`},
		{"base_score", `"base_score":"5E-1"`, `"base_score":"half"`, `learner.learner_model_param.base_score: "half" is not a number`},
		{"base_score range", `"base_score":"5E-1"`, `"base_score":"2E0"`, `base_score: base_score 2 is not in [0, 1]`},
		{"base_score list", `"base_score":"5E-1"`, `"base_score":"[5E-1,5E-1]"`, `base_score: has 2 values for 1 output groups`},
		{"tree_info", `"tree_info":[0]`, `"tree_info":[0,0]`, `model.tree_info: has 2 entries for 1 trees`},
		{"group", `"tree_info":[0]`, `"tree_info":[1]`, `tree_info[0]: group 1 is out of range for 1 output groups`},
		{"feature names", `"feature_names":["a","b"]`, `"feature_names":["a"]`, `learner.feature_names: has 1 names for 2 features (num_feature)`},
		{"no feature names", `"feature_names":["a","b"]`, `"feature_names":[]`, `learner.feature_names: the model does not name its features`},
		{"wrong type", `"left_children":[1,-1,-1]`, `"left_children":"x"`, `learner.gradient_booster.model.trees[0].left_children: want a list, got a string`},
		{"multi-target", `"num_target":"1"`, `"num_target":"2"`, `num_target: 2 targets: multi-target models are not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.from, tc.to, 1)
			if bad == good {
				t.Fatalf("%s not found in the model", tc.from)
			}
			_, err := mustConfig(t, `{"model_file": "/m.json"}`).Load([]byte(bad))
			if err == nil || !strings.HasPrefix(err.Error(), "model_file: /m.json: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one starting model_file: /m.json: and containing %q", err, tc.want)
			}
		})
	}
	if _, err := mustConfig(t, `{"model_file": "/m.json"}`).Load([]byte(good)); err != nil {
		t.Fatalf("the unmodified model: %v", err)
	}
}

// randomEnsemble builds an XGBoost model of full binary trees of the given
// depth over nf features, deterministically, for benchmarks and fuzzing.
func randomEnsemble(trees, depth, nf int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []testTree
	for range trees {
		n := 1<<(depth+1) - 1
		t := testTree{Left: make([]int, n), Right: make([]int, n), Index: make([]int, n), Cond: make([]float64, n), DefaultLeft: make([]int, n)}
		for i := range n {
			if l := 2*i + 1; l < n {
				t.Left[i], t.Right[i] = l, l+1
				t.Index[i] = rng.IntN(nf)
				t.Cond[i] = float64(float32(rng.NormFloat64()))
				t.DefaultLeft[i] = rng.IntN(2)
			} else {
				t.Left[i], t.Right[i] = -1, -1
				t.Cond[i] = float64(float32(rng.NormFloat64() * 0.1))
			}
		}
		ts = append(ts, t)
	}
	names := make([]string, nf)
	for i := range names {
		names[i] = "f" + itoa(i)
	}
	return xgbJSON("binary:logistic", "5E-1", 0, names, nf, ts)
}

// TestTruncatedModel: a model file cut anywhere, as a reader racing a
// non-atomic writer sees it, is refused with an error, never half-loaded.
func TestTruncatedModel(t *testing.T) {
	file, err := os.ReadFile(filepath.Join(fixtures, "xgb_multi.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, `{"model_file": "/m.json"}`)
	for cut := 0; cut < len(file); cut += 97 {
		if _, err := cfg.Load(file[:cut]); err == nil || !strings.HasPrefix(err.Error(), "model_file: /m.json: ") {
			t.Fatalf("cut at %d of %d: error %v", cut, len(file), err)
		}
	}
	if _, err := cfg.Load(file); err != nil {
		t.Fatal(err)
	}
}
