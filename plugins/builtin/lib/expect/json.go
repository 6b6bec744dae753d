package expect

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
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

// appendJSONString appends s as a JSON string. At most limit bytes of s
// are kept (cut on a rune boundary, marked with an ellipsis); limit <= 0
// keeps all.
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
	dst = jsonstr.AppendContent(dst, s)
	if cut {
		dst = append(dst, "…"...)
	}
	return append(dst, '"')
}

func appendJSONStr(dst []byte, s string) []byte {
	return jsonstr.Append(dst, s)
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
		return v.appendNumber(dst)
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

// appendNumber appends a number Value's JSON text: as sent, or for a
// binary one as the host would have written it.
func (v Value) appendNumber(dst []byte) []byte {
	switch v.Num {
	case NumInt:
		return strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(v.Text)), 10)
	case NumFloat:
		return jsonnum.AppendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(v.Text)))
	}
	return append(dst, v.Text...)
}

// appendFloat writes a float as JSON; GX percentages are floats.
func appendFloat(dst []byte, f float64) []byte {
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}
