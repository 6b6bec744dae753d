package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
)

// Config is the score plugin's `config:` block: where the model comes from,
// which inputs it reads, how a score becomes a label and a confidence, and
// where the results are written.
type Config struct {
	// Features names the inputs, in order. For rules it is also the order
	// the weighted sum adds its terms in; for a model file that does not
	// name its features, it maps names to the model's column indices.
	Features []string
	// InputPrefix is put before a feature's name to make its field path.
	InputPrefix string
	// Defaults replace missing inputs, by feature name.
	Defaults map[string]float64
	// ModelFile is the path, inside the sandbox, of the model file; empty
	// when the model is inline.
	ModelFile string
	// Outputs are the field paths written; an empty path is not written.
	Outputs Outputs

	defaultValue    float64
	hasDefaultValue bool
	inline          json.RawMessage
	inlineVersion   string
	post            post
}

// Outputs are the field paths the plugin writes.
type Outputs struct {
	Label, Score, Probability, Confidence, ModelVersion string
}

// post turns a model's raw output into the label and confidence.
type post struct {
	labels       []threshold
	defaultLabel string
	classes      []string
	threshold    float64
	confidence   confidence
}

type threshold struct {
	label     string
	at        float64
	inclusive bool // at_least rather than above
}

type confidenceKind int

const (
	confidenceDefault confidenceKind = iota // the class probability, if the model has one
	confidenceConstant
	confidenceScorePlus
	confidenceProbability
)

type confidence struct {
	kind  confidenceKind
	value float64 // the constant, or what is added to the score
	max   float64
}

var ops = []string{">", ">=", "<", "<=", "==", "!="}

