package chainbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/expect"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/features"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/model"
	"github.com/sluice-dev/sluice/plugins/sdk"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
	"github.com/sluice-dev/sluice/state"
)

// parityEvents is how many of the first events the native chain's output
// is checked for against the Wasm chain's.
const parityEvents = 2000

// benchNative is the native sub-benchmark: each iteration runs every event
// through a fresh nativeChain on fresh state, and the run's first events'
// outputs are checked against the Wasm chain's (ref).
func benchNative(b *testing.B, steps []string, bodies [][]byte, durable bool, ref *wasmOutput) {
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := openState(b, durable)
		nc := newNativeChain(b, steps, st)
		got := newOutput(len(ref.body))
		sink := func(first int) {
			// Keeps the first events' results for the check: a copy of
			// at most parityEvents events of the run, in its first batches.
			for k := range nc.ev[:max(0, min(len(nc.ev), len(got.body)-first))] {
				e := &nc.ev[k]
				got.failed[first+k], got.reason[first+k] = e.status != evLive, e.reason
				if e.status == evLive {
					got.body[first+k] = bytes.Clone(nc.out[e.out[0]:e.out[1]])
				}
			}
		}
		b.StartTimer()
		failed := nc.run(b, bodies, sink)
		b.StopTimer()
		if failed > len(bodies)/100 {
			b.Fatalf("%d of %d events failed", failed, len(bodies))
		}
		checkParity(b, ref, got)
		_ = st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*len(bodies))/b.Elapsed().Seconds(), "events/s")
}

// wasmOutput is what a chain made of each event: its final bytes, or that
// it failed and why.
type wasmOutput struct {
	body   [][]byte
	failed []bool
	reason []string
}

func newOutput(n int) *wasmOutput {
	return &wasmOutput{body: make([][]byte, n), failed: make([]bool, n), reason: make([]string, n)}
}

// wasmReference runs the Wasm chain once over bodies, on fresh state kept
// in memory, and returns each event's result.
func wasmReference(b *testing.B, steps []string, bodies [][]byte) *wasmOutput {
	b.Helper()
	st := openState(b, false)
	defer func() { _ = st.Close() }()
	procs, closeChain := newWasmChain(b, steps, st)
	defer closeChain()
	ref := newOutput(len(bodies))
	for start := 0; start < len(bodies); start += batchSize {
		batch := wasmBatch(bodies, start, min(start+batchSize, len(bodies)))
		runWasmBatch(b, procs, batch)
		for k, m := range batch {
			if err := m.GetError(); err != nil {
				ref.failed[start+k], ref.reason[start+k] = true, err.Error()
				continue
			}
			body, err := m.AsBytes()
			if err != nil {
				b.Fatal(err)
			}
			ref.body[start+k] = bytes.Clone(body)
		}
	}
	return ref
}

// checkParity fails the benchmark unless the native chain failed the same
// events as the Wasm chain and gave every other one the same prediction
// label and event count; the events' whole bytes must match too.
func checkParity(b *testing.B, want, got *wasmOutput) {
	b.Helper()
	for i := range want.body {
		if want.failed[i] != got.failed[i] {
			b.Fatalf("event %d: wasm failed=%v %q, native failed=%v %q", i+1, want.failed[i], want.reason[i], got.failed[i], got.reason[i])
		}
		if want.failed[i] {
			continue
		}
		for _, path := range []string{"prediction.label", "features.event_count"} {
			w, g := gjson.GetBytes(want.body[i], path), gjson.GetBytes(got.body[i], path)
			if !w.Exists() || w.Raw != g.Raw {
				b.Fatalf("event %d: %s: wasm %s, native %s", i+1, path, w.Raw, g.Raw)
			}
		}
		if !bytes.Equal(want.body[i], got.body[i]) {
			b.Fatalf("event %d:\nwasm   %s\nnative %s", i+1, want.body[i], got.body[i])
		}
	}
}

// The status of an event of the batch.
const (
	evLive    = iota // going on through the chain
	evFailed         // failed by a step (or the host, reading its fields); later steps skip it
	evDropped        // dropped by a step
)

// nevent is one event of the batch being processed.
type nevent struct {
	doc      []byte
	status   uint8
	replayed bool  // at or below the committed offset: applied before
	empty    bool  // doc is an empty object
	end      int32 // index of doc's closing brace, -1 if doc is no object
	key      int32 // index of its key in nativeChain.keys
	time     int64 // event time, ns
	reason   string
	frag     [2]int32 // its features object in nativeChain.frag
	out      [2]int32 // its output bytes in nativeChain.out
}

