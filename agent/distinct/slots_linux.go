//go:build linux

package distinct

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeMin is the smallest table worth mapping with huge pages: below a
// few huge pages the faults saved are few.
const hugeMin = 4 << 20

// hugePage is the size of a transparent huge page on the platforms Go
// supports Linux on (x86-64, arm64 with 4 KB base pages).
const hugePage = 2 << 20

// newSlots returns n zeroed slots. A large table is mapped outside the Go
// heap and advised to the kernel as huge pages: put reads it at random,
// one slot a row, so with 4 KB pages nearly every row's probe misses the
// TLB and the table's first touch takes a page fault per 4 KB (each
// costly in a VM); with 2 MB pages both are 512 times rarer. free must be
// called once the slots are no longer used; it is nil for heap slots.
func newSlots(n int) (slots []uint64, free func()) {
	size := n * 8
	if size < hugeMin {
		return make([]uint64, n), nil
	}
	// One huge page more than asked, so the table can start on a huge
	// page boundary: the kernel backs only aligned 2 MB ranges.
	mem, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]uint64, n), nil
	}
	// Advice is a hint: a kernel without transparent huge pages refuses
	// it, and the table works on small pages.
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	off := int(-uintptr(unsafe.Pointer(&mem[0])) & (hugePage - 1))
	slots = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off])), n)
	return slots, func() { _ = unix.Munmap(mem) }
}
