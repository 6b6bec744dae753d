//go:build !wasip1

// The tests compile the plugin and run events through the agent's real
// wasm processor, as a pipeline would.

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

var (
	pluginPath string
	engine     *wasm.Engine
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var remove func()
	var err error
	if pluginPath, remove, err = wasmbuild.ForTestMain("score.wasm"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	// One engine, so the module is compiled once for every test.
	if engine, err = wasm.NewEngine(wasm.EngineConfig{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer engine.Close(ctx)
	return m.Run()
}

// logs records what the plugin logs.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// newProcessor builds the processor from the YAML of its fields after
// `path`, with the plugin config given as JSON.
func newProcessor(t *testing.T, fields, config string) (*wasm.Processor, *logs, error) {
	t.Helper()
	yml := "path: " + pluginPath + "\n" + fields
	if config != "" {
		// One line of JSON is YAML too.
		var flat bytes.Buffer
		if err := json.Compact(&flat, []byte(config)); err != nil {
			t.Fatalf("config: %v", err)
		}
		yml += "\nconfig: " + flat.String()
	}
	conf, err := wasm.ConfigSpec().ParseYAML(yml, nil)
	if err != nil {
		t.Fatalf("processor config: %v\n%s", err, yml)
	}
	l := &logs{}
	p, err := wasm.NewProcessor(context.Background(), engine, conf, slog.New(l))
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return p, l, err
}

func mustProcessor(t *testing.T, fields, config string) (*wasm.Processor, *logs) {
	t.Helper()
	p, l, err := newProcessor(t, fields, config)
	if err != nil {
		t.Fatal(err)
	}
	return p, l
}

// process runs bodies as one batch; every message must come back.
func process(t *testing.T, p *wasm.Processor, bodies ...string) service.MessageBatch {
	t.Helper()
	batch := make(service.MessageBatch, len(bodies))
	for i, b := range bodies {
		batch[i] = service.NewMessage([]byte(b))
	}
	res, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0]) != len(bodies) {
		t.Fatalf("%d messages in, %v out: none may be lost", len(bodies), res)
	}
	return res[0]
}

func body(t *testing.T, m *service.Message) []byte {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func event(features map[string]float64) string {
	b, _ := json.Marshal(map[string]any{"user_id": 1, "features": features})
	return string(b)
}

// readmeProcessor is a processor block of README.md, marked
// `<!-- tested: name -->`, with the builtin swapped for the built plugin.
func readmeProcessor(t *testing.T, name string) (*wasm.Processor, *logs) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- tested: " + name + " [^>]*-->\n```yaml\n(.*?)```")
	m := re.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md has no block marked tested: %s", name)
	}
	var procs []map[string]map[string]any
	if err := yaml.Unmarshal(m[1], &procs); err != nil {
		t.Fatalf("README block %s: %v", name, err)
	}
	w := procs[0]["wasm"]
	if w["builtin"] != "score" {
		t.Fatalf("README block %s: builtin is %v", name, w["builtin"])
	}
	cfg, err := json.Marshal(w["config"])
	if err != nil {
		t.Fatal(err)
	}
	return mustProcessor(t, "", string(cfg))
}

// seedValue transcribes the seed's RealTimeDataProcessor._make_prediction
// (and the 0.85 of _send_prediction). Python adds left to right in float64;
// the conversions stop Go fusing a multiply and an add, as Python never does.
func seedValue(f map[string]float64) (string, float64, float64) {
	score := float64(f["event_count"]*0.1) +
		float64(f["unique_event_types"]*0.2) +
		float64(f["total_value"]*0.001) +
		float64(f["is_purchase_event"]*0.5)
	if score > 0.7 {
		return "high_value_user", score, 0.85
	} else if score > 0.3 {
		return "medium_value_user", score, 0.85
	}
	return "low_value_user", score, 0.85
}

// seedEngagement transcribes the seed's RealTimeProcessor.make_prediction;
// a missing feature is 0, as features.get(name, 0).
func seedEngagement(f map[string]float64) (string, float64, float64) {
	score := 0.0
	if f["total_events"] > 10 {
		score += 0.3
	}
	if f["recent_activity_7d"] > 5 {
		score += 0.3
	}
	if f["avg_events_per_day"] > 2 {
		score += 0.2
	}
	if f["total_sessions"] > 3 {
		score += 0.2
	}
	label := "low_engagement"
	if score >= 0.8 {
		label = "high_engagement"
	} else if score >= 0.5 {
		label = "medium_engagement"
	}
	return label, score, math.Min(score+0.2, 1.0)
}

