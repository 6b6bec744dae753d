package features

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Version is the first byte of every encoded State.
const Version = 1

// State is one user's features state. The zero value is a user with no
// events. Its buffers are reused by Decode, so a State kept in a pool
// decodes and updates without allocating once it has grown.
type State struct {
	count    uint64
	first    int64 // earliest event time applied, ns
	last     int64 // latest event time applied, ns
	sessions uint64
	total    float64
	known    []uint64    // events per configured event type, in config order
	others   []typeCount // other event types, in order of first appearance
	spans    []span      // recent sessions, sorted, separated by more than the gap
	rings    []ring      // one per Config.windows
}

// typeCount counts the events of one event type, known by its hash.
type typeCount struct {
	hash uint64
	n    uint64
}

// span is a session: the times of its first and last events.
type span struct{ start, end int64 }

// ring is a window's buckets. Slot floorMod(b, n) holds bucket b for the
// n buckets up to the one holding the user's latest event; advance clears
// slots as that moves on.
type ring struct {
	counts []uint64
	total  uint64    // sum of counts, so a count window is read in O(1)
	vals   []float64 // sum for sum and mean; the extreme for min and max
	seen   []distinctEntry
}

// distinctEntry is a value of a distinct window and the latest bucket it
// was seen in.
type distinctEntry struct {
	hash   uint64
	bucket int64
}

// reset empties s for c, keeping its buffers.
func (c *Config) reset(s *State) {
	s.count, s.first, s.last, s.sessions, s.total = 0, 0, 0, 0, 0
	s.known = zeroed(s.known, len(c.typeHashes))
	s.others = s.others[:0]
	s.spans = s.spans[:0]
	if cap(s.rings) < len(c.windows) {
		s.rings = make([]ring, len(c.windows))
	}
	s.rings = s.rings[:len(c.windows)]
	for i := range c.windows {
		w, r := &c.windows[i], &s.rings[i]
		r.counts = zeroed(r.counts, int(w.n))
		r.total = 0
		if w.agg == aggSum || w.agg == aggMean || w.agg == aggMin || w.agg == aggMax {
			r.vals = zeroed(r.vals, int(w.n))
		} else {
			r.vals = r.vals[:0]
		}
		r.seen = r.seen[:0]
	}
}

func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// Encoded layout, version 1. uv = unsigned LEB128 varint, sv = zigzag
// varint, f64 = 8 bytes little-endian, u32/u64 = little-endian.
//
//	u8  version = 1
//	uv  event count
//	sv  latest event time, ns since the epoch
//	uv  latest − earliest event time, ns
//	uv  sessions
//	f64 total value
//	uv  number of event types T, then T × (u64 FNV-1a hash of the type, uv count):
//	    the configured types seen, in config order, then others in order of
//	    first appearance
//	uv  number of remembered sessions S, then S × (uv latest − end, uv end − start)
//	uv  number of windows W, then W × (u32 id, uv payload length, payload)
//
// A count, sum, mean, min or max window's payload is its non-empty buckets,
// newest first: uv count K, then K × (uv age gap, uv events, [f64 value]),
// where a bucket's age is how many buckets it lies before the latest
// event's, and the gap is its age minus the previous bucket's age (the
// first is its age). The f64 is present for sum, mean, min and max.
// A distinct window's payload: uv count D, then D × (u64 value hash, uv age),
// newest first, ties by hash.
//
// Every list is written in a defined order, so the same events give the
// same bytes. Windows are matched by id on decode: a window the config no
// longer has is dropped, a new one starts empty.

