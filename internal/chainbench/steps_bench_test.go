package chainbench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkChainSteps splits the Wasm chain's time per event between its
// three steps (state in memory), each figure including the host's part of
// the step: parsing the declared fields, loading state, the call, merging
// the outputs. It is where to look before optimising the chain.
func BenchmarkChainSteps(b *testing.B) {
	bodies := events(b)
	steps := chainSteps(b)
	names := []string{"validate", "features", "score"}
	var per [3]time.Duration
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := openState(b, false)
		procs, closeChain := newWasmChain(b, steps, st)
		warmUp(b, procs)
		b.StartTimer()
		for start := 0; start < len(bodies); start += batchSize {
			batch := wasmBatch(bodies, start, min(start+batchSize, len(bodies)))
			for k, p := range procs {
				live := batch[:0:0]
				for _, m := range batch {
					if m.GetError() == nil {
						live = append(live, m)
					}
				}
				t0 := time.Now()
				out, err := p.ProcessBatch(ctx, live)
				per[k] += time.Since(t0)
				if err != nil || len(out) != 1 {
					b.Fatalf("%s: %v", names[k], err)
				}
				batch = out[0]
			}
		}
		b.StopTimer()
		closeChain()
		_ = st.Close()
		b.StartTimer()
	}
	for k, name := range names {
		b.ReportMetric(float64(per[k].Nanoseconds())/1e3/float64(b.N*len(bodies)), name+"-µs/event")
	}
}
