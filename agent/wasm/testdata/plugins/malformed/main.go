// Command malformed speaks ABI v1 at init but answers batches with
// garbage, as a buggy hand-written plugin might.
package main

import (
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

var (
	in   []byte
	resp abi.Writer
)

//go:wasmexport sluice_v1_alloc
func alloc(size uint32) unsafe.Pointer {
	if int(size) > cap(in) {
		in = make([]byte, size)
	}
	return unsafe.Pointer(unsafe.SliceData(in))
}

//go:wasmexport sluice_v1_init
func initV1(ptr unsafe.Pointer, size uint32) uint64 {
	resp.Reset()
	resp.U32(uint32(abi.StatusOK))
	abi.AppendDescriptor(&resp, abi.Descriptor{Mode: abi.ModeBytes})
	return pack(resp.Buf)
}

//go:wasmexport sluice_v1_process
func process(ptr unsafe.Pointer, size uint32) uint64 {
	body := unsafe.Slice((*byte)(ptr), size)
	// The body of the first message picks the kind of garbage.
	first := string(body[12 : 12+int(body[8])])
	resp.Reset()
	switch first {
	case "count":
		resp.U32(uint32(abi.StatusOK))
		resp.U32(999) // wrong number of results
	case "range":
		return 0xFFFF_0000<<32 | 100 // a buffer outside memory
	case "status":
		resp.U32(77)
	default:
		resp.U32(uint32(abi.StatusOK))
		resp.U32(*(*uint32)(ptr)) // the right count...
		resp.U8(9)                // ...but an unknown action
	}
	return pack(resp.Buf)
}

func pack(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))<<32 | uint64(len(b))
}

func main() {}
