package expect

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
)

// Uniqueness in a stream is remembered per key: the step is keyed by one
// of the expectation's columns, so every record that could repeat a value
// (or tuple) comes to the same key, and each key's state holds the 64-bit
// hashes of what it has seen, with when, bounded by the suite's horizon.
//
// State format, little-endian:
//
//	u8      version (stateVersion)
//	then one section per uniqueness expectation:
//	u32     the expectation's id (a hash of its type and columns, so
//	        editing the rest of the suite keeps what was remembered)
//	uvarint n, the number of entries, oldest first
//	u8      flags: bit 0 = event times follow the hashes
//	n × u64 hashes
//	n × i64 event times, Unix nanoseconds (if flagged)
//
// A state that does not parse (another version, corruption) is read as
// empty and replaced on the key's next stored record.
const stateVersion = 1

const flagTimes = 1

type uniqueAdd struct {
	uid  uint32
	hash uint64
}

// checkUnique checks e on row against the key's state and, if the value is
// new, notes it to be stored. keyRule is true when the step's key is not
// one of the expectation's columns, which makes the check meaningless.
func (v *Validator) checkUnique(e *expectation, row *Row) (vd verdict, keyRule bool) {
	missing := 0
	for _, c := range e.cols {
		if row.Values[c].Kind.missing() {
			missing++
		}
	}
	switch {
	case e.ignoreRowIf == ignoreAllMissing && missing == len(e.cols),
		e.ignoreRowIf == ignoreAnyMissing && missing > 0:
		return vMissing, false
	}
	if !v.keyMatches(e, row) {
		return vFail, true
	}
	h := hashTuple(e, row)
	if v.seen(row.State, e.uid, h) {
		if row.Replayed {
			// Its first delivery stored it; it is not a duplicate of itself.
			return vPass, false
		}
		return vFail, false
	}
	if v.s.Horizon.Duration == 0 || v.hasNow {
		// Without an event time a record cannot be placed in a duration
		// horizon; it is checked, not remembered.
		v.adds = append(v.adds, uniqueAdd{e.uid, h})
	}
	return vPass, false
}

// keyMatches reports whether the row's key is the text form of one of e's
// columns, as the agent renders a key field: a string as is, an integer
// as written, another number in plain decimal, a bool as true/false.
func (v *Validator) keyMatches(e *expectation, row *Row) bool {
	for _, c := range e.cols {
		val := row.Values[c]
		switch val.Kind {
		case KindString:
			if bytes.Equal(row.Key, val.Text) {
				return true
			}
		case KindNumber:
			if intLiteral(val.Text) {
				if bytes.Equal(row.Key, val.Text) {
					return true
				}
				continue
			}
			if f, ok := parseNumber(val.Text); ok {
				v.scr = strconv.AppendFloat(v.scr[:0], f, 'f', -1, 64)
				if bytes.Equal(row.Key, v.scr) {
					return true
				}
			}
		case KindTrue:
			if string(row.Key) == "true" {
				return true
			}
		case KindFalse:
			if string(row.Key) == "false" {
				return true
			}
		}
	}
	return false
}

// FNV-1a, inline: hash/fnv would allocate a hasher per row.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func mix(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime }

func mix64(h, x uint64) uint64 {
	for i := 0; i < 8; i++ {
		h = mix(h, byte(x>>(8*i)))
	}
	return h
}

// hashTuple hashes the row's values of e's columns. Numbers hash by value,
// so 7 and 7.0 are the same, as in pandas; strings, objects and arrays by
// their text, length-prefixed so that no two tuples run together.
func hashTuple(e *expectation, row *Row) uint64 {
	h := uint64(fnvOffset)
	for _, c := range e.cols {
		val := row.Values[c]
		switch val.Kind {
		case KindNumber:
			if i, ok := integral(val.Text); ok {
				h = mix64(mix(h, 'i'), uint64(i))
			} else {
				f, _ := parseNumber(val.Text)
				if f == 0 {
					f = 0 // -0 is 0
				}
				h = mix64(mix(h, 'f'), math.Float64bits(f))
			}
		case KindString, KindObject, KindArray:
			h = mix64(mix(h, byte('0'+val.Kind)), uint64(len(val.Text)))
			for _, b := range val.Text {
				h = mix(h, b)
			}
		default:
			h = mix(h, byte('0'+val.Kind.normal()))
		}
	}
	return h
}

// normal folds absent into null: both are missing to GX.
func (k Kind) normal() Kind {
	if k == KindAbsent {
		return KindNull
	}
	return k
}

