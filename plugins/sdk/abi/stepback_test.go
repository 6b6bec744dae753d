package abi

import (
	"encoding/binary"
	"testing"
)

// TestStepBack: the first place a string column's offsets step back, or
// -1, wherever it is and however far back it steps.
func TestStepBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		offs []uint32
		want int
	}{
		{"no rows", []uint32{0}, -1},
		{"in order", []uint32{0, 2, 2, 5, 9}, -1},
		{"first", []uint32{3, 2, 4, 5}, 0},
		{"middle", []uint32{0, 2, 7, 5, 9}, 2},
		{"last", []uint32{0, 2, 4, 3}, 2},
		{"far back", []uint32{0, 1 << 31, 0, 0}, 1},
		{"two, the first named", []uint32{0, 5, 4, 6, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			for _, o := range tc.offs {
				b = binary.LittleEndian.AppendUint32(b, o)
			}
			if got := StepBack(b, len(tc.offs)-1); got != tc.want {
				t.Fatalf("StepBack = %d, want %d", got, tc.want)
			}
		})
	}
}
