package expect

import (
	"strconv"
	"unicode/utf8"
)

// Kind is what a record holds at a column. The numbering is the Sluice ABI's
// value kind, so a plugin converts with a plain cast.
type Kind uint8

// The kinds of a value.
const (
	KindAbsent Kind = iota // no such key
	KindNull
	KindFalse
	KindTrue
	KindNumber // Text is the number's JSON text
	KindString // Text is the unescaped UTF-8 string
	KindObject // Text is the object's JSON text
	KindArray  // Text is the array's JSON text
)

// missing reports whether GX would count the value as missing (None/NaN in
// pandas): a record without the key and a JSON null are the same row to a
// DataFrame built from records.
func (k Kind) missing() bool { return k <= KindNull }

func (k Kind) String() string {
	switch k {
	case KindAbsent:
		return "missing"
	case KindNull:
		return "null"
	case KindFalse, KindTrue:
		return "bool"
	case KindNumber:
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

// appendJSONString appends s as a JSON string. strconv.AppendQuote would
// write Go escapes (\x01) that are not JSON. At most limit bytes of s are
// kept (cut on a rune boundary, marked with an ellipsis); limit <= 0 keeps
// all.
func appendJSONString(dst, s []byte, limit int) []byte {
	cut := false
	if limit > 0 && len(s) > limit {
		n := limit
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], true
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// Runs of plain bytes go in one append: a byte-at-a-time loop is
		// what costs most in Wasm.
		start := i
		for i < len(s) && jsonPlain[s[i]] {
			i++
		}
		dst = append(dst, s[start:i]...)
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	if cut {
		dst = append(dst, "…"...)
	}
	return append(dst, '"')
}

const hexDigit = "0123456789abcdef"

// jsonPlain marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash. (DEL is escaped too, so that
// metadata stays printable.)
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func appendJSONStr(dst []byte, s string) []byte {
	return appendJSONString(dst, []byte(s), 0)
}

// appendValue appends v as JSON, for observed values in reasons and
// reports. Long strings are cut to limit bytes; an object or array longer
// than limit is described rather than cut, since cut JSON is not JSON.
func appendValue(dst []byte, v Value, limit int) []byte {
	switch v.Kind {
	case KindFalse:
		return append(dst, "false"...)
	case KindTrue:
		return append(dst, "true"...)
	case KindNumber:
		return append(dst, v.Text...)
	case KindString:
		return appendJSONString(dst, v.Text, limit)
	case KindObject, KindArray:
		if limit > 0 && len(v.Text) > limit {
			dst = append(dst, `"<`...)
			dst = append(dst, v.Kind.String()...)
			dst = append(dst, " of "...)
			dst = strconv.AppendInt(dst, int64(len(v.Text)), 10)
			return append(dst, ` bytes>"`...)
		}
		return append(dst, v.Text...)
	}
	return append(dst, "null"...)
}

// appendFloat writes a float as JSON; GX percentages are floats.
func appendFloat(dst []byte, f float64) []byte {
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}