// ParseConfig reads and validates the plugin config (JSON). Every error
// starts with the config path of the key at fault.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{
		InputPrefix: "features.",
		Outputs: Outputs{
			Label:        "prediction.label",
			Score:        "prediction.score",
			Probability:  "prediction.probability",
			Confidence:   "prediction.confidence",
			ModelVersion: "prediction.model_version",
		},
		post: post{threshold: 0.5},
	}
	if len(raw) == 0 || isNull(raw) {
		return nil, errorf("model", "no model: set model (inline rules, linear or logistic) or model_file")
	}
	o, err := newObject("", raw)
	if err != nil {
		return nil, err
	}
	if _, err := o.names("features", &c.Features); err != nil {
		return nil, err
	}
	if _, err := o.str("input_prefix", &c.InputPrefix); err != nil {
		return nil, err
	}
	if c.hasDefaultValue, err = o.number("default_value", &c.defaultValue); err != nil {
		return nil, err
	}
	if v, ok := o.raw("defaults"); ok {
		d, err := newObject(o.at("defaults"), v)
		if err != nil {
			return nil, err
		}
		c.Defaults = make(map[string]float64, len(d.fields))
		for name := range d.fields {
			var f float64
			if _, err := d.number(name, &f); err != nil {
				return nil, err
			}
			c.Defaults[name] = f
		}
	}
	inline, hasInline := o.raw("model")
	if _, err := o.str("model_file", &c.ModelFile); err != nil {
		return nil, err
	}
	if err := c.post.parse(o); err != nil {
		return nil, err
	}
	if v, ok := o.raw("outputs"); ok {
		if err := c.Outputs.parse(o.at("outputs"), v); err != nil {
			return nil, err
		}
	}
	// Unknown keys before the model check: a misspelt `model` key is
	// reported as the typo it is, not as a missing model.
	if err := o.done(); err != nil {
		return nil, err
	}
	switch {
	case hasInline && c.ModelFile != "":
		return nil, errorf("model_file", "model is set too: give the model inline or in a file, not both")
	case hasInline:
		c.inline = inline
		sum := sha256.Sum256(raw)
		c.inlineVersion = hex.EncodeToString(sum[:])[:12]
	case c.ModelFile == "":
		return nil, errorf("model", "no model: set model (inline rules, linear or logistic) or model_file")
	case !path.IsAbs(c.ModelFile):
		return nil, errorf("model_file", "%q is not absolute: give the path the plugin sees, inside one of the processor's mounts (e.g. /models/model.json)", c.ModelFile)
	}
	if c.inline != nil {
		// An inline model is checked now, so a mistake in it is a config
		// error even for a caller that never builds the model.
		if _, err := c.Load(nil); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (p *post) parse(o *object) error {
	items, hasLabels, err := o.list("labels")
	if err != nil {
		return err
	}
	for i, it := range items {
		at := index(o.at("labels"), i)
		lo, err := newObject(at, it)
		if err != nil {
			return err
		}
		var t threshold
		if ok, err := lo.str("label", &t.label); err != nil {
			return err
		} else if !ok || t.label == "" {
			return errorf(lo.at("label"), "missing: each entry needs a label")
		}
		above, err := lo.number("above", &t.at)
		if err != nil {
			return err
		}
		var least float64
		atLeast, err := lo.number("at_least", &least)
		if err != nil {
			return err
		}
		switch {
		case above && atLeast:
			return errorf(lo.at("at_least"), "above is set too: give one of above (score > x) and at_least (score >= x)")
		case !above && !atLeast:
			return errorf(at, "no threshold: give above (score > x) or at_least (score >= x)")
		case atLeast:
			t.at, t.inclusive = least, true
		}
		if err := lo.done(); err != nil {
			return err
		}
		for j, prev := range p.labels {
			if t.at > prev.at || t.at == prev.at && (prev.inclusive || !t.inclusive) {
				return errorf(at, "can never match: labels[%d] (%s) already takes every score this one would; list thresholds from the highest down", j, prev.label)
			}
		}
		p.labels = append(p.labels, t)
	}
	hasDefault, err := o.str("default_label", &p.defaultLabel)
	if err != nil {
		return err
	}
	switch {
	case hasLabels && !hasDefault:
		return errorf("default_label", "missing: labels needs a default_label for scores below every threshold")
	case hasDefault && !hasLabels:
		return errorf("default_label", "set without labels: it is the label for scores below every threshold in labels")
	}
	if _, err := o.names("classes", &p.classes); err != nil {
		return err
	}
	if ok, err := o.number("threshold", &p.threshold); err != nil {
		return err
	} else if ok && (p.threshold < 0 || p.threshold > 1) {
		return errorf("threshold", "%v is not a probability between 0 and 1", p.threshold)
	}
	if v, ok := o.raw("confidence"); ok {
		if err := p.confidence.parse(o.at("confidence"), v); err != nil {
			return err
		}
	}
	return nil
}

func (c *confidence) parse(at string, raw json.RawMessage) error {
	o, err := newObject(at, raw)
	if err != nil {
		return err
	}
	constant, err := o.number("constant", &c.value)
	if err != nil {
		return err
	}
	var plus float64
	scorePlus, err := o.number("score_plus", &plus)
	if err != nil {
		return err
	}
	c.max = 1
	hasMax, err := o.number("max", &c.max)
	if err != nil {
		return err
	}
	var prob bool
	if _, err := o.boolean("probability", &prob); err != nil {
		return err
	}
	if err := o.done(); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{constant, scorePlus, prob} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errorf(at, "want exactly one of constant: x, score_plus: x (with max, default 1) or probability: true")
	}
	switch {
	case hasMax && !scorePlus:
		return errorf(o.at("max"), "only goes with score_plus")
	case constant:
		c.kind = confidenceConstant
	case scorePlus:
		c.kind, c.value = confidenceScorePlus, plus
	default:
		c.kind = confidenceProbability
	}
	return nil
}

func (out *Outputs) parse(at string, raw json.RawMessage) error {
	o, err := newObject(at, raw)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"label", &out.Label},
		{"score", &out.Score},
		{"probability", &out.Probability},
		{"confidence", &out.Confidence},
		{"model_version", &out.ModelVersion},
	} {
		if _, err := o.str(f.key, f.dst); err != nil {
			return err
		}
	}
	return o.done()
}

