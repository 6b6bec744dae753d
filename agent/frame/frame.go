// Package frame is the agent's columnar batch: many rows in one Benthos
// message, as typed columns in the plugin ABI's column layout
// (plugins/sdk/ABI.md §8.4), with a reason per rejected row.
//
// A row per message costs every step its own message, metadata map,
// context and tracing span, and costs every step and output a JSON parse
// of the row. For bounded batch jobs (the sales ETL) that overhead is most
// of the run: csv_file with `frames: true` reads a batch of rows into one
// frame, the wasm processor hands a frame's columns to a columns-mode
// plugin without parsing anything, and the sqlite and parquet outputs
// bind and write columns. `unframe` turns a frame back into one JSON
// message per row for any other Benthos component.
//
// A rejected row stays in its frame, with its reason and its original
// bytes (csv_file's csv_raw metadata column), so nothing is lost: outputs
// that load rows skip it and `unframe: {rows: rejected}` hands it on as an
// errored message, e.g. to a rejects file.
//
// Encoding, little-endian throughout:
//
//	magic (8 bytes) | rows u32 | columns u32
//	per column: type u8 | flags u8 (1 = metadata, 2 = the rows' original
//	  bytes, 4 = constant: one row's value stands for every row) |
//	  name length u16 | name (a constant column stores its one value even in
//	  a frame of no rows)
//	padding to 8
//	reasons: a string column; valid is 0 for a row not rejected, 1 for a
//	  row rejected by a step (its values stand), 2 for a row rejected
//	  before it had values (csv_file's rejects: only its raw bytes)
//	each column in the ABI layout (abi.AppendColumn)
//	then zero or more patches, each what one step changed (patch.go)
//
// A decoded Frame aliases the message body it was read from. A step
// writes its changes with Update: as a patch after the body, in the same
// buffer when there is room, rather than encoding the frame anew.
package frame

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// Magic starts every encoded frame. A JSON or CSV body cannot start with
// a NUL byte, so a frame is told from a row by its first bytes.
const Magic = "\x00sluicef"

// Is reports whether body is an encoded frame.
func Is(body []byte) bool { return bytes.HasPrefix(body, []byte(Magic)) }

// Column flags.
const (
	// flagMeta marks a column that is per-row metadata (csv_file,
	// csv_line, csv_raw, what a plugin set with SetMeta) rather than a
	// field of the row.
	flagMeta = 1
	// flagRaw marks the metadata column holding each row's original bytes
	// (csv_raw): a rejected row unframes to them, as a rejected row that
	// travelled alone would have carried them as its body.
	flagRaw = 2
	// flagConst marks a column with one value for every row (the file a
	// frame's rows came from), stored once.
	flagConst = 4
)

// Column is one named column of a frame.
type Column struct {
	Name string
	// Meta is true for per-row metadata: unframe sets it as the message's
	// metadata, and outputs that load fields do not see it.
	Meta bool
	// Raw marks the metadata column of each row's original bytes.
	Raw bool
	// Const marks a column stored as one row that stands for every row;
	// a frame of no rows stores it too, so it still says which file it
	// is of.
	Const bool
	abi.Column
	// set marks a column Set since decoding, for Update's patch.
	set bool
}

// at is where row i is stored.
func (c *Column) at(i int) int {
	if c.Const {
		return 0
	}
	return i
}

// Validity bytes of a frame column's rows. The ABI's columns have 0 and
// 1; a frame also tells a field the row lacks from a null, as a JSON row
// would.
const (
	validNull   = 0
	validValue  = 1
	validAbsent = 2
)

// Null reports whether row i has no value: null or absent.
func (c *Column) Null(i int) bool { return c.Valid[c.at(i)] != validValue }

// Absent reports whether row i lacks the field altogether (a step that
// adds it did not set it for this row), as opposed to holding null.
func (c *Column) Absent(i int) bool { return c.Valid[c.at(i)] == validAbsent }

// Int is row i of an int or time column.
func (c *Column) Int(i int) int64 { return int64(binary.LittleEndian.Uint64(c.Fixed[c.at(i)*8:])) }

// Float is row i of a float column.
func (c *Column) Float(i int) float64 {
	return math.Float64frombits(binary.LittleEndian.Uint64(c.Fixed[c.at(i)*8:]))
}

