package sdk

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// Kind is what a value field holds in a row: absent, null, a bool, a
// number, a string, an object or an array.
type Kind = abi.Kind

// The kinds of a value field.
const (
	KindAbsent = abi.KindAbsent
	KindNull   = abi.KindNull
	KindFalse  = abi.KindFalse
	KindTrue   = abi.KindTrue
	KindNumber = abi.KindNumber
	KindString = abi.KindString
	KindObject = abi.KindObject
	KindArray  = abi.KindArray
	// KindInt and KindFloat are a number as its 8 bytes, sent only to a
	// field declared with BinaryNumbers (see Number).
	KindInt   = abi.KindInt
	KindFloat = abi.KindFloat
)

// BinaryNumbers lets the host send a value field's numbers that it holds
// typed (a frame's int and float columns) as KindInt or KindFloat, their
// 8 bytes, instead of KindNumber and their text: no formatting on the
// host, no parsing in the plugin. Numbers read from JSON still come as
// text, so the handler must take both kinds; Number and AppendNumber do.
func BinaryNumbers(f *abi.Field) { f.BinaryNumbers = true }

// KindsOnly asks for a value field's kinds and no data: for a check that
// only asks whether a value is there, which then costs the host no
// formatting and the call no copy. Get returns empty data for every row.
func KindsOnly(f *abi.Field) { f.KindsOnly = true }

// Number returns the value of a number of any of the three kinds that
// carry one (KindNumber's text parsed), and false for any other kind or
// text that is no number.
func Number(k Kind, data []byte) (float64, bool) {
	switch k {
	case KindInt:
		return float64(int64(binary.LittleEndian.Uint64(data))), true
	case KindFloat:
		return math.Float64frombits(binary.LittleEndian.Uint64(data)), true
	case KindNumber:
		v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(data), len(data)), 64)
		return v, err == nil
	}
	return 0, false
}

// AppendNumber appends a number's JSON text: KindNumber's as sent, and
// KindInt's and KindFloat's as the host would have written it had the
// field not asked for binary numbers. Other kinds append nothing.
func AppendNumber(dst []byte, k Kind, data []byte) []byte {
	switch k {
	case KindInt:
		return strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(data)), 10)
	case KindFloat:
		return jsonnum.AppendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(data)))
	case KindNumber:
		return append(dst, data...)
	}
	return dst
}

// Body is the path that makes ReadValue read the whole message body, for a
// plugin that checks which keys a record has.
const Body = abi.BodyPath

// InValue reads a field of any JSON kind. Unlike the typed inputs, a value
// of an unexpected kind does not fail the message on the host: the plugin
// sees what is there, which is what a validator needs to report it.
type InValue struct{ In }

// ReadValue declares an input field of any kind at a dotted path, or the
// whole body with Body. Its Valid reports whether the field exists, null
// included; Required fails, on the host, a message where it is missing or
// null.
func ReadValue(path string, opts ...FieldOption) InValue {
	return InValue{In{declare(&inFields, path, abi.TypeValue, opts)}}
}

// Kind returns what row i holds.
func (h InValue) Kind(b *Batch, i int) Kind { return Kind(b.in[h.idx].Valid[i]) }

// Get returns row i's kind and text, as ValueColumn.Get.
func (h InValue) Get(b *Batch, i int) (Kind, []byte) { return h.Column(b).Get(i) }

// ValueColumn is a value field's whole column in one batch, for a handler
// that reads every row: its Get costs a few loads, where InValue.Get
// finds the column again for each row. In Wasm that difference is most of
// a simple check's cost, since Go's wasm code pays for every call and
// copies any struct larger than four words through memory.
type ValueColumn struct{ c *strColumn }

// Column returns the field's column in b, valid as long as b.
func (h InValue) Column(b *Batch) ValueColumn { return ValueColumn{&b.strs[h.idx]} }

// Get returns row i's kind and text, aliasing the host's buffer: a
// string's UTF-8 bytes (unescaped), a number's JSON text (or, declared
// with BinaryNumbers, perhaps its 8 bytes: KindInt, KindFloat), an
// object's or array's JSON text, or nothing for absent, null and bools
// (and for every row of a field declared KindsOnly).
func (c ValueColumn) Get(i int) (Kind, []byte) {
	return Kind(c.c.valid[i]), c.c.text(i)
}

// Raw returns the whole column as the host laid it out (ABI.md §8.1):
// row i's kind is kinds[i], its data data[offs[i]:offs[i+1]]. The
// offsets were checked when the batch arrived. For a handler that reads
// a column at a time, which then needs no call per row.
func (c ValueColumn) Raw() (kinds []byte, offs []uint32, data []byte) {
	return c.c.valid, c.c.off, c.c.data
}

// Float returns row i as a float64 if it is a number (of any of its
// kinds: see Number).
func (h InValue) Float(b *Batch, i int) (float64, bool) {
	return Number(h.Get(b, i))
}

// ErrNotObject is returned by ObjectKeys for text that is not a JSON object.
var ErrNotObject = errors.New("not a JSON object")

// ObjectKeys calls fn with each top-level key of the JSON object in raw, in
// order, unescaped. The key aliases raw when it has no escapes; copy it to
// keep it. Values are skipped without being decoded, so listing a record's
// columns costs one pass over its bytes.
func ObjectKeys(raw []byte, fn func(key []byte)) error {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return ErrNotObject
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return nil
	}
	var scratch []byte
	for {
		if i >= len(raw) || raw[i] != '"' {
			return ErrNotObject
		}
		end, escaped := scanString(raw, i)
		if end < 0 {
			return ErrNotObject
		}
		key := raw[i+1 : end-1]
		if escaped {
			var ok bool
			if scratch, ok = unescape(scratch[:0], key); !ok {
				return ErrNotObject
			}
			key = scratch
		}
		fn(key)
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return ErrNotObject
		}
		if i = skipValue(raw, skipSpace(raw, i+1)); i < 0 {
			return ErrNotObject
		}
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return ErrNotObject
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return nil
		default:
			return ErrNotObject
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] (a
// quote), and whether it holds escapes; -1 if it is unterminated.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the index just past the value starting at b[i], or -1.
// Nesting is tracked by counting brackets outside strings; the host has
// already checked that the text is JSON, so this need not validate it.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// unescape appends the JSON string body s, unescaped, to dst.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hex4(s[i+1:])
			if n == 0 {
				return dst, false
			}
			i += n
			if r >= 0xD800 && r < 0xDC00 && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
				if lo, m := hex4(s[i+3:]); m != 0 && lo >= 0xDC00 && lo < 0xE000 {
					r = (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000
					i += 2 + m
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte) (rune, int) {
	if len(s) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, 0
		}
	}
	return r, 4
}
