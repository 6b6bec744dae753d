package sdk

import (
	"errors"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
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
)

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
// string's UTF-8 bytes (unescaped), a number's JSON text, an object's or
// array's JSON text, or nothing for absent, null and bools.
func (c ValueColumn) Get(i int) (Kind, []byte) {
	return Kind(c.c.valid[i]), c.c.text(i)
}

// Float returns row i as a float64 if it is a number.
func (h InValue) Float(b *Batch, i int) (float64, bool) {
	k, s := h.Get(b, i)
	if k != KindNumber {
		return 0, false
	}
	v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(s), len(s)), 64)
	return v, err == nil
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
