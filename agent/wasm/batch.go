package wasm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

func leUint64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// scratch is per-instance reusable memory for encoding requests, so a
// steady stream of batches does not allocate per batch.
type scratch struct {
	req   abi.Writer
	rows  []int           // request row -> batch index
	cols  []frame.Builder // the request's columns, one per declared field
	raw   []byte
	add   []byte
	merge [2][]byte
	// frameCols holds a frame call's column per declared field.
	frameCols []*frame.Column
}

// ProcessBatch runs one batch through the plugin. Messages the plugin (or
// the host, parsing declared fields) fails stay in the batch with an error
// set; dropped ones are removed. An error return means the whole call
// failed: the caller fails every message and, if Broken, replaces the
// instance.
func (i *Instance) ProcessBatch(ctx context.Context, batch service.MessageBatch) (service.MessageBatch, error) {
	if len(batch) == 0 {
		return batch, nil
	}
	if i.desc.Stateful {
		return nil, errors.New("the plugin is stateful: configure the processor with key and state")
	}
	if i.desc.Mode == abi.ModeColumns {
		return i.processColumns(ctx, batch, nil)
	}
	return i.processBytes(ctx, batch)
}

func (i *Instance) processBytes(ctx context.Context, batch service.MessageBatch) (service.MessageBatch, error) {
	w := &i.scratch.req
	w.Reset()
	w.U32(uint32(len(batch)))
	w.U32(0)
	for idx, msg := range batch {
		b, err := msg.AsBytes()
		if err != nil {
			return nil, fmt.Errorf("message %d: read body: %w", idx, err)
		}
		w.Bytes(b)
		countAt := w.Len()
		w.U32(0)
		var n uint32
		_ = msg.MetaWalk(func(k, v string) error {
			w.String(k)
			w.String(v)
			n++
			return nil
		})
		binary.LittleEndian.PutUint32(w.Buf[countAt:], n)
	}
	out, err := i.call(ctx, i.process, w.Buf)
	if err != nil {
		return nil, err
	}
	r := abi.NewReader(out)
	r.U32()
	if n := int(r.U32()); n != len(batch) && r.Err() == nil {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %d results for %d messages", n, len(batch))
	}
	// Decode every result before touching a message, so that a malformed
	// result fails a batch whose messages still have their original bytes.
	type msgResult struct {
		act          abi.Action
		body, reason []byte
		metas        [][2]string
	}
	results := make([]msgResult, len(batch))
	for idx := range results {
		res := &results[idx]
		res.act = abi.Action(r.U8())
		switch res.act {
		case abi.ActionKeep, abi.ActionDrop:
		case abi.ActionReplace:
			res.body = r.Bytes()
		case abi.ActionFail:
			res.reason = r.Bytes()
		default:
			if r.Err() == nil {
				i.broken = true
				return nil, fmt.Errorf("malformed result: message %d: unknown action %d", idx, res.act)
			}
		}
		nMeta := r.U32()
		if nMeta > uint32(r.Remaining()/8) {
			// Each pair takes at least 8 bytes: a count that cannot fit is
			// garbage.
			i.broken = true
			return nil, fmt.Errorf("malformed result: message %d: %d metadata pairs in %d remaining bytes", idx, nMeta, r.Remaining())
		}
		for ; nMeta > 0; nMeta-- {
			res.metas = append(res.metas, [2]string{string(r.Bytes()), string(r.Bytes())})
		}
		if r.Err() != nil {
			break
		}
	}
	if err := r.Err(); err != nil {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %w", err)
	}
	result := batch[:0:0]
	for idx, msg := range batch {
		res := &results[idx]
		switch res.act {
		case abi.ActionDrop:
			continue
		case abi.ActionReplace:
			msg.SetBytes(append([]byte(nil), res.body...))
		case abi.ActionFail:
			msg.SetError(errors.New(i.name + ": " + string(res.reason)))
		}
		for _, kv := range res.metas {
			msg.MetaSetMut(kv[0], kv[1])
		}
		result = append(result, msg)
	}
	return result, nil
}