// integral returns a JSON number as an int64 when its value is a whole
// number that fits, however it is written (7, 7.0, 7e0).
func integral(text []byte) (int64, bool) {
	if i, ok := parseInt(text); ok {
		return i, true
	}
	f, ok := parseNumber(text)
	if !ok || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// eventTime reads a record's event time as the agent does: an ISO 8601 /
// RFC 3339 string (no zone means UTC) or a number of seconds since the
// epoch.
func eventTime(v Value) (int64, bool) {
	switch v.Kind {
	case KindString:
		t, ok := parseISO(v.Text)
		if !ok || t.sec < -9e9 || t.sec > 9e9 {
			return 0, false
		}
		return t.nanos(), true
	case KindNumber:
		f, ok := parseNumber(v.Text)
		if !ok || math.Abs(f) > 9e9 {
			return 0, false
		}
		return int64(f * 1e9), true
	}
	return 0, false
}

// section is one expectation's entries inside a state.
type section struct {
	uid    uint32
	n      int
	times  bool
	hashes []byte
	at     []byte
}

// nextSection parses the section at state[off:], returning it and the
// offset after it; ok is false at the end or on malformed bytes.
func nextSection(state []byte, off int) (section, int, bool) {
	if off+4 > len(state) {
		return section{}, off, false
	}
	s := section{uid: binary.LittleEndian.Uint32(state[off:])}
	off += 4
	n, w := binary.Uvarint(state[off:])
	if w <= 0 || off+w >= len(state) || n > uint64(len(state)) {
		return section{}, off, false
	}
	off += w
	s.n, s.times = int(n), state[off]&flagTimes != 0
	off++
	size := s.n * 8
	if off+size > len(state) {
		return section{}, off, false
	}
	s.hashes = state[off : off+size]
	off += size
	if s.times {
		if off+size > len(state) {
			return section{}, off, false
		}
		s.at = state[off : off+size]
		off += size
	}
	return s, off, true
}

func (s section) hash(i int) uint64 { return binary.LittleEndian.Uint64(s.hashes[i*8:]) }

// live reports whether entry i is still within the horizon for a record
// at now. An entry stored without a time (the horizon had no duration)
// is outside any duration horizon set later.
func (v *Validator) live(s section, i int) bool {
	h := v.s.Horizon
	if s.n-i > h.Count {
		return false
	}
	if h.Duration == 0 || !v.hasNow {
		return true
	}
	if !s.times {
		return false
	}
	return int64(binary.LittleEndian.Uint64(s.at[i*8:])) >= v.now-h.Duration.Nanoseconds()
}

func findSection(state []byte, uid uint32) (section, bool) {
	if len(state) == 0 || state[0] != stateVersion {
		return section{}, false
	}
	for off := 1; ; {
		s, next, ok := nextSection(state, off)
		if !ok {
			return section{}, false
		}
		if s.uid == uid {
			return s, true
		}
		off = next
	}
}

func (v *Validator) seen(state []byte, uid uint32, h uint64) bool {
	s, ok := findSection(state, uid)
	if !ok {
		return false
	}
	for i := s.n - 1; i >= 0; i-- {
		if s.hash(i) == h && v.live(s, i) {
			return true
		}
	}
	return false
}

// encodeState writes the key's new state: for each uniqueness expectation
// of the suite, its live entries plus this row's, oldest dropped first to
// stay within the horizon's count. Sections of expectations no longer in
// the suite are dropped.
func (v *Validator) encodeState(old []byte) []byte {
	h := v.s.Horizon
	out := append(v.state[:0], stateVersion)
	for _, e := range v.s.unique {
		// A row adds at most one hash per expectation.
		adding, hash := 0, uint64(0)
		for _, a := range v.adds {
			if a.uid == e.uid {
				adding, hash = 1, a.hash
			}
		}
		s, _ := findSection(old, e.uid)
		v.keep = v.keep[:0]
		for i := 0; i < s.n; i++ {
			if v.live(s, i) {
				v.keep = append(v.keep, i)
			}
		}
		keep := v.keep // v.keep keeps its capacity for the next row
		if skip := len(keep) + adding - h.Count; skip > 0 {
			keep = keep[skip:]
		}
		n := len(keep) + adding
		if n == 0 {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, e.uid)
		out = binary.AppendUvarint(out, uint64(n))
		flags := byte(0)
		if h.Duration > 0 {
			flags |= flagTimes
		}
		out = append(out, flags)
		// Expired entries are mostly the oldest, so what is kept is usually
		// one run that copies in one go.
		run := len(keep) > 0 && keep[len(keep)-1]-keep[0] == len(keep)-1
		if run {
			out = append(out, s.hashes[keep[0]*8:(keep[0]+len(keep))*8]...)
		} else {
			for _, i := range keep {
				out = binary.LittleEndian.AppendUint64(out, s.hash(i))
			}
		}
		if adding == 1 {
			out = binary.LittleEndian.AppendUint64(out, hash)
		}
		if flags&flagTimes != 0 {
			switch {
			case run && s.times:
				out = append(out, s.at[keep[0]*8:(keep[0]+len(keep))*8]...)
			default:
				for _, i := range keep {
					var t int64
					if s.times {
						t = int64(binary.LittleEndian.Uint64(s.at[i*8:]))
					}
					out = binary.LittleEndian.AppendUint64(out, uint64(t))
				}
			}
			if adding == 1 {
				out = binary.LittleEndian.AppendUint64(out, uint64(v.now))
			}
		}
	}
	v.state = out
	return out
}
