package jsonstr

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// marshal is encoding/json's spelling of s, without HTML escaping.
func marshal(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// TestAppend: Append writes what encoding/json writes, for
// plain text, every kind of escape, multi-byte and invalid UTF-8, and
// random bytes; and what it writes reads back as the same string when the
// input is valid UTF-8.
func TestAppend(t *testing.T) {
	cases := []string{
		"", "2025-01-02", "plain text, with spaces", `a "quoted" word`, `back\slash`, "tab\there", "new\nline\r\n",
		"\x00\x01\x1f\x7f", "héllo wörld ✓ 日本", "\u2028 and \u2029", "bad \xff byte", "cut \xe2\x82", "<html> & more",
		"\xed\xa0\x80 surrogate", "emoji 🙂 end",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		got := string(Append([]byte("prefix:"), s))
		if want := "prefix:" + marshal(t, s); got != want {
			t.Fatalf("Append(%q) = %s, encoding/json gives %s", s, got[len("prefix:"):], want[len("prefix:"):])
		}
		if b := string(Append([]byte("prefix:"), []byte(s))); b != got {
			t.Fatalf("Append([]byte(%q)) = %s, the string gives %s", s, b, got)
		}
		type named []byte
		if b := string(Append([]byte("prefix:"), named(s))); b != got {
			t.Fatalf("Append(named(%q)) = %s, the string gives %s", s, b, got)
		}
		var back string
		if err := json.Unmarshal([]byte(got[len("prefix:"):]), &back); err != nil {
			t.Fatalf("Append(%q) = %s: not JSON: %v", s, got, err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct{ name, s string }{{"date", "2025-01-02"}, {"path", "data/sales-2025-01-02.csv"}, {"unicode", "héllo wörld ✓"}} {
		b.Run(tc.name, func(b *testing.B) {
			var dst []byte
			for b.Loop() {
				dst = Append(dst[:0], tc.s)
			}
		})
	}
}
