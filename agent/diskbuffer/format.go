package diskbuffer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// The on-disk format, version 1. All integers are little endian.
//
// A segment file is named <base>.seg, base being the log position of its
// first record as 20 decimal digits, and starts with a header:
//
//	[0:8]   magic "sluiceSG"
//	[8:12]  format version (1)
//	[12:16] zero
//	[16:24] base: log position of the first record
//	[24:32] base sequence number: sequence number of the first record
//	[32:40] creation time, Unix nanoseconds (an upper bound of the age of
//	        every record of the previous segment)
//	[40:44] CRC-32C of [0:40]
//	[44:48] zero
//
// Records follow, back to back. A log position counts record bytes only,
// from the first record ever written: the record at position p of a
// segment with base b starts at file offset segHeaderSize+p-b. A record is
//
//	[0:4]  n: length of the payload
//	[4:8]  CRC-32C (Castagnoli) of the payload
//	[8:]   payload, n bytes:
//	         sequence number  u64 (one more than the previous record's)
//	         write time       i64, Unix nanoseconds
//	         flags            u8, bit 0: last message of its written batch
//	         metadata count   uvarint
//	         metadata entries key (uvarint length, bytes), value (tag u8, then
//	                          as the tag says; see appendMetaValue)
//	         content          the rest of the payload
const (
	formatVersion  = 1
	segHeaderSize  = 48
	recHeaderSize  = 8
	recFixedSize   = 8 + 8 + 1 // seq, time, flags
	flagBatchEnd   = 1
	segmentSuffix  = ".seg"
	cursorFileName = "cursor"
	lockFileName   = "lock"
)

const (
	segMagic    = "sluiceSG"
	cursorMagic = "sluiceCR"
)

// castagnoli is the CRC-32C table, set once.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record or header that fails its checks: a torn write
// at the tail of the log, or damage anywhere else.
var errCorrupt = errors.New("corrupt")

// segHeader is a decoded segment header.
type segHeader struct {
	base, baseSeq uint64
	created       int64
}

func (h segHeader) encode() []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint64(b[16:], h.base)
	binary.LittleEndian.PutUint64(b[24:], h.baseSeq)
	binary.LittleEndian.PutUint64(b[32:], uint64(h.created))
	binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[:40], castagnoli))
	return b
}

// errVersion is returned for a file written by another format version: it
// is not damaged, this build just cannot read it.
type errVersion struct{ got uint32 }

func (e errVersion) Error() string {
	return fmt.Sprintf("format version %d, this build reads version %d only: run the sluice version that wrote it to drain the buffer, or move the directory away", e.got, formatVersion)
}

func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, fmt.Errorf("header is %d bytes, want %d: %w", len(b), segHeaderSize, errCorrupt)
	}
	if string(b[:8]) != segMagic {
		return segHeader{}, fmt.Errorf("bad magic %q: %w", b[:8], errCorrupt)
	}
	if crc32.Checksum(b[:40], castagnoli) != binary.LittleEndian.Uint32(b[40:]) {
		return segHeader{}, fmt.Errorf("header checksum mismatch: %w", errCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return segHeader{}, errVersion{v}
	}
	return segHeader{
		base:    binary.LittleEndian.Uint64(b[16:]),
		baseSeq: binary.LittleEndian.Uint64(b[24:]),
		created: int64(binary.LittleEndian.Uint64(b[32:])),
	}, nil
}

// appendRecord appends msg to dst as one record. It reads the message's
// bytes and metadata and keeps neither.
func appendRecord(dst []byte, seq uint64, ts int64, last bool, msg *service.Message) ([]byte, error) {
	content, err := msg.AsBytes()
	if err != nil {
		return dst, fmt.Errorf("message content: %w", err)
	}
	start := len(dst)
	dst = append(dst, make([]byte, recHeaderSize)...)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	var flags byte
	if last {
		flags |= flagBatchEnd
	}
	dst = append(dst, flags)
	// Counted first so that the count can precede the entries without a
	// second pass over a map.
	n := 0
	_ = msg.MetaWalkMut(func(string, any) error { n++; return nil })
	dst = binary.AppendUvarint(dst, uint64(n))
	if n > 0 {
		err = msg.MetaWalkMut(func(k string, v any) error {
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			var err error
			dst, err = appendMetaValue(dst, v)
			if err != nil {
				return fmt.Errorf("metadata %q: %w", k, err)
			}
			return nil
		})
		if err != nil {
			return dst[:start], err
		}
	}
	dst = append(dst, content...)
	payload := dst[start+recHeaderSize:]
	if len(payload) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("message of %d bytes is too large for a record", len(payload))
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst, nil
}