// Encode appends s's encoding to dst. s must be the zero State or one
// decoded or updated with c.
func (c *Config) Encode(dst []byte, s *State) []byte {
	if s.count == 0 {
		c.reset(s) // the zero State has no buffers yet
	}
	dst = append(dst, Version)
	dst = binary.AppendUvarint(dst, s.count)
	dst = binary.AppendVarint(dst, s.last)
	dst = binary.AppendUvarint(dst, uint64(s.last-s.first))
	dst = binary.AppendUvarint(dst, s.sessions)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.total))
	dst = binary.AppendUvarint(dst, uint64(s.seenKnown()+len(s.others)))
	for i, n := range s.known {
		if n > 0 {
			dst = binary.LittleEndian.AppendUint64(dst, c.typeHashes[i])
			dst = binary.AppendUvarint(dst, n)
		}
	}
	for _, t := range s.others {
		dst = binary.LittleEndian.AppendUint64(dst, t.hash)
		dst = binary.AppendUvarint(dst, t.n)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.spans)))
	for i := len(s.spans) - 1; i >= 0; i-- {
		sp := s.spans[i]
		dst = binary.AppendUvarint(dst, uint64(s.last-sp.end))
		dst = binary.AppendUvarint(dst, uint64(sp.end-sp.start))
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.windows)))
	for i := range c.windows {
		w, r := &c.windows[i], &s.rings[i]
		dst = binary.LittleEndian.AppendUint32(dst, w.id)
		// The payload length is written after the payload is built, so
		// reserve its maximum and move the payload back if it was less.
		lenAt := len(dst)
		dst = append(dst, make([]byte, binary.MaxVarintLen64)...)
		start := len(dst)
		dst = c.appendRing(dst, w, r, floorDiv(s.last, w.width))
		n := len(dst) - start
		var tmp [binary.MaxVarintLen64]byte
		m := binary.PutUvarint(tmp[:], uint64(n))
		copy(dst[lenAt:], tmp[:m])
		copy(dst[lenAt+m:], dst[start:])
		dst = dst[:lenAt+m+n]
	}
	return dst
}

