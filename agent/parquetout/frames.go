package parquetout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// A frame (agent/frame) is one message holding many rows as typed columns.
// Its accepted rows are converted from the columns straight into Parquet
// values: a JSON render and parse per row is most of what a frame saves.
//
// Every row must come out as the JSON path would write f.AppendRowJSON(nil,
// i), the row as `unframe` hands it on, so that a job gives the same file
// framed or not. The common pairings of column type and frame type are
// computed directly (each is exact, see TestFrameConversionsMatchJSON);
// every other one, which is mostly a failure, renders the value's JSON and
// goes through the JSON path's own conversion, so it cannot drift from it.

// scratch is one batch's working memory, recycled across batches: at a
// million rows a second it is most of the garbage.
type scratch struct {
	vals []parquet.Value
	// The batch's rows, slices of vals, and the index of each one's
	// message.
	rows []parquet.Row
	msgs []int
	// text holds values rendered for string columns (numbers, times): the
	// rows point into it until the writer has copied them.
	text []byte
	// A frame's accepted rows, which of them fail, the columns' bindings,
	// and the rows' JSON for columns whose path needs it.
	idx     []int
	bad     []bool
	binds   []binding
	json    []byte
	jsonEnd []int
	one     []byte // one value's JSON
}

// reset drops the batch's references, so that the pooled scratch holds on
// to no message's strings.
func (sc *scratch) reset() {
	clear(sc.vals)
	clear(sc.rows)
	sc.rows, sc.msgs = sc.rows[:0], sc.msgs[:0]
	sc.text = sc.text[:0]
	sc.json = sc.json[:0]
}

// framed is what the batch's frames decoded to: by message, its frame (nil
// for a JSON message), and how many rows the batch gives at most.
type framed struct {
	frames []*frame.Frame
	rows   int
}

// noRows stands in for a frame that cannot be decoded, whose message has
// failed already: having no rows, it is skipped by everything after.
var noRows = &frame.Frame{}

// at is message i's frame, or nil for a JSON message.
func (fr framed) at(i int) *frame.Frame {
	if fr.frames == nil {
		return nil
	}
	return fr.frames[i]
}

// decodeFrames decodes the frames of the batch, once for every step after.
func decodeFrames(batch service.MessageBatch) (framed, []failure) {
	fr := framed{rows: len(batch)}
	var failed []failure
	for i, msg := range batch {
		raw, err := msg.AsBytes()
		if err != nil || !frame.Is(raw) {
			// convert reports the error of a body that cannot be read.
			continue
		}
		if fr.frames == nil {
			fr.frames = make([]*frame.Frame, len(batch))
		}
		fr.rows--
		f, err := frame.Decode(raw)
		if err != nil {
			fr.frames[i] = noRows
			failed = append(failed, failure{i, fmt.Errorf("message %d: %w", i, err)})
			continue
		}
		fr.frames[i] = f
		fr.rows += f.Accepted()
	}
	return fr, failed
}

// binding is where a column of the schema takes its values from in a
// frame.
type binding struct {
	kind bindKind
	col  *frame.Column
}

type bindKind uint8

const (
	// bindMissing: no field of the frame is at the column's path, so every
	// row lacks the value.
	bindMissing bindKind = iota
	// bindColumn: the field column col.
	bindColumn
	// bindJSON: a gjson path that needs the row's JSON to be followed.
	bindJSON
)

// bind finds each column's values in f.
func (s *schema) bind(f *frame.Frame, binds []binding) []binding {
	binds = binds[:0]
	for j := range s.cols {
		c := &s.cols[j]
		var b binding
		switch {
		case s.strict || plainKey(c.path):
			// A key of the row: the JSON path takes its first occurrence,
			// as this takes the first field column of the name.
			if col := fieldByKey(f, c.path); col != nil {
				b = binding{kind: bindColumn, col: col}
			}
		case intoValue(c.path):
			// A frame's values are scalars, which no path goes into.
		default:
			b.kind = bindJSON
		}
		binds = append(binds, b)
	}
	return binds
}

