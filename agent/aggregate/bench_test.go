package aggregate

import (
	"context"
	"fmt"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// BenchmarkFrameSummary: a daily summary (sum and count by date) of a
// 100k-row frame as csv_file makes it (its file, line and text as
// metadata columns), per row.
//
//	go test -run '^$' -bench FrameSummary -count 6 ./agent/aggregate/
func BenchmarkFrameSummary(b *testing.B) {
	w := frame.NewWriter()
	date, qty := w.Add("date", abi.TypeString, false), w.Add("quantity", abi.TypeInt, false)
	w.AddConst("csv_file", abi.TypeString, true).Text("/data/sales.csv")
	line, raw := w.Add("csv_line", abi.TypeString, true), w.AddRaw("csv_raw")
	const rows = 100000
	for i := range rows {
		date.Text(fmt.Sprintf("2024-01-%02d", 1+i%28))
		qty.Int(int64(i % 7))
		line.Text(fmt.Sprint(i + 2))
		raw.Text(fmt.Sprintf("row %d", i))
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		b.Fatal(err)
	}
	p := newProc(b, "group_by: [date]\nfields: [{as: q, op: sum, path: quantity}, {as: n, op: count}]\n")
	for b.Loop() {
		msg := service.NewMessage(body)
		msg.MetaSetMut("source", "sales")
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
		if err != nil || len(out) != 1 || len(out[0]) != 28 {
			b.Fatalf("%v: %v", err, out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
