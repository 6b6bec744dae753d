// Package jsonnum spells a float64 as JSON the way Sluice does everywhere
// (encoding/json's spelling, by a short path for the usual decimals): the
// host when it renders a number, and a plugin that receives a number as
// its bytes (abi.KindFloat) and needs the text the host would have sent.
package jsonnum

import (
	"math"
	"strconv"
)

// AppendFloat formats v as encoding/json does, plain decimals between
// 1e-6 and 1e21 and exponents outside, so a number written by a plugin reads
// the same as one written by any Go service.
func AppendFloat(dst []byte, v float64) []byte {
	if d, ok := appendShortDecimal(dst, v); ok {
		return d
	}
	return appendFloatStrconv(dst, v)
}

// appendFloatStrconv is AppendFloat for any v, through strconv's shortest
// digits.
func appendFloatStrconv(dst []byte, v float64) []byte {
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		dst = strconv.AppendFloat(dst, v, 'e', -1, 64)
		// encoding/json writes 1e-7 where strconv writes 1e-07.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst = append(dst[:n-2], dst[n-1])
		}
		return dst
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// decimalPow10 are the powers of ten appendShortDecimal tries, each exact.
var decimalPow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6}

// appendShortDecimal writes v the way strconv's shortest 'f' format does
// when v is m/10^k for an integer m below 10^15 and k ≤ 6 (prices,
// quantities, most measured values), without strconv's general algorithm,
// which costs several times more; ok is false for any other v. With m and
// 10^k exact, the division is correctly rounded, so it equals v exactly
// when the decimal m/10^k reads back as v; the smallest such k has the
// fewest digits, and at 15 digits or fewer no other decimal of as few
// reads back as v, so it is the one strconv picks.
func appendShortDecimal(dst []byte, v float64) ([]byte, bool) {
	a := math.Abs(v)
	if !(a >= 1e-6 && a < 1e15) { // also refuses 0 (-0 writes "-0"), NaN
		return dst, false
	}
	for k, p := range decimalPow10 {
		s := a * p
		if s >= 1e15 {
			return dst, false
		}
		// v*10^k is within far less than 0.5 of the integer m that
		// works, if one does, so rounding finds it.
		m := math.Round(s)
		if m/p != a {
			continue
		}
		if v < 0 {
			dst = append(dst, '-')
		}
		u, q := uint64(m), uint64(p)
		dst = strconv.AppendUint(dst, u/q, 10)
		if k > 0 {
			var frac [6]byte
			r := u % q
			for i := k - 1; i >= 0; i-- {
				frac[i] = byte('0' + r%10)
				r /= 10
			}
			dst = append(append(dst, '.'), frac[:k]...)
		}
		return dst, true
	}
	return dst, false
}
