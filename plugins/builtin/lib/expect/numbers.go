package expect

import (
	"math"
	"strconv"
	"unsafe"
)

// The per-record number parsing takes the short way for what records
// mostly hold, integers and short decimals: strconv's general algorithms
// are correct for every input but call-heavy, which costs many times more
// in Wasm (and more again with the agent's loop interrupts) than natively.

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseNumber parses a JSON number's text. With at most 15 significant
// digits and no exponent the digits and the power of ten are both exact
// in a float64, so one correctly rounded division gives what strconv
// would (Clinger's fast path); anything else goes to strconv.
func parseNumber(text []byte) (float64, bool) {
	i, neg := 0, false
	if len(text) > 0 && text[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	digits, frac := 0, -1
	for ; i < len(text); i++ {
		c := text[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return parseNumberSlow(text)
		}
	}
	if digits == 0 || digits > 15 || frac == 0 {
		return parseNumberSlow(text)
	}
	f := float64(mant)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

func parseNumberSlow(text []byte) (float64, bool) {
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(text), len(text)), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

// parseInt parses a JSON number written as an integer (no fraction or
// exponent) that fits an int64.
func parseInt(text []byte) (int64, bool) {
	i, neg := 0, false
	if len(text) > 0 && text[0] == '-' {
		i, neg = 1, true
	}
	n := len(text) - i
	if n == 0 {
		return 0, false
	}
	if n > 18 { // 19 digits may overflow: let strconv decide
		if !intLiteral(text) {
			return 0, false
		}
		v, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(text), len(text)), 10, 64)
		return v, err == nil
	}
	var v int64
	for ; i < len(text); i++ {
		c := text[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + int64(c)
	}
	if neg {
		v = -v
	}
	return v, true
}

// int64Literal reports whether text is an integer that fits an int64,
// in one pass for the usual short ones.
func int64Literal(text []byte) bool {
	n := len(text)
	if n > 0 && text[0] == '-' {
		n--
	}
	if n == 0 || n > 18 {
		_, ok := parseInt(text)
		return ok
	}
	for _, c := range text[len(text)-n:] {
		if c-'0' > 9 {
			return false
		}
	}
	return true
}