// TestSeedRuleScorers runs the README's configs of the seed's two scorers
// on feature vectors around every threshold (scores of exactly 0.3, 0.7,
// 0.5 and 0.8 included) and compares with the seed's Python, transcribed.
func TestSeedRuleScorers(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed func(map[string]float64) (string, float64, float64)
		rows []map[string]float64
	}{
		{"seed_value", seedValue, []map[string]float64{
			{},
			{"total_value": 300},    // 0.3: low
			{"event_count": 3},      // 0.30000000000000004: medium
			{"total_value": 299.99}, // just under 0.3
			{"unique_event_types": 1, "is_purchase_event": 1},               // 0.7: medium
			{"event_count": 5, "unique_event_types": 1},                     // 0.7
			{"event_count": 4, "total_value": 300},                          // 0.7
			{"event_count": 7},                                              // 0.7000000000000001: high
			{"event_count": 1, "unique_event_types": 1, "total_value": 400}, // 0.7000000000000001, in the seed's order
			{"event_count": 12, "unique_event_types": 4, "total_value": 1234.56, "is_purchase_event": 1},
			{"event_count": 1, "unique_event_types": 1, "total_value": 25.5},
		}},
		{"seed_engagement", seedEngagement, []map[string]float64{
			{},
			{"total_events": 10, "recent_activity_7d": 5, "avg_events_per_day": 2, "total_sessions": 3},
			{"total_events": 11},                                                   // 0.3
			{"total_events": 11, "avg_events_per_day": 2.5},                        // 0.5
			{"recent_activity_7d": 6, "total_sessions": 4},                         // 0.5
			{"avg_events_per_day": 2.01, "total_sessions": 4},                      // 0.4
			{"total_events": 11, "recent_activity_7d": 6, "avg_events_per_day": 3}, // 0.8
			{"total_events": 11, "recent_activity_7d": 6, "total_sessions": 4},     // 0.8
			{"total_events": 11, "avg_events_per_day": 3, "total_sessions": 4},     // 0.7
			{"total_events": 50, "recent_activity_7d": 20, "avg_events_per_day": 7, "total_sessions": 9},
			{"total_events": 10.5, "recent_activity_7d": 5.5},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := readmeProcessor(t, tc.name)
			var bodies []string
			for _, row := range tc.rows {
				bodies = append(bodies, event(row))
			}
			for i, m := range process(t, p, bodies...) {
				if err := m.GetError(); err != nil {
					t.Errorf("%v: %v", tc.rows[i], err)
					continue
				}
				b := body(t, m)
				label, score, conf := tc.seed(tc.rows[i])
				got := gjson.GetManyBytes(b, "prediction.label", "prediction.score", "prediction.confidence", "prediction.probability", "prediction.model_version")
				if got[0].String() != label || got[1].Float() != score || got[2].Float() != conf {
					t.Errorf("%v: got %s %v %v, the seed says %s %v %v", tc.rows[i], got[0], got[1].Float(), got[2].Float(), label, score, conf)
				}
				if got[3].Exists() || len(got[4].String()) != 12 {
					t.Errorf("%v: probability %s (rules have none), model_version %q: %s", tc.rows[i], got[3], got[4], b)
				}
			}
		})
	}
}