// fieldByKey is the first field column whose key in the row's JSON is key.
func fieldByKey(f *frame.Frame, key string) *frame.Column {
	for c := range f.Cols {
		if col := &f.Cols[c]; !col.Meta && jsonKey(col.Name) == key {
			return col
		}
	}
	return nil
}

// jsonKey is a field's name as read back from the row's JSON: the same
// unless it is not valid UTF-8, whose bad bytes the JSON spells U+FFFD.
func jsonKey(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	return string(jsonText([]byte(name)))
}

// jsonText is a string value as read back from the row's JSON: the same
// bytes unless they are not valid UTF-8.
func jsonText(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return []byte(gjson.ParseBytes(jsonstr.Append(nil, b)).Str)
}

// intoValue reports whether a gjson path is keys joined by dots, which goes
// into the value of its first key.
func intoValue(p string) bool {
	parts := strings.Split(p, ".")
	if len(parts) < 2 {
		return false
	}
	for _, k := range parts {
		if !plainKey(k) {
			return false
		}
	}
	return true
}

// extraField is the first field of f that the schema has no column for.
func (s *schema) extraField(f *frame.Frame) string {
	for c := range f.Cols {
		if col := &f.Cols[c]; !col.Meta {
			if _, ok := s.byKey[jsonKey(col.Name)]; !ok {
				return col.Name
			}
		}
	}
	return ""
}

// frameConv converts one frame's accepted rows.
type frameConv struct {
	s    *schema
	f    *frame.Frame
	idx  []int // the accepted rows
	vals []parquet.Value
	n    int // values per row
	sc   *scratch
	// The first failing row (a position in idx) and its error, and how
	// many rows fail.
	first   int
	err     error
	failing int
}

// frameRows converts f's accepted rows into vals, n = len(s.cols) values a
// row, and gives how many it wrote. If any row fails none counts, since
// the frame is one message, acknowledged or failed whole; the error names
// the first failing row, by its index in the frame, and its column.
func (s *schema) frameRows(f *frame.Frame, vals []parquet.Value, sc *scratch) (int, error) {
	sc.idx = acceptedRows(f, sc.idx[:0])
	if len(sc.idx) == 0 {
		return 0, nil
	}
	fc := s.convertRows(f, sc.idx, vals, sc)
	if fc.failing > 0 {
		return 0, frameError(fc.idx[fc.first], fc.err, fc.failing, len(fc.idx))
	}
	return len(sc.idx), nil
}

// checkFrame converts f's accepted rows a segment at a time into vals,
// which holds a segment, to find whether any cannot be written.
func (s *schema) checkFrame(f *frame.Frame, vals []parquet.Value, sc *scratch) error {
	sc.idx = acceptedRows(f, sc.idx[:0])
	idx := sc.idx
	failing, firstRow := 0, 0
	var first error
	for lo := 0; lo < len(idx); lo += segmentRows {
		seg := idx[lo:min(lo+segmentRows, len(idx))]
		fc := s.convertRows(f, seg, vals, sc)
		sc.text = sc.text[:0]
		if fc.failing > 0 && first == nil {
			firstRow, first = seg[fc.first], fc.err
		}
		failing += fc.failing
	}
	if failing > 0 {
		return frameError(firstRow, first, failing, len(idx))
	}
	return nil
}

