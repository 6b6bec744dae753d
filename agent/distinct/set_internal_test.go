package distinct

import (
	"math/rand/v2"
	"testing"
)

// TestHashSet: a hash is new once and a duplicate after, through the
// table's growth, including hashes that share a slot (the same first
// word) and the all-zero hash, which the table cannot store in a slot.
func TestHashSet(t *testing.T) {
	var s hashSet
	r := rand.New(rand.NewPCG(1, 2))
	var hs [][2]uint64
	for range 50_000 {
		hs = append(hs, [2]uint64{r.Uint64(), r.Uint64()})
	}
	// Same slot, other second word; and the zero hash, twice.
	hs = append(hs, [2]uint64{hs[0][0], hs[0][1] + 1}, [2]uint64{hs[1][0], 0}, [2]uint64{0, 0}, [2]uint64{0, 1})
	for _, tc := range []struct {
		name string
		want bool
	}{{"first time: new", true}, {"second time: seen", false}} {
		for i, h := range hs {
			if got := s.add(h[0], h[1]); got != tc.want {
				t.Fatalf("%s: hash %d %x: add = %v", tc.name, i, h, got)
			}
		}
		if s.len() != len(hs) {
			t.Fatalf("%s: %d hashes held, want %d", tc.name, s.len(), len(hs))
		}
	}
	if 4*s.n > len(s.slots) {
		t.Errorf("%d hashes in %d slots: more than half full", s.n, len(s.slots)/2)
	}
}
