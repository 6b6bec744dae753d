//go:build !wasip1

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // ts_strptime and the other time methods
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/internal/wasmtest"
	"github.com/sluice-dev/sluice/plugins/sdk"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// bloblangSales is the transform sales_etl.yaml ran before this plugin
// (commit 8e5ff9c's parent), for the side-by-side figure.
const bloblangSales = `
root = this
let d = this.date.ts_strptime("%Y-%m-%d")
root.total_amount = (this.quantity * this.price * 100).round() / 100
root.year = $d.ts_format("2006").number()
root.month = $d.ts_format("1").number()
root.day = $d.ts_format("2").number()
root.day_of_week = ((($d.ts_unix() / 86400).floor() + 3) % 7)
`

// buildPlugin builds this plugin and an engine to run it in.
func buildPlugin(b *testing.B) (string, *wasm.Engine) {
	b.Helper()
	return wasmbuild.ForTest(b, "sales.wasm"), wasmtest.Engine(b, wasm.EngineConfig{})
}

// BenchmarkSalesTransform: the seed's sales transform over batches of
// 8192 rows as the Wasm plugin and as the Bloblang mapping it replaced,
// each followed by reading the row's bytes, as every output does: a
// mapping leaves a structured row that each output copy encodes again.
func BenchmarkSalesTransform(b *testing.B) {
	ctx := context.Background()
	bin, eng := buildPlugin(b)
	wp := wasmtest.Processor(b, eng, "path: "+bin+"\ninterrupt_on_timeout: false\n")
	exec, err := bloblang.Parse(bloblangSales)
	if err != nil {
		b.Fatal(err)
	}
	rows := make([][]byte, 8192)
	for i := range rows {
		rows[i] = fmt.Appendf(nil, `{"date":"2025-%02d-%02d","product_id":%d,"quantity":%d,"price":%d.%02d,"customer_id":%d,"source_file":"sales.csv","line":%d}`,
			1+i%12, 1+i%28, 1+i%500, 1+i%5, 1+i%900, i%100, 1+i%5000, i+2)
	}
	fresh := func() service.MessageBatch {
		batch := make(service.MessageBatch, len(rows))
		for i, r := range rows {
			batch[i] = service.NewMessage(r)
		}
		return batch
	}
	for _, tc := range []struct {
		name string
		run  func(service.MessageBatch) (service.MessageBatch, error)
	}{
		{"wasm", func(in service.MessageBatch) (service.MessageBatch, error) {
			out, err := wp.ProcessBatch(ctx, in)
			if err != nil || len(out) != 1 {
				return nil, fmt.Errorf("%d batches: %v", len(out), err)
			}
			return out[0], nil
		}},
		{"bloblang", func(in service.MessageBatch) (service.MessageBatch, error) {
			out := make(service.MessageBatch, len(in))
			for i, m := range in {
				res, err := m.BloblangQuery(exec)
				if err != nil {
					return nil, err
				}
				out[i] = res
			}
			return out, nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				in := fresh()
				b.StartTimer()
				out, err := tc.run(in)
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range out {
					if _, err := m.AsBytes(); err != nil || m.GetError() != nil {
						b.Fatal(err, m.GetError())
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
		})
	}
}

// BenchmarkSkipErrored: the transform step in a stream of 8192-row batches
// with 0.5% of the rows already errored (the sales CSV's bad rows), as the
// sales ETL ran it inside a `switch` on !errored() and as it runs now with
// skip_errored; the stream alone (noop) for scale.
//
//	go test -run '^$' -bench SkipErrored -count 6 ./plugins/builtin/sales/
func BenchmarkSkipErrored(b *testing.B) {
	ctx := context.Background()
	bin, eng := buildPlugin(b)
	env := service.NewEnvironment()
	if err := wasm.Register(env, eng); err != nil {
		b.Fatal(err)
	}
	step := fmt.Sprintf("wasm: {path: %q, interrupt_on_timeout: false}", bin)
	for _, tc := range []struct{ name, proc string }{
		{"switch", "switch:\n  - check: '!errored()'\n    processors:\n      - " + step},
		{"skip_errored", fmt.Sprintf("wasm: {path: %q, interrupt_on_timeout: false, skip_errored: true}", bin)},
		{"noop", "noop: {}"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const batch = 8192
			sb := env.NewStreamBuilder()
			if err := sb.SetLoggerYAML("level: none"); err != nil {
				b.Fatal(err)
			}
			if err := sb.AddProcessorYAML(tc.proc); err != nil {
				b.Fatal(err)
			}
			produce, err := sb.AddBatchProducerFunc()
			if err != nil {
				b.Fatal(err)
			}
			var transformed, errored int
			if err := sb.AddBatchConsumerFunc(func(_ context.Context, mb service.MessageBatch) error {
				for _, m := range mb {
					if m.GetError() != nil {
						errored++
						continue
					}
					if body, _ := m.AsBytes(); bytes.Contains(body, []byte(`"total_amount"`)) {
						transformed++
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			strm, err := sb.Build()
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = strm.Run(ctx) }()
			defer func() { _ = strm.StopWithin(10 * time.Second) }()
			bad := errors.New("csv: a bad row")
			fresh := func() service.MessageBatch {
				mb := make(service.MessageBatch, batch)
				for i := range mb {
					mb[i] = service.NewMessage(fmt.Appendf(nil, `{"date":"2025-%02d-%02d","product_id":%d,"quantity":%d,"price":%d.%02d,"customer_id":%d,"source_file":"sales.csv","line":%d}`,
						1+i%12, 1+i%28, 1+i%500, 1+i%5, 1+i%900, i%100, 1+i%5000, i+2))
					if i%200 == 0 {
						mb[i].SetError(bad)
					}
				}
				return mb
			}
			// The first batch waits for the stream to start, which
			// compiles the plugin: not timed.
			if err := produce(ctx, fresh()); err != nil {
				b.Fatal(err)
			}
			transformed, errored = 0, 0
			for b.Loop() {
				b.StopTimer()
				mb := fresh()
				b.StartTimer()
				if err := produce(ctx, mb); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if want := b.N * (batch - batch/200 - 1); tc.name != "noop" && (transformed != want || errored != b.N*(batch/200+1)) {
				b.Fatalf("%d transformed, %d errored; want %d and %d", transformed, errored, want, b.N*(batch/200+1))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
		})
	}
}

// salesColumns are 8192 sales rows' date, quantity and price as csv_file
// types them: the transform's inputs.
func salesColumns() []frame.Values {
	const rows = 8192
	cols := []frame.Values{{Name: "date", Type: abi.TypeString}, {Name: "quantity", Type: abi.TypeInt}, {Name: "price", Type: abi.TypeFloat}}
	for i := range rows {
		cols[0].Rows = append(cols[0].Rows, fmt.Sprintf("2025-%02d-%02d", 1+i%12, 1+i%28))
		cols[1].Rows = append(cols[1].Rows, 1+i%5)
		cols[2].Rows = append(cols[2].Rows, float64(1+i%900)+float64(i%100)/100)
	}
	return cols
}

// BenchmarkSalesFrame: the sales ETL's transform step on one frame of
// 8192 rows, as the pipeline runs it (a builtin: no loop interrupts), the
// host's side included. BenchmarkSalesNative is the plugin's own Go code
// on the same rows, natively: the difference is what Wasm and the host
// add.
//
//	go test -run '^$' -bench 'Sales(Frame|Native)' -count 6 ./plugins/builtin/sales/
func BenchmarkSalesFrame(b *testing.B) {
	bin, eng := buildPlugin(b)
	p := wasmtest.Processor(b, eng, "path: "+bin+"\ninterrupt_on_timeout: false\n")
	cols := salesColumns()
	body, err := frame.FromValues(cols, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		out, err := p.ProcessBatch(ctx, service.MessageBatch{service.NewMessage(body)})
		if err != nil || len(out) != 1 || len(out[0]) != 1 {
			b.Fatalf("%v: %d batches", err, len(out))
		}
		got, _ := out[0][0].AsBytes()
		if f, err := frame.Decode(got); err != nil || f.Accepted() != len(cols[0].Rows) || f.Field("day_of_week") == nil {
			b.Fatalf("%v: rows rejected or not transformed", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cols[0].Rows)), "ns/row")
}

// BenchmarkSalesNative: the plugin's handler compiled natively and called
// in this process as the SDK's export would be, on BenchmarkSalesFrame's
// rows as the request the host makes of them.
func BenchmarkSalesNative(b *testing.B) {
	cols := salesColumns()
	rows := len(cols[0].Rows)
	var w abi.Writer
	w.U32(uint32(rows))
	w.U32(0)
	valid := bytes.Repeat([]byte{1}, rows)
	dates, qty, price := make([][]byte, rows), make([]byte, 8*rows), make([]byte, 8*rows)
	for i := range rows {
		dates[i] = []byte(cols[0].Rows[i].(string))
		binary.LittleEndian.PutUint64(qty[8*i:], uint64(cols[1].Rows[i].(int)))
		binary.LittleEndian.PutUint64(price[8*i:], math.Float64bits(cols[2].Rows[i].(float64)))
	}
	abi.AppendColumn(&w, abi.TypeString, valid, nil, dates)
	abi.AppendColumn(&w, abi.TypeInt, valid, qty, nil)
	abi.AppendColumn(&w, abi.TypeFloat, valid, price, nil)
	if out := sdk.Init(nil); abi.Status(out[0]) != abi.StatusOK {
		b.Fatalf("init: %q", out)
	}
	for b.Loop() {
		if out := sdk.Process(w.Buf); abi.Status(out[0]) != abi.StatusOK {
			b.Fatalf("process: %q", out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