func (i *Instance) processColumns(ctx context.Context, batch service.MessageBatch, kin *KeyedInput) (service.MessageBatch, error) {
	s := &i.scratch
	in := i.desc.In
	s.resetColumns(in)
	for idx, msg := range batch {
		if kin != nil && kin.KeyIdx[idx] < 0 {
			continue // its key could not be read: failed already
		}
		doc, err := msg.AsBytes()
		if err != nil {
			msg.SetError(fmt.Errorf("%s: read body: %w", i.name, err))
			continue
		}
		if err := s.appendRow(in, doc); err != nil {
			msg.SetError(fmt.Errorf("%s: %w", i.name, err))
			continue
		}
		s.rows = append(s.rows, idx)
	}
	if len(s.rows) == 0 {
		return batch, nil
	}
	out, err := i.callColumns(ctx, kin)
	if err != nil {
		return nil, err
	}
	return i.mergeColumns(batch, out, kin)
}

// resetColumns empties the column scratch for a new call.
func (s *scratch) resetColumns(in []abi.Field) {
	if len(s.cols) < len(in) {
		s.cols = make([]frame.Builder, len(in))
	}
	for c, f := range in {
		s.cols[c].Reset(f.Type)
	}
	s.rows = s.rows[:0]
}

// callColumns calls the plugin on the rows gathered in the scratch.
func (i *Instance) callColumns(ctx context.Context, kin *KeyedInput) ([]byte, error) {
	s := &i.scratch
	w := &s.req
	w.Reset()
	w.U32(uint32(len(s.rows)))
	w.U32(0)
	for c := range i.desc.In {
		s.cols[c].AppendTo(w)
	}
	if i.desc.Stateful {
		kin.appendSection(w, s.rows)
	}
	return i.call(ctx, i.process, w.Buf)
}

// appendRow parses the declared fields of one message into the column
// scratch. On error nothing is appended, so the message can be left out.
func (s *scratch) appendRow(fields []abi.Field, doc []byte) error {
	for c, f := range fields {
		if f.Type == abi.TypeValue {
			kind, text, ok := jsonfield.Value(doc, f.Name)
			if f.Required && kind <= abi.KindNull {
				s.truncate(c)
				return fmt.Errorf("required field %q is missing", f.Name)
			}
			if !ok {
				s.truncate(c)
				return fmt.Errorf("field %q: not valid JSON", f.Name)
			}
			if f.KindsOnly {
				text = nil
			}
			s.appendValue(c, f.Type, true, uint64(kind), text)
			continue
		}
		res := jsonfield.Get(doc, f.Name)
		if !res.Exists() || res.Type == gjson.Null {
			if f.Required {
				s.truncate(c)
				return fmt.Errorf("required field %q is missing", f.Name)
			}
			s.appendValue(c, f.Type, false, 0, nil)
			continue
		}
		u, str, err := jsonfield.Convert(f.Type, res)
		if err != nil {
			s.truncate(c)
			return fmt.Errorf("field %q: %w", f.Name, err)
		}
		s.appendValue(c, f.Type, true, u, str)
	}
	return nil
}

func (s *scratch) appendValue(c int, t abi.Type, ok bool, u uint64, str []byte) {
	valid := byte(0)
	switch {
	case t == abi.TypeValue:
		valid = byte(u) // the value's kind
	case ok:
		valid = 1
	}
	s.cols[c].Raw(valid, u, str)
}

// truncate undoes the first n columns of a half-appended row.
func (s *scratch) truncate(n int) {
	for c := range n {
		s.cols[c].Pop()
	}
}

// columnsResult is a columns-mode plugin's decoded reply.
type columnsResult struct {
	actions []byte
	outCols []abi.Column
	reasons map[int]string
	metas   []rowMeta
	// rawMetas is the undecoded metadata section (metaCount entries),
	// when the caller asked for it: a frame stores metadata as columns
	// and need not make two strings per row.
	rawMetas  []byte
	metaCount int
}

// rowMeta is metadata a plugin set on one row, or on each (allRows).
type rowMeta struct {
	row        int
	key, value string
}

