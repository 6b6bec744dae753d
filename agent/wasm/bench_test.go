package wasm_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // ts_parse and friends for the Bloblang variant
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/pipelines"
)

// sampleEvents are the embedded sample: the seed's event shape, ~120 bytes.
func sampleEvents(b *testing.B) [][]byte {
	evs := splitLines(pipelines.SampleEvents())
	if len(evs) == 0 {
		b.Fatal("no sample events")
	}
	return evs
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			if i > start {
				out = append(out, b[start:i])
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// nativeTransform is the seed's transform step as a Go Benthos processor
// would be written: structured access, time.Parse, set fields.
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

// bloblangTransform is the same step as a `mapping` processor.
const bloblangTransform = `
let secs = this.timestamp.ts_parse("2006-01-02T15:04:05Z07:00").ts_unix()
let dow = (($secs / 86400).floor() + 3) % 7
root = this
root.hour_of_day = (($secs % 86400) / 3600).floor()
root.day_of_week = $dow
root.is_weekend = $dow >= 5
`

type blobProc struct{ exec *bloblang.Executor }

func (p blobProc) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	out := make(service.MessageBatch, 0, len(batch))
	ex := batch.BloblangExecutor(p.exec)
	for i := range batch {
		m, err := ex.Query(i)
		if err != nil {
			batch[i].SetError(err)
			out = append(out, batch[i])
			continue
		}
		out = append(out, m)
	}
	return []service.MessageBatch{out}, nil
}

func (blobProc) Close(context.Context) error { return nil }

// BenchmarkTransform measures the seed's transform step per message, side
// by side: native Go, Bloblang, and the wasm processor in both data modes,
// at three batch sizes. Every variant ends with the message as JSON bytes,
// as an output would need it.
func BenchmarkTransform(b *testing.B) {
	evs := sampleEvents(b)
	eng := newEngine(b, "")
	exec, err := bloblang.Parse(bloblangTransform)
	if err != nil {
		b.Fatal(err)
	}
	procs := []struct {
		name string
		proc service.BatchProcessor
	}{
		{"native", nativeTransform{}},
		{"bloblang", blobProc{exec}},
		{"wasm-columns", mustProcessor(b, eng, "path: "+plugins["transform"])},
		{"wasm-columns-nointerrupt", mustProcessor(b, eng, "path: "+plugins["transform"]+"\ninterrupt_on_timeout: false")},
		{"wasm-bytes", mustProcessor(b, eng, "path: "+plugins["transformjson"]+"\ntimeout: 30s")},
		{"wasm-bytes-nointerrupt", mustProcessor(b, eng, "path: "+plugins["transformjson"]+"\ntimeout: 30s\ninterrupt_on_timeout: false")},
	}
	for _, size := range []int{1, 64, 1024} {
		for _, pc := range procs {
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

// BenchmarkInterrupt measures what interrupt_on_timeout costs on a
// loop-heavy plugin (2000 rounds of arithmetic per message), where wazero's
// per-loop checks weigh most.
func BenchmarkInterrupt(b *testing.B) {
	evs := sampleEvents(b)
	eng := newEngine(b, "")
	for _, on := range []bool{true, false} {
		p := mustProcessor(b, eng, fmt.Sprintf("path: %s\ninterrupt_on_timeout: %v", plugins["spin"], on))
		b.Run(fmt.Sprintf("interrupt=%v", on), func(b *testing.B) {
			benchProc(b, p, evs, 1024)
		})
	}
}
