//go:build !linux

package distinct

// newSlots returns n zeroed slots on the Go heap.
func newSlots(n int) (slots []uint64, free func()) { return make([]uint64, n), nil }
