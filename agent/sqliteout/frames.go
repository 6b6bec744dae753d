package sqliteout

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// A message whose body is a frame (agent/frame) carries many rows as typed
// columns. Its accepted rows are loaded, its rejected ones left to whatever
// unframes them to a rejects output, and its metadata columns are not
// fields. Each cell is converted straight from its column by the rules the
// same value meets in a JSON message of the row (Frame.AppendRowJSON): the
// table is the same whichever way the rows came, while rendering each row
// as JSON to parse it again would cost most of what a frame saves.

// source is one message of a batch: a JSON row, or a frame of rows.
type source struct {
	body  []byte
	frame *frame.Frame // nil for a JSON message
	start int          // the index of its first row among the batch's rows
	rows  int          // 1, or the frame's accepted rows
	err   error        // the body could not be read, or is a malformed frame
}

// readSources reads the batch's messages into buf, decoding frames, and
// counts the rows they hold.
func readSources(batch service.MessageBatch, buf []source) ([]source, int) {
	srcs := slices.Grow(buf[:0], len(batch))[:len(batch)]
	clear(srcs)
	total := 0
	for i, msg := range batch {
		src := &srcs[i]
		src.start = total
		src.body, src.err = msg.AsBytes()
		switch {
		case src.err != nil:
			src.err = fmt.Errorf("reading the message: %w", src.err)
		case frame.Is(src.body):
			if src.frame, src.err = frame.Decode(src.body); src.err == nil {
				src.rows = src.frame.Accepted()
			}
		default:
			src.rows = 1
		}
		total += src.rows
	}
	return srcs, total
}

// firstRow is the index of the source that holds the batch's first row (or
// failed to be read), or -1 when the batch holds only frames of rejected
// rows.
func firstRow(srcs []source) int {
	for i := range srcs {
		if srcs[i].err != nil || srcs[i].rows > 0 {
			return i
		}
	}
	return -1
}

// where names row k of the batch's rows (in insertRows' order) by its
// message and, in a frame, its row there; it returns the message's index.
func where(srcs []source, k int) (int, string) {
	i := sort.Search(len(srcs), func(i int) bool { return srcs[i].start+srcs[i].rows > k })
	if i == len(srcs) {
		return 0, fmt.Sprintf("row %d", k)
	}
	src := &srcs[i]
	if src.frame == nil {
		return i, fmt.Sprintf("message %d", i)
	}
	r, left := 0, k-src.start
	for ; r < src.frame.Rows; r++ {
		if src.frame.Rejected(r) {
			continue
		}
		if left == 0 {
			break
		}
		left--
	}
	return i, fmt.Sprintf("message %d: frame row %d", i, r)
}

// frameFields are the names of a frame's fields, in order, as the keys of
// its first accepted row's JSON.
func frameFields(f *frame.Frame) ([]string, error) {
	floats := floatFields(f)
	var names []string
	for r := 0; r < f.Rows; r++ {
		if f.Rejected(r) {
			continue
		}
		if err := jsonable(f, floats, r); err != nil {
			return nil, fmt.Errorf("frame row %d: %w, so no columns can be inferred from it", r, err)
		}
		for c := range f.Cols {
			if !f.Cols[c].Meta {
				names = append(names, f.Cols[c].Name)
			}
		}
		break
	}
	return names, nil
}

// widenFrame widens the inferred columns by the values of the frame's
// accepted rows, row by row as a JSON message each would: a row JSON
// cannot hold (a NaN) is skipped, as a message that is no JSON is.
func widenFrame(cols []column, index map[string]int, f *frame.Frame) {
	floats := floatFields(f)
	for r := 0; r < f.Rows; r++ {
		if f.Rejected(r) || jsonable(f, floats, r) != nil {
			continue
		}
		for c := range f.Cols {
			fc := &f.Cols[c]
			if fc.Meta {
				continue
			}
			if i, ok := index[fc.Name]; ok {
				cols[i].typ = widen(cols[i].typ, cellType(fc, r))
			}
		}
	}
}

