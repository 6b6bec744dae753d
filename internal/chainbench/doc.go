// Package chainbench measures the seed's real-time job end to end, side by
// side in one run: the shipped pipeline's validate -> features -> score
// chain as Wasm steps, the same logic compiled natively, and the seed's
// Python processor (testdata/seed_realtime.py, a copy of the team's
// shared/peers baseline) on the same events file, each with state kept in
// memory and with state committed to Badger before each batch is
// acknowledged. It holds benchmarks only.
package chainbench
