package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator backs each instance's linear memory with a Go slice
// that doubles when the guest grows past it. wazero's default appends the
// pages the guest asks for, and Go's append adds only a quarter at these
// sizes, so a guest whose heap grows to tens of MiB is copied, and its new
// pages faulted in, a dozen times: 0.58 s of CPU over four runs of the
// sales ETL's validate step on 1M rows, 0.13 s with this allocator
// (docs/BENCHMARKS.md). It is Go memory, not a mapping of its own: bytes
// the host read out of an instance stay valid after the instance is
// closed, as they do with wazero's.
type memoryAllocator struct{}

func (memoryAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &linearMemory{buf: make([]byte, 0, min(capacity, maxBytes)), max: maxBytes}
}

type linearMemory struct {
	buf []byte
	max uint64
}

// Reallocate grows the memory to size bytes. The bytes it adds are zero:
// wasm memory never shrinks, so nothing was ever written past the length.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	b := make([]byte, size, max(size, min(2*uint64(cap(m.buf)), m.max)))
	copy(b, m.buf)
	m.buf = b
	return b
}

func (m *linearMemory) Free() { m.buf = nil }
