package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// A frame (agent/frame) reaches a columns-mode plugin without a JSON
// parse: its columns are the plugin's declared fields, copied (or, for a
// value-typed field, described) into the request; the plugin's output
// fields become columns, its failures rejected rows, its metadata
// metadata columns. What the plugin sees, and what each row ends up as,
// is what the row would have seen and become as a JSON message.

// frameRows gathers rows of f (frame row indices) into the column scratch
// and returns, per request row, its frame row. A row whose declared field
// the host cannot give the plugin is rejected through reject, as the JSON
// path fails its message.
func (i *Instance) frameRows(f *frame.Frame, rows []int, reject func(row int, reason string)) []int {
	return i.scratch.gatherFrame(i.desc.In, f, rows, func(row int, err error) {
		reject(row, fmt.Sprintf("%s: %v", i.name, err))
	})
}

// gatherFrame fills the scratch's columns for fields from rows of f, a
// column at a time, and returns the rows sent. A row lacking a required
// field is not sent: reject gets it with the error the JSON path gives.
// Fields whose values need converting one by one (a column of another
// type than the field's, the whole body) take gatherFrameRows' way.
func (s *scratch) gatherFrame(fields []abi.Field, f *frame.Frame, rows []int, reject func(row int, err error)) []int {
	s.resetColumns(fields)
	cols := s.frameColumns(fields, f)
	for c, fd := range fields {
		if !gatherable(fd, cols[c]) {
			return s.gatherFrameRows(fields, cols, f, rows, reject)
		}
	}
	s.rows = slices.Grow(s.rows, len(rows))
rowLoop:
	for _, row := range rows {
		for c, fd := range fields {
			if fd.Required && (cols[c] == nil || cols[c].Null(row)) {
				reject(row, fmt.Errorf("required field %q is missing", fd.Name))
				continue rowLoop
			}
		}
		s.rows = append(s.rows, row)
	}
	for c, fd := range fields {
		if fd.Type == abi.TypeValue {
			s.cols[c].GatherValues(cols[c], s.rows, valueForm(fd))
		} else {
			s.cols[c].GatherTyped(cols[c], s.rows)
		}
	}
	return s.rows
}

// gatherable tells whether a field's rows can be copied from col (nil if
// the frame lacks it) without a conversion that may fail.
func gatherable(fd abi.Field, col *frame.Column) bool {
	switch {
	case fd.Type == abi.TypeValue:
		return fd.Name != abi.BodyPath
	case col == nil, col.Type == fd.Type:
		return true
	}
	return col.Type == abi.TypeInt && fd.Type == abi.TypeFloat
}

// frameColumns looks up each field's column in f (nil where it has none).
func (s *scratch) frameColumns(fields []abi.Field, f *frame.Frame) []*frame.Column {
	if cap(s.frameCols) < len(fields) {
		s.frameCols = make([]*frame.Column, len(fields))
	}
	cols := s.frameCols[:len(fields)]
	for c, fd := range fields {
		cols[c] = f.Field(fd.Name)
	}
	return cols
}

// gatherFrameRows is gatherFrame row by row, each value converted as the
// row's JSON value would be.
func (s *scratch) gatherFrameRows(fields []abi.Field, cols []*frame.Column, f *frame.Frame, rows []int, reject func(row int, err error)) []int {
	s.resetColumns(fields)
	for _, row := range rows {
		if err := s.appendFrameRow(fields, cols, f, row); err != nil {
			reject(row, err)
			continue
		}
		s.rows = append(s.rows, row)
	}
	return s.rows
}

// arena copies byte slices into chunks it never grows in place, so the
// copies it handed out stay valid while it takes more: a frame's outputs
// must outlive the instance memory they were read from.
type arena struct {
	buf   []byte
	total int // bytes copied
}

