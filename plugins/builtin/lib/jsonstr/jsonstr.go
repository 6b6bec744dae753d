// Package jsonstr writes JSON strings the way encoding/json spells them
// (without its HTML escaping), for the agent and for the builtin plugins
// alike: it has no dependencies, so a Wasm guest can use it without
// pulling in encoding/json, and it does not allocate. strconv.AppendQuote,
// the tempting shortcut, writes Go escapes ("\x01") that are not JSON.
package jsonstr

import "unicode/utf8"

const hex = "0123456789abcdef"

// Append appends s as a quoted JSON string: quotes, backslashes and control
// characters escaped, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func Append[T ~string | ~[]byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	dst = AppendContent(dst, s)
	return append(dst, '"')
}

// AppendContent appends what goes between the quotes of s as a JSON
// string, for a caller that adds to the string (an ellipsis after a cut).
func AppendContent[T ~string | ~[]byte](dst []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			// Runs of plain bytes go in one append: a byte at a time is
			// what costs most, in a Wasm guest above all.
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

func decodeRune[T ~string | ~[]byte](s T) (rune, int) {
	switch s := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(s)
	case []byte:
		return utf8.DecodeRune(s)
	}
	// A named string or byte slice type: a rune is at most 4 bytes, so
	// the conversion copies no more.
	return utf8.DecodeRuneInString(string(s[:min(len(s), utf8.UTFMax)]))
}