// Bool is row i of a bool column.
func (c *Column) Bool(i int) bool { return c.Fixed[c.at(i)] != 0 }

// Bytes is row i of a string column, aliasing the frame.
func (c *Column) Bytes(i int) []byte {
	i = c.at(i)
	lo := binary.LittleEndian.Uint32(c.Offs[i*4:])
	hi := binary.LittleEndian.Uint32(c.Offs[i*4+4:])
	return c.Data[lo:hi:hi]
}

// Value is row i in the ABI's column parts: the 8 or 1 fixed bytes of a
// fixed-width type as a number, or a string's bytes (aliasing the frame).
func (c *Column) Value(i int) (fixed uint64, s []byte) {
	switch c.Type.Fixed() {
	case 8:
		return uint64(c.Int(i)), nil
	case 1:
		return uint64(c.Fixed[c.at(i)]), nil
	}
	return 0, c.Bytes(i)
}

// AppendJSON appends row i's value as JSON: null when it has none,
// numbers as the agent spells them everywhere (jsonnum.AppendFloat),
// times as RFC 3339 strings.
func (c *Column) AppendJSON(dst []byte, i int) []byte {
	if c.Null(i) {
		return append(dst, "null"...)
	}
	switch c.Type {
	case abi.TypeInt:
		return strconv.AppendInt(dst, c.Int(i), 10)
	case abi.TypeFloat:
		return jsonnum.AppendFloat(dst, c.Float(i))
	case abi.TypeBool:
		return strconv.AppendBool(dst, c.Bool(i))
	case abi.TypeTime:
		dst = append(dst, '"')
		dst = time.Unix(0, c.Int(i)).UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	}
	return jsonstr.Append(dst, string(c.Bytes(i)))
}