// Inline reports whether the model is in the config rather than a file.
func (c *Config) Inline() bool { return c.inline != nil }

// Load builds the model: the inline one when file is nil, else the one in
// the model file's bytes. Errors start with "model" or "model_file".
func (c *Config) Load(file []byte) (*Model, error) {
	var m *Model
	var err error
	if file == nil {
		if c.inline == nil {
			return nil, errorf("model_file", "no bytes given for %s", c.ModelFile)
		}
		m, err = c.parseModel("model", c.inline)
		if err == nil {
			m.version = c.inlineVersion
		}
	} else {
		m, err = c.parseModel("", file)
		if err != nil {
			return nil, &Error{Path: "model_file", Err: fmt.Errorf("%s: %w", c.ModelFile, err)}
		}
		sum := sha256.Sum256(file)
		m.version = hex.EncodeToString(sum[:])[:12]
	}
	if err != nil {
		return nil, err
	}
	if err := c.finish(m); err != nil {
		return nil, err
	}
	return m, nil
}

// finish applies the config's post-processing to m and checks they fit.
func (c *Config) finish(m *Model) error {
	p := c.post
	if p.classes != nil {
		if m.classes == nil {
			return errorf("classes", "the model is not a classifier, so it has no classes to name; use labels for thresholds on the score")
		}
		if len(p.classes) != len(m.classes) {
			return errorf("classes", "names %d classes, the model has %d", len(p.classes), len(m.classes))
		}
		m.classes = p.classes
	}
	if p.confidence.kind == confidenceProbability && !m.probability {
		return errorf("confidence.probability", "this %s model gives no probability; use constant or score_plus", m.kind)
	}
	m.post = p
	m.labels = m.labels[:0]
	for _, t := range p.labels {
		m.labels = append(m.labels, t.label)
	}
	if p.labels != nil {
		m.labels = append(m.labels, p.defaultLabel)
	}
	m.classBase = len(m.labels)
	m.labels = append(m.labels, m.classes...)
	return nil
}

// Inputs are the features the plugin declares: the config's features, or
// else those of the model it starts with.
func (c *Config) Inputs(m *Model) []string {
	if c.Features != nil {
		return c.Features
	}
	return m.features
}

// Binding feeds a model from the plugin's inputs: the model's feature j is
// input Cols[j], or Defaults[j] when a message lacks it.
type Binding struct {
	Cols     []int
	Defaults []float64
}

// Bind maps m's features onto inputs by name. A model file reloaded later
// can only use features among the inputs declared at load.
func (c *Config) Bind(inputs []string, m *Model) (Binding, error) {
	for name := range c.Defaults {
		if !slices.Contains(inputs, name) {
			return Binding{}, errorf(join("defaults", name), "not an input (inputs: %s)", strings.Join(inputs, ", "))
		}
	}
	b := Binding{Cols: make([]int, len(m.features)), Defaults: make([]float64, len(m.features))}
	for j, name := range m.features {
		col := slices.Index(inputs, name)
		if col < 0 {
			at := "features"
			if c.ModelFile != "" {
				at = "model_file"
			}
			return Binding{}, errorf(at, "the model needs feature %q, which is not among the inputs (%s); inputs are fixed when the pipeline starts: add it to features, or restart with the new model", name, strings.Join(inputs, ", "))
		}
		b.Cols[j] = col
		b.Defaults[j] = c.defaultFor(name, m)
	}
	return b, nil
}

// defaultFor is the value a missing feature takes. Tree models handle a
// missing value themselves (each split has a default branch, learnt in
// training), so they get NaN, meaning missing, unless a default was set.
func (c *Config) defaultFor(name string, m *Model) float64 {
	if v, ok := c.Defaults[name]; ok {
		return v
	}
	if c.hasDefaultValue {
		return c.defaultValue
	}
	if m.kind == kindTrees {
		return math.NaN()
	}
	return 0
}

var errNoFeatures = errors.New("the model does not name its features: list them in the config's features, in the model's column order")