// nativeChain is the realtime pipeline's validate -> features -> score
// compiled natively: the libraries the three builtin plugins are glue
// over, driven as the plugins drive them, with the host's work done as the
// `wasm` processor does it (fields read with gjson, each batch's keys
// loaded from the state store in one read and their new states committed
// with the batch's offset in one transaction before the batch goes on,
// outputs spliced into the event's JSON).
type nativeChain struct {
	store *state.Store

	// validate (plugins/builtin/validate)
	suite     *expect.Suite
	validator *expect.Validator
	columns   []string
	vrows     []int // batch index of each row the validator sees
	rows      []expect.Row
	values    []expect.Value
	keys      [][]byte // the records' top-level keys, when the suite reads them
	keyBytes  []byte
	text      []byte

	// features (plugins/builtin/features), and the host's keyed step
	fcfg      *features.Config
	keyPath   string
	ns        state.Namespace
	eventTime string
	source    string
	partition string
	inputs    []features.Field
	outputs   []features.Output
	fRoot     string   // the top-level key every output goes under
	fKeys     []string // `"leaf":` per output
	users     features.Users
	event     *features.Event
	vec       *features.Vector
	index     map[string]int32 // batch key -> index in ukeys; the strings alias the events
	ukeys     [][]byte
	first     []int64 // per key: the event time of its first event in the batch
	last      []int64 // per key: its latest event time applied in the batch
	loaded    [][]byte
	userKey   []int32 // per features.Users entry, in order: index in ukeys
	writes    []state.Write
	enc       []byte
	frag      []byte // the batch's rendered features objects

	// score (plugins/builtin/score)
	mdl      *model.Model
	bind     model.Binding
	xsrc     []int    // per score input: the features output it is, or -1: read from the event
	xpath    []string // per score input: its field path
	xin      []float64
	xok      []bool
	x        []float64
	res      model.Result
	pRoot    string
	pLabel   string // `"leaf":` per written output, "" if not written
	pVersion string
	pScore   string
	pProb    string
	pConf    string
	labels   [][]byte // JSON strings
	version  []byte   // JSON string

	ev  []nevent
	out []byte // the batch's output events
}

// stepConf is one `wasm` step of the pipeline. Fields the native chain
// would not honour are unknown, so the YAML decoder refuses them.
type stepConf struct {
	Builtin    string `yaml:"builtin"`
	Config     any    `yaml:"config"`
	ConfigFile string `yaml:"config_file"`
	Key        string `yaml:"key"`
	// SkipErrored is honoured whatever it says: the native chain never
	// hands a failed event to a later step, as keyed steps and steps with
	// skip_errored do not.
	SkipErrored bool `yaml:"skip_errored"`
	State       *struct {
		Namespace string `yaml:"namespace"`
		TTL       string `yaml:"ttl"`
		TTLClock  string `yaml:"ttl_clock"`
		EventTime string `yaml:"event_time"`
	} `yaml:"state"`
	Offsets *struct {
		Source    string `yaml:"source"`
		Partition string `yaml:"partition"`
		Offset    string `yaml:"offset"`
	} `yaml:"offsets"`
}

// configJSON is the JSON the agent hands the plugin: the config file's
// mapping with the inline config's top-level keys on top.
func (s *stepConf) configJSON() ([]byte, error) {
	var merged map[string]any
	if s.ConfigFile != "" {
		name, ok := strings.CutPrefix(s.ConfigFile, "builtin:")
		if !ok {
			return nil, fmt.Errorf("config_file %q: only builtin: files are supported here", s.ConfigFile)
		}
		raw, ok := pipelines.File(name)
		if !ok {
			return nil, fmt.Errorf("config_file %q: no such builtin file", s.ConfigFile)
		}
		if err := yaml.Unmarshal(raw, &merged); err != nil {
			return nil, fmt.Errorf("config_file %q: %w", s.ConfigFile, err)
		}
	}
	switch {
	case s.Config == nil && merged == nil:
		return nil, nil
	case s.Config == nil:
		return json.Marshal(merged)
	case merged == nil:
		return json.Marshal(s.Config)
	}
	inline, ok := s.Config.(map[string]any)
	if !ok {
		return nil, errors.New("config must be a mapping beside config_file")
	}
	for k, v := range inline {
		merged[k] = v
	}
	return json.Marshal(merged)
}

