package abi

import (
	"encoding/binary"
	"strconv"
)

// Writer appends little-endian values to Buf. It never fails; the caller
// owns Buf and may reuse it with Reset.
type Writer struct {
	Buf []byte
}

func (w *Writer) Reset()       { w.Buf = w.Buf[:0] }
func (w *Writer) Len() int     { return len(w.Buf) }
func (w *Writer) U8(v uint8)   { w.Buf = append(w.Buf, v) }
func (w *Writer) U16(v uint16) { w.Buf = binary.LittleEndian.AppendUint16(w.Buf, v) }
func (w *Writer) U32(v uint32) { w.Buf = binary.LittleEndian.AppendUint32(w.Buf, v) }
func (w *Writer) U64(v uint64) { w.Buf = binary.LittleEndian.AppendUint64(w.Buf, v) }
func (w *Writer) Raw(b []byte) { w.Buf = append(w.Buf, b...) }

// Bytes writes a u32 length and then b.
func (w *Writer) Bytes(b []byte) {
	w.U32(uint32(len(b)))
	w.Buf = append(w.Buf, b...)
}

// String writes a u32 length and then s.
func (w *Writer) String(s string) {
	w.U32(uint32(len(s)))
	w.Buf = append(w.Buf, s...)
}

// Align8 pads with zero bytes to the next multiple of 8 from the start of
// the buffer, where columns begin so a guest can view them in place.
func (w *Writer) Align8() {
	for len(w.Buf)%8 != 0 {
		w.Buf = append(w.Buf, 0)
	}
}

// Grow returns n zeroed bytes appended to the buffer, for the caller to fill
// in place. The slice is valid until the next write.
func (w *Writer) Grow(n int) []byte {
	start := len(w.Buf)
	w.Buf = append(w.Buf, make([]byte, n)...)
	return w.Buf[start : start+n : start+n]
}

// Reader decodes little-endian values from a buffer it does not own. The
// first read past the end records an error and every later read returns
// zero values, so a decoder checks Err once at the end.
type Reader struct {
	buf []byte
	off int
	err error
}

// NewReader reads b from offset 0. Slices Reader returns alias b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

func (r *Reader) Err() error  { return r.err }
func (r *Reader) Offset() int { return r.off }

// Remaining reports how many bytes are left.
func (r *Reader) Remaining() int { return len(r.buf) - r.off }

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf)-r.off {
		r.err = malformed("truncated at byte " + strconv.Itoa(r.off) + ": want " + strconv.Itoa(n) + " more bytes, have " + strconv.Itoa(len(r.buf)-r.off))
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *Reader) U8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *Reader) U16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *Reader) U32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *Reader) U64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Raw returns the next n bytes, aliasing the buffer.
func (r *Reader) Raw(n int) []byte { return r.take(n) }

// Bytes reads a u32 length and returns that many bytes, aliasing the buffer.
func (r *Reader) Bytes() []byte { return r.take(int(r.U32())) }

// Align8 skips padding to the next multiple of 8.
func (r *Reader) Align8() {
	if pad := (8 - r.off%8) % 8; pad > 0 {
		r.take(pad)
	}
}

// Error is a malformed-buffer error.
type Error struct{ msg string }

func (e *Error) Error() string { return "abi: " + e.msg }

func malformed(msg string) error { return &Error{msg: msg} }
