//go:build !wasip1

// The tests build this plugin with go build and run it through the agent's
// real grpc_plugin processor, as a pipeline would.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"   // file input and output
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // switch, mapping
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/grpcplugin"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/plugins/builtin"
)

// build compiles the plugin with the README's command, into a temporary
// directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "scorer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func process(t *testing.T, p service.BatchProcessor, bodies []string) service.MessageBatch {
	t.Helper()
	batch := make(service.MessageBatch, len(bodies))
	for i, b := range bodies {
		batch[i] = service.NewMessage([]byte(b))
	}
	out, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || len(out[0]) != len(bodies) {
		t.Fatalf("got %d batches, want one of %d messages", len(out), len(bodies))
	}
	return out[0]
}

// events are the inputs of the comparison: generated feature sets (ints,
// floats, nulls, missing and wrong-typed features) and bodies that take
// the unusual paths of the output merge.
func events() []string {
	rng := rand.New(rand.NewPCG(11, 11))
	names := []string{"event_count", "unique_event_types", "total_value", "is_purchase_event",
		"total_events", "recent_activity_7d", "avg_events_per_day", "total_sessions"}
	var out []string
	for i := range 300 {
		var fs []string
		for _, n := range names {
			var v string
			switch rng.IntN(12) {
			case 0:
				continue // missing
			case 1:
				v = "null"
			case 2:
				if i%3 == 0 {
					v = `"7"` // wrong type: fails the message
				} else {
					v = "0"
				}
			case 3, 4, 5:
				v = fmt.Sprint(rng.IntN(30))
			default:
				v = fmt.Sprint(float64(rng.IntN(100000)) / 100)
			}
			fs = append(fs, fmt.Sprintf("%q:%s", n, v))
		}
		out = append(out, fmt.Sprintf(`{"user_id":%d,"features":{%s}}`, i, strings.Join(fs, ",")))
	}
	return append(out,
		`{}`,
		`{ }`,
		`[1,2]`,
		`"a string"`,
		`not json at all`,
		`{"features":{"event_count":3},"prediction":{"old":true}}`,
		`{"features":{"event_count":3},"prediction":{"label":"stale","score":-1}}`,
		`{"features":{"event_count":3},"prediction":"not an object"}`,
		`{"name":"é<>&\u00e9","features":{"event_count":4.5e-7,"total_value":1e21}}`,
		"{\n  \"features\": {\"event_count\": 2, \"total_value\": 1e300},\n  \"tail\": [1, 2]\n}",
		`{"features":{"event_count":true}}`,
		`{"features":[1,2,3]}`,
	)
}

