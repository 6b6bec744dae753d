package plugintool

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/pluginfixture"
	"github.com/sluice-dev/sluice/state"
)

// RunOptions say what to run and on what.
type RunOptions struct {
	Step StepConfig
	// Input holds one message body per line (JSON lines, usually); blank
	// lines are skipped but still counted, so results name file lines.
	Input []byte
	// State seeds the state store before the run, one JSON object per
	// line (see ParseSeeds). It needs a stateful step or one with
	// read_state.
	State []byte
	// Batch is the most messages per batch; 0 sends the whole input as one
	// batch, which is what a stateful plugin's rows of one key see in
	// order either way.
	Batch int
	// Logger receives the plugin's log lines and stdout/stderr; nil
	// discards them.
	Logger *slog.Logger
}

// Result names what happened to one message.
const (
	Kept     = pluginfixture.Kept
	Replaced = pluginfixture.Replaced
	Dropped  = pluginfixture.Dropped
	Errored  = pluginfixture.Errored
)

// Record is what happened to one input message. Its JSON form, one per
// line, is both what `agent plugin test --json` prints and what an
// expected-output file holds (the format is pluginfixture's, which a
// `wasm` step's self_test reads too).
type Record = pluginfixture.Record

// StateEntry is one key's state after a run.
type StateEntry struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Value     []byte `json:"value"`
	// View is the value as the plugin renders it (ABI.md §8.9), for the
	// step's own namespace when the plugin offers a state view.
	View json.RawMessage `json:"view,omitempty"`
}

// String shows the plugin's view of the value if there is one, else the
// value as text when it is printable UTF-8 (a JSON state), else in base64
// (a Go plugin's struct state is raw memory).
func (e StateEntry) String() string {
	raw := "base64:" + base64.StdEncoding.EncodeToString(e.Value)
	if utf8.Valid(e.Value) && !bytes.ContainsFunc(e.Value, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' }) {
		raw = string(e.Value)
	}
	if e.View != nil {
		return fmt.Sprintf("%s/%s = %s (stored as %s)", e.Namespace, e.Key, e.View, raw)
	}
	return fmt.Sprintf("%s/%s = %s", e.Namespace, e.Key, raw)
}

// Outcome is the result of a run.
type Outcome struct {
	// Records has one entry per input message, in input order.
	Records []Record
	// State lists, for a step with a state store, every key of the
	// namespaces seeded or written, after the run.
	State []StateEntry
}

// Run runs the plugin of o.Step over o.Input through a real `wasm`
// processor and reports what happened to every message. An error means the
// step could not be set up (a bad config, a module that does not load);
// a plugin that fails a call errors the batch's messages instead, as in a
// pipeline.
func Run(ctx context.Context, o RunOptions) (*Outcome, error) {
	if o.Step.Plugin == "" {
		return nil, errNoPlugin
	}
	seeds, err := ParseSeeds(o.State)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, o.Step, len(seeds) > 0)
	if err != nil {
		return nil, err
	}
	defer s.close(ctx)
	conf, err := wasm.ConfigSpec().ParseYAML(string(s.yaml), nil)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ownNS, _ := conf.FieldString("state", "namespace")
	if len(seeds) > 0 {
		if err := seed(ctx, s.store, ownNS, seeds); err != nil {
			return nil, err
		}
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	proc, err := wasm.NewProcessor(ctx, s.eng, conf, logger)
	if err != nil {
		if strings.Contains(err.Error(), "keeps per-key state") {
			return nil, fmt.Errorf("%w (outside a pipeline: --key FIELD, or key: in --config)", err)
		}
		return nil, err
	}
	defer proc.Close(ctx)

	lines := pluginfixture.SplitInput(o.Input)
	size := o.Batch
	if size <= 0 {
		size = max(len(lines), 1)
	}
	out := &Outcome{Records: make([]Record, 0, len(lines))}
	for start := 0; start < len(lines); start += size {
		recs, err := runBatch(ctx, proc, lines[start:min(start+size, len(lines))], o.Step.Plugin)
		if err != nil {
			return nil, err
		}
		out.Records = append(out.Records, recs...)
	}
	if s.store != nil {
		namespaces := map[string]bool{}
		if ownNS != "" {
			namespaces[ownNS] = true
		}
		for _, sd := range seeds {
			namespaces[sd.namespace(ownNS)] = true
		}
		if out.State, err = dump(s.store, slices.Sorted(maps.Keys(namespaces))); err != nil {
			return nil, err
		}
		for i := range out.State {
			e := &out.State[i]
			if e.Namespace != ownNS {
				continue
			}
			// A plugin without a view says so at the first key: ask no more.
			if e.View, err = proc.ViewState(ctx, e.Key, e.Value); err != nil {
				e.View = nil
				break
			}
		}
	}
	return out, nil
}

func runBatch(ctx context.Context, proc *wasm.Processor, lines []pluginfixture.Line, name string) ([]Record, error) {
	batch := pluginfixture.Messages(lines)
	in := slices.Clone(batch)
	res, err := proc.ProcessBatch(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("process batch: %w", err)
	}
	var passed service.MessageBatch
	for _, b := range res {
		passed = append(passed, b...)
	}
	return pluginfixture.Describe(lines, in, passed, name)
}