// newNativeChain sets the chain up from the pipeline's steps (chainSteps),
// over st.
func newNativeChain(b *testing.B, steps []string, st *state.Store) *nativeChain {
	b.Helper()
	var confs [3]stepConf
	var raws [3][]byte
	for k, want := range []string{"validate", "features", "score"} {
		dec := yaml.NewDecoder(strings.NewReader(steps[k]))
		dec.KnownFields(true)
		if err := dec.Decode(&confs[k]); err != nil {
			b.Fatalf("step %d: %v", k, err)
		}
		if confs[k].Builtin != want {
			b.Fatalf("step %d is builtin %q, want %q", k, confs[k].Builtin, want)
		}
		var err error
		if raws[k], err = confs[k].configJSON(); err != nil {
			b.Fatalf("%s: %v", want, err)
		}
	}
	c := &nativeChain{store: st, index: map[string]int32{}}
	c.setupValidate(b, &confs[0], raws[0])
	c.setupFeatures(b, &confs[1], raws[1])
	c.setupScore(b, &confs[2], raws[2])
	return c
}

func (c *nativeChain) setupValidate(b *testing.B, conf *stepConf, raw []byte) {
	var err error
	if c.suite, err = expect.Parse(raw); err != nil {
		b.Fatal(err)
	}
	if c.suite.Stateful() || conf.Key != "" || conf.State != nil {
		b.Fatal("validate: a keyed suite (uniqueness) is not supported by the native chain")
	}
	c.columns = c.suite.Columns()
	c.validator = c.suite.NewValidator()
}

func (c *nativeChain) setupFeatures(b *testing.B, conf *stepConf, raw []byte) {
	c.fcfg = features.Default()
	if len(raw) > 0 && string(raw) != "null" {
		var err error
		if c.fcfg, err = features.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
	if conf.Key == "" || strings.Contains(conf.Key, "${!") || conf.State == nil {
		b.Fatal("features: want a key field path and state")
	}
	c.keyPath = conf.Key
	c.ns.Name = conf.State.Namespace
	if conf.State.TTL != "" {
		var err error
		if c.ns.TTL, err = time.ParseDuration(conf.State.TTL); err != nil {
			b.Fatal(err)
		}
	}
	c.eventTime = conf.State.EventTime
	c.ns.EventTime = (conf.State.TTLClock == "" || conf.State.TTLClock == "event") && c.ns.TTL > 0
	if err := c.ns.Validate(); err != nil {
		b.Fatal(err)
	}
	if o := conf.Offsets; o == nil || strings.Contains(o.Source+o.Partition, "${!") ||
		strings.ReplaceAll(o.Offset, " ", "") != `${!meta("sample_seq")}` {
		b.Fatal("features: want fixed offsets.source and partition and sample_seq as offset")
	}
	c.source, c.partition = conf.Offsets.Source, conf.Offsets.Partition
	c.inputs, c.outputs = c.fcfg.Inputs(), c.fcfg.Outputs()
	var leaves []string
	c.fRoot, leaves = splitOutputs(b, outputNames(c.outputs))
	for _, l := range leaves {
		c.fKeys = append(c.fKeys, `"`+l+`":`)
	}
	c.event, c.vec = c.fcfg.NewEvent(), c.fcfg.NewVector()
}

func (c *nativeChain) setupScore(b *testing.B, conf *stepConf, raw []byte) {
	if conf.Key != "" || conf.State != nil {
		b.Fatal("score: unexpected key or state")
	}
	cfg, err := model.ParseConfig(raw)
	if err != nil {
		b.Fatal(err)
	}
	if !cfg.Inline() {
		b.Fatal("score: a model_file is not supported by the native chain")
	}
	if c.mdl, err = cfg.Load(nil); err != nil {
		b.Fatal(err)
	}
	names := cfg.Inputs(c.mdl)
	if c.bind, err = cfg.Bind(names, c.mdl); err != nil {
		b.Fatal(err)
	}
	for _, name := range names {
		path, src := cfg.InputPrefix+name, -1
		for j, o := range c.outputs {
			if o.Name == path {
				if o.Kind != features.KindInt && o.Kind != features.KindFloat {
					b.Fatalf("score: input %q is not written as a number", path)
				}
				src = j
			}
		}
		c.xsrc, c.xpath = append(c.xsrc, src), append(c.xpath, path)
	}
	c.x = make([]float64, len(c.mdl.Features()))
	for _, l := range c.mdl.Labels() {
		c.labels = append(c.labels, mustJSON(b, l))
	}
	c.version = mustJSON(b, c.mdl.Version())
	// In the order the plugin declares them, which is the order the host
	// writes them in.
	o := cfg.Outputs
	var paths []string
	for _, p := range []string{o.Label, o.ModelVersion, o.Score, o.Probability, o.Confidence} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	root, leaves := splitOutputs(b, paths)
	if root == c.fRoot {
		b.Fatalf("score writes under %q too, as features does", root)
	}
	c.pRoot = root
	k := 0
	for _, dst := range []struct {
		path string
		key  *string
	}{{o.Label, &c.pLabel}, {o.ModelVersion, &c.pVersion}, {o.Score, &c.pScore}, {o.Probability, &c.pProb}, {o.Confidence, &c.pConf}} {
		if dst.path != "" {
			*dst.key = `"` + leaves[k] + `":`
			k++
		}
	}
}

func outputNames(outs []features.Output) []string {
	names := make([]string, len(outs))
	for j, o := range outs {
		names[j] = o.Name
	}
	return names
}

// splitOutputs returns the top-level key of output paths that must all be
// `root.leaf` with one root and distinct leaves, the layout the native
// chain renders (the host renders any), and their leaves.
func splitOutputs(b *testing.B, paths []string) (string, []string) {
	var root string
	var leaves []string
	seen := map[string]bool{}
	for _, p := range paths {
		r, leaf, ok := strings.Cut(p, ".")
		if !ok || strings.Contains(leaf, ".") || (root != "" && r != root) || seen[leaf] {
			b.Fatalf("output paths %q: want root.leaf under one root", paths)
		}
		root, seen[leaf] = r, true
		leaves = append(leaves, leaf)
	}
	return root, leaves
}

func mustJSON(b *testing.B, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		b.Fatal(err)
	}
	return q
}

