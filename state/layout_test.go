package state

import (
	"bytes"
	"testing"
)

// FuzzStateKeyLayout checks the property namespace isolation rests on: two
// different (namespace, key) pairs never share a Badger key, and a key of one
// namespace never carries another namespace's prefix (which Scan and prefix
// iteration rely on).
func FuzzStateKeyLayout(f *testing.F) {
	f.Add("user", []byte("a"), "user_x", []byte("a"))
	f.Add("user", []byte("_x\x00a"), "user_x", []byte("a"))
	f.Add("u", []byte("ser\x00a"), "user", []byte("a"))
	f.Add("a", []byte{0}, "a", []byte{0, 0})
	f.Fuzz(func(t *testing.T, ns1 string, k1 []byte, ns2 string, k2 []byte) {
		if validateNamespace(ns1) != nil || validateNamespace(ns2) != nil || len(k1) == 0 || len(k2) == 0 {
			return
		}
		b1, b2 := appendStateKey(nil, ns1, k1), appendStateKey(nil, ns2, k2)
		if (ns1 != ns2 || !bytes.Equal(k1, k2)) && bytes.Equal(b1, b2) {
			t.Fatalf("(%q, %q) and (%q, %q) share Badger key %q", ns1, k1, ns2, k2, b1)
		}
		if ns1 != ns2 && bytes.HasPrefix(b1, nsPrefix(ns2)) {
			t.Fatalf("key %q of namespace %q has the prefix of namespace %q", k1, ns1, ns2)
		}
		if got := b1[len(nsPrefix(ns1)):]; !bytes.Equal(got, k1) {
			t.Fatalf("entity key decodes as %q, want %q", got, k1)
		}
	})
}

func TestValueLayout(t *testing.T) {
	cases := []struct {
		val       []byte
		lastEvent int64
	}{
		{nil, 0},
		{[]byte("x"), -1},
		{[]byte{0, 0, 0}, 1 << 62},
	}
	for _, c := range cases {
		v, le, err := decodeValue(encodeValue(c.val, c.lastEvent))
		if err != nil || !bytes.Equal(v, c.val) || le != c.lastEvent {
			t.Errorf("round trip of (%q, %d) = (%q, %d, %v)", c.val, c.lastEvent, v, le, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2}, append([]byte{9}, make([]byte, 8)...)} {
		if _, _, err := decodeValue(bad); err == nil {
			t.Errorf("decodeValue(%x) succeeded", bad)
		}
	}
}