// TestLogisticFile scores with a scikit-learn dump mounted into the sandbox.
func TestLogisticFile(t *testing.T) {
	dir := t.TempDir()
	file := []byte(`{"coef_": [[0.08, 0.3, 0.004, 0.6]], "intercept_": [-2.5], "classes_": ["low", "high"],
		"feature_names_in_": ["event_count", "unique_event_types", "total_value", "is_purchase_event"]}`)
	if err := os.WriteFile(filepath.Join(dir, "lr.json"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := mustProcessor(t, "mounts: [{host: "+dir+", guest: /models}]", `{"model_file": "/models/lr.json"}`)
	rows := []map[string]float64{
		{"event_count": 10, "unique_event_types": 2, "total_value": 150, "is_purchase_event": 1},
		{"event_count": 1},
		{"event_count": 30, "unique_event_types": 5, "total_value": 900, "is_purchase_event": 1},
		{"event_count": 10.625, "total_value": 300},
	}
	var bodies []string
	for _, r := range rows {
		bodies = append(bodies, event(r))
	}
	for i, m := range process(t, p, bodies...) {
		f := rows[i]
		z := -2.5 + 0.08*f["event_count"] + 0.3*f["unique_event_types"] + 0.004*f["total_value"] + 0.6*f["is_purchase_event"]
		prob := 1 / (1 + math.Exp(-z))
		label, conf := "low", 1-prob
		if prob > 0.5 {
			label, conf = "high", prob
		}
		b := body(t, m)
		got := gjson.GetManyBytes(b, "prediction.label", "prediction.score", "prediction.probability", "prediction.confidence", "prediction.model_version")
		if got[0].String() != label || math.Abs(got[1].Float()-prob) > 1e-12 || got[2].Float() != got[1].Float() || math.Abs(got[3].Float()-conf) > 1e-12 {
			t.Errorf("%v: got %s, want label %s probability %v confidence %v", f, b, label, prob, conf)
		}
		if got[4].String() != version(file) {
			t.Errorf("model_version %s, want %s", got[4], version(file))
		}
	}
}

func version(file []byte) string {
	sum := sha256.Sum256(file)
	return hex.EncodeToString(sum[:])[:12]
}

// TestXGBoost scores the fixture rows through the plugin and compares with
// the predictions XGBoost itself made (testdata/gen_xgboost.py). A row's
// missing value is a field the event lacks.
func TestXGBoost(t *testing.T) {
	raw, err := os.ReadFile("testdata/xgb_expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Models map[string]struct {
			Objective string
			Rows      [][]*float64
			Predict   json.RawMessage
		}
	}
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"event_count", "unique_event_types", "total_value", "is_purchase_event"}
	for name, fx := range exp.Models {
		t.Run(name, func(t *testing.T) {
			// xgb_reg names no features; features maps them, the others
			// name their own.
			p, _ := mustProcessor(t, "mounts: [{host: "+testdata+", guest: /models}]",
				`{"model_file": "/models/`+name+`.json", "features": ["event_count", "unique_event_types", "total_value", "is_purchase_event"]}`)
			var bodies []string
			for _, row := range fx.Rows {
				f := map[string]float64{}
				for j, v := range row {
					if v != nil {
						f[names[j]] = *v
					}
				}
				bodies = append(bodies, event(f))
			}
			file, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			out := process(t, p, bodies...)
			for i, m := range out {
				if err := m.GetError(); err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
				b := body(t, m)
				got := gjson.GetManyBytes(b, "prediction.score", "prediction.probability", "prediction.label", "prediction.model_version")
				if got[3].String() != version(file) {
					t.Errorf("row %d: model_version %s, want %s", i, got[3], version(file))
				}
				switch fx.Objective {
				case "multi:softprob":
					var probs [][]float64
					if err := json.Unmarshal(fx.Predict, &probs); err != nil {
						t.Fatal(err)
					}
					best := 0
					for k, p := range probs[i] {
						if p > probs[i][best] {
							best = k
						}
					}
					if got[2].String() != fmt.Sprint(best) || math.Abs(got[0].Float()-probs[i][best]) > 1e-6 || got[1].Float() != got[0].Float() {
						t.Errorf("row %d %v: %s, XGBoost: class %d with probability %v", i, bodies[i], b, best, probs[i][best])
					}
				default:
					var want []float64
					if err := json.Unmarshal(fx.Predict, &want); err != nil {
						t.Fatal(err)
					}
					if math.Abs(got[0].Float()-want[i]) > 1e-6 {
						t.Errorf("row %d %v: score %v, XGBoost %v", i, bodies[i], got[0].Float(), want[i])
					}
					if fx.Objective == "binary:logistic" {
						label := "0"
						if want[i] > 0.5 {
							label = "1"
						}
						if got[1].Float() != got[0].Float() || got[2].String() != label {
							t.Errorf("row %d: probability %s label %s, want %v %s", i, got[1], got[2], want[i], label)
						}
					} else if got[1].Exists() || got[2].Exists() {
						t.Errorf("row %d: a regression wrote probability %s or label %s", i, got[1], got[2])
					}
				}
			}
		})
	}
}