func (a *arena) copy(b []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(64<<10, len(b)))
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	a.total += len(b)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// appendFrameRow is appendRow for a frame's row. On error nothing is
// appended.
func (s *scratch) appendFrameRow(fields []abi.Field, cols []*frame.Column, f *frame.Frame, row int) error {
	for c, fd := range fields {
		col := cols[c]
		if fd.Type == abi.TypeValue {
			kind, text := abi.KindAbsent, []byte(nil)
			switch {
			case fd.Name == abi.BodyPath && fd.KindsOnly:
				kind = abi.KindObject
			case fd.Name == abi.BodyPath:
				s.raw = f.AppendRowJSON(s.raw[:0], row)
				kind, text = abi.KindObject, s.raw
			case col == nil || col.Absent(row):
			case col.Null(row):
				kind = abi.KindNull
			default:
				kind, text = s.frameValue(fd, col, row)
			}
			if fd.Required && kind <= abi.KindNull {
				s.truncate(c)
				return fmt.Errorf("required field %q is missing", fd.Name)
			}
			s.appendValue(c, fd.Type, true, uint64(kind), text)
			continue
		}
		if col == nil || col.Null(row) {
			if fd.Required {
				s.truncate(c)
				return fmt.Errorf("required field %q is missing", fd.Name)
			}
			s.appendValue(c, fd.Type, false, 0, nil)
			continue
		}
		if col.Type == fd.Type {
			u, str := col.Value(row)
			s.appendValue(c, fd.Type, true, u, str)
			continue
		}
		if col.Type == abi.TypeInt && fd.Type == abi.TypeFloat {
			// What the JSON path gives: strconv's nearest float to the
			// integer's digits, as the conversion's is.
			s.appendValue(c, fd.Type, true, math.Float64bits(float64(col.Int(row))), nil)
			continue
		}
		// Another type: convert exactly as the row's JSON value would be.
		s.raw = col.AppendJSON(s.raw[:0], row)
		u, str, err := jsonfield.Convert(fd.Type, gjson.ParseBytes(s.raw))
		if err != nil {
			s.truncate(c)
			return fmt.Errorf("field %q: %w", fd.Name, err)
		}
		s.appendValue(c, fd.Type, true, u, str)
	}
	return nil
}

// frameValue describes a typed value as a value-typed field gets it.
func (s *scratch) frameValue(fd abi.Field, col *frame.Column, row int) (abi.Kind, []byte) {
	form := valueForm(fd)
	switch col.Type {
	case abi.TypeBool:
		if col.Bool(row) {
			return abi.KindTrue, nil
		}
		return abi.KindFalse, nil
	case abi.TypeString:
		if form == frame.ValueKindsOnly {
			return abi.KindString, nil
		}
		return abi.KindString, col.Bytes(row)
	case abi.TypeTime:
		if form == frame.ValueKindsOnly {
			return abi.KindString, nil
		}
		s.raw = col.AppendText(s.raw[:0], row)
		return abi.KindString, s.raw
	}
	switch {
	case form == frame.ValueKindsOnly:
		return abi.KindNumber, nil
	case form == frame.ValueBinary && col.Type == abi.TypeInt:
		s.raw = binary.LittleEndian.AppendUint64(s.raw[:0], uint64(col.Int(row)))
		return abi.KindInt, s.raw
	case form == frame.ValueBinary:
		s.raw = binary.LittleEndian.AppendUint64(s.raw[:0], math.Float64bits(col.Float(row)))
		return abi.KindFloat, s.raw
	}
	s.raw = col.AppendJSON(s.raw[:0], row)
	return abi.KindNumber, s.raw
}

// valueForm is how a value field's rows are written, as its flags ask.
// A number the host reads from JSON stays text even for BinaryNumbers:
// parsing it here would cost what it saves the plugin.
func valueForm(fd abi.Field) frame.ValueForm {
	switch {
	case fd.KindsOnly:
		return frame.ValueKindsOnly
	case fd.BinaryNumbers:
		return frame.ValueBinary
	}
	return frame.ValueText
}