// infallible reports whether every accepted row of f converts: each of
// the schema's columns optional and bound to a frame column whose type it
// takes as it is (or missing), no JSON path, no float field that is not
// finite, and, for a strict schema, no field it lacks. Such a frame needs
// no conversion before the one that writes it.
func (s *schema) infallible(f *frame.Frame, sc *scratch) bool {
	if s.strict && s.extraField(f) != "" {
		return false
	}
	for c := range f.Cols {
		col := &f.Cols[c]
		if col.Meta || col.Type != abi.TypeFloat {
			continue
		}
		for i := 0; i < f.Rows; i++ {
			if v := col.Float(i); !col.Null(i) && !f.Rejected(i) && (math.IsNaN(v) || math.IsInf(v, 0)) {
				return false
			}
		}
	}
	sc.binds = s.bind(f, sc.binds)
	for j, b := range sc.binds {
		c := &s.cols[j]
		if !c.optional || b.kind == bindJSON {
			return false
		}
		if b.kind == bindMissing {
			continue
		}
		switch t := b.col.Type; {
		case c.typ == typeString && t != abi.TypeString, // its JSON text
			c.typ == typeString && t == abi.TypeString,
			c.typ == typeInt64 && t == abi.TypeInt,
			c.typ == typeDouble && (t == abi.TypeInt || t == abi.TypeFloat),
			c.typ == typeBool && t == abi.TypeBool,
			c.typ == typeTimestamp && t == abi.TypeTime:
		default:
			return false
		}
	}
	return true
}

// acceptedRows appends the indexes of f's accepted rows to idx.
func acceptedRows(f *frame.Frame, idx []int) []int {
	for i := 0; i < f.Rows; i++ {
		if !f.Rejected(i) {
			idx = append(idx, i)
		}
	}
	return idx
}

// frameError is a frame's failure: its first failing row and why, and how
// many of its rows fail.
func frameError(row int, err error, failing, accepted int) error {
	return fmt.Errorf("frame row %d: %w (%d of the frame's %d accepted rows fail; none of its rows is written)", row, err, failing, accepted)
}

// convertRows converts the rows idx of f into vals, n = len(s.cols) values
// a row, and says which fail.
func (s *schema) convertRows(f *frame.Frame, idx []int, vals []parquet.Value, sc *scratch) *frameConv {
	if cap(sc.bad) < len(idx) {
		sc.bad = make([]bool, len(idx))
	}
	sc.bad = sc.bad[:len(idx)]
	clear(sc.bad)
	fc := &frameConv{s: s, f: f, idx: idx, vals: vals, n: len(s.cols), sc: sc, first: len(idx)}
	// A row whose JSON would not parse fails before any column is read.
	fc.checkFinite()
	if s.strict {
		if name := s.extraField(f); name != "" {
			for k := range idx {
				fc.fail(k, errExtraField(name))
			}
			return fc
		}
	}
	sc.binds = s.bind(f, sc.binds)
	for _, b := range sc.binds {
		if b.kind == bindJSON {
			fc.rowsJSON()
			break
		}
	}
	// Column by column, each in a loop of its own types, but a chunk of
	// rows at a time: the rows' values, stored across, stay in cache
	// until all their columns are in.
	const chunk = 256
	for lo := 0; lo < len(idx); lo += chunk {
		hi := min(lo+chunk, len(idx))
		for j, b := range sc.binds {
			c := &s.cols[j]
			switch b.kind {
			case bindMissing:
				for k := lo; k < hi; k++ {
					fc.null(c, j, k)
				}
			case bindColumn:
				fc.column(c, j, b.col, lo, hi)
			case bindJSON:
				fc.byPath(c, j, lo, hi)
			}
		}
	}
	return fc
}

// fail records that row k fails. The columns are converted in order, so a
// row's first error is its first column's, as on the JSON path.
func (fc *frameConv) fail(k int, err error) {
	if !fc.sc.bad[k] {
		fc.sc.bad[k] = true
		fc.failing++
	}
	if k < fc.first {
		fc.first, fc.err = k, err
	}
}

// checkFinite fails the rows with a NaN or an infinity in a field: the
// row's JSON would spell it NaN or +Inf, which is not JSON.
func (fc *frameConv) checkFinite() {
	for c := range fc.f.Cols {
		col := &fc.f.Cols[c]
		if col.Meta || col.Type != abi.TypeFloat {
			continue
		}
		for k, i := range fc.idx {
			if v := col.Float(i); !col.Null(i) && (math.IsNaN(v) || math.IsInf(v, 0)) {
				fc.fail(k, fmt.Errorf("not valid JSON: field %q is %v, which a JSON row cannot hold", col.Name, v))
			}
		}
	}
}

