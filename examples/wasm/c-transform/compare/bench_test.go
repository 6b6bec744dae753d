//go:build !wasip1

package compare_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// BenchmarkTransform measures the same transform as a C and as a Go plugin,
// through the agent's wasm processor in fast mode, at batch 1024 of the
// sample events, with and without interrupt_on_timeout (on for a plugin
// loaded by path, off for a builtin). Each op is one batch; ns/msg is per
// message, host parsing and merging included, as a pipeline pays it.
func BenchmarkTransform(b *testing.B) {
	cPath, goPath := needModules(b)
	eng := engine(b)
	var evs [][]byte
	for l := range strings.Lines(string(pipelines.SampleEvents())) {
		if l = strings.TrimSpace(l); l != "" {
			evs = append(evs, []byte(l))
		}
	}
	const size = 1024
	for _, interrupt := range []bool{true, false} {
		for _, lang := range []struct{ name, path string }{{"c", cPath}, {"go", goPath}} {
			p := processor(b, eng, lang.path, fmt.Sprintf("interrupt_on_timeout: %v", interrupt))
			b.Run(fmt.Sprintf("batch=%d/interrupt=%v/lang=%s", size, interrupt, lang.name), func(b *testing.B) {
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
					for _, m := range out[0] {
						if m.GetError() != nil {
							b.Fatal(m.GetError())
						}
						if _, err := m.AsBytes(); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/msg")
			})
		}
	}
}

// BenchmarkGuest measures the plugins' own work alone: process called
// directly under wazero on a prepared columns request of 1024 timestamps,
// with no host parsing or merging, so the C and the Go code are compared
// as compiled Wasm.
func BenchmarkGuest(b *testing.B) {
	cPath, goPath := needModules(b)
	const rows = 1024
	var w abi.Writer
	w.U32(rows)
	w.U32(0)
	valid, fixed := make([]byte, rows), make([]byte, 0, 8*rows)
	for i := range rows {
		valid[i] = 1
		fixed = binary.LittleEndian.AppendUint64(fixed, uint64(1735689600_000000000+int64(i)*3_600_000_000_000))
	}
	abi.AppendColumn(&w, abi.TypeTime, valid, fixed, nil)
	req := w.Buf
	for _, interrupt := range []bool{true, false} {
		for _, lang := range []struct{ name, path string }{{"c", cPath}, {"go", goPath}} {
			b.Run(fmt.Sprintf("batch=%d/interrupt=%v/lang=%s", rows, interrupt, lang.name), func(b *testing.B) {
				ctx := context.Background()
				bin, err := os.ReadFile(lang.path)
				if err != nil {
					b.Fatal(err)
				}
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(interrupt))
				defer rt.Close(ctx)
				wasi_snapshot_preview1.MustInstantiate(ctx, rt)
				mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := mod.ExportedFunction(abi.ExportInit).Call(ctx, 0, 0); err != nil {
					b.Fatal(err)
				}
				res, err := mod.ExportedFunction(abi.ExportAlloc).Call(ctx, uint64(len(req)))
				if err != nil || !mod.Memory().Write(uint32(res[0]), req) {
					b.Fatalf("alloc: %v", err)
				}
				process := mod.ExportedFunction(abi.ExportProcess)
				stack := make([]uint64, 2)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					stack[0], stack[1] = res[0], uint64(len(req))
					if err := process.CallWithStack(ctx, stack); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if out, ok := mod.Memory().Read(uint32(stack[0]>>32), uint32(stack[0])); !ok || binary.LittleEndian.Uint32(out) != 0 {
					b.Fatal("process did not answer OK")
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/msg")
			})
		}
	}
}
