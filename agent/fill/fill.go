// Package fill provides the `fill` processor: a batch's missing values
// filled from the nearest earlier (or later) message that has one, as
// pandas' fillna(method='ffill') fills a DataFrame, so the seed's DAG step
// "missing values forward-filled" is config, not code.
//
// It is native rather than a Wasm plugin for the reasons aggregate is: it
// runs no user code, only config, and it needs the batch as a whole, in
// order. Written in Bloblang (a fold over the batch as one array, which
// ml_dag used) the same step is quadratic: each row appended copies the
// rows before it, so 80,000 rows took 47 s.
package fill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/internal/enumlint"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

const (
	fFields = "fields"
	fMethod = "method"

	forward  = "forward"
	backward = "backward"
)

// ConfigSpec is the `fill` processor's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping").
		Summary("Fills each message's null or missing fields with the value the field last had in an earlier message of the batch (forward), or next has in a later one (backward), as pandas' ffill and bfill.").
		Description(`
Each message must be a JSON object. The batch is read in its order: for `+"`forward`"+`, a field that is null (or, if listed in `+"`fields`"+`, missing) takes the value the same field last had in an earlier message; one that no earlier message had stays as it was, as in pandas. Fields are top-level keys; values are copied as they are written. Messages that already failed are passed on untouched and lend no values; a message that is not a JSON object fails with the reason.

It fills within one batch: to fill a whole file, read it as one batch (`+"`csv_file`"+` with `+"`batch_size: 0`"+`).

A frame (`+"`csv_file`"+` with `+"`frames: true`"+`) is filled as its rows would be as messages, column by column: a field column's null rows (and, for a listed field, rows that lack it) take the column's value from the nearest earlier (later) row, or from the batch's earlier (later) frames; its rejected rows are untouched and lend nothing. Frames and JSON messages in one batch do not lend each other values.`).
		Fields(
			service.NewStringListField(fFields).Description("The fields to fill. Empty: every field that is null (as pandas' fillna on a whole DataFrame).").Default([]string{}).Example([]string{"page_views", "session_duration"}),
			enumlint.Field(fMethod, forward, backward).Description("`forward`: from earlier messages (pandas' ffill); `backward`: from later ones (bfill).").Default(forward),
		).
		LintRule(enumlint.Rule(enumlint.Enum{Path: fMethod, Options: []string{forward, backward}}))
}

// Register adds the `fill` processor to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchProcessor("fill", ConfigSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchProcessor, error) {
		p, err := New(conf)
		if err != nil {
			return nil, configerr.Wrap(err)
		}
		return p, nil
	})
}

// Processor is the `fill` processor.
type Processor struct {
	fields   []string // empty: every null field
	backward bool
}

// New builds the processor from its parsed config.
func New(conf *service.ParsedConfig) (*Processor, error) {
	p := &Processor{}
	var err error
	if p.fields, err = conf.FieldStringList(fFields); err != nil {
		return nil, err
	}
	for i, f := range p.fields {
		if f == "" || slices.Contains(p.fields[:i], f) {
			return nil, fmt.Errorf("%s: %q is empty or listed twice", fFields, f)
		}
	}
	method, err := conf.FieldString(fMethod)
	if err != nil {
		return nil, err
	}
	switch method {
	case forward:
	case backward:
		p.backward = true
	default:
		return nil, fmt.Errorf("%s: %q is not %s or %s", fMethod, method, forward, backward)
	}
	return p, nil
}

// ProcessBatch implements service.BatchProcessor.
func (p *Processor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	last := map[string][]byte{}     // each field's latest value, as written
	held := map[string]*heldValue{} // the same for frames' columns
	var buf []byte
	has := make([]bool, len(p.fields)) // per row: which listed fields it has
	for k := range batch {
		i := k
		if p.backward {
			i = len(batch) - 1 - k
		}
		msg := batch[i]
		if msg.GetError() != nil {
			continue
		}
		doc, err := msg.AsBytes()
		if err != nil {
			msg.SetError(fmt.Errorf("fill: %w", err))
			continue
		}
		if frame.Is(doc) {
			if err := p.fillFrame(msg, doc, held); err != nil {
				msg.SetError(err)
			}
			continue
		}
		clear(has)
		out, changed, err := p.fillOne(buf[:0], doc, last, has)
		if err != nil {
			msg.SetError(err)
			continue
		}
		if changed {
			msg.SetBytes(bytes.Clone(out))
		}
		buf = out
	}
	return []service.MessageBatch{batch}, nil
}