// frameOutputs collects a frame's plugin results across its calls.
type frameOutputs struct {
	rows   int
	fields []abi.Field
	valid  [][]byte   // per output field, per frame row
	fixed  [][]uint64 // fixed-width values
	strs   [][][]byte // strings, copied out of the instance's memory...
	text   arena      // ...into this
	metas  map[string]*metaValues
	drop   []bool
}

// metaValues is one metadata key's values by frame row.
type metaValues struct {
	set   []byte // 1 where set
	vals  [][]byte
	arena arena // the values' bytes
}

func newFrameOutputs(rows int, fields []abi.Field) *frameOutputs {
	o := &frameOutputs{rows: rows, fields: fields, drop: make([]bool, rows)}
	for _, fd := range fields {
		o.valid = append(o.valid, make([]byte, rows))
		if fd.Type.Fixed() != 0 {
			o.fixed = append(o.fixed, make([]uint64, rows))
			o.strs = append(o.strs, nil)
		} else {
			o.fixed = append(o.fixed, nil)
			o.strs = append(o.strs, make([][]byte, rows))
		}
	}
	return o
}

// add applies one call's result: rows maps its request rows to frame rows.
func (o *frameOutputs) add(name string, f *frame.Frame, res *columnsResult, rows []int) {
	// Each row's outcome first, then the outputs of the rows kept a column
	// at a time.
	kept := make([]bool, len(rows))
	for r, row := range rows {
		switch abi.Action(res.actions[r]) {
		case abi.ActionDrop:
			o.drop[row] = true
			continue
		case abi.ActionFail:
			f.Reject(row, name+": "+res.reasons[r])
			continue
		}
		if err := unwritable(o.fields, res.outCols, r); err != nil {
			// As the JSON path fails the message and merges nothing.
			f.Reject(row, name+": "+err.Error())
			continue
		}
		kept[r] = true
	}
	for c, fd := range o.fields {
		col, valid := &res.outCols[c], o.valid[c]
		switch fd.Type.Fixed() {
		case 8:
			fixed := o.fixed[c]
			for r, row := range rows {
				if kept[r] && col.Valid[r] != 0 {
					valid[row], fixed[row] = 1, leUint64(col.Fixed[r*8:])
				}
			}
		case 1:
			fixed := o.fixed[c]
			for r, row := range rows {
				if kept[r] && col.Valid[r] != 0 {
					valid[row], fixed[row] = 1, uint64(col.Fixed[r])
				}
			}
		default:
			for r, row := range rows {
				if kept[r] && col.Valid[r] != 0 {
					str, _ := col.Str(r) // checked by readColumnsResult
					valid[row], o.strs[c][row] = 1, o.text.copy(str)
				}
			}
		}
	}
	r := abi.NewReader(res.rawMetas)
	var last *metaValues
	var lastKey []byte
	for n := res.metaCount; n > 0; n-- {
		u := r.U32()
		k, v := r.Bytes(), r.Bytes()
		mv := last
		if mv == nil || string(k) != string(lastKey) {
			if mv = o.metas[string(k)]; mv == nil {
				if o.metas == nil {
					o.metas = map[string]*metaValues{}
				}
				mv = &metaValues{set: make([]byte, o.rows), vals: make([][]byte, o.rows)}
				o.metas[string(k)] = mv
			}
			last, lastKey = mv, k
		}
		if u != abi.AllRows {
			row := rows[u]
			mv.set[row], mv.vals[row] = 1, mv.arena.copy(v)
			continue
		}
		// One copy, shared by the call's rows.
		v = mv.arena.copy(v)
		mv.arena.total += len(v) * (len(rows) - 1) // what apply's builder will hold
		for _, row := range rows {
			mv.set[row], mv.vals[row] = 1, v
		}
	}
}

