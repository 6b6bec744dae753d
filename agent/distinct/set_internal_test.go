package distinct

import (
	"math/rand/v2"
	"runtime"
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

// TestHashSetMapped: a set grown past hugeMin (on Linux, tables mapped
// outside the heap, each growth moving every hash into a new mapping and
// unmapping the old) still knows every hash it was given and no other;
// released, it is empty and usable again.
func TestHashSetMapped(t *testing.T) {
	var s hashSet
	r := rand.New(rand.NewPCG(3, 4))
	const n = 700_000 // a table of 4M words, 32 MB
	hs := make([][2]uint64, n)
	for i := range hs {
		hs[i] = [2]uint64{r.Uint64(), r.Uint64()}
		if !s.add(hs[i][0], hs[i][1]) {
			t.Fatalf("hash %d: not new", i)
		}
	}
	if runtime.GOOS == "linux" && s.free == nil {
		t.Errorf("a table of %d MB is on the heap, want it mapped", len(s.slots)*8>>20)
	}
	for i, h := range hs {
		if s.add(h[0], h[1]) {
			t.Fatalf("hash %d: new again after growing to %d slots", i, len(s.slots)/2)
		}
	}
	// Hashes never added, half sharing a first word with one that was.
	for i := range 1000 {
		h := [2]uint64{r.Uint64(), r.Uint64()}
		if i%2 == 0 {
			h[0] = hs[i][0]
		}
		if !s.add(h[0], h[1]) {
			t.Fatalf("unseen hash %x taken for a seen one", h)
		}
	}
	s.release()
	if s.len() != 0 || s.slots != nil {
		t.Fatalf("released: %d hashes, %d slots", s.len(), len(s.slots))
	}
	if !s.add(hs[0][0], hs[0][1]) || s.add(hs[0][0], hs[0][1]) {
		t.Fatal("a released set does not start over")
	}
}
