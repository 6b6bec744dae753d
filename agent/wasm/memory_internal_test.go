package wasm

import (
	"bytes"
	"testing"
)

// TestLinearMemory: growing keeps what the guest wrote, adds zeros, stays
// within the maximum, and copies only when it outgrows its capacity, which
// then doubles.
func TestLinearMemory(t *testing.T) {
	const page = 64 << 10
	m := memoryAllocator{}.Allocate(page, 10*page).(*linearMemory)
	buf := m.Reallocate(page)
	if len(buf) != page {
		t.Fatalf("first allocation: %d bytes, want %d", len(buf), page)
	}
	for i := range buf {
		buf[i] = byte(i)
	}
	want := bytes.Clone(buf)
	for _, tc := range []struct {
		size    uint64
		wantCap int // 0: refused
		moved   bool
	}{
		{2 * page, 2 * page, true},  // doubles
		{3 * page, 4 * page, true},  // doubles past the size asked for
		{4 * page, 4 * page, false}, // within capacity: no copy
		{9 * page, 9 * page, true},  // the size asked for, above double
		{10 * page, 10 * page, true},
		{11 * page, 0, false}, // past the maximum
	} {
		before := m.buf
		got := m.Reallocate(tc.size)
		if tc.wantCap == 0 {
			if got != nil {
				t.Fatalf("size %d past the maximum: got %d bytes, want nil", tc.size, len(got))
			}
			continue
		}
		if uint64(len(got)) != tc.size || cap(got) != tc.wantCap {
			t.Fatalf("size %d: len %d cap %d, want cap %d", tc.size, len(got), cap(got), tc.wantCap)
		}
		if moved := &got[0] != &before[:1][0]; moved != tc.moved {
			t.Errorf("size %d: moved %v, want %v", tc.size, moved, tc.moved)
		}
		if !bytes.Equal(got[:page], want) {
			t.Fatalf("size %d: the first page changed", tc.size)
		}
		if i := bytes.IndexFunc(got[page:], func(r rune) bool { return r != 0 }); i >= 0 {
			t.Fatalf("size %d: byte %d of the added memory is not zero", tc.size, page+i)
		}
	}
}
