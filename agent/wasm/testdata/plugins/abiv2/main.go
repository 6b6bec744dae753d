// Command abiv2 pretends to be a plugin built for a future ABI version.
package main

//go:wasmexport sluice_v2_alloc
func alloc(size uint32) uint32 { return 0 }

//go:wasmexport sluice_v2_init
func initV2(ptr, size uint32) uint64 { return 0 }

//go:wasmexport sluice_v2_process
func process(ptr, size uint32) uint64 { return 0 }

func main() {}