// Metadata value tags. Benthos metadata values are usually strings; the
// other common scalar types keep their type through the buffer, and
// anything else goes through JSON (so a structured value comes back as
// the JSON decoding of itself: numbers inside it become float64).
const (
	tagString = 's'
	tagInt    = 'i'
	tagUint   = 'u'
	tagFloat  = 'f'
	tagBool   = 'b'
	tagNil    = 'n'
	tagJSON   = 'j'
)

func appendMetaValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		dst = append(dst, tagString)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		return append(dst, v...), nil
	case int64:
		return binary.AppendVarint(append(dst, tagInt), v), nil
	case int:
		return binary.AppendVarint(append(dst, tagInt), int64(v)), nil
	case int32:
		return binary.AppendVarint(append(dst, tagInt), int64(v)), nil
	case uint64:
		return binary.AppendUvarint(append(dst, tagUint), v), nil
	case uint32:
		return binary.AppendUvarint(append(dst, tagUint), uint64(v)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagFloat), math.Float64bits(v)), nil
	case bool:
		b := byte(0)
		if v {
			b = 1
		}
		return append(dst, tagBool, b), nil
	case nil:
		return append(dst, tagNil), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("value of type %T cannot be stored: %w", v, err)
	}
	dst = append(dst, tagJSON)
	dst = binary.AppendUvarint(dst, uint64(len(j)))
	return append(dst, j...), nil
}

// record is a record decoded in place: payload is a view of the buffer it
// was read into.
type record struct {
	seq     uint64
	time    int64
	last    bool
	payload []byte // from the metadata count on
}

// size is the record's length on disk.
func (r record) size() int64 { return int64(recHeaderSize + recFixedSize + len(r.payload)) }

// parseRecord decodes the record at the start of b. It gives ok=false
// when b holds only part of it (need then says how many bytes the whole
// record takes), and errCorrupt when the checksum fails (checked with
// verify).
func parseRecord(b []byte, maxLen int64, verify bool) (rec record, need int64, ok bool, err error) {
	if len(b) < recHeaderSize {
		return record{}, recHeaderSize, false, nil
	}
	n := int64(binary.LittleEndian.Uint32(b))
	if n < recFixedSize+1 || n > maxLen {
		// +1: the metadata count is always there.
		return record{}, 0, false, fmt.Errorf("record length %d out of range: %w", n, errCorrupt)
	}
	if int64(len(b)) < recHeaderSize+n {
		return record{}, recHeaderSize + n, false, nil
	}
	payload := b[recHeaderSize : recHeaderSize+n]
	if verify && crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return record{}, 0, false, fmt.Errorf("record checksum mismatch: %w", errCorrupt)
	}
	return record{
		seq:     binary.LittleEndian.Uint64(payload),
		time:    int64(binary.LittleEndian.Uint64(payload[8:])),
		last:    payload[16]&flagBatchEnd != 0,
		payload: payload[recFixedSize:],
	}, recHeaderSize + n, true, nil
}

// message builds the record's message, copying what it keeps: the
// record's buffer is reused. One small allocation per message costs less
// than a large buffer per batch kept alive by its messages, which the
// garbage collector zeroes and returns to the OS over and over.
func (r record) message() (*service.Message, error) {
	b := r.payload
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("record %d: metadata count: %w", r.seq, errCorrupt)
	}
	b = b[k:]
	type kv struct {
		k string
		v any
	}
	var metas []kv
	for i := uint64(0); i < n; i++ {
		key, rest, err := readBytes(b)
		if err != nil {
			return nil, fmt.Errorf("record %d: metadata key: %w", r.seq, err)
		}
		v, rest, err := readMetaValue(rest)
		if err != nil {
			return nil, fmt.Errorf("record %d: metadata %q: %w", r.seq, key, err)
		}
		metas = append(metas, kv{string(key), v})
		b = rest
	}
	msg := service.NewMessage(append([]byte(nil), b...))
	for _, m := range metas {
		msg.MetaSetMut(m.k, m.v)
	}
	return msg, nil
}