// run processes the events in batches of batchSize, calls sink with each
// batch's first index once the batch is done (its state committed), and
// returns how many events failed.
func (c *nativeChain) run(b *testing.B, bodies [][]byte, sink func(first int)) int {
	failed := 0
	for start := 0; start < len(bodies); start += batchSize {
		docs := bodies[start:min(start+batchSize, len(bodies))]
		c.ev = resize(c.ev, len(docs))
		for k, d := range docs {
			c.ev[k] = nevent{doc: d, key: -1}
		}
		c.validate()
		c.features(b, start)
		c.score()
		for k := range c.ev {
			if c.ev[k].status == evFailed {
				failed++
			}
		}
		sink(start)
	}
	return failed
}

func (c *nativeChain) fail(k int, reason string) {
	c.ev[k].status, c.ev[k].reason = evFailed, reason
}

// validate is the validate plugin's handle, with the host reading the
// suite's columns (and the record's keys) as value fields.
func (c *nativeChain) validate() {
	n, cols := len(c.ev), len(c.columns)
	c.rows, c.values = resize(c.rows, n), resize(c.values, n*cols)
	c.keys, c.keyBytes = c.keys[:0], c.keyBytes[:0]
	c.vrows = c.vrows[:0]
	for k := range c.ev {
		e := &c.ev[k]
		r := &c.rows[len(c.vrows)]
		r.Values = c.values[len(c.vrows)*cols : (len(c.vrows)+1)*cols]
		ok := true
		for j, col := range c.columns {
			kind, text, valid := jsonfield.Value(e.doc, col)
			if !valid {
				c.fail(k, fmt.Sprintf("builtin:validate: field %q: not valid JSON", col))
				ok = false
				break
			}
			r.Values[j] = expect.Value{Kind: expect.Kind(kind), Text: text}
		}
		if ok && c.suite.NeedsKeys() {
			_, raw, valid := jsonfield.Value(e.doc, ".")
			if !valid {
				c.fail(k, `builtin:validate: field ".": not valid JSON`)
				continue
			}
			start := len(c.keys)
			err := sdk.ObjectKeys(raw, func(key []byte) {
				c.keyBytes = append(c.keyBytes, key...)
				c.keys = append(c.keys, c.keyBytes[len(c.keyBytes)-len(key):])
			})
			r.Keys, r.NotObject = c.keys[start:len(c.keys):len(c.keys)], err != nil
		}
		if ok {
			c.vrows = append(c.vrows, k)
		}
	}
	rows := c.rows[:len(c.vrows)]
	c.validator.Begin()
	c.validator.Evaluate(rows)
	var out expect.Outcome
	for r, k := range c.vrows {
		c.validator.Finish(r, &rows[r], &out)
		if out.Violations > 0 {
			c.text = c.validator.AppendViolations(c.text[:0])
		}
		switch out.Action {
		case expect.Fail:
			c.text = c.validator.AppendReason(c.text[:0])
			c.fail(k, "builtin:validate: "+string(c.text))
		case expect.Drop:
			c.ev[k].status = evDropped
		}
	}
	if c.suite.Reports() {
		c.text = c.validator.Report().AppendJSON(c.text[:0])
	}
}