// unwritable is the error the JSON path gives row r of a result whose
// float output is no JSON number (NaN, ±Inf), or nil: a frame holds no
// value its rows' JSON could not.
func unwritable(fields []abi.Field, cols []abi.Column, r int) error {
	for c, fd := range fields {
		if fd.Type != abi.TypeFloat || cols[c].Valid[r] == 0 {
			continue
		}
		if v := math.Float64frombits(leUint64(cols[c].Fixed[r*8:])); math.IsNaN(v) || math.IsInf(v, 0) {
			return floatError(fd.Name, v)
		}
	}
	return nil
}

// apply sets the outputs as f's columns, merged with the columns of the
// same names as the JSON path merges fields: a row the plugin left unset
// keeps its value. It returns the rows to keep, nil for all.
func (o *frameOutputs) apply(name string, f *frame.Frame) []bool {
	for c, fd := range o.fields {
		old := f.Field(fd.Name)
		var b frame.Builder
		b.Reset(fd.Type)
		switch {
		case old != nil && old.Type != fd.Type:
			o.mergeRows(name, f, c, old, &b)
		case fd.Type.Fixed() != 0:
			b.MergeFixed(o.valid[c], o.fixed[c], old)
		default:
			b.MergeStrings(o.valid[c], o.strs[c], old, false)
		}
		f.Set(b.Column(fd.Name, false))
	}
	for key, vals := range o.metas {
		old := f.Col(key)
		if old != nil && !old.Meta {
			old = nil
		}
		var b frame.Builder
		b.Reset(abi.TypeString)
		if old == nil || old.Type == abi.TypeString {
			b.MergeStrings(vals.set, vals.vals, old, true)
			f.Set(b.Column(key, true))
			continue
		}
		b.Grow(o.rows, vals.arena.total)
		for row := 0; row < o.rows; row++ {
			if vals.set[row] != 0 {
				b.String(vals.vals[row])
			} else if !old.Null(row) {
				b.String(old.AppendText(nil, row))
			} else {
				b.Null()
			}
		}
		f.Set(b.Column(key, true))
	}
	for _, d := range o.drop {
		if d {
			keep := make([]bool, o.rows)
			for row, d := range o.drop {
				keep[row] = !d
			}
			return keep
		}
	}
	return nil
}

// mergeRows builds output field c's column row by row where the frame
// already has a column of that name of another type: a row the plugin
// left unset keeps its old value only if it is null or absent.
func (o *frameOutputs) mergeRows(name string, f *frame.Frame, c int, old *frame.Column, b *frame.Builder) {
	fd := o.fields[c]
	for row := 0; row < o.rows; row++ {
		switch {
		case o.valid[c][row] != 0 && fd.Type.Fixed() != 0:
			b.Raw(1, o.fixed[c][row], nil)
		case o.valid[c][row] != 0:
			b.Raw(1, 0, o.strs[c][row])
		case old.Absent(row):
			b.Absent()
		case old.Null(row):
			b.Null()
		default:
			// A JSON row would keep its old value of another type; a
			// column has one type, so the row is rejected rather than
			// changed.
			f.Reject(row, fmt.Sprintf("%s: output field %q: the plugin left it unset and the row's %s value cannot stay in a %s column; use unframe before this step", name, fd.Name, old.Type, fd.Type))
			b.Null()
		}
	}
}

// frameRefusal says why this step cannot take frames, or "".
func frameRefusal(d abi.Descriptor, keyed bool) string {
	switch {
	case keyed || d.Stateful:
		return "a keyed (stateful) step does not take frames; put `unframe` before it"
	case d.Mode != abi.ModeColumns:
		return "a bytes-mode plugin does not take frames; put `unframe` before it"
	}
	for _, fd := range d.Out {
		if strings.Contains(fd.Name, ".") {
			return fmt.Sprintf("output field %q is a path and frames hold flat rows; put `unframe` before this step", fd.Name)
		}
	}
	return ""
}