// cellType is inferType of the cell as JSON gives it.
func cellType(fc *frame.Column, r int) colType {
	if fc.Null(r) {
		return typeAny
	}
	switch fc.Type {
	case abi.TypeInt:
		return typeInteger
	case abi.TypeFloat:
		// JSON writes a whole float with no fraction, so it reads as an
		// integer, as a round price in a JSON message does.
		x := fc.Float(r)
		switch {
		case x != math.Trunc(x):
			return typeReal
		case math.Abs(x) < 1<<53:
			return typeInteger
		}
		if _, err := strconv.ParseInt(string(fc.AppendJSON(nil, r)), 10, 64); err == nil {
			return typeInteger
		}
		return typeReal
	case abi.TypeBool:
		return typeBoolean
	case abi.TypeString, abi.TypeTime:
		return typeText // a time is an RFC 3339 string in JSON
	}
	// A type this output predates: whatever its JSON says.
	return inferType(gjson.Parse(string(fc.AppendJSON(nil, r))))
}

// floatFields are the indexes of a frame's float fields, the only cells
// JSON may not be able to hold.
func floatFields(f *frame.Frame) []int {
	var out []int
	for c := range f.Cols {
		if !f.Cols[c].Meta && f.Cols[c].Type == abi.TypeFloat {
			out = append(out, c)
		}
	}
	return out
}

// jsonable fails row r if a float of it is NaN or infinite: JSON has no
// such numbers, so the row's JSON (Frame.AppendRowJSON) is no JSON object,
// and a JSON message of it would fail.
func jsonable(f *frame.Frame, floats []int, r int) error {
	for _, c := range floats {
		fc := &f.Cols[c]
		if fc.Null(r) {
			continue
		}
		if x := fc.Float(r); math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("column %q: value %v is no JSON number, so the row is not a JSON object", fc.Name, x)
		}
	}
	return nil
}

// stepKind is what a step of a framePlan does.
type stepKind uint8

const (
	// stepCell converts the frame's column src into the schema's dst.
	stepCell stepKind = iota
	// stepUnknown fails the row: the frame's field src is no column.
	stepUnknown
	// stepPath reads the schema's column dst at its gjson path from the
	// row's JSON: a path that is more than a field's name.
	stepPath
)

type step struct {
	kind     stepKind
	src, dst int
}

// framePlan is how the rows of one frame become a schema's values, worked
// out once for the frame: the steps run in the order the JSON path meets
// the same fields, so that a row failing for two reasons fails for the
// same one.
type framePlan struct {
	steps  []step
	floats []int
	// json: some step reads the row's JSON.
	json bool
}

func (s *schema) planFrame(f *frame.Frame) framePlan {
	p := framePlan{floats: floatFields(f)}
	switch {
	case s.byField || s.direct != nil:
		// As row's one pass over the fields: each field in order, the
		// first of a name counts, and (by field) a field that is no column
		// fails the row, which ends the steps.
		seen := make([]bool, len(s.cols))
		for c := range f.Cols {
			fc := &f.Cols[c]
			if fc.Meta {
				continue
			}
			var i int
			var ok bool
			if s.byField {
				if i, ok = s.index[strings.ToLower(fc.Name)]; !ok {
					p.steps = append(p.steps, step{kind: stepUnknown, src: c})
					return p
				}
			} else if i, ok = s.direct[fc.Name]; !ok {
				continue // not a column: ignored
			}
			if seen[i] {
				continue
			}
			seen[i] = true
			p.steps = append(p.steps, step{kind: stepCell, src: c, dst: i})
		}
	default:
		// Column by column at its path. A path that is an identifier reads
		// the first field of that name; any other is gjson's to interpret,
		// on the row's JSON.
		for i, c := range s.cols {
			if !isIdent(c.path) {
				p.steps = append(p.steps, step{kind: stepPath, dst: i})
				p.json = true
				continue
			}
			for j := range f.Cols {
				if !f.Cols[j].Meta && f.Cols[j].Name == c.path {
					p.steps = append(p.steps, step{kind: stepCell, src: j, dst: i})
					break
				}
			}
		}
	}
	return p
}

// frameRows converts the frame's accepted rows into dst, len(s.cols)
// values a row; an error names the frame row that failed.
func (s *schema) frameRows(f *frame.Frame, dst []val, a *arena) error {
	p := s.planFrame(f)
	n := len(s.cols)
	k := 0
	for r := 0; r < f.Rows; r++ {
		if f.Rejected(r) {
			continue
		}
		if err := s.frameRow(f, &p, r, dst[k*n:(k+1)*n], a); err != nil {
			return fmt.Errorf("frame row %d: %w", r, err)
		}
		k++
	}
	return nil
}

