package sdk

import (
	"bytes"
	"encoding/json"
	"slices"
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
