package wasm_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// BenchmarkKeyed measures keyed updates per second through a stateful wasm
// step (the counter plugin: load state, count, commit with sync writes
// before the batch goes on), at batch 1024 over 10k hot users and over 1M
// distinct users, beside the naive variant: the same step at batch 1, one
// Badger transaction per message.
func BenchmarkKeyed(b *testing.B) {
	for _, bc := range []struct {
		name    string
		users   int
		batch   int
		threads int
	}{
		{"hot10k/batch=1024", 10_000, 1024, 1},
		// Two callers, as a pipeline with two threads (the default on two
		// cores): one batch computes while the other's commit is on disk.
		{"hot10k/batch=1024/threads=2", 10_000, 1024, 2},
		{"distinct1M/batch=1024", 1_000_000, 1024, 1},
		{"naive/hot10k/batch=1", 10_000, 1, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := openStore(b, b.TempDir())
			defer st.Close()
			p := mustProcessor(b, keyedEngine(b, st), fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: tallies}\n", plugins["counter"]))
			bodies := make([][]byte, bc.users)
			for u := range bodies {
				bodies[u] = []byte(fmt.Sprintf(`{"user_id":"user-%d","event_type":"purchase","event_data":{"amount":12.5},"timestamp":"2025-01-01T00:00:00Z"}`, u))
			}
			ctx := context.Background()
			var next, batches atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range bc.threads {
				wg.Add(1)
				go func() {
					defer wg.Done()
					batch := make(service.MessageBatch, bc.batch)
					for batches.Add(1) <= int64(b.N) {
						for j := range batch {
							// Hot users cycle through the population; with 1M
							// users every key in the run is seen for the first
							// time.
							batch[j] = service.NewMessage(bodies[(next.Add(1)-1)%int64(bc.users)])
						}
						out, err := p.ProcessBatch(ctx, batch)
						if err != nil {
							b.Error(err)
							return
						}
						for _, m := range out[0] {
							if err := m.GetError(); err != nil {
								b.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}
