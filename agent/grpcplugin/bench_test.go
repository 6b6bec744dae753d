package grpcplugin_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/internal/wasmtest"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
)

// The benchmarks put a step's per-message cost side by side as a native Go
// processor, a Wasm plugin in fast (columns) mode and a native plugin over
// gRPC, at batches of 1, 64 and 1024. Run them with:
//
//	go test -run '^$' -bench . -benchtime 2s ./agent/grpcplugin/

// nativeTransform is the seed's transform step as a Go Benthos processor
// would be written (the same as agent/wasm's benchmark).
type nativeTransform struct{}

func (nativeTransform) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	for _, m := range batch {
		v, err := m.AsStructuredMut()
		if err != nil {
			m.SetError(err)
			continue
		}
		doc, ok := v.(map[string]any)
		if !ok {
			m.SetError(fmt.Errorf("not an object"))
			continue
		}
		s, _ := doc["timestamp"].(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			m.SetError(err)
			continue
		}
		dow := (int(ts.Weekday()) + 6) % 7
		doc["hour_of_day"] = ts.Hour()
		doc["day_of_week"] = dow
		doc["is_weekend"] = dow >= 5
		m.SetStructuredMut(doc)
	}
	return []service.MessageBatch{batch}, nil
}

func (nativeTransform) Close(context.Context) error { return nil }

func sampleEvents(b *testing.B) [][]byte {
	evs := bytes.Split(bytes.TrimSpace(pipelines.SampleEvents()), []byte("\n"))
	if len(evs) == 0 {
		b.Fatal("no sample events")
	}
	return evs
}

// sameOutput checks two steps agree on the events before they are timed,
// so the benchmark compares equal work.
func sameOutput(b *testing.B, evs [][]byte, x, y service.BatchProcessor) {
	b.Helper()
	mk := func() service.MessageBatch {
		batch := make(service.MessageBatch, len(evs))
		for i, e := range evs {
			batch[i] = service.NewMessage(e)
		}
		return batch
	}
	ox, err := x.ProcessBatch(context.Background(), mk())
	if err != nil {
		b.Fatal(err)
	}
	oy, err := y.ProcessBatch(context.Background(), mk())
	if err != nil {
		b.Fatal(err)
	}
	for i := range evs {
		bx, _ := ox[0][i].AsBytes()
		by, _ := oy[0][i].AsBytes()
		if !bytes.Equal(bx, by) || ox[0][i].GetError() != nil || oy[0][i].GetError() != nil {
			b.Fatalf("event %d: outputs differ or fail:\n%s (%v)\n%s (%v)", i, bx, ox[0][i].GetError(), by, oy[0][i].GetError())
		}
	}
}

// BenchmarkTransform: the seed's transform step (timestamp in, three
// fields out) per message.
func BenchmarkTransform(b *testing.B) {
	evs := sampleEvents(b)
	wasmBin := filepath.Join(b.TempDir(), "transform.wasm")
	if err := wasmbuild.Build(context.Background(), "../../examples/wasm/transform", wasmBin); err != nil {
		b.Fatal(err)
	}
	eng := wasmtest.Engine(b, wasm.EngineConfig{})
	grpcProc, _ := mustProcessor(b, "path: "+plugins["transform"], nil)
	wasmProc := wasmtest.Processor(b, eng, "path: "+wasmBin)
	sameOutput(b, evs, wasmProc, grpcProc)
	procs := []struct {
		name string
		proc service.BatchProcessor
	}{
		{"native", nativeTransform{}},
		{"wasm-columns", wasmProc},
		{"wasm-columns-nointerrupt", wasmtest.Processor(b, eng, "path: "+wasmBin+"\ninterrupt_on_timeout: false")},
		{"grpc", grpcProc},
	}
	for _, size := range []int{1, 64, 1024} {
		for _, pc := range procs {
			b.Run(fmt.Sprintf("batch=%d/%s", size, pc.name), func(b *testing.B) {
				benchProc(b, pc.proc, evs, size)
			})
		}
	}
}

// BenchmarkScore: the seed's value score (four features, weighted sum,
// thresholds) as the builtin Wasm plugin and as the example native scorer,
// which give byte-identical output.
func BenchmarkScore(b *testing.B) {
	var evs [][]byte
	for i := range 512 {
		evs = append(evs, fmt.Appendf(nil, `{"user_id":%d,"event_type":"purchase","features":{"event_count":%d,"unique_event_types":%d,"total_value":%d.5,"is_purchase_event":%d}}`,
			i, i%40, i%6, i*7%500, i%2))
	}
	const config = `{features: [event_count, unique_event_types, total_value, is_purchase_event], model: {weights: {event_count: 0.1, unique_event_types: 0.2, total_value: 0.001, is_purchase_event: 0.5}}, labels: [{label: high_value_user, above: 0.7}, {label: medium_value_user, above: 0.3}], default_label: low_value_user, confidence: {constant: 0.85}}`
	eng := wasmtest.Engine(b, wasm.EngineConfig{Builtins: builtin.Lookup})
	wasmProc := wasmtest.Processor(b, eng, "builtin: score\nconfig: "+config)
	grpcProc, _ := mustProcessor(b, "path: "+plugins["scorer"]+"\nconfig: "+config, nil)
	sameOutput(b, evs, wasmProc, grpcProc)
	for _, size := range []int{1, 64, 1024} {
		for _, pc := range []struct {
			name string
			proc service.BatchProcessor
		}{{"wasm-columns", wasmProc}, {"grpc", grpcProc}} {
			b.Run(fmt.Sprintf("batch=%d/%s", size, pc.name), func(b *testing.B) {
				benchProc(b, pc.proc, evs, size)
			})
		}
	}
}

func benchProc(b *testing.B, p service.BatchProcessor, evs [][]byte, size int) {
	ctx := context.Background()
	batch := make(service.MessageBatch, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j] = service.NewMessage(evs[(i*size+j)%len(evs)])
		}
		out, err := p.ProcessBatch(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for _, ob := range out {
			for _, m := range ob {
				if m.GetError() != nil {
					b.Fatal(m.GetError())
				}
				if _, err := m.AsBytes(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/msg")
}
