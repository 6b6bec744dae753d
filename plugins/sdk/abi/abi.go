// Package abi is the wire format of Sluice's plugin ABI, version 1: the names
// a module exports and imports, the codes that cross, and the little-endian
// encoding of every buffer. It is shared by the host (the agent) and the Go
// guest SDK so both sides speak exactly the bytes ABI.md describes; it has no
// dependencies and builds for every GOOS, wasip1 included.
package abi

import (
	"encoding/binary"
	"strconv"
)

// Version is the ABI version this package speaks. It is also spelled into
// every export and import name, so a module built for another version is
// recognised before it is instantiated.
const Version = 1

// Names of the exports a plugin provides and the host module it imports from.
const (
	ExportAlloc   = "sluice_v1_alloc"
	ExportInit    = "sluice_v1_init"
	ExportProcess = "sluice_v1_process"
	// ExportStateView renders one stored state as JSON for the agent's
	// state lookups; only plugins whose descriptor sets DescriptorStateView
	// are asked (§8.9 of ABI.md).
	ExportStateView = "sluice_v1_state_view"
	ImportModule    = "sluice_v1"
	ImportLog       = "log"
	ImportStateGet  = "state_get"
	ImportStateScan = "state_scan"
	// ImportStateSet and ImportStateDelete write the step's own namespace
	// at random, committed with the batch (§8.8 of ABI.md).
	ImportStateSet    = "state_set"
	ImportStateDelete = "state_delete"
	ImportMetric      = "metric"
)

// Results of the state imports below zero.
const (
	StateNotFound   = -1 // state_get: the key has no state
	StateNotGranted = -2 // the namespace is not readable (or, for writes, not writable) by this step
	StateFailed     = -3 // the lookup or write failed; the host logged why
)

// Bounds on the writes of one call (state_set, state_delete).
const (
	MaxStateWrites     = 10000   // distinct keys written per call
	MaxStateValueBytes = 1 << 20 // bytes of one value
)

// Status is the first word of every buffer a plugin returns.
type Status uint32

const (
	// StatusOK means the call succeeded and its body follows.
	StatusOK Status = 0
	// StatusError fails the call (at init: the plugin is not loaded; at
	// process: every message of the batch fails) and keeps the instance.
	StatusError Status = 1
	// StatusFatal fails the call like StatusError and tells the host the
	// instance is no longer sound (a recovered panic): it is replaced.
	StatusFatal Status = 2
	// StatusInvalidConfig, at init, refuses the load like StatusError and
	// says the config itself is wrong: loading again with it cannot
	// succeed, so a scheduled run that fails on it is not retried. At
	// process the host takes it as StatusError.
	StatusInvalidConfig Status = 3
)

// Mode is how a plugin wants batches to cross.
type Mode uint8

const (
	// ModeBytes passes each message's body and metadata; the plugin returns
	// a result per message.
	ModeBytes Mode = 0
	// ModeColumns passes typed columns of the fields the plugin declared,
	// parsed by the host, and takes typed columns back.
	ModeColumns Mode = 1
)

// Type is the type of a declared field in columns mode.
type Type uint8

const (
	TypeInt    Type = 1 // int64
	TypeFloat  Type = 2 // float64
	TypeBool   Type = 3 // one byte, 0 or 1
	TypeString Type = 4 // UTF-8 bytes
	TypeTime   Type = 5 // int64 nanoseconds since the Unix epoch, UTC
	// TypeValue is any JSON value, input only: the validity byte carries its
	// Kind and the data its text, laid out as a string column. It lets a
	// plugin see what a message holds (a validator must tell a missing
	// field from a null, a string from a number) without a strict type
	// failing the message first, and still without parsing JSON itself.
	TypeValue Type = 6
)

// Kind is what a TypeValue row holds, carried in its validity byte.
type Kind uint8

const (
	KindAbsent Kind = 0 // no such field: the data is empty
	KindNull   Kind = 1 // JSON null: empty
	KindFalse  Kind = 2 // false: empty
	KindTrue   Kind = 3 // true: empty
	KindNumber Kind = 4 // the number's JSON text, e.g. 1e3
	KindString Kind = 5 // the string, unescaped to UTF-8
	KindObject Kind = 6 // the object's JSON text
	KindArray  Kind = 7 // the array's JSON text
	// KindInt and KindFloat are a number the host holds typed (a frame's
	// int or float column), sent as its 8 bytes (i64 or f64, little
	// endian) instead of its text, to a field declared with
	// FieldBinaryNumbers only: formatting a number and parsing it back
	// was most of a simple check's cost.
	KindInt   Kind = 8
	KindFloat Kind = 9
)

