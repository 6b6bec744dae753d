package expect

import (
	"math"
	"strconv"
	"testing"
)

var numberSeeds = []string{
	"0", "-0", "7", "-7", "12.5", "0.1", "0.3", "-2.25", "123456789012345", "1234567890123456", "9007199254740993",
	"0.000001", "1.000000000000001", "1e3", "1E-3", "2.5e+10", "9223372036854775807", "-9223372036854775808",
	"9223372036854775808", "18446744073709551615", "1.", ".5", "-", "", "1e400", "00", "1x",
}

// FuzzNumbers holds the fast paths to strconv's answers on any text.
func FuzzNumbers(f *testing.F) {
	for _, s := range numberSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkNumber(t, s)
	})
}

func TestNumbers(t *testing.T) {
	for _, s := range numberSeeds {
		checkNumber(t, s)
	}
}

func checkNumber(t *testing.T, s string) {
	t.Helper()
	got, ok := parseNumber([]byte(s))
	want, err := strconv.ParseFloat(s, 64)
	wantOK := err == nil && !math.IsInf(want, 0)
	if ok != wantOK || ok && math.Float64bits(got) != math.Float64bits(want) {
		t.Errorf("parseNumber(%q) = %v %v, strconv says %v %v", s, got, ok, want, wantOK)
	}
	i, ok := parseInt([]byte(s))
	wi, err := strconv.ParseInt(s, 10, 64)
	// strconv accepts a leading '+', which JSON never writes.
	if wantOK := err == nil && (len(s) == 0 || s[0] != '+'); ok != wantOK || ok && i != wi {
		t.Errorf("parseInt(%q) = %v %v, strconv says %v %v", s, i, ok, wi, wantOK)
	}
	for _, bits := range []int{8, 16, 32, 64} {
		v, errS := strconv.ParseInt(s, 10, bits)
		_, errU := strconv.ParseUint(s, 10, bits)
		negZero := errS == nil && v == 0 // "-0" is 0, a fine unsigned value
		plain := len(s) > 0 && s[0] != '+'
		if got, want := isInteger([]byte(s), bits, false), errS == nil && plain; got != want {
			t.Errorf("isInteger(%q, int%d) = %v, want %v", s, bits, got, want)
		}
		if got, want := isInteger([]byte(s), bits, true), (errU == nil || negZero) && plain; got != want {
			t.Errorf("isInteger(%q, uint%d) = %v, want %v", s, bits, got, want)
		}
	}
}
