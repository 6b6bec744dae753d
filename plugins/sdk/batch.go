package sdk

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Batch is one fast-mode batch: the declared input columns, parsed by the
// host, and the output columns the handler fills. It is reused for every
// batch: do not keep it, or slices from it, past the handler call.
type Batch struct {
	rows int
	in   []abi.Column
	// strs is in's string and value columns with their offsets checked
	// once per call, so reading a row is a slice of data with no checks
	// of its own: small enough to inline, where a call per row in Wasm
	// costs more than the read.
	strs    []strColumn
	out     []outColumn
	actions []byte
	fails   []rowText
	// metas is the metadata set, already in the reply's encoding (row,
	// key, value), and metaCount how many: bytes hold no pointers, so a
	// row's SetMeta costs no write barrier, which in Wasm, where the
	// collector's marking advances only while an export runs, is often on
	// for a whole call.
	metas     []byte
	metaCount int
	keyed
}

type strColumn struct {
	valid []byte
	off   []uint32 // rows+1, non-decreasing, the last len(data)
	data  []byte
}

// text returns row i's bytes, aliasing the host's buffer.
func (c *strColumn) text(i int) []byte {
	hi := c.off[i+1]
	return c.data[c.off[i]:hi:hi]
}

type outColumn struct {
	valid []byte
	fixed []uint64 // int, float (as bits), time; bool uses the low byte
	strs  [][]byte
}

type rowText struct {
	row    int
	reason string
}

// Len is the number of rows (messages) in the batch.
func (b *Batch) Len() int { return b.rows }

// Drop removes row i's message from the batch.
func (b *Batch) Drop(i int) { b.actions[i] = uint8(abi.ActionDrop) }

// Fail marks row i's message errored with reason; it keeps its original
// bytes and goes down the pipeline's error path.
func (b *Batch) Fail(i int, reason string) {
	b.actions[i] = uint8(abi.ActionFail)
	b.fails = append(b.fails, rowText{i, reason})
}

// metaRowBytes is the room SetMeta makes per row of a batch: a row, a
// 16-byte key and a 4-byte value with their lengths.
const metaRowBytes = 32

// SetMeta sets a metadata key on row i's message.
func (b *Batch) SetMeta(i int, key, value string) { b.appendMeta(uint32(i), key, value) }

func (b *Batch) appendMeta(row uint32, key, value string) {
	if len(b.metas) == 0 && cap(b.metas) < b.rows*metaRowBytes {
		// Sized for a short key and value on every row at the first
		// call of a batch: growing it row by row measured twice the cost
		// of the sales suite's whole validate step in Wasm
		// (BenchmarkSalesFrame in plugins/builtin/validate).
		b.metas = make([]byte, 0, b.rows*metaRowBytes)
	}
	b.metas = binary.LittleEndian.AppendUint32(b.metas, row)
	b.metas = binary.LittleEndian.AppendUint32(b.metas, uint32(len(key)))
	b.metas = append(b.metas, key...)
	b.metas = binary.LittleEndian.AppendUint32(b.metas, uint32(len(value)))
	b.metas = append(b.metas, value...)
	b.metaCount++
}

// SetMetaAll sets a metadata key on every row's message: one entry in the
// reply, where SetMeta on each row makes one per row. Metadata applies in
// the order set, so a SetMeta of the same key after it changes that one
// row, and a SetMeta before it is overwritten. It needs an agent that
// knows abi.AllRows (ABI.md §8.3); an older one fails the call as a
// malformed result.
func (b *Batch) SetMetaAll(key, value string) {
	b.appendMeta(abi.AllRows, key, value)
}

// FieldOption changes how a field is declared.
type FieldOption func(*abi.Field)

// Required makes the host fail, before the plugin sees it, any message that
// lacks the field; the handler may then assume every row is valid.
func Required(f *abi.Field) { f.Required = true }