func (k Kind) String() string {
	switch k {
	case KindAbsent:
		return "absent"
	case KindNull:
		return "null"
	case KindFalse, KindTrue:
		return "bool"
	case KindNumber, KindInt, KindFloat:
		return "number"
	case KindString:
		return "string"
	case KindObject:
		return "object"
	case KindArray:
		return "array"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// BodyPath is the field name that, for a TypeValue input, stands for the
// whole message body rather than a key in it.
const BodyPath = "."

func (t Type) String() string {
	switch t {
	case TypeInt:
		return "int"
	case TypeFloat:
		return "float"
	case TypeBool:
		return "bool"
	case TypeString:
		return "string"
	case TypeTime:
		return "time"
	case TypeValue:
		return "value"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Fixed reports the width in bytes of one value of a fixed-width type, or 0
// for strings and values, which share the variable-width layout.
func (t Type) Fixed() int {
	switch t {
	case TypeInt, TypeFloat, TypeTime:
		return 8
	case TypeBool:
		return 1
	}
	return 0
}

// Action is what happens to one message.
type Action uint8

const (
	ActionKeep    Action = 0 // pass on (with any output fields merged)
	ActionDrop    Action = 1 // remove from the batch
	ActionReplace Action = 2 // bytes mode only: replace the body
	ActionFail    Action = 3 // mark the message errored with a reason
)

// AllRows, as the row of a columns-mode metadata entry, sets the key on
// every row of the call: one entry instead of one per row for a key most
// rows share (a validator's verdict), which a later entry for one row
// overrides, since entries apply in the order written.
const AllRows = 0xFFFFFFFF

// FieldRequired marks an input field the host must find in every message;
// a message without it fails on the host and never reaches the plugin.
const FieldRequired uint8 = 1

// FieldBinaryNumbers, on a value input, lets the host send a number it
// holds typed as KindInt or KindFloat (its 8 bytes) rather than as
// KindNumber (its text). Numbers it reads from JSON still come as text,
// so a plugin that sets it handles both. Added within version 1: an
// older agent ignores the bit and sends text.
const FieldBinaryNumbers uint8 = 2

// FieldKindsOnly, on a value input, asks for each row's kind and no data:
// for a check that only looks at whether a value is there (not null),
// which need not pay for its text. Added within version 1: an older agent
// ignores the bit and sends the data too.
const FieldKindsOnly uint8 = 4

// Field is one declared column.
type Field struct {
	Name     string
	Type     Type
	Required bool
	// BinaryNumbers and KindsOnly are the value-input flags
	// FieldBinaryNumbers and FieldKindsOnly; the host ignores them on
	// other fields.
	BinaryNumbers bool
	KindsOnly     bool
}

// Descriptor is what a plugin's init returns: how it wants batches.
type Descriptor struct {
	Mode Mode
	// Stateful means the plugin takes and returns per-key state (columns
	// mode only): the request and response carry a state section.
	Stateful bool
	// StateView means the plugin can render a stored state as JSON.
	StateView bool
	// Sequential means the plugin keeps what it saw between calls in its
	// own memory (a window, a running count), so one instance must get
	// every call, in order: the host refuses to spread its calls over
	// instances (parallel_calls).
	Sequential bool
	In         []Field
	Out        []Field
}

// DescriptorStateful is bit 0 of the descriptor's flags byte.
const DescriptorStateful uint8 = 1

// DescriptorStateView is bit 1 of the descriptor's flags byte.
const DescriptorStateView uint8 = 2

// DescriptorSequential is bit 2 of the descriptor's flags byte.
const DescriptorSequential uint8 = 4

// State validity codes in a response's state column.
const (
	StateUnchanged uint8 = 0
	StateSet       uint8 = 1
	StateDelete    uint8 = 2
)

// RowReplayed is bit 0 of a row's flags in a stateful request: the message
// was already applied to state before (a redelivery after a crash), so the
// plugin computes its output but its state updates are not kept.
const RowReplayed uint8 = 1

// AppendDescriptor encodes d after an OK status.
func AppendDescriptor(w *Writer, d Descriptor) {
	w.U8(uint8(d.Mode))
	var flags uint8
	if d.Stateful {
		flags |= DescriptorStateful
	}
	if d.StateView {
		flags |= DescriptorStateView
	}
	if d.Sequential {
		flags |= DescriptorSequential
	}
	w.U8(flags)
	w.U16(0)
	for _, fields := range [][]Field{d.In, d.Out} {
		w.U32(uint32(len(fields)))
		for _, f := range fields {
			w.U8(uint8(f.Type))
			var flags uint8
			if f.Required {
				flags |= FieldRequired
			}
			if f.BinaryNumbers && f.Type == TypeValue {
				flags |= FieldBinaryNumbers
			}
			if f.KindsOnly && f.Type == TypeValue {
				flags |= FieldKindsOnly
			}
			w.U8(flags)
			w.U16(uint16(len(f.Name)))
			w.Raw([]byte(f.Name))
		}
	}
}

// ReadDescriptor decodes a descriptor; r is positioned after the status.
func ReadDescriptor(r *Reader) (Descriptor, error) {
	var d Descriptor
	d.Mode = Mode(r.U8())
	dflags := r.U8()
	d.Stateful = dflags&DescriptorStateful != 0
	d.StateView = dflags&DescriptorStateView != 0
	d.Sequential = dflags&DescriptorSequential != 0
	r.U16()
	for i, dst := range []*[]Field{&d.In, &d.Out} {
		n := r.U32()
		if r.Err() != nil {
			break
		}
		if n > 1<<16 {
			return d, malformed("descriptor declares " + strconv.Itoa(int(n)) + " fields")
		}
		for j := uint32(0); j < n && r.Err() == nil; j++ {
			t := Type(r.U8())
			flags := r.U8()
			name := string(r.Raw(int(r.U16())))
			if r.Err() != nil {
				break // a truncated entry reads as type 0: report the truncation
			}
			if t < TypeInt || t > TypeValue {
				return d, malformed("descriptor " + [2]string{"input", "output"}[i] + " field " + strconv.Quote(name) + ": unknown type " + strconv.Itoa(int(t)))
			}
			if t == TypeValue && i == 1 {
				return d, malformed("descriptor output field " + strconv.Quote(name) + ": type value is for inputs only")
			}
			f := Field{Name: name, Type: t, Required: flags&FieldRequired != 0}
			if t == TypeValue {
				f.BinaryNumbers, f.KindsOnly = flags&FieldBinaryNumbers != 0, flags&FieldKindsOnly != 0
			}
			*dst = append(*dst, f)
		}
	}
	if err := r.Err(); err != nil {
		return d, err
	}
	if d.Mode != ModeBytes && d.Mode != ModeColumns {
		return d, malformed("descriptor: unknown mode " + strconv.Itoa(int(d.Mode)))
	}
	if d.StateView && !d.Stateful {
		return d, malformed("descriptor: a state view needs state")
	}
	if d.Stateful && d.Mode != ModeColumns {
		return d, malformed("descriptor: state needs columns mode")
	}
	return d, nil
}

// AppendColumn lays out one column in the shared column format: validity
// (one byte per row, 1 = present), padded to 8; then for fixed-width types
// the values, padded to 8; for strings, rows+1 u32 offsets into the data
// that follows, padded to 8, and the data, padded to 8. fixed holds rows
// values of t.Fixed() bytes each (ignored for strings); strs holds the
// strings (ignored otherwise).
func AppendColumn(w *Writer, t Type, valid []byte, fixed []byte, strs [][]byte) {
	w.Raw(valid)
	w.Align8()
	if t.Fixed() != 0 {
		w.Raw(fixed)
		w.Align8()
		return
	}
	var off uint32
	w.U32(0)
	for _, s := range strs {
		off += uint32(len(s))
		w.U32(off)
	}
	w.Align8()
	for _, s := range strs {
		w.Raw(s)
	}
	w.Align8()
}

// Column is a decoded column; its slices alias the buffer it was read from.
type Column struct {
	Type  Type
	Valid []byte // one byte per row, 1 = present
	Fixed []byte // rows × Type.Fixed() bytes, little-endian, 8-aligned if the buffer is
	Offs  []byte // strings: rows+1 little-endian u32 offsets into Data
	Data  []byte // strings: the concatenated bytes
}

// ReadColumn decodes one column of rows rows written by AppendColumn.
func ReadColumn(r *Reader, t Type, rows int) Column {
	c := Column{Type: t, Valid: r.Raw(rows)}
	r.Align8()
	if t.Fixed() != 0 {
		c.Fixed = r.Raw(rows * t.Fixed())
		r.Align8()
		return c
	}
	c.Offs = r.Raw((rows + 1) * 4)
	r.Align8()
	if r.Err() != nil {
		return c
	}
	end := binary.LittleEndian.Uint32(c.Offs[rows*4:])
	c.Data = r.Raw(int(end))
	r.Align8()
	return c
}

// StepBack returns the first i at which a string column's offsets step
// back (offs[i+1] < offs[i]; offs holds rows+1 of them, little-endian),
// or -1 if they are in order. The offsets are first looked at without a
// branch each: a step back sets the top bit of a 64-bit difference. Both
// sides of a call check every column they are given, a row at a time, so
// the loop is hot (in Wasm it cost as much as some plugins' work).
func StepBack(offs []byte, rows int) int {
	offs = offs[:4*(rows+1)]
	var back uint64
	for i := range rows {
		back |= uint64(binary.LittleEndian.Uint32(offs[4*i+4:])) - uint64(binary.LittleEndian.Uint32(offs[4*i:]))
	}
	if back>>63 == 0 {
		return -1
	}
	for i := range rows {
		if binary.LittleEndian.Uint32(offs[4*i+4:]) < binary.LittleEndian.Uint32(offs[4*i:]) {
			return i
		}
	}
	return -1
}

// Str returns row i of a string column, aliasing the buffer. It reports
// false if the offsets are out of order or out of range.
func (c *Column) Str(i int) ([]byte, bool) {
	lo := binary.LittleEndian.Uint32(c.Offs[i*4:])
	hi := binary.LittleEndian.Uint32(c.Offs[i*4+4:])
	if lo > hi || int(hi) > len(c.Data) {
		return nil, false
	}
	return c.Data[lo:hi:hi], true
}
