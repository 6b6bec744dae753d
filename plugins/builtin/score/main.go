// Command score is the builtin `score` plugin: it turns each event's
// features into a prediction (label, score, probability, confidence and
// the model's version) with rules, a linear or logistic regression, or an
// XGBoost tree ensemble. A model file is reloaded when it changes, between
// batches, so no message is scored by a half-loaded model.
//
// It runs in fast mode: the host parses the feature fields natively and
// hands over float columns. The scoring lives in plugins/builtin/lib/model,
// so this file is only the glue to the SDK. README.md documents the config.
package main

import (
	"fmt"
	"io/fs"
	"math"
	"os"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/model"
	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	cfg    *model.Config
	names  []string      // the features read, fixed at load
	inputs []sdk.InFloat // inputs[k] reads names[k]

	outLabel, outVersion                    *sdk.OutString
	outScore, outProbability, outConfidence *sdk.OutFloat

	cur     active
	x       []float64 // one row's feature vector, reused
	res     model.Result
	lastErr string // the last reload problem logged, so it is logged once
)

// active is the model in use and what scoring it needs ready-made.
type active struct {
	m       *model.Model
	bind    model.Binding
	labels  [][]byte
	version []byte
	file    fs.FileInfo // the model file it came from; nil when inline
	failed  fs.FileInfo // a later file that did not load: retried once it changes
}

func init() {
	sdk.OnConfig(configure)
	sdk.HandleBatch(scoreBatch)
}

func configure(c sdk.Config) error {
	var err error
	if cfg, err = model.ParseConfig(c.Raw()); err != nil {
		return sdk.InvalidConfig(err)
	}
	var m *model.Model
	var file fs.FileInfo
	if cfg.Inline() {
		m, err = cfg.Load(nil)
	} else {
		m, file, err = readModel()
	}
	// An inline model is the config: its errors are the config's. A model
	// file may not be there yet, or be replaced by a good one: a run that
	// fails on it is retried.
	invalid := func(err error) error {
		if cfg.Inline() {
			return sdk.InvalidConfig(err)
		}
		return err
	}
	if err != nil {
		return invalid(err)
	}
	names = cfg.Inputs(m)
	for _, name := range names {
		// Not Required: a missing feature takes its default instead.
		inputs = append(inputs, sdk.ReadFloat(cfg.InputPrefix+name))
	}
	o := cfg.Outputs
	outLabel, outVersion = writeString(o.Label), writeString(o.ModelVersion)
	outScore, outProbability, outConfidence = writeFloat(o.Score), writeFloat(o.Probability), writeFloat(o.Confidence)
	return invalid(use(m, file))
}

func scoreBatch(b *sdk.Batch) error {
	if file := cur.file; file != nil {
		reload(file)
	}
	m, bind := cur.m, cur.bind
	for i := 0; i < b.Len(); i++ {
		for j, col := range bind.Cols {
			v, ok := inputs[col].Get(b, i)
			if !ok {
				v = bind.Defaults[j]
			}
			x[j] = v
		}
		m.Score(x, &res)
		if math.IsNaN(res.Score) || math.IsInf(res.Score, 0) {
			b.Fail(i, "the model's score is not a finite number: is a feature far out of range?")
			continue
		}
		if outScore != nil {
			outScore.Set(b, i, res.Score)
		}
		if outProbability != nil && res.HasProbability {
			outProbability.Set(b, i, res.Probability)
		}
		if outConfidence != nil && res.HasConfidence {
			outConfidence.Set(b, i, res.Confidence)
		}
		if outLabel != nil && res.Label >= 0 {
			outLabel.Set(b, i, cur.labels[res.Label])
		}
		if outVersion != nil {
			outVersion.Set(b, i, cur.version)
		}
	}
	return nil
}

// reload swaps in the model file if it changed since it was loaded. A file
// that does not load (say, half-written by a writer that does not rename
// atomically) leaves the current model in place until the file changes.
func reload(loaded fs.FileInfo) {
	fi, err := os.Stat(cfg.ModelFile)
	if err == nil && (sameVersion(fi, loaded) || sameVersion(fi, cur.failed)) {
		return
	}
	var m *model.Model
	if err == nil {
		m, fi, err = readModel()
	}
	if err == nil {
		err = use(m, fi)
	}
	if err != nil {
		cur.failed = fi
		if msg := err.Error(); msg != lastErr {
			lastErr = msg
			sdk.Logf(sdk.LevelWarn, "score: still using model %s: %v", cur.m.Version(), err)
		}
		return
	}
	lastErr = ""
	sdk.Logf(sdk.LevelInfo, "score: now using model %s from %s", m.Version(), cfg.ModelFile)
}

// sameVersion reports whether a and b describe the same version of a file:
// a rename puts a new file (inode) in place, an in-place write changes the
// size or modification time.
func sameVersion(a, b fs.FileInfo) bool {
	return b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// readModel loads the model file, with its stat taken before reading so a
// write racing the read is seen as a change by the next batch.
func readModel() (*model.Model, fs.FileInfo, error) {
	fi, err := os.Stat(cfg.ModelFile)
	if err != nil {
		return nil, nil, fmt.Errorf("model_file: %w", err)
	}
	data, err := os.ReadFile(cfg.ModelFile)
	if err != nil {
		return nil, fi, fmt.Errorf("model_file: %w", err)
	}
	m, err := cfg.Load(data)
	return m, fi, err
}

// use makes m the model in use, once it is known to fit the inputs.
func use(m *model.Model, file fs.FileInfo) error {
	bind, err := cfg.Bind(names, m)
	if err != nil {
		return err
	}
	labels := make([][]byte, len(m.Labels()))
	for i, l := range m.Labels() {
		labels[i] = []byte(l)
	}
	cur = active{m: m, bind: bind, labels: labels, version: []byte(m.Version()), file: file}
	x = make([]float64, len(m.Features()))
	return nil
}

func writeString(path string) *sdk.OutString {
	if path == "" {
		return nil
	}
	h := sdk.WriteString(path)
	return &h
}

func writeFloat(path string) *sdk.OutFloat {
	if path == "" {
		return nil
	}
	h := sdk.WriteFloat(path)
	return &h
}

func main() {}