// allRows is abi.AllRows as a row index.
const allRows = -1

// readColumnsResult decodes and checks a reply to a call of rows rows.
func (i *Instance) readColumnsResult(out []byte, rows int, kin *KeyedInput, rawMetas bool) (*columnsResult, error) {
	r := abi.NewReader(out)
	r.U32()
	if n := int(r.U32()); n != rows {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %d rows for %d sent", n, rows)
	}
	res := &columnsResult{actions: r.Raw(rows), reasons: map[int]string{}}
	r.Align8()
	res.outCols = make([]abi.Column, len(i.desc.Out))
	for c, f := range i.desc.Out {
		res.outCols[c] = abi.ReadColumn(r, f.Type, rows)
	}
	if i.desc.Stateful {
		if err := kin.readSection(r); err != nil {
			i.broken = true
			return nil, err
		}
	}
	for n := r.U32(); n > 0 && r.Err() == nil; n-- {
		row := int(r.U32())
		reason := string(r.Bytes())
		if row >= rows && r.Err() == nil {
			i.broken = true
			return nil, fmt.Errorf("malformed result: failure for row %d of %d", row, rows)
		}
		res.reasons[row] = reason
	}
	start := r.Offset()
	for n := r.U32(); n > 0 && r.Err() == nil; n-- {
		u := r.U32()
		row := int(u)
		if u == abi.AllRows {
			row = allRows
		}
		k, v := r.Bytes(), r.Bytes()
		if row >= rows && r.Err() == nil {
			i.broken = true
			return nil, fmt.Errorf("malformed result: metadata for row %d of %d", row, rows)
		}
		if rawMetas {
			res.metaCount++
			continue
		}
		res.metas = append(res.metas, rowMeta{row, string(k), string(v)})
	}
	if rawMetas {
		res.rawMetas = out[start+4 : r.Offset()]
	}
	if err := r.Err(); err != nil {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %w", err)
	}
	for row, a := range res.actions {
		switch abi.Action(a) {
		case abi.ActionKeep, abi.ActionDrop, abi.ActionFail:
		default:
			i.broken = true
			return nil, fmt.Errorf("malformed result: row %d: action %d is not allowed in columns mode", row, a)
		}
	}
	// Check string offsets before merging anything, so bad ones fail the
	// whole call (and replace the instance) like any other malformed result,
	// instead of failing single messages of a half-applied batch.
	for c, f := range i.desc.Out {
		if f.Type != abi.TypeString {
			continue
		}
		for row := 0; row < rows; row++ {
			if _, ok := res.outCols[c].Str(row); !ok && res.outCols[c].Valid[row] != 0 {
				i.broken = true
				return nil, fmt.Errorf("malformed result: output field %q row %d: bad string offsets", f.Name, row)
			}
		}
	}
	return res, nil
}

func (i *Instance) mergeColumns(batch service.MessageBatch, out []byte, kin *KeyedInput) (service.MessageBatch, error) {
	s := &i.scratch
	res, err := i.readColumnsResult(out, len(s.rows), kin, false)
	if err != nil {
		return nil, err
	}
	actions, outCols, reasons, metas := res.actions, res.outCols, res.reasons, res.metas
	for _, m := range metas {
		if m.row != allRows {
			batch[s.rows[m.row]].MetaSetMut(m.key, m.value)
			continue
		}
		for _, idx := range s.rows {
			batch[idx].MetaSetMut(m.key, m.value)
		}
	}
	drop := make([]bool, len(batch))
	for row, idx := range s.rows {
		msg := batch[idx]
		switch abi.Action(actions[row]) {
		case abi.ActionDrop:
			drop[idx] = true
			continue
		case abi.ActionFail:
			msg.SetError(errors.New(i.name + ": " + reasons[row]))
			continue
		}
		if len(outCols) == 0 {
			continue
		}
		doc, err := msg.AsBytes()
		if err != nil {
			msg.SetError(fmt.Errorf("%s: read body: %w", i.name, err))
			continue
		}
		merged, err := i.merge(doc, outCols, row)
		if err != nil {
			msg.SetError(fmt.Errorf("%s: %w", i.name, err))
			continue
		}
		if merged != nil {
			msg.SetBytes(merged)
		}
	}
	result := batch[:0:0]
	for idx, msg := range batch {
		if !drop[idx] {
			result = append(result, msg)
		}
	}
	return result, nil
}