func declare(fields *[]abi.Field, name string, t abi.Type, opts []FieldOption) int {
	f := abi.Field{Name: name, Type: t}
	for _, o := range opts {
		o(&f)
	}
	*fields = append(*fields, f)
	return len(*fields) - 1
}

// In is the common part of input field handles.
type In struct{ idx int }

// Valid reports whether row i has the field (present and not null).
func (h In) Valid(b *Batch, i int) bool { return b.in[h.idx].Valid[i] != 0 }

// InInt reads an integer field. JSON numbers with a fraction, and values
// outside int64, fail the message on the host.
type InInt struct{ In }

// InFloat reads a number field.
type InFloat struct{ In }

// InBool reads a boolean field.
type InBool struct{ In }

// InString reads a string field.
type InString struct{ In }

// InTime reads a timestamp field: an RFC 3339 string, or a number of
// seconds since the Unix epoch. It arrives as nanoseconds since the epoch.
type InTime struct{ In }

// ReadInt declares an integer input field at a dotted path such as
// "event_data.product_id".
func ReadInt(path string, opts ...FieldOption) InInt {
	return InInt{In{declare(&inFields, path, abi.TypeInt, opts)}}
}

// ReadFloat declares a number input field.
func ReadFloat(path string, opts ...FieldOption) InFloat {
	return InFloat{In{declare(&inFields, path, abi.TypeFloat, opts)}}
}

// ReadBool declares a boolean input field.
func ReadBool(path string, opts ...FieldOption) InBool {
	return InBool{In{declare(&inFields, path, abi.TypeBool, opts)}}
}

// ReadString declares a string input field.
func ReadString(path string, opts ...FieldOption) InString {
	return InString{In{declare(&inFields, path, abi.TypeString, opts)}}
}

// ReadTime declares a timestamp input field.
func ReadTime(path string, opts ...FieldOption) InTime {
	return InTime{In{declare(&inFields, path, abi.TypeTime, opts)}}
}

// Values returns the whole column; entries of invalid rows are zero.
func (h InInt) Values(b *Batch) []int64 { return int64s(b.in[h.idx].Fixed, b.rows) }

// Get returns row i's value and whether it is present.
func (h InInt) Get(b *Batch, i int) (int64, bool) {
	return int64(binary.LittleEndian.Uint64(b.in[h.idx].Fixed[i*8:])), h.Valid(b, i)
}

// Values returns the whole column; entries of invalid rows are zero.
func (h InFloat) Values(b *Batch) []float64 {
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(b.in[h.idx].Fixed))), b.rows)
}

// Get returns row i's value and whether it is present.
func (h InFloat) Get(b *Batch, i int) (float64, bool) {
	return math.Float64frombits(binary.LittleEndian.Uint64(b.in[h.idx].Fixed[i*8:])), h.Valid(b, i)
}

// Get returns row i's value and whether it is present.
func (h InBool) Get(b *Batch, i int) (bool, bool) {
	return b.in[h.idx].Fixed[i] != 0, h.Valid(b, i)
}

// Get returns row i's bytes, aliasing the host's buffer, and whether they
// are present.
func (h InString) Get(b *Batch, i int) ([]byte, bool) {
	c := &b.strs[h.idx]
	return c.text(i), c.valid[i] != 0
}

// Raw returns the whole column as the host laid it out (ABI.md §8.1):
// row i is data[offs[i]:offs[i+1]], present where valid[i] is non-zero.
// The offsets were checked when the batch arrived. For a handler that
// reads every row in one loop, without a call per row.
func (h InString) Raw(b *Batch) (valid []byte, offs []uint32, data []byte) {
	c := &b.strs[h.idx]
	return c.valid, c.off, c.data
}

// Values returns the whole column as nanoseconds since the Unix epoch.
func (h InTime) Values(b *Batch) []int64 { return int64s(b.in[h.idx].Fixed, b.rows) }

// Nanos returns row i as nanoseconds since the Unix epoch.
func (h InTime) Nanos(b *Batch, i int) (int64, bool) {
	return int64(binary.LittleEndian.Uint64(b.in[h.idx].Fixed[i*8:])), h.Valid(b, i)
}

