package wasm_test

import (
	"context"
	"fmt"
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
		name  string
		users int
		batch int
	}{
		{"hot10k/batch=1024", 10_000, 1024},
		{"distinct1M/batch=1024", 1_000_000, 1024},
		{"naive/hot10k/batch=1", 10_000, 1},
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
			batch := make(service.MessageBatch, bc.batch)
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range batch {
					// Hot users cycle through the population; with 1M users
					// every key in the run is seen for the first time.
					batch[j] = service.NewMessage(bodies[next%bc.users])
					next++
				}
				out, err := p.ProcessBatch(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range out[0] {
					if err := m.GetError(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}
