package frame

import (
	"encoding/binary"
	"math"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Gathering a plugin request's columns from a frame, and merging its
// outputs back, a column at a time. Row by row (Raw per field per row) the
// host spent more on dispatch and growth checks than on the values: 85-147
// ns a row to gather the sales ETL's validate step's five fields, each a
// call, a type switch and a growth check per row (55-83 a column at a
// time, most of it formatting numbers; BenchmarkGatherFrame in
// agent/wasm). A column's rows in one loop are a few loads and stores
// each.

// GatherTyped appends rows (frame row indices) of col to the builder, as
// a request column of the builder's type, which must be col's type, or
// float from an int column (the nearest float, as the JSON path gives). A
// row without a value (null or absent) gets validity 0 and a zero value,
// as the ABI has it; a nil col gives every row none.
func (b *Builder) GatherTyped(col *Column, rows []int) {
	valid := b.grow(&b.valid, len(rows), 1)
	if col == nil {
		clear(valid)
		b.zeros(len(rows))
		return
	}
	for k, row := range rows {
		valid[k] = 0
		if col.Valid[col.at(row)] == validValue {
			valid[k] = 1
		}
	}
	switch b.Type.Fixed() {
	case 8:
		fixed := b.grow(&b.fixed, len(rows), 8)
		toFloat := col.Type == abi.TypeInt && b.Type == abi.TypeFloat
		for k, row := range rows {
			var u uint64
			if valid[k] != 0 {
				u = binary.LittleEndian.Uint64(col.Fixed[col.at(row)*8:])
				if toFloat {
					u = math.Float64bits(float64(int64(u)))
				}
			}
			binary.LittleEndian.PutUint64(fixed[k*8:], u)
		}
	case 1:
		fixed := b.grow(&b.fixed, len(rows), 1)
		for k, row := range rows {
			fixed[k] = 0
			if valid[k] != 0 {
				fixed[k] = col.Fixed[col.at(row)]
			}
		}
	default:
		size := 0
		for k, row := range rows {
			if valid[k] != 0 {
				size += len(col.Bytes(row))
			}
		}
		b.data = grow(b.data, size)
		offs := b.grow(&b.offs, len(rows), 4)
		for k, row := range rows {
			if valid[k] != 0 {
				b.data = append(b.data, col.Bytes(row)...)
			}
			binary.LittleEndian.PutUint32(offs[k*4:], uint32(len(b.data)))
		}
	}
}

// ValueForm is how GatherValues writes a value's data: the plugin's
// choice, declared with its field (abi.FieldBinaryNumbers,
// abi.FieldKindsOnly).
type ValueForm uint8

const (
	// ValueText is every value as the JSON path gives it: a number as
	// its JSON text.
	ValueText ValueForm = iota
	// ValueBinary is ValueText but for an int or float column's values,
	// each abi.KindInt or abi.KindFloat and its 8 bytes: nothing to
	// format, nothing for the plugin to parse.
	ValueBinary
	// ValueKindsOnly is each row's kind and no data.
	ValueKindsOnly
)

// GatherValues appends rows of col to the builder, a value-typed request
// column: each row's kind in its validity byte and its data as form says,
// by default its text, as the JSON path describes the same value (absent,
// null, true or false, a number's JSON text, a string's bytes, a time's
// RFC 3339 text). A nil col gives every row absent.
func (b *Builder) GatherValues(col *Column, rows []int, form ValueForm) {
	valid := b.grow(&b.valid, len(rows), 1)
	if col == nil {
		clear(valid)
		b.zeros(len(rows))
		return
	}
	switch {
	case form == ValueKindsOnly:
		b.gatherKinds(col, rows, valid)
		return
	case form == ValueBinary && (col.Type == abi.TypeInt || col.Type == abi.TypeFloat):
		b.gatherBinary(col, rows, valid)
		return
	}
	b.offs = grow(b.offs, 4*len(rows))
	if col.Type == abi.TypeString {
		size := 0
		for _, row := range rows {
			if !col.Null(row) {
				size += len(col.Bytes(row))
			}
		}
		b.data = grow(b.data, size)
	}
	for k, row := range rows {
		valid[k] = byte(col.kind(row))
		if valid[k] <= byte(abi.KindTrue) {
			b.offs = binary.LittleEndian.AppendUint32(b.offs, uint32(len(b.data)))
			continue
		}
		switch col.Type {
		case abi.TypeString:
			b.data = append(b.data, col.Bytes(row)...)
		case abi.TypeTime:
			b.data = col.AppendText(b.data, row)
		default:
			b.data = col.AppendJSON(b.data, row)
		}
		b.offs = binary.LittleEndian.AppendUint32(b.offs, uint32(len(b.data)))
	}
}

// kind is row's kind as a value field sees it: a time is a string, as in
// JSON.
func (c *Column) kind(row int) abi.Kind {
	switch i := c.at(row); {
	case c.Valid[i] == validAbsent:
		return abi.KindAbsent
	case c.Valid[i] != validValue:
		return abi.KindNull
	case c.Type == abi.TypeBool:
		if c.Fixed[i] != 0 {
			return abi.KindTrue
		}
		return abi.KindFalse
	case c.Type == abi.TypeString, c.Type == abi.TypeTime:
		return abi.KindString
	}
	return abi.KindNumber
}

// gatherKinds is GatherValues' ValueKindsOnly: kinds, every row's data
// empty.
func (b *Builder) gatherKinds(col *Column, rows []int, valid []byte) {
	for k, row := range rows {
		valid[k] = byte(col.kind(row))
	}
	b.zeros(len(rows))
}

// gatherBinary is GatherValues' ValueBinary for an int or float column:
// each value's 8 bytes, little endian, as its kind says.
func (b *Builder) gatherBinary(col *Column, rows []int, valid []byte) {
	num := abi.KindInt
	if col.Type == abi.TypeFloat {
		num = abi.KindFloat
	}
	offs := b.grow(&b.offs, len(rows), 4)
	b.data = grow(b.data, 8*len(rows))
	for k, row := range rows {
		i := col.at(row)
		switch {
		case col.Valid[i] == validAbsent:
			valid[k] = byte(abi.KindAbsent)
		case col.Valid[i] != validValue:
			valid[k] = byte(abi.KindNull)
		default:
			valid[k] = byte(num)
			b.data = append(b.data, col.Fixed[i*8:i*8+8]...)
		}
		binary.LittleEndian.PutUint32(offs[k*4:], uint32(len(b.data)))
	}
}

// grow extends *s by n rows of w bytes and returns the new part (not
// zeroed).
func (b *Builder) grow(s *[]byte, n, w int) []byte {
	m := len(*s)
	*s = grow(*s, n*w)[:m+n*w]
	return (*s)[m:]
}

// zeros appends the value parts of n rows with no value.
func (b *Builder) zeros(n int) {
	if w := b.Type.Fixed(); w != 0 {
		clear(b.grow(&b.fixed, n, w))
		return
	}
	offs := b.grow(&b.offs, n, 4)
	for k := range n {
		binary.LittleEndian.PutUint32(offs[k*4:], uint32(len(b.data)))
	}
}

// MergeFixed appends len(set) rows to a fixed-width column: row i is
// vals[i] where set[i] != 0 (a step's output), and otherwise old's row i
// as it is there, value, null or absent (absent where old is nil), as a
// JSON row keeps a field a step left unset. old must be nil or of the
// builder's type.
func (b *Builder) MergeFixed(set []byte, vals []uint64, old *Column) {
	n, w := len(set), b.Type.Fixed()
	valid, fixed := b.grow(&b.valid, n, 1), b.grow(&b.fixed, n, w)
	clear(fixed)
	for i := range n {
		var u uint64
		switch {
		case set[i] != 0:
			valid[i], u = validValue, vals[i]
		case old == nil:
			valid[i] = validAbsent
			continue
		default:
			at := old.at(i)
			if valid[i] = old.Valid[at]; valid[i] != validValue {
				continue
			}
			if w == 1 {
				u = uint64(old.Fixed[at])
			} else {
				u = binary.LittleEndian.Uint64(old.Fixed[at*8:])
			}
		}
		if w == 1 {
			fixed[i] = byte(u)
		} else {
			binary.LittleEndian.PutUint64(fixed[i*8:], u)
		}
	}
}

// MergeStrings is MergeFixed for a string column. For a metadata column
// (meta), a row that neither has a value set nor one in old is null, not
// absent: metadata has no absent.
func (b *Builder) MergeStrings(set []byte, vals [][]byte, old *Column, meta bool) {
	missing := byte(validAbsent)
	if meta {
		missing = validNull
	}
	n, size := len(set), 0
	for i := range n {
		switch {
		case set[i] != 0:
			size += len(vals[i])
		case old != nil && old.Valid[old.at(i)] == validValue:
			size += len(old.Bytes(i))
		}
	}
	b.data = grow(b.data, size)
	valid, offs := b.grow(&b.valid, n, 1), b.grow(&b.offs, n, 4)
	for i := range n {
		switch {
		case set[i] != 0:
			valid[i] = validValue
			b.data = append(b.data, vals[i]...)
		case old == nil:
			valid[i] = missing
		default:
			switch valid[i] = old.Valid[old.at(i)]; valid[i] {
			case validValue:
				b.data = append(b.data, old.Bytes(i)...)
			case validAbsent:
				valid[i] = missing
			}
		}
		binary.LittleEndian.PutUint32(offs[i*4:], uint32(len(b.data)))
	}
}