// fillOne writes doc to dst with its null (or missing listed) fields
// filled from last, reporting whether any was, and records doc's other
// values in last. has, all false, is scratch for the listed fields.
func (p *Processor) fillOne(dst, doc []byte, last map[string][]byte, has []bool) ([]byte, bool, error) {
	root := gjson.ParseBytes(doc)
	if !root.IsObject() {
		return dst, false, errors.New("fill: the message is not a JSON object")
	}
	changed := false
	dst = append(dst, '{')
	root.ForEach(func(key, val gjson.Result) bool {
		name := key.String()
		listed := len(p.fields) == 0
		if i := slices.Index(p.fields, name); i >= 0 {
			listed, has[i] = true, true
		}
		if len(dst) > 1 {
			dst = append(dst, ',')
		}
		dst = append(dst, key.Raw...)
		dst = append(dst, ':')
		switch {
		case !listed:
			dst = append(dst, val.Raw...)
		case val.Type != gjson.Null:
			last[name] = append(last[name][:0], val.Raw...)
			dst = append(dst, val.Raw...)
		default:
			prev, ok := last[name]
			if !ok {
				dst = append(dst, val.Raw...)
				break
			}
			dst = append(dst, prev...)
			changed = true
		}
		return true
	})
	// Listed fields the message lacks are added, after its own.
	for i, name := range p.fields {
		prev, ok := last[name]
		if has[i] || !ok {
			continue
		}
		if len(dst) > 1 {
			dst = append(dst, ',')
		}
		dst = append(jsonstr.Append(dst, name), ':')
		dst = append(dst, prev...)
		changed = true
	}
	return append(dst, '}'), changed, nil
}

// heldValue is a frame column's latest value (in the fill's direction),
// in the ABI's column parts, lent to the null rows of the next frames.
type heldValue struct {
	typ   abi.Type
	fixed uint64
	s     []byte
}

// fillFrame fills the frame in msg's body doc column by column, taking
// values from held and leaving in it each column's latest one.
func (p *Processor) fillFrame(msg *service.Message, doc []byte, held map[string]*heldValue) error {
	f, err := frame.Decode(doc)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	changed := false
	// src[i] is the row whose value row i takes: itself, another row, or
	// fromHeld; none stands for no value to take yet.
	const fromHeld, none = -1, -2
	src := make([]int, f.Rows)
	for c := range f.Cols {
		col := &f.Cols[c]
		listed := len(p.fields) == 0 || slices.Contains(p.fields, col.Name)
		if col.Meta || !listed {
			continue
		}
		h := held[col.Name]
		if h != nil && h.typ != col.Type {
			h = nil // a column of another type lends nothing
		}
		have, fills := fromHeld, false
		if h == nil {
			have = none
		}
		for k := range f.Rows {
			i := k
			if p.backward {
				i = f.Rows - 1 - k
			}
			src[i] = i
			switch {
			case f.Rejected(i):
			case !col.Null(i):
				have = i
			case have == none || (col.Absent(i) && len(p.fields) == 0):
				// Nothing to fill from; and, with no list, a row that
				// lacks the field keeps lacking it, as a JSON row does.
			default:
				src[i], fills = have, true
			}
		}
		if have >= 0 {
			fixed, s := col.Value(have)
			held[col.Name] = &heldValue{typ: col.Type, fixed: fixed, s: bytes.Clone(s)}
		}
		if !fills {
			continue
		}
		b := &frame.Builder{Type: col.Type}
		b.Grow(f.Rows, len(col.Data))
		for _, from := range src {
			if from == fromHeld {
				b.Raw(1, h.fixed, h.s)
			} else {
				b.CopyRow(col, from)
			}
		}
		f.Set(b.Column(col.Name, false))
		changed = true
	}
	if changed {
		msg.SetBytes(f.Append(nil, nil))
	}
	return nil
}

// Close implements service.BatchProcessor.
func (p *Processor) Close(context.Context) error { return nil }
