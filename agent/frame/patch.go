package frame

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// A step that changes a few things in a frame (rejects some rows, adds a
// column) used to encode the whole frame anew: a megabyte written, and
// garbage, per step per frame. A frame's body may instead end in patches,
// each what one step changed, which Decode applies in order:
//
//	patch magic (8 bytes) | columns u32 | late rejects u32
//	per column: type u8 | flags u8 | name length u16 | name
//	padding to 8
//	the rejected rows, u32 each; padding to 8
//	their reasons: a string column of that many rows
//	each column in the ABI layout, of the frame's rows
//
// A column of a patch replaces the frame's column of the same name and
// kind (field or metadata), or is added after the others; a rejected row
// keeps its first reason. Decoded, a patched frame is the frame the
// whole encoding would have made, column order included.
//
// A patch is written in place, after the body in the same buffer, when
// the buffer has room: csv_file makes its frames with room for about as
// much again (NewMessage). The room is shared by every message whose
// body is the buffer (Benthos copies messages without copying bodies,
// for a broker's outputs or a branch), so a step claims it: the buffer's
// spare, in the message's context, records how many of its bytes are in
// a body, and a patch is appended only to a body of exactly that length,
// with a compare-and-swap. One copy wins; the others encode the frame
// anew, as before. Bodies are handed out with no capacity past their
// length, so no code outside this package can append into the room.

// patchMagic starts every patch.
const patchMagic = "\x00sluicep"

// spare is the room after a frame in its buffer.
type spare struct {
	buf []byte // the buffer, to its capacity
	// used is how many of buf's bytes are some message's body: the only
	// body a patch may be appended to in place.
	used atomic.Int64
}

type spareKey struct{}

// newBuffer returns an empty buffer for a frame of about size bytes, with
// as much room again for patches.
func newBuffer(size int) []byte { return make([]byte, 0, 2*size) }

// NewMessage returns a message whose body is the frame body, a buffer
// made by this package's encoders, and whose context records the room
// left after it for the patches of the steps that follow (Update).
func NewMessage(body []byte) *service.Message {
	msg := service.NewMessage(body[:len(body):len(body)])
	if cap(body) == len(body) {
		return msg
	}
	s := &spare{buf: body[:cap(body)]}
	s.used.Store(int64(len(body)))
	return msg.WithContext(context.WithValue(msg.Context(), spareKey{}, s))
}

// Update sets msg's body, body, to f (decoded from body) with its changes:
// the rows rejected and the columns set since it was decoded, as a patch
// appended to body in place if msg's buffer has room and no other message
// has appended to it, or else the whole frame encoded anew.
func Update(msg *service.Message, body []byte, f *Frame) {
	cols, late := f.changes()
	if len(cols) == 0 && len(late) == 0 {
		return
	}
	if s, _ := msg.Context().Value(spareKey{}).(*spare); s != nil && len(body) > 0 && &s.buf[0] == &body[0] {
		bound := f.patchBound(cols, late)
		n := int64(len(body))
		if len(body)%8 == 0 && n+int64(bound) <= int64(len(s.buf)) && s.used.CompareAndSwap(n, n+int64(bound)) {
			w := abi.Writer{Buf: s.buf[:len(body)]}
			f.appendPatch(&w, cols, late)
			s.used.Store(int64(len(w.Buf)))
			msg.SetBytes(w.Buf[:len(w.Buf):len(w.Buf)])
			return
		}
	}
	whole := f.Append(nil, nil)
	msg.SetBytes(whole[:len(whole):len(whole)])
}

// changes returns the columns set since decoding, in frame order, and the
// rows rejected since then, in order.
func (f *Frame) changes() (cols []*Column, late []int) {
	for c := range f.Cols {
		if f.Cols[c].set {
			cols = append(cols, &f.Cols[c])
		}
	}
	for i := range f.rejected {
		if f.late[i] == lateSinceDecoding {
			late = append(late, i)
		}
	}
	slices.Sort(late)
	return cols, late
}

// patchBound bounds the size of a patch of cols and late.
func (f *Frame) patchBound(cols []*Column, late []int) int {
	n := len(patchMagic) + 8 + 8 + 4*len(late) + 8 + 3*(len(late)+8) + 4*(len(late)+1)
	for _, i := range late {
		n += len(f.rejected[i])
	}
	for _, col := range cols {
		n += col.sizeBound(f.Rows)
	}
	return n
}

// appendPatch writes a patch of cols and late after the frame in w, which
// ends on a multiple of 8 from the frame's start (the buffer's).
func (f *Frame) appendPatch(w *abi.Writer, cols []*Column, late []int) {
	w.Raw([]byte(patchMagic))
	w.U32(uint32(len(cols)))
	w.U32(uint32(len(late)))
	for _, col := range cols {
		w.U8(uint8(col.Type))
		w.U8(flagsOf(col.Meta, col.Raw, col.Const))
		w.U16(uint16(len(col.Name)))
		w.Raw([]byte(col.Name))
	}
	align(w, 0)
	reasons := Builder{Type: abi.TypeString}
	for _, i := range late {
		w.U32(uint32(i))
		reasons.Text(f.rejected[i])
	}
	align(w, 0)
	reasons.append(w, 0)
	for _, col := range cols {
		appendColumn(w, 0, col, f.Rows, nil)
	}
}

// readPatches applies the patches after the frame in r.
func (f *Frame) readPatches(r *abi.Reader) error {
	for r.Err() == nil && r.Remaining() > 0 {
		if rest := r.Remaining(); string(r.Raw(len(patchMagic))) != patchMagic {
			return fmt.Errorf("malformed frame: %d bytes after it that are no patch", rest)
		}
		ncols, nlate := int(r.U32()), int(r.U32())
		if r.Err() == nil && (ncols > 1<<16 || nlate > f.Rows) {
			return fmt.Errorf("malformed frame: a patch of %d columns and %d rejects in a frame of %d rows", ncols, nlate, f.Rows)
		}
		cols := make([]Column, ncols)
		for c := range cols {
			if err := readColumnHeader(r, &cols[c]); err != nil {
				return err
			}
		}
		r.Align8()
		rows := make([]int, nlate)
		for j := range rows {
			rows[j] = int(r.U32())
		}
		r.Align8()
		reasons := abi.ReadColumn(r, abi.TypeString, nlate)
		for c := range cols {
			cols[c].Column = abi.ReadColumn(r, cols[c].Type, cols[c].stored(f.Rows))
		}
		if err := r.Err(); err != nil {
			return fmt.Errorf("malformed frame: patch: %w", err)
		}
		if err := checkOffsets(reasons, nlate); err != nil {
			return err
		}
		for c := range cols {
			if err := checkOffsets(cols[c].Column, cols[c].stored(f.Rows)); err != nil {
				return err
			}
		}
		for j, i := range rows {
			if i >= f.Rows {
				return fmt.Errorf("malformed frame: a patch rejects row %d of %d", i, f.Rows)
			}
			if f.Rejected(i) {
				continue
			}
			lo, hi := binary.LittleEndian.Uint32(reasons.Offs[4*j:]), binary.LittleEndian.Uint32(reasons.Offs[4*j+4:])
			f.addLate(i, string(reasons.Data[lo:hi]), lateFromPatch)
		}
		for _, col := range cols {
			f.replace(col)
		}
	}
	return r.Err()
}
