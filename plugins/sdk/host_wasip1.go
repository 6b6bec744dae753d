//go:build wasip1

//lint:file-ignore U1000 the host calls these through go:wasmexport, which staticcheck cannot see

package sdk

import "unsafe"

// alloc holds the buffer the host writes requests into; keeping it in a
// package variable keeps it alive (and unmoved) across calls.
var alloc []byte

//go:wasmexport sluice_v1_alloc
func sluiceAlloc(size uint32) unsafe.Pointer {
	if int(size) > cap(alloc) {
		// Allocating as []uint64 guarantees the 8-byte alignment that lets
		// columns be viewed in place.
		words := make([]uint64, (int(size)+7)/8)
		alloc = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)
	}
	return unsafe.Pointer(unsafe.SliceData(alloc))
}

//go:wasmexport sluice_v1_init
func sluiceInit(ptr unsafe.Pointer, size uint32) uint64 {
	return pack(Init(view(ptr, size)))
}

//go:wasmexport sluice_v1_process
func sluiceProcess(ptr unsafe.Pointer, size uint32) uint64 {
	return pack(Process(view(ptr, size)))
}

//go:wasmexport sluice_v1_state_view
func sluiceStateView(ptr unsafe.Pointer, size uint32) uint64 {
	return pack(StateView(view(ptr, size)))
}

func view(ptr unsafe.Pointer, size uint32) []byte {
	if size == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(ptr), size)
}

// pack returns a guest buffer as (pointer << 32) | length, the way every
// export of ABI v1 answers.
func pack(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))<<32 | uint64(len(b))
}

//go:wasmimport sluice_v1 log
func hostLogImport(level int32, ptr unsafe.Pointer, size uint32)

func hostLog(level Level, msg string) {
	if msg == "" {
		return
	}
	hostLogImport(int32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

//go:wasmimport sluice_v1 state_get
func stateGetImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32, bufPtr unsafe.Pointer, bufCap uint32) int64

//go:wasmimport sluice_v1 state_scan
func stateScanImport(nsPtr unsafe.Pointer, nsLen uint32, prefixPtr unsafe.Pointer, prefixLen uint32, afterPtr unsafe.Pointer, afterLen uint32, limit uint32, bufPtr unsafe.Pointer, bufCap uint32) int64

//go:wasmimport sluice_v1 state_set
func stateSetImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32, valPtr unsafe.Pointer, valLen uint32) int64

//go:wasmimport sluice_v1 state_delete
func stateDeleteImport(nsPtr unsafe.Pointer, nsLen uint32, keyPtr unsafe.Pointer, keyLen uint32) int64

func hostStateSet(ns, key string, value []byte) int64 {
	return stateSetImport(strPtr(ns), uint32(len(ns)), strPtr(key), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)))
}

func hostStateDelete(ns, key string) int64 {
	return stateDeleteImport(strPtr(ns), uint32(len(ns)), strPtr(key), uint32(len(key)))
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func hostStateGet(ns, key string, buf []byte) int64 {
	return stateGetImport(strPtr(ns), uint32(len(ns)), strPtr(key), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
}

func hostStateScan(ns, prefix, after string, limit int, buf []byte) int64 {
	return stateScanImport(strPtr(ns), uint32(len(ns)), strPtr(prefix), uint32(len(prefix)), strPtr(after), uint32(len(after)), uint32(limit), unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
}

//go:wasmimport sluice_v1 metric
func metricImport(kind uint32, namePtr unsafe.Pointer, nameLen uint32, labelsPtr unsafe.Pointer, labelsLen uint32, value int64)

func hostMetric(kind uint32, name string, labels []byte, v int64) {
	metricImport(kind, strPtr(name), uint32(len(name)), unsafe.Pointer(unsafe.SliceData(labels)), uint32(len(labels)), v)
}