// Get returns row i as a UTC time.
func (h InTime) Get(b *Batch, i int) (time.Time, bool) {
	n, ok := h.Nanos(b, i)
	return time.Unix(0, n).UTC(), ok
}

// int64s views a column in place: columns are 8-aligned in the request
// buffer (ABI.md), and both wasm and the hosts Sluice runs on are
// little-endian.
func int64s(b []byte, rows int) []int64 {
	if rows == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(b))), rows)
}

// Out is the common part of output field handles. A row left unset leaves
// the message's field as it was.
type Out struct{ idx int }

// OutInt writes an integer field.
type OutInt struct{ Out }

// OutFloat writes a number field. NaN and infinities fail the message on the
// host, since JSON cannot carry them.
type OutFloat struct{ Out }

// OutBool writes a boolean field.
type OutBool struct{ Out }

// OutString writes a string field.
type OutString struct{ Out }

// OutTime writes a timestamp field, as an RFC 3339 string in UTC.
type OutTime struct{ Out }

// WriteInt declares an integer output field at a dotted path.
func WriteInt(path string) OutInt { return OutInt{Out{declare(&outFields, path, abi.TypeInt, nil)}} }

// WriteFloat declares a number output field.
func WriteFloat(path string) OutFloat {
	return OutFloat{Out{declare(&outFields, path, abi.TypeFloat, nil)}}
}

// WriteBool declares a boolean output field.
func WriteBool(path string) OutBool {
	return OutBool{Out{declare(&outFields, path, abi.TypeBool, nil)}}
}

// WriteString declares a string output field.
func WriteString(path string) OutString {
	return OutString{Out{declare(&outFields, path, abi.TypeString, nil)}}
}

// WriteTime declares a timestamp output field.
func WriteTime(path string) OutTime {
	return OutTime{Out{declare(&outFields, path, abi.TypeTime, nil)}}
}

func (h OutInt) Set(b *Batch, i int, v int64) { b.setFixed(h.idx, i, uint64(v)) }
func (h OutFloat) Set(b *Batch, i int, v float64) {
	b.setFixed(h.idx, i, math.Float64bits(v))
}
func (h OutTime) Set(b *Batch, i int, t time.Time) { b.setFixed(h.idx, i, uint64(t.UnixNano())) }

// SetNanos sets row i from nanoseconds since the Unix epoch.
func (h OutTime) SetNanos(b *Batch, i int, n int64) { b.setFixed(h.idx, i, uint64(n)) }

func (h OutBool) Set(b *Batch, i int, v bool) {
	var u uint64
	if v {
		u = 1
	}
	b.setFixed(h.idx, i, u)
}

// Set sets row i; v is copied into the response when the handler returns,
// so it may alias input bytes.
func (h OutString) Set(b *Batch, i int, v []byte) {
	c := &b.out[h.idx]
	c.valid[i] = 1
	c.strs[i] = v
}

// Values returns the column's values and which rows are set, for a
// handler that fills many rows in one loop: row i is vals[i] where
// set[i] is 1, as Set(b, i, vals[i]) makes it. Both have b.Len()
// entries, start all unset, and are valid as long as b. In Wasm, a loop writing them costs a fraction of
// a Set call per row.
func (h OutInt) Values(b *Batch) (vals []int64, set []byte) {
	c := &b.out[h.idx]
	return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(c.fixed))), len(c.fixed)), c.valid
}

// Values is OutInt.Values for a float column.
func (h OutFloat) Values(b *Batch) (vals []float64, set []byte) {
	c := &b.out[h.idx]
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(c.fixed))), len(c.fixed)), c.valid
}

func (b *Batch) setFixed(col, i int, v uint64) {
	c := &b.out[col]
	c.valid[i] = 1
	c.fixed[i] = v
}

