package sdk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"testing"
)

func TestObjectKeys(t *testing.T) {
	cases := []struct {
		raw  string
		keys []string
		err  bool
	}{
		{raw: `{}`, keys: nil},
		{raw: ` { "a" : 1 , "b":"x,}" ,"c":{"d":[1,{"e":"]"}]},"f":null}`, keys: []string{"a", "b", "c", "f"}},
		{raw: `{"\u00e9\n\"":true,"\ud83d\ude00":false}`, keys: []string{"é\n\"", "😀"}},
		{raw: `{"a":"\\"}`, keys: []string{"a"}},
		{raw: `[1]`, err: true},
		{raw: `{"a":1`, err: true},
		{raw: `{"a" 1}`, err: true},
		{raw: `{"a":}`, err: true},
		{raw: `{"a":"x}`, err: true},
		{raw: ``, err: true},
	}
	for _, c := range cases {
		var got []string
		err := ObjectKeys([]byte(c.raw), func(k []byte) { got = append(got, string(k)) })
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.raw, err, c.err)
			continue
		}
		if !c.err && !slices.Equal(got, c.keys) {
			t.Errorf("%s: keys %q, want %q", c.raw, got, c.keys)
		}
	}
}

// FuzzObjectKeys checks ObjectKeys against encoding/json on valid objects
// (same keys, same order) and that nothing panics on the rest.
func FuzzObjectKeys(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[{"c":"}"}]}`, `{"\u00e9":"\\"}`, `{"a":{"b":{}}}`, `[]`, `{"a`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got []string
		err := ObjectKeys(raw, func(k []byte) { got = append(got, string(k)) })
		if !json.Valid(raw) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		tok, _ := dec.Token()
		if tok != json.Delim('{') {
			if err == nil {
				t.Fatalf("%s: not an object, but ObjectKeys returned no error", raw)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var want []string
		for dec.More() {
			k, _ := dec.Token()
			want = append(want, k.(string))
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: keys %q, want %q", raw, got, want)
		}
	})
}

// TestNumberKinds: a number sent as its bytes reads as the same value,
// and writes as the same text, as the host's text for it would.
func TestNumberKinds(t *testing.T) {
	le := func(u uint64) []byte { return binary.LittleEndian.AppendUint64(nil, u) }
	for _, tc := range []struct {
		kind Kind
		data []byte
		text string // the host's text for it (jsonnum, strconv.AppendInt)
	}{
		{KindInt, le(uint64(42)), "42"},
		{KindInt, le(uint64(math.MaxUint64)), "-1"},
		{KindInt, le(1<<63 - 1), "9223372036854775807"},
		{KindFloat, le(math.Float64bits(19.99)), "19.99"},
		{KindFloat, le(math.Float64bits(math.Copysign(0, -1))), "-0"},
		{KindFloat, le(math.Float64bits(1e21)), "1e+21"},
		{KindFloat, le(math.Float64bits(1e-7)), "1e-7"},
		{KindFloat, le(math.Float64bits(123456789.125)), "123456789.125"},
		{KindNumber, []byte("1.5e3"), "1.5e3"},
	} {
		if got := string(AppendNumber([]byte("x"), tc.kind, tc.data)); got != "x"+tc.text {
			t.Errorf("AppendNumber(%v %x) = %q, want %q", tc.kind, tc.data, got, "x"+tc.text)
		}
		got, ok := Number(tc.kind, tc.data)
		want, err := strconv.ParseFloat(tc.text, 64)
		if !ok || err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("Number(%v %x) = %v, %v; its text %q parses to %v", tc.kind, tc.data, got, ok, tc.text, want)
		}
	}
	for _, k := range []Kind{KindString, KindNull, KindTrue} {
		if _, ok := Number(k, []byte("1")); ok {
			t.Errorf("Number(%v) reads a number", k)
		}
		if got := AppendNumber(nil, k, []byte("1")); len(got) != 0 {
			t.Errorf("AppendNumber(%v) wrote %q", k, got)
		}
	}
}
