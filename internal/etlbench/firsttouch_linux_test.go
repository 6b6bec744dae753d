package etlbench

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkFirstTouch: what a page's first touch costs on this machine,
// 64 MB of fresh anonymous memory written a byte a page, with 4 KB pages
// and advised as huge pages, beside each other in one command. In a VM it
// is what a run pays for every page of heap it has not used before
// (BenchmarkStepsBeforeLoad's faults/op).
//
//	go test -run '^$' -bench FirstTouch -count 3 ./internal/etlbench/
func BenchmarkFirstTouch(b *testing.B) {
	const size, huge = 64 << 20, 2 << 20
	for _, tc := range []struct {
		name   string
		advice int
	}{{"4k", unix.MADV_NOHUGEPAGE}, {"huge", unix.MADV_HUGEPAGE}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				mem, err := unix.Mmap(-1, 0, size+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					b.Fatal(err)
				}
				off := int(-uintptr(unsafe.Pointer(&mem[0])) & (huge - 1))
				_ = unix.Madvise(mem, tc.advice) // a hint; refused without THP
				for i := off; i < off+size; i += 4096 {
					mem[i] = 1
				}
				if err := unix.Munmap(mem); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size/4096), "ns/4KB")
		})
	}
}