// AppendText appends row i's value as text: strings as they are, other
// values as AppendJSON spells them; nothing for a null.
func (c *Column) AppendText(dst []byte, i int) []byte {
	switch {
	case c.Null(i):
		return dst
	case c.Type == abi.TypeString:
		return append(dst, c.Bytes(i)...)
	case c.Type == abi.TypeTime:
		return time.Unix(0, c.Int(i)).UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	return c.AppendJSON(dst, i)
}

// Frame is a decoded frame. Reject and Set change it in memory; Append
// writes the changed frame.
type Frame struct {
	Rows int
	Cols []Column

	reasons Column
	// rejected holds reasons given after the frame's reasons column, by
	// row, and late says for each row where its reason came from (0: none
	// of these): a row's check, made for every row by every step, is then
	// a byte and not a map lookup.
	rejected map[int]string
	late     []byte
}

// Where a late reason came from.
const (
	lateFromPatch     = 1 // one of the body's patches
	lateSinceDecoding = 2 // Reject: a change, for Update's patch
)

// addLate records reason as row i's, given after the reasons column.
func (f *Frame) addLate(i int, reason string, from byte) {
	if f.rejected == nil {
		f.rejected, f.late = map[int]string{}, make([]byte, f.Rows)
	}
	f.rejected[i], f.late[i] = reason, from
}

// Decode reads an encoded frame. The frame aliases body.
func Decode(body []byte) (*Frame, error) {
	if !Is(body) {
		return nil, fmt.Errorf("not a frame: the body does not start with the frame magic")
	}
	r := abi.NewReader(body)
	r.Raw(len(Magic))
	f := &Frame{Rows: int(r.U32())}
	n := int(r.U32())
	if r.Err() == nil && (n > 1<<16 || f.Rows > len(body)) {
		return nil, fmt.Errorf("malformed frame: %d rows, %d columns in %d bytes", f.Rows, n, len(body))
	}
	f.Cols = make([]Column, n)
	for c := range f.Cols {
		if err := readColumnHeader(r, &f.Cols[c]); err != nil {
			return nil, err
		}
	}
	r.Align8()
	f.reasons.Column = abi.ReadColumn(r, abi.TypeString, f.Rows)
	for c := range f.Cols {
		f.Cols[c].Column = abi.ReadColumn(r, f.Cols[c].Type, f.Cols[c].stored(f.Rows))
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("malformed frame: %w", err)
	}
	// Offsets are checked once here so readers can index without checks.
	if err := checkOffsets(f.reasons.Column, f.Rows); err != nil {
		return nil, err
	}
	for c := range f.Cols {
		if err := checkOffsets(f.Cols[c].Column, f.Cols[c].stored(f.Rows)); err != nil {
			return nil, err
		}
	}
	if err := f.readPatches(r); err != nil {
		return nil, err
	}
	return f, nil
}

// readColumnHeader reads a column's type, flags and name.
func readColumnHeader(r *abi.Reader, col *Column) error {
	col.Type = abi.Type(r.U8())
	flags := r.U8()
	col.Meta, col.Raw, col.Const = flags&flagMeta != 0, flags&flagRaw != 0, flags&flagConst != 0
	col.Name = string(r.Raw(int(r.U16())))
	if r.Err() == nil && (col.Type < abi.TypeInt || col.Type > abi.TypeTime) {
		return fmt.Errorf("malformed frame: column %q has type %d", col.Name, col.Type)
	}
	return nil
}

// checkOffsets checks a string column's offsets, of rows rows, are in
// order. (ReadColumn reads as much data as the last offset says, so in
// order they are within it.)
func checkOffsets(col abi.Column, rows int) error {
	if col.Type.Fixed() != 0 {
		return nil
	}
	if i := abi.StepBack(col.Offs, rows); i >= 0 {
		return fmt.Errorf("malformed frame: string offsets out of order at row %d", i+1)
	}
	return nil
}

// stored is how many rows the column stores of a frame of rows.
func (c *Column) stored(rows int) int {
	if c.Const {
		return 1
	}
	return rows
}

// Col returns the column named name, field or metadata, or nil.
func (f *Frame) Col(name string) *Column {
	for c := range f.Cols {
		if f.Cols[c].Name == name {
			return &f.Cols[c]
		}
	}
	return nil
}

// Field returns the field (not metadata) column named name, or nil.
func (f *Frame) Field(name string) *Column {
	for c := range f.Cols {
		if f.Cols[c].Name == name && !f.Cols[c].Meta {
			return &f.Cols[c]
		}
	}
	return nil
}

// Reason returns why row i was rejected, or false if it was not.
func (f *Frame) Reason(i int) (string, bool) {
	if f.late != nil && f.late[i] != 0 {
		return f.rejected[i], true
	}
	if f.reasons.Valid[i] == 0 {
		return "", false
	}
	return string(f.reasons.Bytes(i)), true
}

// Rejected reports whether row i was rejected.
func (f *Frame) Rejected(i int) bool {
	return f.reasons.Valid[i] != 0 || f.late != nil && f.late[i] != 0
}

// Accepted counts the rows not rejected.
func (f *Frame) Accepted() int {
	n := 0
	for i := 0; i < f.Rows; i++ {
		if !f.Rejected(i) {
			n++
		}
	}
	return n
}

// Unread reports whether row i was rejected before it had values: it is
// its original bytes (the raw column) and a reason.
func (f *Frame) Unread(i int) bool {
	later := f.late != nil && f.late[i] != 0
	return !later && f.reasons.Valid[i] == reasonUnread
}

// Reasons' validity bytes.
const (
	reasonRejected = 1
	reasonUnread   = 2
)

// Reject marks row i rejected with reason. A row keeps its first reason.
func (f *Frame) Reject(i int, reason string) {
	if f.Rejected(i) {
		return
	}
	f.addLate(i, reason, lateSinceDecoding)
}

// Set adds col, or replaces the column of the same name and kind.
func (f *Frame) Set(col Column) {
	col.set = true
	f.replace(col)
}

// replace is Set for a column of the encoding, not a change.
func (f *Frame) replace(col Column) {
	for c := range f.Cols {
		if f.Cols[c].Name == col.Name && f.Cols[c].Meta == col.Meta {
			f.Cols[c] = col
			return
		}
	}
	f.Cols = append(f.Cols, col)
}

// AppendRowJSON appends row i's fields as one JSON object in column order,
// as the row would be if it had travelled as a JSON message.
func (f *Frame) AppendRowJSON(dst []byte, i int) []byte {
	dst = append(dst, '{')
	first := true
	for c := range f.Cols {
		col := &f.Cols[c]
		if col.Meta || col.Absent(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(jsonstr.Append(dst, col.Name), ':')
		dst = col.AppendJSON(dst, i)
	}
	return append(dst, '}')
}

// Append encodes the frame after dst, leaving out the rows keep says
// false to (all rows are kept if keep is nil).
func (f *Frame) Append(dst []byte, keep []bool) []byte {
	rows := f.Rows
	if keep != nil {
		rows = 0
		for _, k := range keep {
			if k {
				rows++
			}
		}
	}
	// Sized once: a frame is large, and growing it by doubling copies it
	// several times and leaves the garbage to the collector.
	w := abi.Writer{Buf: grow(dst, f.sizeBound(rows))}
	base := len(dst)
	appendHeader(&w, base, rows, len(f.Cols), func(c int) (string, abi.Type, uint8) {
		col := &f.Cols[c]
		return col.Name, col.Type, flagsOf(col.Meta, col.Raw, col.Const)
	})
	switch {
	case len(f.rejected) == 0:
		appendColumn(&w, base, &f.reasons, f.Rows, keep)
	case keep == nil:
		f.appendReasons(&w, base)
	default:
		// The reasons column, with the reasons given since decoding.
		reasons := Builder{Type: abi.TypeString}
		reasons.Grow(rows, len(f.reasons.Data))
		for i := 0; i < f.Rows; i++ {
			if keep != nil && !keep[i] {
				continue
			}
			if s, ok := f.Reason(i); ok {
				reasons.Text(s)
				if f.Unread(i) {
					reasons.valid[len(reasons.valid)-1] = reasonUnread
				}
			} else {
				reasons.Null()
			}
		}
		reasons.append(&w, base)
	}
	for c := range f.Cols {
		appendColumn(&w, base, &f.Cols[c], f.Rows, keep)
	}
	return w.Buf
}

// appendReasons writes the reasons column of all rows with the reasons
// given since decoding merged in. A step rejects a few rows of thousands:
// the rows between two of them are copied as they were, their offsets
// moved by the reasons written before them, rather than rebuilt a row at a
// time through the map.
func (f *Frame) appendReasons(w *abi.Writer, base int) {
	late := make([]int, 0, len(f.rejected))
	for i := range f.rejected {
		late = append(late, i)
	}
	slices.Sort(late)
	start := len(w.Buf)
	w.Raw(f.reasons.Valid[:f.Rows])
	for _, i := range late {
		w.Buf[start+i] = reasonRejected
	}
	align(w, base)
	// Offsets: row i's old offset plus the late reasons of rows before it.
	// A row rejected late had no reason before, so its old span is empty
	// and its reason goes where that span starts.
	old := f.reasons.Offs
	shift, next := uint32(0), 0
	for i := 0; i <= f.Rows; i++ {
		w.U32(binary.LittleEndian.Uint32(old[4*i:]) + shift)
		if next < len(late) && late[next] == i {
			shift += uint32(len(f.rejected[i]))
			next++
		}
	}
	align(w, base)
	from := uint32(0)
	for _, i := range late {
		at := binary.LittleEndian.Uint32(old[4*i:])
		w.Raw(f.reasons.Data[from:at])
		w.Raw([]byte(f.rejected[i]))
		from = at
	}
	w.Raw(f.reasons.Data[from:binary.LittleEndian.Uint32(old[4*f.Rows:])])
	align(w, base)
}

// appendHeader writes a frame's header: the magic, its rows and n
// columns as col describes them, padded to 8 from base.
func appendHeader(w *abi.Writer, base, rows, n int, col func(int) (string, abi.Type, uint8)) {
	w.Raw([]byte(Magic))
	w.U32(uint32(rows))
	w.U32(uint32(n))
	for c := range n {
		name, t, flags := col(c)
		w.U8(uint8(t))
		w.U8(flags)
		w.U16(uint16(len(name)))
		w.Raw([]byte(name))
	}
	align(w, base)
}

func flagsOf(meta, raw, constant bool) uint8 {
	var flags uint8
	if constant {
		flags |= flagConst
	}
	if meta {
		flags |= flagMeta
	}
	if raw {
		flags |= flagRaw
	}
	return flags
}

// RawCol returns the column of the rows' original bytes, or nil.
func (f *Frame) RawCol() *Column {
	for c := range f.Cols {
		if f.Cols[c].Raw {
			return &f.Cols[c]
		}
	}
	return nil
}

// sizeBound bounds the encoded size of the frame with rows of its rows.
func (f *Frame) sizeBound(rows int) int {
	n := len(Magic) + 16 + 3*(rows+8) + 4*(rows+1) + 8
	for _, r := range f.rejected {
		n += len(r)
	}
	n += len(f.reasons.Data)
	for c := range f.Cols {
		n += f.Cols[c].sizeBound(rows)
	}
	return n
}

// sizeBound bounds the encoded size of the column, its header included,
// in a frame of rows rows.
func (c *Column) sizeBound(rows int) int {
	stored := c.stored(rows)
	n := 4 + len(c.Name) + stored + 16
	if w := c.Type.Fixed(); w != 0 {
		return n + stored*w
	}
	return n + 4*(stored+1) + len(c.Data) + 8
}

// align pads w to a multiple of 8 from base, where the frame starts.
func align(w *abi.Writer, base int) {
	for (len(w.Buf)-base)%8 != 0 {
		w.Buf = append(w.Buf, 0)
	}
}

// appendColumn writes a decoded column, keeping the rows keep says true to.
func appendColumn(w *abi.Writer, base int, c *Column, rows int, keep []bool) {
	if c.Const {
		// One row for all: the kept rows share it, and a frame that keeps
		// none still has it.
		keep, rows = nil, 1
	}
	if keep == nil {
		w.Raw(c.Valid[:rows])
		align(w, base)
		if c.Type.Fixed() != 0 {
			w.Raw(c.Fixed[:rows*c.Type.Fixed()])
			align(w, base)
			return
		}
		w.Raw(c.Offs[:(rows+1)*4])
		align(w, base)
		end := binary.LittleEndian.Uint32(c.Offs[rows*4:])
		w.Raw(c.Data[:end])
		align(w, base)
		return
	}
	b := Builder{Type: c.Type}
	for i := 0; i < rows; i++ {
		if !keep[i] {
			continue
		}
		b.CopyRow(c, i)
	}
	b.append(w, base)
}

// Builder builds one column, row by row.
type Builder struct {
	Type abi.Type
	// Const makes a column of one value for every row: the builder holds
	// one row (see Writer.AddConst).
	Const bool
	valid []byte
	fixed []byte
	offs  []byte
	data  []byte
}

// Reset empties the builder for a new column of type t, keeping its memory.
func (b *Builder) Reset(t abi.Type) {
	b.Type, b.valid, b.fixed, b.offs, b.data = t, b.valid[:0], b.fixed[:0], b.offs[:0], b.data[:0]
}

// Grow makes room for rows more rows of data bytes in all, so a column
// built row by row is not copied as it grows.
func (b *Builder) Grow(rows, data int) {
	b.valid = grow(b.valid, rows)
	if w := b.Type.Fixed(); w != 0 {
		b.fixed = grow(b.fixed, rows*w)
		return
	}
	b.offs = grow(b.offs, 4*rows)
	b.data = grow(b.data, data)
}

// Len is the number of rows appended.
func (b *Builder) Len() int { return len(b.valid) }

// grow is slices.Grow for bytes without its clearing, and every buffer
// of the package grows through it: slices.Grow zeroes the room it adds, a
// pass over memory the caller is about to write whole. make zeroes only
// memory that is not zero already (memory from the OS is), and a frame of
// a megabyte, in a run whose heap is still growing, often is fresh
// memory: in a profile of the sales ETL's steps run once, slices.Grow's
// clearing was 13% of their CPU (docs/bench/frame-grow-s23.txt).
func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	nb := make([]byte, len(buf), len(buf)+n)
	copy(nb, buf)
	return nb
}

// put extends buf by n bytes and returns them, to be written whole;
// the capacity doubles when it grows: append grows a large slice by a
// quarter, so a column built row by row (a whole file's, with batch_size
// 0) was allocated about five times its size in all, and copied as often.
// Only a growing buffer's pointer is stored: the builders run a row at a
// time, and while the collector runs every store of a pointer goes
// through its write barrier (`b.fixed = append(room(b.fixed, 8), ...)`
// stored one a row: 1.5% of a perf profile of the sales ETL's steps,
// docs/BENCHMARKS.md session 24). Reslicing a slice to itself stores only
// its length.
func put(buf *[]byte, n int) []byte {
	l := len(*buf)
	if cap(*buf)-l < n {
		*buf = grow(*buf, max(n, cap(*buf)))
	}
	*buf = (*buf)[:l+n]
	return (*buf)[l : l+n : l+n]
}

// Null appends a row with no value.
func (b *Builder) Null() {
	put(&b.valid, 1)[0] = 0
	b.zero()
}

func (b *Builder) zero() {
	switch b.Type.Fixed() {
	case 8:
		clear(put(&b.fixed, 8))
	case 1:
		put(&b.fixed, 1)[0] = 0
	default:
		binary.LittleEndian.PutUint32(put(&b.offs, 4), uint32(len(b.data)))
	}
}

// Absent appends a row that lacks the field.
func (b *Builder) Absent() {
	put(&b.valid, 1)[0] = validAbsent
	b.zero()
}

// Int appends an int (or, for a time column, nanoseconds since the epoch).
func (b *Builder) Int(v int64) {
	put(&b.valid, 1)[0] = 1
	binary.LittleEndian.PutUint64(put(&b.fixed, 8), uint64(v))
}

// Float appends a float.
func (b *Builder) Float(v float64) {
	put(&b.valid, 1)[0] = 1
	binary.LittleEndian.PutUint64(put(&b.fixed, 8), math.Float64bits(v))
}

// Bool appends a bool.
func (b *Builder) Bool(v bool) {
	put(&b.valid, 1)[0] = 1
	if v {
		put(&b.fixed, 1)[0] = 1
	} else {
		put(&b.fixed, 1)[0] = 0
	}
}

// String appends a string; s is copied.
func (b *Builder) String(s []byte) { appendString(b, s) }

// Text appends a string.
func (b *Builder) Text(s string) { appendString(b, s) }

func appendString[S string | []byte](b *Builder, s S) {
	put(&b.valid, 1)[0] = validValue
	copy(put(&b.data, len(s)), s)
	binary.LittleEndian.PutUint32(put(&b.offs, 4), uint32(len(b.data)))
}

// Raw appends one row from the ABI's column parts: valid, and the value's
// 8 or 1 fixed bytes (fixed types) or its bytes (strings).
func (b *Builder) Raw(valid byte, fixed uint64, s []byte) {
	put(&b.valid, 1)[0] = valid
	switch b.Type.Fixed() {
	case 8:
		binary.LittleEndian.PutUint64(put(&b.fixed, 8), fixed)
	case 1:
		put(&b.fixed, 1)[0] = byte(fixed)
	default:
		copy(put(&b.data, len(s)), s)
		binary.LittleEndian.PutUint32(put(&b.offs, 4), uint32(len(b.data)))
	}
}

// Pop removes the last row appended.
func (b *Builder) Pop() {
	n := len(b.valid) - 1
	b.valid = b.valid[:n]
	if w := b.Type.Fixed(); w != 0 {
		b.fixed = b.fixed[:w*n]
		return
	}
	b.offs = b.offs[:4*n]
	end := 0
	if n > 0 {
		end = int(binary.LittleEndian.Uint32(b.offs[4*n-4:]))
	}
	b.data = b.data[:end]
}

// CopyRow appends row i of col, which has the builder's type, as it is
// there (null and absent included).
func (b *Builder) CopyRow(col *Column, i int) {
	fixed, s := col.Value(i)
	b.Raw(col.Valid[col.at(i)], fixed, s)
}

// Column returns the built column named name (a metadata column if meta),
// to Set in a frame. It aliases the builder until the next Reset.
func (b *Builder) Column(name string, meta bool) Column {
	col := Column{Name: name, Meta: meta, Const: b.Const, Column: abi.Column{Type: b.Type, Valid: b.valid, Fixed: b.fixed}}
	if b.Type.Fixed() == 0 {
		col.Offs = append(binary.LittleEndian.AppendUint32(make([]byte, 0, len(b.offs)+4), 0), b.offs...)
		col.Data = b.data
	}
	return col
}

// AppendTo writes the built column in the ABI layout, as a column of a
// plugin request (aligned from the start of w).
func (b *Builder) AppendTo(w *abi.Writer) { b.append(w, 0) }

// append writes the built column in the ABI layout, aligned from base.
func (b *Builder) append(w *abi.Writer, base int) {
	w.Raw(b.valid)
	align(w, base)
	if b.Type.Fixed() != 0 {
		w.Raw(b.fixed)
		align(w, base)
		return
	}
	w.U32(0)
	w.Raw(b.offs)
	align(w, base)
	w.Raw(b.data)
	align(w, base)
}

// Writer builds a new frame column by column, as csv_file does.
type Writer struct {
	Cols  []*Builder
	Names []string
	Meta  []bool
	// Raw is 1 + the index of the column of original bytes, 0 for none.
	Raw     int
	reasons Builder
}

// NewWriter starts a frame of the named columns.
func NewWriter() *Writer { return &Writer{reasons: Builder{Type: abi.TypeString}} }

// Add declares a column and returns its builder.
func (w *Writer) Add(name string, t abi.Type, meta bool) *Builder {
	b := &Builder{Type: t}
	w.Cols, w.Names, w.Meta = append(w.Cols, b), append(w.Names, name), append(w.Meta, meta)
	return b
}

// AddConst declares a column with one value for all of a frame's rows
// (the file they came from): give its builder that one value per frame.
func (w *Writer) AddConst(name string, t abi.Type, meta bool) *Builder {
	b := w.Add(name, t, meta)
	b.Const = true
	return b
}

// AddRaw declares the metadata column of each row's original bytes.
func (w *Writer) AddRaw(name string) *Builder {
	b := w.Add(name, abi.TypeString, true)
	w.Raw = len(w.Cols)
	return b
}

// Accept ends a row that is not rejected.
func (w *Writer) Accept() { w.reasons.Null() }

// Reject ends a row rejected for reason before it had values (a row that
// did not parse): every column has a Null for it but the metadata, and it
// stands for its original bytes (AddRaw's column).
func (w *Writer) Reject(reason string) {
	w.reasons.Text(reason)
	w.reasons.valid[len(w.reasons.valid)-1] = reasonUnread
}

// Rows is the number of rows ended.
func (w *Writer) Rows() int { return w.reasons.Len() }

// Append encodes the frame after dst and empties the writer for the next.
// With dst nil the frame is made with room after it for patches: send it
// with NewMessage.
func (w *Writer) Append(dst []byte) ([]byte, error) {
	rows := w.reasons.Len()
	for i, b := range w.Cols {
		want := rows
		if b.Const {
			want = 1
		}
		if b.Len() != want {
			return dst, fmt.Errorf("frame column %q has %d rows, the frame %d", w.Names[i], b.Len(), want)
		}
		// Offsets are 32-bit: past 4 GiB they have wrapped.
		if len(b.data) > math.MaxUint32 {
			return dst, fmt.Errorf("frame column %q holds %d bytes, more than a frame can (4 GiB): make the frame fewer rows", w.Names[i], len(b.data))
		}
	}
	if len(w.reasons.data) > math.MaxUint32 {
		return dst, fmt.Errorf("the frame's reject reasons hold %d bytes, more than a frame can (4 GiB): make the frame fewer rows", len(w.reasons.data))
	}
	size := len(Magic) + 16 + 3*(rows+8) + 4*(rows+1) + len(w.reasons.data)
	for i, b := range w.Cols {
		size += 4 + len(w.Names[i]) + rows + 16 + len(b.fixed) + len(b.offs) + len(b.data) + 16
	}
	var aw abi.Writer
	if dst == nil {
		// A frame of its own, with room for the patches of the steps that
		// take it (NewMessage).
		aw.Buf = newBuffer(size)
	} else {
		aw.Buf = grow(dst, size)
	}
	base := len(dst)
	appendHeader(&aw, base, rows, len(w.Cols), func(c int) (string, abi.Type, uint8) {
		return w.Names[c], w.Cols[c].Type, flagsOf(w.Meta[c], w.Raw == c+1, w.Cols[c].Const)
	})
	w.reasons.append(&aw, base)
	w.reasons.Reset(abi.TypeString)
	for _, b := range w.Cols {
		b.append(&aw, base)
		b.Reset(b.Type)
	}
	return aw.Buf, nil
}
