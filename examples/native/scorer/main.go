// Command scorer is a native Sluice plugin: the builtin `score` plugin's
// scoring (rules, linear or logistic regression, XGBoost), compiled as an
// ordinary executable and run by the `grpc_plugin` processor over gRPC.
// It takes the builtin's config unchanged (plugins/builtin/score/README.md)
// and writes the same fields, byte for byte; what differs is where it runs:
// `model_file` is a plain path on the agent's machine, read natively, with
// no sandbox mounts.
//
// Build (from the repository root):
//
//	go build -o examples/native/scorer/scorer ./examples/native/scorer
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/model"
	"github.com/sluice-dev/sluice/plugins/native"
)

func main() {
	s := &scorer{}
	native.Serve(native.Plugin{Init: s.init, Process: s.process})
}

// scorer holds what Init loaded. Init runs before any batch and Process
// only reads it, so concurrent batches need no lock.
type scorer struct {
	m      *model.Model
	inputs []string // field paths read: input_prefix + feature
	bind   model.Binding
	outs   []outKind // the outputs written, as plan's paths
	plan   *plan
	// labels and version are rendered as JSON once: they are fixed per
	// model.
	labels  [][]byte
	version []byte
}

type outKind int

const (
	outLabel outKind = iota
	outVersion
	outScore
	outProbability
	outConfidence
	outKinds
)

func (s *scorer) init(c native.Config) error {
	raw, err := absModelFile(c.JSON)
	if err != nil {
		return err
	}
	cfg, err := model.ParseConfig(raw)
	if err != nil {
		return err
	}
	var m *model.Model
	if cfg.Inline() {
		m, err = cfg.Load(nil)
	} else {
		var data []byte
		if data, err = os.ReadFile(cfg.ModelFile); err != nil {
			return fmt.Errorf("model_file: %w", err)
		}
		m, err = cfg.Load(data)
	}
	if err != nil {
		return err
	}
	names := cfg.Inputs(m)
	bind, err := cfg.Bind(names, m)
	if err != nil {
		return err
	}
	s.m, s.bind = m, bind
	for _, name := range names {
		s.inputs = append(s.inputs, cfg.InputPrefix+name)
	}
	for _, l := range m.Labels() {
		q, _ := json.Marshal(l) // as the agent writes strings: <, >, & escaped
		s.labels = append(s.labels, q)
	}
	s.version, _ = json.Marshal(m.Version())
	// The order the builtin declares its outputs in, which is the order
	// the agent merges them in.
	o := cfg.Outputs
	var paths []string
	for _, out := range []struct {
		path string
		kind outKind
	}{{o.Label, outLabel}, {o.ModelVersion, outVersion}, {o.Score, outScore}, {o.Probability, outProbability}, {o.Confidence, outConfidence}} {
		if out.path != "" {
			paths, s.outs = append(paths, out.path), append(s.outs, out.kind)
		}
	}
	s.plan = newPlan(paths)
	return nil
}

func (s *scorer) process(_ context.Context, batch []native.Message) ([]native.Result, error) {
	results := make([]native.Result, len(batch))
	in := make([]float64, len(s.inputs))
	has := make([]bool, len(s.inputs))
	x := make([]float64, len(s.bind.Cols))
	vals := make([]value, len(s.outs))
	var res model.Result
	var nums []byte    // the row's numbers as JSON, which vals point into
	var scratch []byte // merge's, reused
	for i, msg := range batch {
		doc := string(msg.Value) // one copy, for every gjson lookup
		if reason := s.read(doc, in, has); reason != "" {
			results[i] = native.Fail(reason)
			continue
		}
		for j, col := range s.bind.Cols {
			x[j] = s.bind.Defaults[j]
			if has[col] {
				x[j] = in[col]
			}
		}
		s.m.Score(x, &res)
		if math.IsNaN(res.Score) || math.IsInf(res.Score, 0) {
			results[i] = native.Fail("the model's score is not a finite number: is a feature far out of range?")
			continue
		}
		var reason string
		if nums, reason = s.values(vals, nums[:0], &res); reason != "" {
			results[i] = native.Fail(reason)
			continue
		}
		out, err := s.plan.merge(msg.Value, doc, vals, &scratch)
		switch {
		case err != nil:
			results[i] = native.Fail(err.Error())
		case out == nil:
			results[i] = native.Keep()
		default:
			results[i] = native.Replace(out)
		}
	}
	return results, nil
}

// absModelFile makes a relative model_file absolute. The shared config
// parser asks for an absolute path, as the Wasm plugin sees its files at
// fixed mount points; natively, a relative path is relative to the agent's
// working directory, which the plugin process inherits.
func absModelFile(raw []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return raw, nil // not an object: ParseConfig says what is wrong
	}
	var path string
	if json.Unmarshal(top["model_file"], &path) != nil || path == "" || filepath.IsAbs(path) {
		return raw, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("model_file: %w", err)
	}
	top["model_file"], _ = json.Marshal(abs)
	return json.Marshal(top)
}

// read fills in the features of one event as the agent's fast mode does
// (plugins/sdk/ABI.md §8.4): a missing or null field is absent, and takes
// its default; any other non-number fails the message.
func (s *scorer) read(doc string, in []float64, has []bool) string {
	for k, path := range s.inputs {
		r := gjson.Get(doc, path)
		has[k] = false
		switch {
		case !r.Exists() || r.Type == gjson.Null:
		case r.Type == gjson.Number:
			in[k], has[k] = r.Num, true
		default:
			raw := r.Raw
			if len(raw) > 64 {
				raw = raw[:61] + "..."
			}
			return fmt.Sprintf("field %q: want number, got %s", path, raw)
		}
	}
	return ""
}

// values fills in one result's outputs, leaving out those the model gives
// nothing for. Numbers are rendered into nums, which is returned for reuse.
func (s *scorer) values(vals []value, nums []byte, r *model.Result) ([]byte, string) {
	// Render every number first: nums may move as it grows.
	var spans [outKinds][2]int
	for k, kind := range s.outs {
		var v float64
		switch {
		case kind == outScore:
			v = r.Score
		case kind == outProbability && r.HasProbability:
			v = r.Probability
		case kind == outConfidence && r.HasConfidence:
			v = r.Confidence
		default:
			continue
		}
		start := len(nums)
		var ok bool
		if nums, ok = appendNumber(nums, v); !ok {
			return nums, fmt.Sprintf("output field %q: %v cannot be written as JSON", s.plan.paths[k], v)
		}
		spans[kind] = [2]int{start, len(nums)}
	}
	for k, kind := range s.outs {
		vals[k] = value{}
		switch kind {
		case outLabel:
			if r.Label >= 0 {
				vals[k] = value{raw: s.labels[r.Label], present: true}
			}
		case outVersion:
			vals[k] = value{raw: s.version, present: true}
		default:
			if sp := spans[kind]; sp[1] > sp[0] {
				vals[k] = value{raw: nums[sp[0]:sp[1]], present: true}
			}
		}
	}
	return nums, ""
}