// features is the host's keyed step around the features plugin's handle:
// read each event's key, event time and offset, load the batch's keys'
// states in one read, update them in event order, commit the changed ones
// with the batch's offset, and render each event's features.
func (c *nativeChain) features(b *testing.B, first int) {
	applied, ok, err := c.store.Applied(c.source, c.partition)
	if err != nil {
		b.Fatal(err)
	}
	if !ok {
		applied = math.MinInt64
	}
	clear(c.index)
	c.ukeys, c.first, c.last = c.ukeys[:0], c.first[:0], c.last[:0]
	var maxOffset int64
	hasOffset := false
	for k := range c.ev {
		e := &c.ev[k]
		if e.status != evLive {
			continue
		}
		res := jsonfield.Get(e.doc, c.keyPath)
		if !res.Exists() || res.Type == gjson.Null {
			c.fail(k, fmt.Sprintf("key field %q is missing", c.keyPath))
			continue
		}
		if res.IsObject() || res.IsArray() {
			c.fail(k, fmt.Sprintf("key field %q is not a string or number", c.keyPath))
			continue
		}
		key := res.String() // aliases the event, which outlives the batch
		if c.eventTime != "" {
			res := jsonfield.Get(e.doc, c.eventTime)
			t, _, err := jsonfield.Convert(abi.TypeTime, res)
			if err != nil || !res.Exists() {
				c.fail(k, fmt.Sprintf("event_time field %q: %v", c.eventTime, err))
				continue
			}
			e.time = int64(t)
		}
		if off := int64(first + k + 1); off <= applied {
			e.replayed = true
		} else if !hasOffset || off > maxOffset {
			maxOffset, hasOffset = off, true
		}
		j, ok := c.index[key]
		if !ok {
			j = int32(len(c.ukeys))
			c.index[key] = j
			c.ukeys = append(c.ukeys, unsafe.Slice(unsafe.StringData(key), len(key)))
			c.first, c.last = append(c.first, e.time), append(c.last, 0)
		}
		e.key = j
		if !e.replayed && e.time > c.last[j] {
			c.last[j] = e.time
		}
	}
	entries, err := c.store.Load(c.ns, c.ukeys, 0)
	if err != nil {
		b.Fatal(err)
	}
	c.loaded = resize(c.loaded, len(entries))
	for j, en := range entries {
		c.loaded[j] = en.Value
		if c.ns.EventTime && c.ns.TTL > 0 && en.Value != nil && en.LastEvent < c.first[j]-c.ns.TTL.Nanoseconds() {
			c.loaded[j] = nil
		}
	}

	c.users.Reset()
	c.userKey = c.userKey[:0]
	c.frag = c.frag[:0]
	nx := len(c.xsrc)
	c.xin, c.xok = resize(c.xin, len(c.ev)*nx), resize(c.xok, len(c.ev)*nx)
	for k := range c.ev {
		e := &c.ev[k]
		if e.status != evLive {
			continue
		}
		if err := c.readInputs(e.doc); err != nil {
			c.fail(k, "builtin:features: "+err.Error())
			continue
		}
		u, fresh := c.users.Get(c.ukeys[e.key])
		if fresh {
			u.Err = c.fcfg.Decode(&u.State, c.loaded[e.key])
			c.userKey = append(c.userKey, e.key)
		}
		if u.Err != nil {
			c.fail(k, "builtin:features: stored state: "+u.Err.Error())
			continue
		}
		if e.replayed {
			c.fcfg.Eval(&u.State, c.event, c.vec)
		} else {
			if err := c.fcfg.Update(&u.State, c.event, c.vec); err != nil {
				c.fail(k, "builtin:features: "+err.Error())
				continue
			}
			u.Row = k
		}
		c.renderFeatures(k)
	}

	c.writes, c.enc = c.writes[:0], c.enc[:0]
	n := 0
	c.users.Each(func(u *features.User) {
		j := c.userKey[n]
		n++
		if u.Row < 0 {
			return
		}
		start := len(c.enc)
		c.enc = c.fcfg.Encode(c.enc, &u.State)
		le := c.last[j]
		if le == 0 && !c.ns.EventTime {
			le = time.Now().UnixNano()
		}
		c.writes = append(c.writes, state.Write{Key: c.ukeys[j], Value: c.enc[start:len(c.enc):len(c.enc)], LastEvent: le})
	})
	var offsets []state.Offset
	if hasOffset {
		offsets = []state.Offset{{Source: c.source, Partition: c.partition, Offset: maxOffset}}
	}
	if len(c.writes) > 0 || len(offsets) > 0 {
		if err := c.store.Commit(context.Background(), c.ns, c.writes, offsets); err != nil {
			b.Fatal(err)
		}
	}
}