func processColumns(req []byte) []byte {
	r := abi.NewReader(req)
	rows := int(r.U32())
	r.U32()
	b := &batch
	b.rows = rows
	b.in = b.in[:0]
	for _, f := range inFields {
		b.in = append(b.in, abi.ReadColumn(r, f.Type, rows))
	}
	if stateful {
		b.readState(r, rows)
	}
	if r.Err() != nil {
		return errorResponse(abi.StatusError, errMalformed.Error()+": "+r.Err().Error())
	}
	if err := b.checkStrings(); err != nil {
		return errorResponse(abi.StatusError, errMalformed.Error()+": "+err.Error())
	}
	if b.badKey {
		return errorResponse(abi.StatusError, errMalformed.Error()+": a row's key index is out of range")
	}
	b.actions = resize(b.actions, rows)
	b.fails, b.metas, b.metaCount = b.fails[:0], b.metas[:0], 0
	if len(b.out) != len(outFields) {
		b.out = make([]outColumn, len(outFields))
	}
	for j, f := range outFields {
		c := &b.out[j]
		c.valid = resize(c.valid, rows)
		if f.Type == abi.TypeString {
			c.strs = resizeStrs(c.strs, rows)
		} else {
			c.fixed = resizeU64(c.fixed, rows)
		}
	}
	if err := batchHandle(b); err != nil {
		return errorResponse(abi.StatusError, err.Error())
	}
	resp.U32(uint32(abi.StatusOK))
	resp.U32(uint32(rows))
	resp.Raw(b.actions)
	resp.Align8()
	for j, f := range outFields {
		c := &b.out[j]
		var fixed []byte
		switch f.Type.Fixed() {
		case 8:
			fixed = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(c.fixed))), rows*8)
		case 1:
			fixed = boolBytes(c.fixed, rows)
		}
		abi.AppendColumn(&resp, f.Type, c.valid, fixed, c.strs)
	}
	if stateful {
		b.appendState(&resp)
	}
	resp.U32(uint32(len(b.fails)))
	for _, f := range b.fails {
		resp.U32(uint32(f.row))
		resp.String(f.reason)
	}
	resp.U32(uint32(b.metaCount))
	resp.Raw(b.metas)
	return resp.Buf
}

var boolScratch []byte

func boolBytes(v []uint64, rows int) []byte {
	boolScratch = resize(boolScratch, rows)
	for i := 0; i < rows; i++ {
		boolScratch[i] = byte(v[i])
	}
	return boolScratch
}

// checkStrings checks the offsets of b's string and value columns, once
// for the call, and points b.strs at them. A well-behaved host never sends
// bad ones (it writes them itself), so a bad one fails the call.
func (b *Batch) checkStrings() error {
	if cap(b.strs) < len(b.in) {
		b.strs = make([]strColumn, len(b.in))
	}
	b.strs = b.strs[:len(b.in)]
	for j := range b.in {
		c := &b.in[j]
		if c.Type.Fixed() != 0 {
			b.strs[j] = strColumn{}
			continue
		}
		if i := abi.StepBack(c.Offs, b.rows); i >= 0 {
			return errors.New("input field " + strconv.Quote(inFields[j].Name) + " row " + strconv.Itoa(i) + ": string offsets out of order")
		}
		// The request buffer is 8-aligned and each column starts on an
		// 8-byte boundary (ABI.md §8.1), and Wasm is little-endian, so
		// the offsets can be read in place.
		off := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(c.Offs))), b.rows+1)
		b.strs[j] = strColumn{valid: c.Valid, off: off, data: c.Data}
	}
	return nil
}

// resize returns a zeroed slice of n bytes, reusing b's storage.
func resize(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func resizeU64(b []uint64, n int) []uint64 {
	if cap(b) < n {
		return make([]uint64, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func resizeStrs(b [][]byte, n int) [][]byte {
	if cap(b) < n {
		return make([][]byte, n)
	}
	b = b[:n]
	clear(b)
	return b
}