func (c *Config) appendRing(dst []byte, w *window, r *ring, head int64) []byte {
	if w.agg == aggDistinct {
		slices.SortFunc(r.seen, func(a, b distinctEntry) int {
			if a.bucket != b.bucket {
				return cmpI64(b.bucket, a.bucket)
			}
			return cmpU64(a.hash, b.hash)
		})
		dst = binary.AppendUvarint(dst, uint64(len(r.seen)))
		for _, e := range r.seen {
			dst = binary.LittleEndian.AppendUint64(dst, e.hash)
			dst = binary.AppendUvarint(dst, uint64(head-e.bucket))
		}
		return dst
	}
	counts, vals := r.counts, r.vals
	k := 0
	for _, n := range counts {
		if n > 0 {
			k++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(k))
	// Room for every bucket at its largest, so the loop stores by index:
	// it runs over every bucket, and in Wasm an append costs several
	// times a store.
	width := 2 * binary.MaxVarintLen64
	if len(vals) > 0 {
		width += 8
	}
	dst = slices.Grow(dst, k*width)
	p := len(dst)
	buf := dst[:cap(dst)]
	prev := int64(0)
	slot := floorMod(head, w.n)
	for age := int64(0); age < w.n; age, slot = age+1, slot-1 {
		if slot < 0 {
			slot += w.n
		}
		n := counts[slot]
		if n == 0 {
			continue
		}
		if gap := age - prev; gap < 0x80 && n < 0x80 {
			buf[p], buf[p+1] = byte(gap), byte(n)
			p += 2
		} else {
			p += binary.PutUvarint(buf[p:], uint64(gap))
			p += binary.PutUvarint(buf[p:], n)
		}
		prev = age
		if len(vals) > 0 {
			binary.LittleEndian.PutUint64(buf[p:], math.Float64bits(vals[slot]))
			p += 8
		}
	}
	return buf[:p]
}

// ErrVersion is returned (wrapped) for a state written by another format
// version.
var ErrVersion = errors.New("unknown state format version")

// Decode loads an encoded state into s, reusing its buffers. An empty b is
// a user with no events. Malformed input is an error, never a panic.
func (c *Config) Decode(s *State, b []byte) error {
	c.reset(s)
	if len(b) == 0 {
		return nil
	}
	if err := c.decode(s, b); err != nil {
		c.reset(s)
		return fmt.Errorf("decode features state (%d bytes): %w", len(b), err)
	}
	return nil
}

var (
	errTruncated = errors.New("truncated")
	errCorrupt   = errors.New("corrupt")
)

// reader reads b from position p; p == len(b) once it failed.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) left() int { return len(r.b) - r.p }

func (r *reader) uv() uint64 {
	v, n := binary.Uvarint(r.b[r.p:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.p += n
	return v
}

// fail records the first error and skips to the end, so later reads,
// the inlined fast path included, read nothing.
func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.p = len(r.b)
}

func (r *reader) sv() int64 {
	v, n := binary.Varint(r.b[r.p:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.p += n
	return v
}

func (r *reader) u64() uint64 {
	if r.left() < 8 {
		r.fail(errTruncated)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.p:])
	r.p += 8
	return v
}

func (r *reader) u32() uint32 {
	if r.left() < 4 {
		r.fail(errTruncated)
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.p:])
	r.p += 4
	return v
}

// count reads a list length, refusing one that the remaining bytes could
// not hold, so corrupt input cannot make Decode allocate much.
func (r *reader) count(minSize int) int {
	n := r.uv()
	if r.err == nil && n > uint64(r.left()/minSize) {
		r.fail(fmt.Errorf("%w: list of %d entries in %d bytes", errCorrupt, n, r.left()))
		return 0
	}
	return int(n)
}

func (c *Config) decode(s *State, b []byte) error {
	if b[0] != Version {
		return fmt.Errorf("%w %d (this plugin reads %d)", ErrVersion, b[0], Version)
	}
	r := &reader{b: b[1:]}
	s.count = r.uv()
	s.last = r.sv()
	width := r.uv()
	s.sessions = r.uv()
	s.total = math.Float64frombits(r.u64())
	if r.err != nil {
		return r.err
	}
	// uint64(last) ^ 1<<63 is how far last lies above the smallest int64.
	if width > uint64(s.last)^1<<63 {
		return fmt.Errorf("%w: earliest event before the representable range", errCorrupt)
	}
	s.first = s.last - int64(width)

	nt := r.count(9)
	for range nt {
		t := typeCount{hash: r.u64(), n: r.uv()}
		if r.err != nil {
			return r.err
		}
		if t.n == 0 {
			return fmt.Errorf("%w: event type with no events", errCorrupt)
		}
		if k := slices.Index(c.typeHashes, t.hash); k >= 0 {
			if s.known[k] != 0 {
				return fmt.Errorf("%w: event type listed twice", errCorrupt)
			}
			s.known[k] = t.n
			continue
		}
		if slices.ContainsFunc(s.others, func(o typeCount) bool { return o.hash == t.hash }) {
			return fmt.Errorf("%w: event type listed twice", errCorrupt)
		}
		// A config with fewer other types than the one that wrote the
		// state keeps the first ones, so the size bound holds.
		if len(s.others) < c.maxOther {
			s.others = append(s.others, t)
		}
	}

	ns := r.count(2)
	if ns > 0 && r.err == nil {
		s.spans = zeroed(s.spans, ns)
		for i := ns - 1; i >= 0; i-- {
			age, length := r.uv(), r.uv()
			if r.err != nil {
				return r.err
			}
			if age > uint64(s.last-s.first) || length > uint64(s.last-s.first)-age {
				return fmt.Errorf("%w: session outside the user's events", errCorrupt)
			}
			end := s.last - int64(age)
			s.spans[i] = span{start: end - int64(length), end: end}
			if i < ns-1 && s.spans[i].end >= s.spans[i+1].start {
				return fmt.Errorf("%w: sessions overlap", errCorrupt)
			}
		}
		if len(s.spans) > c.maxSpans {
			s.spans = append(s.spans[:0], s.spans[len(s.spans)-c.maxSpans:]...)
		}
	}

	nw := r.count(5)
	done := make([]bool, 0, maxWindows+1)
	done = done[:len(c.windows)]
	for range nw {
		id := r.u32()
		n := r.uv()
		if r.err != nil {
			return r.err
		}
		if n > uint64(r.left()) {
			return errTruncated
		}
		payload := r.b[r.p : r.p+int(n)]
		r.p += int(n)
		for i := range c.windows {
			if c.windows[i].id == id && !done[i] {
				if err := c.readRing(&c.windows[i], &s.rings[i], floorDiv(s.last, c.windows[i].width), payload); err != nil {
					return fmt.Errorf("window %s: %w", c.windows[i].name, err)
				}
				done[i] = true
				break
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.left() != 0 {
		return fmt.Errorf("%w: %d bytes after the end", errCorrupt, r.left())
	}
	return nil
}

func (c *Config) readRing(w *window, rg *ring, head int64, payload []byte) error {
	r := &reader{b: payload}
	if w.agg == aggDistinct {
		n := r.count(9)
		for range n {
			e := distinctEntry{hash: r.u64()}
			age := r.uv()
			if r.err != nil {
				return r.err
			}
			if age >= uint64(w.n) {
				return fmt.Errorf("%w: value older than the window", errCorrupt)
			}
			e.bucket = head - int64(age)
			if slices.ContainsFunc(rg.seen, func(o distinctEntry) bool { return o.hash == e.hash }) {
				return fmt.Errorf("%w: value listed twice", errCorrupt)
			}
			if len(rg.seen) < w.maxDistinct {
				rg.seen = append(rg.seen, e)
			}
		}
	} else {
		n := r.count(2)
		if r.err != nil {
			return r.err
		}
		// The hot loop of Decode, over up to every bucket: it works on
		// locals, not through r and rg, since in Wasm each of those
		// accesses is a load from linear memory.
		b, p := r.b, r.p
		counts, vals := rg.counts, rg.vals
		nb := uint64(len(counts))
		slot := floorMod(head, w.n) + 1 // slot of age 0, plus one
		age, total := uint64(0), uint64(0)
		for i := range n {
			var gap, cnt uint64
			if p+1 < len(b) && b[p]|b[p+1] < 0x80 {
				// Both one byte, as nearly always: read them here, since
				// a call costs far more than this in Wasm.
				gap, cnt = uint64(b[p]), uint64(b[p+1])
				p += 2
			} else {
				r.p = p
				gap, cnt = r.uv(), r.uv()
				p = r.p
			}
			if (i > 0 && gap == 0) || gap >= nb || age+gap >= nb || cnt == 0 {
				return fmt.Errorf("%w: bad bucket", errCorrupt)
			}
			age += gap
			slot -= int64(gap)
			if slot <= 0 {
				slot += int64(nb)
			}
			counts[slot-1] = cnt
			total += cnt
			if len(vals) > 0 {
				if len(b)-p < 8 {
					return errTruncated
				}
				vals[slot-1] = math.Float64frombits(binary.LittleEndian.Uint64(b[p:]))
				p += 8
			}
		}
		r.p = p
		rg.total = total
	}
	if r.err != nil {
		return r.err
	}
	if r.left() != 0 {
		return fmt.Errorf("%w: %d bytes after the window's end", errCorrupt, r.left())
	}
	return nil
}

// seenKnown is how many configured event types the user has had.
func (s *State) seenKnown() int {
	k := 0
	for _, n := range s.known {
		if n > 0 {
			k++
		}
	}
	return k
}

// MaxStateSize is the most bytes Encode writes for this config, however
// many events a user has.
func (c *Config) MaxStateSize() int {
	const uv = binary.MaxVarintLen64
	size := 1 + uv + uv + uv + uv + 8
	size += uv + (len(c.typeHashes)+c.maxOther)*(8+uv)
	size += uv + c.maxSpans*(uv+uv)
	size += uv
	for _, w := range c.windows {
		ageLen := uvarintLen(uint64(w.n - 1))
		payload := uv
		switch {
		case w.agg == aggDistinct:
			payload += w.maxDistinct * (8 + ageLen)
		case w.agg == aggCount:
			payload += int(w.n) * (ageLen + uv)
		default:
			payload += int(w.n) * (ageLen + uv + 8)
		}
		size += 4 + uvarintLen(uint64(payload)) + payload
	}
	return size
}

func uvarintLen(v uint64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutUvarint(tmp[:], v)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpI64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