// TestMissingAndWrongTypedFeatures: a missing or null feature takes its
// default; a feature of the wrong JSON type fails only its own message, on
// the host, with a reason naming the field.
func TestMissingAndWrongTypedFeatures(t *testing.T) {
	p, _ := mustProcessor(t, "", `{
		"features": ["a", "b", "c"],
		"model": {"weights": {"a": 1, "b": 10, "c": 100}},
		"defaults": {"b": 2},
		"default_value": 0.5
	}`)
	out := process(t, p,
		`{"features": {"a": 1, "b": 1, "c": 1}}`,
		`{"features": {"a": 1}}`,            // b: its default 2; c: default_value 0.5
		`{"features": {"a": 1, "b": null}}`, // null is missing too
		`{"other": true}`,                   // no features at all
		`{"features": {"a": "1", "b": 1}}`,  // wrong type
		`{"features": {"a": 1, "c": true}}`, // booleans are not numbers
		`{"features": {"a": 3, "b": 0, "c": 0}}`,
		`{"features": {"a": 1, "c": 1e307}}`, // 100 * 1e307 overflows
	)
	for i, want := range []float64{111, 1 + 20 + 50, 1 + 20 + 50, 0.5 + 20 + 50, -1, -1, 3, -2} {
		m := out[i]
		if want < 0 {
			reason := "features." // the host's, naming the field
			if want == -2 {
				reason = "score is not a finite number"
			}
			if err := m.GetError(); err == nil || !strings.Contains(err.Error(), reason) {
				t.Errorf("message %d: error %v, want one containing %q", i, err, reason)
			}
			continue
		}
		if err := m.GetError(); err != nil {
			t.Errorf("message %d: %v", i, err)
			continue
		}
		if got := gjson.GetBytes(body(t, m), "prediction.score").Float(); got != want {
			t.Errorf("message %d: score %v, want %v", i, got, want)
		}
	}
}

// TestOutputsAndPrefix: field paths are configurable; "" writes nothing.
func TestOutputsAndPrefix(t *testing.T) {
	p, _ := mustProcessor(t, "", `{
		"input_prefix": "",
		"model": {"weights": {"clicks": 2}},
		"labels": [{"label": "busy", "at_least": 10}], "default_label": "quiet",
		"outputs": {"label": "segment", "score": "scores.activity", "model_version": "", "confidence": ""}
	}`)
	out := process(t, p, `{"clicks": 5}`, `{"clicks": 4}`)
	for i, want := range []string{`{"clicks":5,"segment":"busy","scores":{"activity":10}}`, `{"clicks":4,"segment":"quiet","scores":{"activity":8}}`} {
		var got, w any
		_ = json.Unmarshal(body(t, out[i]), &got)
		_ = json.Unmarshal([]byte(want), &w)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("message %d: %s, want %s", i, body(t, out[i]), want)
		}
	}
}