// TestSameAsBuiltin runs the same events through the builtin Wasm score
// step and this plugin with the same config: every message must come out
// byte-identical, or fail in both.
func TestSameAsBuiltin(t *testing.T) {
	bin := build(t)
	ctx := context.Background()
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	xgb, err := filepath.Abs("../../../plugins/builtin/score/testdata")
	if err != nil {
		t.Fatal(err)
	}
	evs := events()

	for _, c := range []struct {
		name   string
		config string // JSON; MODELS stands for the model directory
		models string
		// ulps allows numbers to differ in their last bits: math.Exp is
		// assembly on amd64 and pure Go in Wasm, and the two round
		// differently in about one case in fifty.
		ulps uint64
	}{
		{"seed value", `{"features": ["event_count", "unique_event_types", "total_value", "is_purchase_event"],
			"model": {"weights": {"event_count": 0.1, "unique_event_types": 0.2, "total_value": 0.001, "is_purchase_event": 0.5}},
			"labels": [{"label": "high_value_user", "above": 0.7}, {"label": "medium_value_user", "above": 0.3}],
			"default_label": "low_value_user", "confidence": {"constant": 0.85}}`, "", 0},
		{"seed engagement", `{"model": {"conditions": [
			{"feature": "total_events", "op": ">", "value": 10, "add": 0.3},
			{"feature": "recent_activity_7d", "op": ">", "value": 5, "add": 0.3},
			{"feature": "avg_events_per_day", "op": ">", "value": 2, "add": 0.2},
			{"feature": "total_sessions", "op": ">", "value": 3, "add": 0.2}]},
			"labels": [{"label": "high_engagement", "at_least": 0.8}, {"label": "medium_engagement", "at_least": 0.5}],
			"default_label": "low_engagement", "confidence": {"score_plus": 0.2, "max": 1.0}}`, "", 0},
		{"model file", `{"model_file": "MODELS/model.json", "labels": [{"label": "high_value_user", "above": 0.7}],
			"default_label": "other", "defaults": {"total_value": 10}}`, here, 0},
		{"logistic", `{"model": {"type": "logistic", "features": ["event_count", "total_value"], "coefficients": [0.3, 0.01],
			"intercept": -2, "classes": ["stays", "churns"]}, "confidence": {"probability": true}}`, "", 4},
		{"xgboost", `{"model_file": "MODELS/xgb_binary.json", "classes": ["low", "high"]}`, xgb, 0},
		{"outputs elsewhere", `{"model": {"weights": {"event_count": 1}}, "labels": [{"label": "many", "at_least": 10}],
			"default_label": "few", "outputs": {"label": "label", "score": "scores.a.b", "model_version": "", "confidence": "prediction.confidence"},
			"confidence": {"constant": 1}}`, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			wasmConf, nativeConf := c.config, c.config
			wasmYAML := "builtin: score\n"
			if c.models != "" {
				wasmConf = strings.ReplaceAll(c.config, "MODELS", "/models")
				nativeConf = strings.ReplaceAll(c.config, "MODELS", c.models)
				wasmYAML += "mounts: [{host: " + c.models + ", guest: /models}]\n"
			}
			wc, err := wasm.ConfigSpec().ParseYAML(wasmYAML+"config: "+flat(t, wasmConf), nil)
			if err != nil {
				t.Fatal(err)
			}
			wp, err := wasm.NewProcessor(ctx, eng, wc, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer wp.Close(ctx)
			gc, err := grpcplugin.ConfigSpec().ParseYAML("path: "+bin+"\nconfig: "+flat(t, nativeConf), nil)
			if err != nil {
				t.Fatal(err)
			}
			gp, err := grpcplugin.NewProcessor(gc, service.MockResources(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer gp.Close(ctx)

			want, got := process(t, wp, evs), process(t, gp, evs)
			failed := 0
			for i := range evs {
				wb, _ := want[i].AsBytes()
				gb, _ := got[i].AsBytes()
				werr, gerr := want[i].GetError(), got[i].GetError()
				if (werr != nil) != (gerr != nil) {
					t.Errorf("event %d %s: wasm error %v, native error %v", i, evs[i], werr, gerr)
					continue
				}
				if werr != nil {
					failed++
				}
				if string(wb) != string(gb) && (c.ulps == 0 || !withinULPs(string(wb), string(gb), c.ulps)) {
					t.Errorf("event %d: output differs\nwasm:   %s\nnative: %s", i, wb, gb)
				}
			}
			if failed == 0 || failed == len(evs) {
				t.Errorf("%d of %d events failed in both: the set should hold both kinds", failed, len(evs))
			}
		})
	}
}

var number = regexp.MustCompile(`-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?`)

// withinULPs reports whether a and b are the same text but for numbers
// that differ by at most ulps units in the last place.
func withinULPs(a, b string, ulps uint64) bool {
	if number.ReplaceAllString(a, "#") != number.ReplaceAllString(b, "#") {
		return false
	}
	na, nb := number.FindAllString(a, -1), number.FindAllString(b, -1)
	for i := range na {
		x, errx := strconv.ParseFloat(na[i], 64)
		y, erry := strconv.ParseFloat(nb[i], 64)
		if errx != nil || erry != nil || (x < 0) != (y < 0) {
			return false
		}
		d := int64(math.Float64bits(math.Abs(x))) - int64(math.Float64bits(math.Abs(y)))
		if d < -int64(ulps) || d > int64(ulps) {
			return false
		}
	}
	return true
}

// flat turns a JSON config into one line, which YAML reads as a mapping.
func flat(t *testing.T, config string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(config), &v); err != nil {
		t.Fatalf("config: %v", err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestPipeline runs pipeline.yaml as shipped, from the repository root,
// with the built plugin and its outputs redirected to temporary files.
func TestPipeline(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	raw, err := os.ReadFile("pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := yaml.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	procs := conf["pipeline"].(map[string]any)["processors"].([]any)
	procs[0].(map[string]any)["grpc_plugin"].(map[string]any)["path"] = bin
	cases := conf["output"].(map[string]any)["switch"].(map[string]any)["cases"].([]any)
	rejects, scored := filepath.Join(dir, "rejects.jsonl"), filepath.Join(dir, "scored.jsonl")
	cases[0].(map[string]any)["output"].(map[string]any)["file"].(map[string]any)["path"] = rejects
	cases[1].(map[string]any)["output"] = map[string]any{"file": map[string]any{"path": scored, "codec": "lines"}}
	conf["logger"] = map[string]any{"level": "off"}
	out, err := yaml.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}

	t.Chdir("../../..")
	env := service.NewEnvironment()
	if err := grpcplugin.Register(env, nil); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	if err := b.SetYAML(string(out)); err != nil {
		t.Fatal(err)
	}
	strm, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := strm.Run(ctx); err != nil {
		t.Fatal(err)
	}

	labels := map[int64]string{}
	for _, line := range lines(t, scored) {
		labels[gjson.Get(line, "user_id").Int()] = gjson.Get(line, "prediction.label").String()
	}
	want := map[int64]string{7: "high_value_user", 8: "medium_value_user", 9: "low_value_user", 10: "high_value_user"}
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Errorf("labels by user: %v, want %v", labels, want)
	}
	rej := lines(t, rejects)
	if len(rej) != 1 || !strings.Contains(gjson.Get(rej[0], "reason").String(), `field "features.event_count": want number, got "twelve"`) ||
		gjson.Get(gjson.Get(rej[0], "original").String(), "user_id").Int() != 11 {
		t.Errorf("rejects: %q, want user 11's event with its reason", rej)
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
