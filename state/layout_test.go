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

func TestRecordLayout(t *testing.T) {
	writes := []Write{
		{Key: []byte("a"), Value: []byte("v1"), LastEvent: -5},
		{Key: []byte("b\x00"), Delete: true},
		{Key: []byte("a"), Value: nil, LastEvent: 1 << 60},
		{Key: bytes.Repeat([]byte("k"), 300), Value: bytes.Repeat([]byte("v"), 70000)},
	}
	rec := appendRecord(nil, "user_x", writes, 1234)
	if len(rec) != recordSize("user_x", writes) {
		t.Fatalf("recordSize = %d, encoded %d bytes", recordSize("user_x", writes), len(rec))
	}
	ns, ops, err := decodeRecord(rec)
	if err != nil || ns != "user_x" || len(ops) != len(writes) {
		t.Fatalf("decodeRecord = %q, %d ops, %v", ns, len(ops), err)
	}
	for i, w := range writes {
		op := ops[i]
		if !bytes.Equal(op.key, w.Key) || op.deleteOp != w.Delete {
			t.Errorf("op %d: key %q delete %v, want %q %v", i, op.key, op.deleteOp, w.Key, w.Delete)
		}
		if w.Delete {
			continue
		}
		if !bytes.Equal(op.c.val, w.Value) || op.c.val == nil || op.c.lastEvent != w.LastEvent || op.c.expiresAt != 1234 || !op.c.present {
			t.Errorf("op %d: %+v, want value %q lastEvent %d expiresAt 1234", i, op.c, w.Value, w.LastEvent)
		}
	}
	for n := range len(rec) {
		if _, _, err := decodeRecord(rec[:n]); err == nil {
			t.Fatalf("decodeRecord of the first %d of %d bytes succeeded", n, len(rec))
		}
	}
}

// FuzzDecodeRecord: replay reads records from disk; garbage must give an
// error, never a panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, "n", []Write{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("d"), Delete: true}}, 7))
	f.Add([]byte{1, 1, 'n', 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, rec []byte) {
		_, _, _ = decodeRecord(rec)
	})
}