// merge writes row's valid output values into a copy of doc. It returns nil
// when the row set nothing.
func (i *Instance) merge(doc []byte, cols []abi.Column, row int) ([]byte, error) {
	sc := &i.scratch
	rv := rowValues{inst: i, cols: cols, row: row}
	cur, changed, flip := doc, false, 0
	add := sc.add[:0]
	for _, g := range i.plan.groups {
		if g.root != nil && !jsonfield.Get(cur, g.key).Exists() {
			mark := len(add)
			if mark > 0 {
				add = append(add, ',')
			}
			var ok bool
			var err error
			if add, ok, err = g.root.render(add, &rv); err != nil {
				return nil, err
			}
			if !ok {
				add = add[:mark]
			}
			continue
		}
		for _, c := range g.fields {
			if cols[c].Valid[row] == 0 {
				continue
			}
			raw, err := rv.appendValue(sc.raw[:0], c)
			if err != nil {
				return nil, err
			}
			sc.raw = raw
			// Alternate between two scratch buffers so a row with several
			// fields allocates nothing until the final copy.
			name := i.desc.Out[c].Name
			next, err := setPath(sc.merge[flip][:0], cur, name, raw)
			if err != nil {
				return nil, fmt.Errorf("output field %q: %w", name, err)
			}
			sc.merge[flip] = next
			cur, changed, flip = next, true, flip^1
		}
	}
	sc.add = add
	if len(add) > 0 {
		end, empty := jsonfield.RootEnd(cur)
		if end < 0 {
			return nil, fmt.Errorf("output field %q: set %q: the message is not a JSON object", i.desc.Out[0].Name, i.desc.Out[0].Name)
		}
		next := append(sc.merge[flip][:0], cur[:end]...)
		if !empty {
			next = append(next, ',')
		}
		next = append(next, add...)
		next = append(next, cur[end:]...)
		sc.merge[flip] = next
		cur, changed = next, true
	}
	if !changed {
		return nil, nil
	}
	return append([]byte(nil), cur...), nil
}

// floatError fails an output float JSON has no number for.
func floatError(name string, v float64) error {
	return fmt.Errorf("output field %q: %v cannot be written as JSON", name, v)
}

// rowValues renders one row's output values as JSON.
type rowValues struct {
	inst *Instance
	cols []abi.Column
	row  int
}

func (rv *rowValues) appendValue(raw []byte, c int) ([]byte, error) {
	f, col, row := rv.inst.desc.Out[c], rv.cols[c], rv.row
	switch f.Type {
	case abi.TypeInt:
		raw = strconv.AppendInt(raw, int64(binary.LittleEndian.Uint64(col.Fixed[row*8:])), 10)
	case abi.TypeFloat:
		v := math.Float64frombits(binary.LittleEndian.Uint64(col.Fixed[row*8:]))
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, floatError(f.Name, v)
		}
		raw = jsonnum.AppendFloat(raw, v)
	case abi.TypeBool:
		raw = strconv.AppendBool(raw, col.Fixed[row] != 0)
	case abi.TypeTime:
		ts := time.Unix(0, int64(binary.LittleEndian.Uint64(col.Fixed[row*8:]))).UTC()
		raw = append(raw, '"')
		raw = ts.AppendFormat(raw, time.RFC3339Nano)
		raw = append(raw, '"')
	case abi.TypeString:
		str, ok := col.Str(row)
		if !ok {
			rv.inst.broken = true
			return nil, fmt.Errorf("malformed result: output field %q row %d: bad string offsets", f.Name, row)
		}
		q, err := json.Marshal(string(str))
		if err != nil {
			return nil, fmt.Errorf("output field %q: %w", f.Name, err)
		}
		raw = append(raw, q...)
	}
	return raw, nil
}