// TestModelFileReload swaps the model file between batches, atomically and
// not, and checks that every message of every batch is scored, by the
// model the file held when its batch started.
func TestModelFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	// Linear models simple enough to check by hand, and logistic ones that
	// read the features in the other order. a and b have the same size, as
	// have c and c2, so only the inode or the modification time can tell
	// the files apart.
	a := []byte(`{"type": "linear", "features": ["a", "b"], "coefficients": [1, 0], "intercept": 0}`)
	b := []byte(`{"type": "linear", "features": ["a", "b"], "coefficients": [0, 1], "intercept": 9}`)
	c := []byte(`{"type": "logistic", "features": ["b", "a"], "coefficients": [1, -1], "intercept": 0.5, "classes": ["no", "yes"]}`)
	c2 := []byte(`{"type": "logistic", "features": ["b", "a"], "coefficients": [1, -1], "intercept": 0.7, "classes": ["no", "yes"]}`)
	needsZ := []byte(`{"type": "linear", "features": ["a", "z"], "coefficients": [1, 1], "intercept": 0}`)
	scoreA := func(a, b float64) float64 { return a }
	scoreB := func(a, b float64) float64 { return 9 + b }
	scoreC := func(a, b float64) float64 { return 1 / (1 + math.Exp(-(0.5 + b - a))) }
	scoreC2 := func(a, b float64) float64 { return 1 / (1 + math.Exp(-(0.7 + b - a))) }

	// Modification times are set explicitly so the test does not depend on
	// the file system's timestamp granularity.
	stamp := 0
	touch := func() {
		stamp++
		ts := time.Unix(1_700_000_000+int64(stamp), 0)
		if err := os.Chtimes(path, ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	writeInPlace := func(data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		touch()
	}
	writeAtomically := func(data []byte) {
		tmp := filepath.Join(dir, ".m.json.tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		touch()
	}

	writeInPlace(a)
	p, logs := mustProcessor(t, "mounts: [{host: "+dir+", guest: /models}]", `{"model_file": "/models/m.json"}`)
	n := 0
	batch := func(step string, file []byte, score func(a, b float64) float64) {
		t.Helper()
		var bodies []string
		var rows [][2]float64
		for range 5 {
			n++
			r := [2]float64{float64(n), float64(n%3) * 1.5}
			rows = append(rows, r)
			bodies = append(bodies, event(map[string]float64{"a": r[0], "b": r[1]}))
		}
		for i, m := range process(t, p, bodies...) {
			if err := m.GetError(); err != nil {
				t.Errorf("%s: message %d failed: %v", step, i, err)
				continue
			}
			got := gjson.GetManyBytes(body(t, m), "prediction.score", "prediction.model_version")
			if want := score(rows[i][0], rows[i][1]); !got[0].Exists() || math.Abs(got[0].Float()-want) > 1e-12 {
				t.Errorf("%s: message %d %v: score %s, want %v", step, i, rows[i], got[0].Raw, want)
			}
			if got[1].String() != version(file) {
				t.Errorf("%s: message %d: model_version %s, want %s", step, i, got[1], version(file))
			}
		}
	}

	batch("first model", a, scoreA)
	batch("unchanged", a, scoreA)

	writeAtomically(b)
	batch("after an atomic swap", b, scoreB)

	writeInPlace(c[:len(c)/2])
	batch("half-written in place", b, scoreB)
	if !logs.has("WARN score: still using model " + version(b)) {
		t.Errorf("no warning about the broken file; logged: %q", logs.msgs)
	}
	batch("still half-written", b, scoreB)

	writeInPlace(c)
	batch("the write completed", c, scoreC)
	if !logs.has("score: now using model " + version(c)) {
		t.Errorf("no info about the new model; logged: %q", logs.msgs)
	}

	writeInPlace(c2)
	batch("rewritten in place, same size", c2, scoreC2)

	writeAtomically(needsZ)
	batch("a model needing an input not read", c2, scoreC2)
	if !logs.has(`the model needs feature "z", which is not among the inputs (a, b)`) {
		t.Errorf("no warning about the new feature; logged: %q", logs.msgs)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	batch("file deleted", c2, scoreC2)

	writeAtomically(a)
	batch("back to the first model", a, scoreA)
}

// TestConfigErrors: a bad config fails the pipeline at build time, with the
// config path of the key at fault first.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"type": "linear", "features": ["a"], "coefficients": [1, 2]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mount := "mounts: [{host: " + dir + ", guest: /models}]"
	for _, tc := range []struct {
		fields, config, want string
	}{
		{"", `{"model": {"conditions": [{"feature": "a", "op": ">", "value": 1, "add": 1}, {"feature": "b", "op": "<", "value": 1, "add": 1}, {"feature": "c", "op": "=>", "value": 1, "add": 1}]}}`,
			`model.conditions[2].op: unknown operator "=>" (want >, >=, <, <=, == or !=)`},
		{"", `{"model": {"weights": {"a": 1}}, "labels": [{"label": "hi", "above": 0.5}]}`, `default_label: missing`},
		{"", ``, `model: no model: set model (inline rules, linear or logistic) or model_file`},
		{mount, `{"model_file": "/models/none.json"}`, `model_file: stat /models/none.json: `},
		{"", `{"model_file": "/models/broken.json"}`, `model_file: stat /models/broken.json: `}, // not mounted
		{mount, `{"model_file": "/models/broken.json"}`, `model_file: /models/broken.json: coefficients: has 2 coefficients for 1 features ([a])`},
		{mount, `{"model_file": "/models/broken.json", "defaults": {"q": 1}}`, `model_file: /models/broken.json: coefficients`},
		{"", `{"model": {"weights": {"a": 1}}, "defaults": {"q": 1}}`, `defaults.q: not an input (inputs: a)`},
	} {
		_, _, err := newProcessor(t, tc.fields, tc.config)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.config, err, tc.want)
		}
	}
}