// readInputs reads the features config's input fields into c.event, as the
// host converts declared fields (strict types; missing or null is absent,
// an error when required).
// abiType is the column type the features plugin declares for an input.
func abiType(t features.Type) abi.Type {
	switch t {
	case features.TypeTime:
		return abi.TypeTime
	case features.TypeString:
		return abi.TypeString
	case features.TypeNumber:
		return abi.TypeFloat
	}
	return abi.TypeInt
}

func (c *nativeChain) readInputs(doc []byte) error {
	for j, f := range c.inputs {
		v := &c.event.Values[j]
		*v = features.Value{}
		res := jsonfield.Get(doc, f.Path)
		if !res.Exists() || res.Type == gjson.Null {
			if f.Required {
				return fmt.Errorf("required field %q is missing", f.Path)
			}
			continue
		}
		u, str, err := jsonfield.Convert(abiType(f.Type), res)
		if err != nil {
			return fmt.Errorf("field %q: %w", f.Path, err)
		}
		switch f.Type {
		case features.TypeString:
			v.Str = str
		case features.TypeNumber:
			v.Num = math.Float64frombits(u)
		default: // time, int
			v.Int = int64(u)
		}
		v.Ok = true
	}
	return nil
}

// renderFeatures renders event k's features (c.vec) as the host merges
// them, `"features":{...}` with every valid one, into c.frag, and keeps the
// score inputs they hold.
func (c *nativeChain) renderFeatures(k int) {
	e := &c.ev[k]
	if jsonfield.Get(e.doc, c.fRoot).Exists() {
		c.fail(k, "builtin:features: the event has "+c.fRoot+" already, which the native chain does not merge into")
		return
	}
	start := len(c.frag)
	c.frag = append(c.frag, '"')
	c.frag = append(c.frag, c.fRoot...)
	c.frag = append(c.frag, `":{`...)
	wrote := false
	for j, o := range c.outputs {
		if !c.vec.Valid[j] {
			continue
		}
		if wrote {
			c.frag = append(c.frag, ',')
		}
		c.frag = append(c.frag, c.fKeys[j]...)
		switch o.Kind {
		case features.KindInt:
			c.frag = strconv.AppendInt(c.frag, c.vec.Int[j], 10)
		case features.KindFloat:
			v := c.vec.Float[j]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				c.frag = c.frag[:start]
				c.fail(k, fmt.Sprintf("builtin:features: output field %q: %v cannot be written as JSON", o.Name, v))
				return
			}
			c.frag = jsonnum.AppendFloat(c.frag, v)
		case features.KindBool:
			c.frag = strconv.AppendBool(c.frag, c.vec.Int[j] != 0)
		case features.KindTime:
			c.frag = append(c.frag, '"')
			c.frag = time.Unix(0, c.vec.Int[j]).UTC().AppendFormat(c.frag, time.RFC3339Nano)
			c.frag = append(c.frag, '"')
		}
		wrote = true
	}
	if !wrote {
		c.frag = c.frag[:start]
	} else {
		c.frag = append(c.frag, '}')
	}
	end, empty := jsonfield.RootEnd(e.doc)
	if wrote && end < 0 {
		c.frag = c.frag[:start]
		c.fail(k, "builtin:features: the message is not a JSON object")
		return
	}
	e.end, e.empty, e.frag = int32(end), empty, [2]int32{int32(start), int32(len(c.frag))}
	nx := len(c.xsrc)
	for i, src := range c.xsrc {
		if src >= 0 {
			ok := c.vec.Valid[src]
			v := c.vec.Float[src]
			if c.outputs[src].Kind == features.KindInt {
				v = float64(c.vec.Int[src])
			}
			c.xin[k*nx+i], c.xok[k*nx+i] = v, ok
		}
	}
}