// null sets row k of column j to null, or fails the row if the column is
// not optional.
func (fc *frameConv) null(c *column, j, k int) {
	if !c.optional {
		fc.fail(k, errNoValue(c))
		return
	}
	fc.vals[k*fc.n+j] = parquet.NullValue().Level(0, 0, j)
}

// put sets row k of column j.
func (fc *frameConv) put(c *column, j, k int, v parquet.Value) {
	def := 0
	if c.optional {
		def = 1
	}
	fc.vals[k*fc.n+j] = v.Level(0, def, j)
}

// convFailed fails row k for column c's value at frame row i.
func (fc *frameConv) convFailed(c *column, k int, col *frame.Column, i int, err error) {
	fc.sc.one = col.AppendJSON(fc.sc.one[:0], i)
	fc.fail(k, errValue(c, string(fc.sc.one), err))
}

// column converts column j of the schema from the frame's column col, for
// the accepted rows idx[lo:hi].
func (fc *frameConv) column(c *column, j int, col *frame.Column, lo, hi int) {
	idx, sc := fc.idx, fc.sc
	switch {
	case c.typ == typeString && col.Type == abi.TypeString:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// The frame's bytes, not a copy: the writer copies them, and the
			// message is not modified while its batch is written.
			fc.put(c, j, k, parquet.ByteArrayValue(jsonText(col.Bytes(i))))
		}
	case c.typ == typeString:
		// Not a string: its JSON text, as convString keeps it.
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			start := len(sc.text)
			switch col.Type {
			case abi.TypeInt:
				sc.text = strconv.AppendInt(sc.text, col.Int(i), 10)
			case abi.TypeFloat:
				sc.text = jsonnum.AppendFloat(sc.text, col.Float(i))
			case abi.TypeBool:
				sc.text = strconv.AppendBool(sc.text, col.Bool(i))
			case abi.TypeTime:
				sc.text = time.Unix(0, col.Int(i)).UTC().AppendFormat(sc.text, time.RFC3339Nano)
			}
			// Capped, so that a later append cannot write into it.
			fc.put(c, j, k, parquet.ByteArrayValue(sc.text[start:len(sc.text):len(sc.text)]))
		}
	case col.Type == abi.TypeString:
		// What a JSON string gives: the conversions read only Str.
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			b := jsonText(col.Bytes(i))
			v, err := c.conv(gjson.Result{Type: gjson.String, Str: unsafe.String(unsafe.SliceData(b), len(b))})
			if err != nil {
				fc.convFailed(c, k, col, i, err)
				continue
			}
			fc.put(c, j, k, v)
		}
	case c.typ == typeInt64 && col.Type == abi.TypeInt:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			fc.put(c, j, k, parquet.Int64Value(col.Int(i)))
		}
	case c.typ == typeInt64 && col.Type == abi.TypeFloat:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// convInt64's own fast path; the rest through the JSON text,
			// whose shortest spelling of a large float decides the integer.
			if f := col.Float(i); f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				fc.put(c, j, k, parquet.Int64Value(int64(f)))
				continue
			}
			fc.viaJSON(c, j, k, col, i)
		}
	case c.typ == typeDouble && col.Type == abi.TypeInt:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// Both this and gjson's ParseFloat of the digits round to
			// nearest.
			fc.put(c, j, k, parquet.DoubleValue(float64(col.Int(i))))
		}
	case c.typ == typeDouble && col.Type == abi.TypeFloat:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// The JSON spelling is the shortest that reads back the same.
			fc.put(c, j, k, parquet.DoubleValue(col.Float(i)))
		}
	case c.typ == typeBool && col.Type == abi.TypeBool:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			fc.put(c, j, k, parquet.BooleanValue(col.Bool(i)))
		}
	case c.typ == typeTimestamp && col.Type == abi.TypeTime:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// RFC 3339 with nanoseconds reads back the same instant.
			fc.put(c, j, k, parquet.Int64Value(time.Unix(0, col.Int(i)).UnixMicro()))
		}
	case c.typ == typeTimestamp && col.Type == abi.TypeInt:
		const limit = math.MaxInt64 / 1_000_000
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// Epoch seconds, as epochMicros reads the digits.
			if n := col.Int(i); n <= limit && n >= -limit {
				fc.put(c, j, k, parquet.Int64Value(n*1e6))
				continue
			}
			fc.viaJSON(c, j, k, col, i)
		}
	case c.typ == typeTimestamp && col.Type == abi.TypeFloat:
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// Epoch seconds read from the JSON text, as convTimestamp does:
			// f*1e6 in floating point can differ from it.
			sc.one = jsonnum.AppendFloat(sc.one[:0], col.Float(i))
			if us, ok := epochMicros(unsafe.String(unsafe.SliceData(sc.one), len(sc.one))); ok {
				fc.put(c, j, k, parquet.Int64Value(us))
				continue
			}
			fc.viaJSON(c, j, k, col, i)
		}
	case c.typ == typeDate && col.Type == abi.TypeTime:
		const day = 86400 * int64(time.Second)
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			// The calendar date of the UTC time the JSON spells.
			ns := col.Int(i)
			d := ns / day
			if ns%day < 0 {
				d--
			}
			fc.put(c, j, k, parquet.Int32Value(int32(d)))
		}
	default:
		// Every other pairing (a bool as an int64, a number as a date)
		// fails on the JSON path, or is too rare to deserve its own code.
		for k := lo; k < hi; k++ {
			i := idx[k]
			if col.Null(i) {
				fc.null(c, j, k)
				continue
			}
			fc.viaJSON(c, j, k, col, i)
		}
	}
}