// processFrame runs msg's frame through the plugin, in calls of at most
// maxCall rows. Rows rejected before are not passed (a row keeps its
// first reason); a failed call rejects its rows with the reason.
func (p *Processor) processFrame(ctx context.Context, g *generation, msg *service.Message, body []byte) {
	f, err := frame.Decode(body)
	if err != nil {
		msg.SetError(fmt.Errorf("plugin %s: %w", p.mod.Name(), err))
		return
	}
	rows := make([]int, 0, f.Rows)
	for row := 0; row < f.Rows; row++ {
		if !f.Rejected(row) {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return
	}
	size := p.maxCall
	if p.parallel > 1 {
		size = min(size, (len(rows)+p.parallel-1)/p.parallel)
	}
	fc := &frameCall{f: f}
	// With parallel calls, each on an instance of its own; what they
	// change in the frame is per row, so the order they finish in does
	// not matter.
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(p.parallel, 1))
	for start := 0; start < len(rows); start += size {
		chunk := rows[start:min(start+size, len(rows))]
		if p.parallel <= 1 {
			p.callFrame(ctx, g, fc, chunk)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.callFrame(ctx, g, fc, chunk)
		})
	}
	wg.Wait()
	var keep []bool
	if fc.outs != nil {
		keep = fc.outs.apply(p.mod.Name(), f)
	}
	if keep != nil {
		// Rows dropped: the frame is encoded anew without them.
		msg.SetBytes(f.Append(nil, keep))
		return
	}
	frame.Update(msg, body, f)
}

// frameCall is one frame on its way through the plugin: with
// parallel_calls, several calls read the frame at once, and mu orders
// what they write into it (rejects, outputs).
type frameCall struct {
	f    *frame.Frame
	mu   sync.Mutex
	outs *frameOutputs
}

func (fc *frameCall) reject(row int, reason string) {
	fc.mu.Lock()
	fc.f.Reject(row, reason)
	fc.mu.Unlock()
}

// callFrame runs the frame's rows chunk (frame row indices) through one
// call of the plugin.
func (p *Processor) callFrame(ctx context.Context, g *generation, fc *frameCall, chunk []int) {
	inst, err := g.acquire(ctx, p.icfg)
	if err == nil {
		if why := frameRefusal(inst.desc, p.keyed != nil); why != "" {
			g.release(ctx, inst, nil, p.stats)
			err = fmt.Errorf("%s", why)
		}
	}
	if err != nil {
		p.stats.messages(len(chunk), len(chunk), len(chunk))
		p.logger.Error("plugin failed a frame", "rows", len(chunk), "error", err)
		for _, row := range chunk {
			fc.reject(row, fmt.Sprintf("plugin %s: %v", p.mod.Name(), err))
		}
		return
	}
	callStart := time.Now()
	sent := inst.frameRows(fc.f, chunk, fc.reject)
	var res *columnsResult
	if len(sent) > 0 {
		var out []byte
		if out, err = inst.callColumns(ctx, nil); err == nil {
			res, err = inst.readColumnsResult(out, len(sent), nil, true)
		}
	}
	failed, dropped := len(chunk)-len(sent), 0
	if err == nil && res != nil {
		// Before the instance goes back: res reads its memory.
		fc.mu.Lock()
		if fc.outs == nil {
			fc.outs = newFrameOutputs(fc.f.Rows, inst.desc.Out)
		}
		fc.outs.add(inst.name, fc.f, res, sent)
		fc.mu.Unlock()
		for _, a := range res.actions {
			switch abi.Action(a) {
			case abi.ActionFail:
				failed++
			case abi.ActionDrop:
				dropped++
			}
		}
	}
	p.stats.callRows(len(chunk), len(chunk)-dropped, failed, int64(time.Since(callStart)), err, inst.Broken(), inst.MemoryPages())
	g.release(ctx, inst, err, p.stats)
	if err != nil {
		p.logger.Error("plugin failed a frame", "rows", len(chunk), "error", err)
		for _, row := range sent {
			fc.reject(row, fmt.Sprintf("plugin %s: %v", p.mod.Name(), err))
		}
	}
}