// score is the score plugin's handle, with each event's inputs taken from
// the features it was given (or read from the event, for inputs that are
// not features), and the host's merge of the prediction: the event is
// written out with its features and prediction spliced in, in c.out.
func (c *nativeChain) score() {
	c.out = c.out[:0]
	nx := len(c.xsrc)
	for k := range c.ev {
		e := &c.ev[k]
		if e.status != evLive {
			continue
		}
		xin, xok := c.xin[k*nx:(k+1)*nx], c.xok[k*nx:(k+1)*nx]
		bad := false
		for i, src := range c.xsrc {
			if src >= 0 {
				continue
			}
			res := jsonfield.Get(e.doc, c.xpath[i])
			xin[i], xok[i] = 0, false
			if !res.Exists() || res.Type == gjson.Null {
				continue
			}
			if res.Type != gjson.Number {
				c.fail(k, fmt.Sprintf("builtin:score: field %q: want number, got %s", c.xpath[i], res.Raw))
				bad = true
				break
			}
			xin[i], xok[i] = res.Num, true
		}
		if bad {
			continue
		}
		for j, col := range c.bind.Cols {
			v := xin[col]
			if !xok[col] {
				v = c.bind.Defaults[j]
			}
			c.x[j] = v
		}
		c.mdl.Score(c.x, &c.res)
		if math.IsNaN(c.res.Score) || math.IsInf(c.res.Score, 0) {
			c.fail(k, "builtin:score: the model's score is not a finite number: is a feature far out of range?")
			continue
		}
		if jsonfield.Get(e.doc, c.pRoot).Exists() {
			c.fail(k, "builtin:score: the event has "+c.pRoot+" already, which the native chain does not merge into")
			continue
		}
		c.writeEvent(k)
	}
}

// writeEvent appends event k with its features and prediction to c.out.
func (c *nativeChain) writeEvent(k int) {
	e := &c.ev[k]
	start := len(c.out)
	if e.end < 0 {
		c.fail(k, "builtin:score: the message is not a JSON object")
		return
	}
	c.out = append(c.out, e.doc[:e.end]...)
	sep := !e.empty
	if e.frag[1] > e.frag[0] {
		if sep {
			c.out = append(c.out, ',')
		}
		c.out = append(c.out, c.frag[e.frag[0]:e.frag[1]]...)
		sep = true
	}
	mark := len(c.out)
	if sep {
		c.out = append(c.out, ',')
	}
	c.out = append(c.out, '"')
	c.out = append(c.out, c.pRoot...)
	c.out = append(c.out, `":{`...)
	body := len(c.out)
	field := func(key string) {
		if len(c.out) > body {
			c.out = append(c.out, ',')
		}
		c.out = append(c.out, key...)
	}
	r := &c.res
	if c.pLabel != "" && r.Label >= 0 {
		field(c.pLabel)
		c.out = append(c.out, c.labels[r.Label]...)
	}
	if c.pVersion != "" {
		field(c.pVersion)
		c.out = append(c.out, c.version...)
	}
	for _, f := range [...]struct {
		key string
		ok  bool
		v   float64
	}{{c.pScore, true, r.Score}, {c.pProb, r.HasProbability, r.Probability}, {c.pConf, r.HasConfidence, r.Confidence}} {
		if f.key == "" || !f.ok {
			continue
		}
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			c.out = c.out[:start]
			c.fail(k, fmt.Sprintf("builtin:score: output field %q: %v cannot be written as JSON", c.pRoot+"."+strings.Trim(f.key, `":`), f.v))
			return
		}
		field(f.key)
		c.out = jsonnum.AppendFloat(c.out, f.v)
	}
	if len(c.out) == body {
		c.out = c.out[:mark]
	} else {
		c.out = append(c.out, '}')
	}
	c.out = append(c.out, e.doc[e.end:]...)
	e.out = [2]int32{int32(start), int32(len(c.out))}
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
