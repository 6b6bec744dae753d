// Package compare tests the C plugin of its parent folder, the seed's
// transform step written in C against plugins/sdk/ABI.md: it builds it
// with clang and wasi-libc, as `agent plugin build` does, and checks
// through the agent's wasm processor that its output is byte-identical to
// the Go plugin's in examples/wasm/transform; its benchmark sets the two
// side by side. It lives in a folder of its own because the Go tool
// refuses .c files in a package that does not use cgo.
package compare
