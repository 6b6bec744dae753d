package wasm

import (
	"context"
	"testing"
)

// BenchmarkGenerationHold measures what hot reload adds to every batch:
// taking the serving generation at its start and letting it go at its end.
func BenchmarkGenerationHold(b *testing.B) {
	p := &Processor{}
	p.gen.Store(&generation{})
	ctx := context.Background()
	for b.Loop() {
		g := p.hold()
		g.unhold(ctx)
	}
}