// viaJSON converts the value at frame row i through its JSON, with the
// JSON path's conversion.
func (fc *frameConv) viaJSON(c *column, j, k int, col *frame.Column, i int) {
	fc.sc.one = col.AppendJSON(fc.sc.one[:0], i)
	v := gjson.Parse(unsafe.String(unsafe.SliceData(fc.sc.one), len(fc.sc.one)))
	// The conversions copy what they keep of v.
	pv, err := c.conv(v)
	if err != nil {
		fc.fail(k, errValue(c, v.Raw, err))
		return
	}
	fc.put(c, j, k, pv)
}

// rowsJSON renders the accepted rows' JSON, for the columns whose path
// cannot be followed in the frame itself.
func (fc *frameConv) rowsJSON() {
	sc := fc.sc
	sc.json, sc.jsonEnd = sc.json[:0], sc.jsonEnd[:0]
	for _, i := range fc.idx {
		sc.json = fc.f.AppendRowJSON(sc.json, i)
		sc.jsonEnd = append(sc.jsonEnd, len(sc.json))
	}
}

// byPath converts column j by following its path in each row's JSON, as
// schema.row does, for the accepted rows idx[lo:hi].
func (fc *frameConv) byPath(c *column, j, lo, hi int) {
	sc := fc.sc
	start := 0
	if lo > 0 {
		start = sc.jsonEnd[lo-1]
	}
	for k := lo; k < hi; k++ {
		end := sc.jsonEnd[k]
		js := sc.json[start:end]
		start = end
		v := gjson.Get(unsafe.String(unsafe.SliceData(js), len(js)), c.path)
		if !v.Exists() || v.Type == gjson.Null {
			fc.null(c, j, k)
			continue
		}
		pv, err := c.conv(v)
		if err != nil {
			fc.fail(k, errValue(c, v.Raw, err))
			continue
		}
		fc.put(c, j, k, pv)
	}
}

// The errors shared with the JSON path, so that a row fails alike as a
// JSON message and in a frame.

func errNoValue(c *column) error {
	return fmt.Errorf("column %q: no value at path %q, and the column is not optional", c.name, c.path)
}

func errValue(c *column, raw string, err error) error {
	return fmt.Errorf("column %q: value %s %w", c.name, clip(raw), err)
}

func errExtraField(name string) error {
	return fmt.Errorf("field %q is not in the schema inferred from the first message (list the columns under `columns` to accept it)", name)
}