// Seed is one line of a state file: a key's state before the run.
//
//	{"key": "u1", "value": {"events": 3}}          the value's JSON text, as bytes
//	{"key": "u1", "value_base64": "AwAAAAAAAAA="}  raw bytes (a Go struct state)
//	{"namespace": "profiles", "key": "u1", ...}    another namespace, for read_state
type Seed struct {
	Namespace   string          `json:"namespace"`
	Key         string          `json:"key"`
	Value       json.RawMessage `json:"value"`
	ValueBase64 []byte          `json:"value_base64"`
	line        int
}

func (s Seed) namespace(own string) string {
	if s.Namespace != "" {
		return s.Namespace
	}
	return own
}

func (s Seed) bytes() []byte {
	if s.ValueBase64 != nil {
		return s.ValueBase64
	}
	return s.Value
}

// ParseSeeds reads a state file: one Seed per non-blank line.
func ParseSeeds(b []byte) ([]Seed, error) {
	var seeds []Seed
	for _, l := range pluginfixture.SplitInput(b) {
		var s Seed
		dec := json.NewDecoder(bytes.NewReader(l.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("state line %d: %w", l.N, err)
		}
		switch {
		case s.Key == "":
			return nil, fmt.Errorf("state line %d: no key", l.N)
		case (s.Value == nil) == (s.ValueBase64 == nil):
			return nil, fmt.Errorf("state line %d: want exactly one of value and value_base64", l.N)
		}
		s.line = l.N
		seeds = append(seeds, s)
	}
	return seeds, nil
}

func seed(ctx context.Context, st *state.Store, own string, seeds []Seed) error {
	byNS := map[string][]state.Write{}
	now := time.Now().UnixNano()
	for _, s := range seeds {
		ns := s.namespace(own)
		if ns == "" {
			return fmt.Errorf("state line %d: no namespace: the step is not stateful (give --key, or namespace in the line)", s.line)
		}
		byNS[ns] = append(byNS[ns], state.Write{Key: []byte(s.Key), Value: s.bytes(), LastEvent: now})
	}
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		if err := st.Commit(ctx, state.Namespace{Name: ns}, byNS[ns], nil); err != nil {
			return fmt.Errorf("seed state namespace %s: %w", ns, err)
		}
	}
	return nil
}

func dump(st *state.Store, namespaces []string) ([]StateEntry, error) {
	var out []StateEntry
	for _, ns := range namespaces {
		after := ""
		for {
			keys, next, err := st.Scan(ns, "", after, 1000)
			if err != nil {
				return nil, fmt.Errorf("list state of %s: %w", ns, err)
			}
			for _, k := range keys {
				e, ok, err := st.Get(ns, k)
				if err != nil {
					return nil, fmt.Errorf("read state %s/%s: %w", ns, k, err)
				}
				if ok {
					out = append(out, StateEntry{Namespace: ns, Key: k, Value: e.Value})
				}
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	return out, nil
}

// WriteRecords prints records as JSON lines.
func WriteRecords(w io.Writer, recs []Record) error {
	for _, r := range recs {
		b, err := r.MarshalLine()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

// WriteHuman prints records for a person: one line per message, with the
// reason of an error and any metadata on lines of their own.
func WriteHuman(w io.Writer, o *Outcome) error {
	var b strings.Builder
	for _, r := range o.Records {
		if r.Result == Dropped {
			fmt.Fprintf(&b, "%-4d %s\n", r.Line, r.Result)
			continue
		}
		fmt.Fprintf(&b, "%-4d %-9s ", r.Line, r.Result)
		switch {
		case r.Result == Errored:
			fmt.Fprintf(&b, "%s\n%15s%s\n", r.Error, "", bodyString(r))
		default:
			fmt.Fprintf(&b, "%s\n", bodyString(r))
		}
		if len(r.Meta) > 0 {
			keys := slices.Sorted(maps.Keys(r.Meta))
			pairs := make([]string, len(keys))
			for i, k := range keys {
				pairs[i] = k + "=" + r.Meta[k]
			}
			fmt.Fprintf(&b, "%15smeta %s\n", "", strings.Join(pairs, " "))
		}
	}
	counts := map[string]int{}
	for _, r := range o.Records {
		counts[r.Result]++
	}
	fmt.Fprintf(&b, "%d messages: %d kept, %d replaced, %d dropped, %d errored\n",
		len(o.Records), counts[Kept], counts[Replaced], counts[Dropped], counts[Errored])
	if len(o.State) > 0 {
		b.WriteString("state after the run:\n")
		for _, e := range o.State {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func bodyString(r Record) string {
	if r.BodyText != nil {
		return fmt.Sprintf("%q", *r.BodyText)
	}
	return string(r.Body)
}

// Compare checks records against an expected-output file (Record lines, one
// per input message, in input order; blank lines are skipped). It returns
// a human-readable diff, empty when everything matches, or an error if the
// file cannot be read as records.
func Compare(got []Record, expected []byte, name string) (string, error) {
	return pluginfixture.Compare(got, expected, name)
}