// frameRow converts row r of the frame into dst, as row converts the row's
// JSON message.
func (s *schema) frameRow(f *frame.Frame, p *framePlan, r int, dst []val, a *arena) error {
	if err := jsonable(f, p.floats, r); err != nil {
		return err
	}
	clear(dst)
	var doc string
	if p.json {
		start := len(a.buf)
		a.buf = f.AppendRowJSON(a.buf, r)
		doc = a.since(start)
	}
	for _, st := range p.steps {
		switch st.kind {
		case stepUnknown:
			return fmt.Errorf("field %q is not a column of the table (its columns are %s)", f.Cols[st.src].Name, columnNames(s.cols))
		case stepPath:
			c := &s.cols[st.dst]
			if err := c.value(gjson.Get(doc, c.path), &dst[st.dst]); err != nil {
				return err
			}
		default:
			c, fc := &s.cols[st.dst], &f.Cols[st.src]
			v, ok := cellVal(c, fc, r, a)
			if !ok {
				return c.bad(string(fc.AppendJSON(nil, r)))
			}
			dst[st.dst] = v
		}
	}
	return s.checkKey(dst, func() string { return string(f.AppendRowJSON(nil, r)) })
}

// cellVal converts row r of fc for the column c as c.value converts the
// JSON value AppendJSON writes for it: the common pairs directly, the rest
// through that JSON's text. Null cells are NULL.
func cellVal(c *column, fc *frame.Column, r int, a *arena) (val, bool) {
	if fc.Null(r) {
		return val{}, true
	}
	switch fc.Type {
	case abi.TypeInt:
		n := fc.Int(r)
		switch c.typ {
		case typeInteger, typeAny:
			return intVal(n), true
		case typeReal:
			// As strconv.ParseFloat reads the integer: both round to the
			// nearest float.
			return realVal(float64(n)), true
		case typeBoolean:
			return intVal(n), n == 0 || n == 1
		}
		return c.fromNumber(a.json(fc, r))
	case abi.TypeFloat:
		x := fc.Float(r)
		if c.typ == typeReal {
			// JSON writes the shortest text that reads back as x.
			return realVal(x), true
		}
		whole := x == math.Trunc(x)
		switch {
		case whole && math.Abs(x) < 1<<53:
			// Written with no fraction and every digit exact, so it reads
			// as the integer int64(x).
			switch c.typ {
			case typeInteger, typeAny:
				return intVal(int64(x)), true
			case typeBoolean:
				return intVal(int64(x)), x == 0 || x == 1
			}
		case !whole:
			switch c.typ {
			case typeInteger, typeBoolean:
				return val{}, false
			case typeAny:
				return realVal(x), true
			}
		}
		return c.fromNumber(a.json(fc, r))
	case abi.TypeBool:
		return c.fromBool(fc.Bool(r))
	case abi.TypeTime:
		start := len(a.buf)
		a.buf = fc.AppendText(a.buf, r)
		s := a.since(start)
		if c.typ == typeTimestamp {
			// Already RFC 3339 in UTC, which is what parsing it and
			// formatting it again would give.
			return textVal(s), true
		}
		return c.fromString(s)
	case abi.TypeString:
		return c.fromString(a.jsonString(fc.Bytes(r)))
	}
	// A type this output predates: through its JSON, slowly but alike.
	return c.convert(gjson.Parse(a.json(fc, r)))
}

// arena holds the text of a batch's converted values that are not in its
// messages' bodies (a number for a TEXT column, a time), one buffer for all
// of them instead of a string each. Appending never changes bytes already
// handed out: a full buffer is replaced, and the strings in the old one
// keep it alive.
type arena struct{ buf []byte }

// since is what was appended from start on, as a string.
func (a *arena) since(start int) string {
	if len(a.buf) == start {
		return ""
	}
	return unsafe.String(&a.buf[start], len(a.buf)-start)
}

// json is row r of fc as AppendJSON writes it.
func (a *arena) json(fc *frame.Column, r int) string {
	start := len(a.buf)
	a.buf = fc.AppendJSON(a.buf, r)
	return a.since(start)
}

// jsonString is the string a JSON reader gets back from b written as a JSON
// string: b itself (aliasing the message's body, as the JSON path's values
// do) when it is valid UTF-8, and otherwise with each invalid byte U+FFFD,
// as the JSON writer (jsonstr) spells it.
func (a *arena) jsonString(b []byte) string {
	if utf8.Valid(b) {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	start := len(a.buf)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		a.buf = utf8.AppendRune(a.buf, r)
		b = b[size:]
	}
	return a.since(start)
}