func readBytes(b []byte) (v, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errCorrupt
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

func readMetaValue(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errCorrupt
	}
	tag, b := b[0], b[1:]
	switch tag {
	case tagString:
		v, rest, err := readBytes(b)
		return string(v), rest, err
	case tagInt:
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, nil, errCorrupt
		}
		return v, b[k:], nil
	case tagUint:
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, nil, errCorrupt
		}
		return v, b[k:], nil
	case tagFloat:
		if len(b) < 8 {
			return nil, nil, errCorrupt
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:], nil
	case tagBool:
		if len(b) < 1 {
			return nil, nil, errCorrupt
		}
		return b[0] != 0, b[1:], nil
	case tagNil:
		return nil, b, nil
	case tagJSON:
		j, rest, err := readBytes(b)
		if err != nil {
			return nil, nil, err
		}
		var v any
		if err := json.Unmarshal(j, &v); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errCorrupt, err)
		}
		return v, rest, nil
	}
	return nil, nil, fmt.Errorf("unknown value tag %q: %w", tag, errCorrupt)
}

// The cursor file holds two slots of cursorSlotSize bytes, written in turn,
// so that a torn write of one leaves the other: on open the valid slot with
// the higher generation wins. A slot is
//
//	[0:8]   magic "sluiceCR"
//	[8:12]  format version (1)
//	[12:16] number of done ranges, at most maxCursorRanges
//	[16:24] generation
//	[24:32] ack position: every record before it is acknowledged or dropped
//	[32:40] ack sequence number: the sequence number of the record there
//	[40:]   done ranges: start position, end position, start sequence
//	        number, end sequence number (u64 each); records past the ack
//	        position that are acknowledged or dropped already
//	then    CRC-32C of everything before it
const (
	cursorSlotSize   = 4096
	cursorFixedSize  = 40
	cursorRangeSize  = 32
	maxCursorRanges  = (cursorSlotSize - cursorFixedSize - 4) / cursorRangeSize
	cursorFileLength = 2 * cursorSlotSize
)

// span is a run of records: positions [pos, end), sequence numbers
// [seq, endSeq).
type span struct {
	pos, end    uint64
	seq, endSeq uint64
}

type cursor struct {
	gen    uint64
	ack    span // pos and seq only
	ranges []span
}

func (c cursor) encode(dst []byte) []byte {
	ranges := c.ranges
	if len(ranges) > maxCursorRanges {
		// Forgetting done ranges is safe: their records come again after
		// a restart, which at-least-once delivery allows.
		ranges = ranges[:maxCursorRanges]
	}
	b := dst[:0]
	b = append(b, cursorMagic...)
	b = binary.LittleEndian.AppendUint32(b, formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ranges)))
	b = binary.LittleEndian.AppendUint64(b, c.gen)
	b = binary.LittleEndian.AppendUint64(b, c.ack.pos)
	b = binary.LittleEndian.AppendUint64(b, c.ack.seq)
	for _, r := range ranges {
		b = binary.LittleEndian.AppendUint64(b, r.pos)
		b = binary.LittleEndian.AppendUint64(b, r.end)
		b = binary.LittleEndian.AppendUint64(b, r.seq)
		b = binary.LittleEndian.AppendUint64(b, r.endSeq)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCursor(b []byte) (cursor, error) {
	if len(b) < cursorFixedSize+4 || string(b[:8]) != cursorMagic {
		return cursor{}, errCorrupt
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return cursor{}, errVersion{v}
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if n > maxCursorRanges {
		return cursor{}, errCorrupt
	}
	end := cursorFixedSize + int(n)*cursorRangeSize
	if crc32.Checksum(b[:end], castagnoli) != binary.LittleEndian.Uint32(b[end:]) {
		return cursor{}, errCorrupt
	}
	c := cursor{
		gen: binary.LittleEndian.Uint64(b[16:]),
		ack: span{pos: binary.LittleEndian.Uint64(b[24:]), seq: binary.LittleEndian.Uint64(b[32:])},
	}
	for i := range int(n) {
		r := b[cursorFixedSize+i*cursorRangeSize:]
		c.ranges = append(c.ranges, span{
			pos:    binary.LittleEndian.Uint64(r),
			end:    binary.LittleEndian.Uint64(r[8:]),
			seq:    binary.LittleEndian.Uint64(r[16:]),
			endSeq: binary.LittleEndian.Uint64(r[24:]),
		})
	}
	return c, nil
}
