//go:build !wasip1

package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/internal/wasmtest"
)

// TestSalesTransform compiles the plugin and runs rows through the agent's
// wasm processor: every derived field equals Go's own calendar and
// rounding, and a row with a bad date fails alone, bytes kept.
func TestSalesTransform(t *testing.T) {
	ctx := context.Background()
	bin := wasmbuild.ForTest(t, "sales.wasm")
	p := wasmtest.Processor(t, wasmtest.Engine(t, wasm.EngineConfig{}), "path: "+bin+"\n")

	rows := []struct {
		date     string
		quantity int
		price    float64
		bad      string
	}{
		{date: "2025-01-01", quantity: 3, price: 19.99},
		{date: "2024-02-29", quantity: 1, price: 0.005},
		{date: "2000-03-01", quantity: 5, price: 333.33},
		{date: "1969-12-31", quantity: 2, price: 1.115},
		{date: "2025-12-28", quantity: 4, price: 999.99},
		{date: "2025-02-29", quantity: 1, price: 1, bad: `date: want YYYY-MM-DD, got "2025-02-29"`},
		{date: "2025/01/01", quantity: 1, price: 1, bad: "date: want YYYY-MM-DD"},
		{date: "", quantity: 1, price: 1, bad: "date: want YYYY-MM-DD"},
	}
	var batch service.MessageBatch
	for _, r := range rows {
		batch = append(batch, service.NewMessage(fmt.Appendf(nil, `{"date":%q,"quantity":%d,"price":%v,"customer_id":7}`, r.date, r.quantity, r.price)))
	}
	out, err := p.ProcessBatch(ctx, batch)
	if err != nil || len(out) != 1 || len(out[0]) != len(rows) {
		t.Fatalf("ProcessBatch: %v, %d batches", err, len(out))
	}
	for i, r := range rows {
		m := out[0][i]
		b, _ := m.AsBytes()
		if r.bad != "" {
			if m.GetError() == nil || !strings.Contains(m.GetError().Error(), r.bad) || string(b) != raw(t, batch[i]) {
				t.Errorf("row %d (%s): error %v, body %s; want %q and the row unchanged", i, r.date, m.GetError(), b, r.bad)
			}
			continue
		}
		d, _ := time.Parse("2006-01-02", r.date)
		want := fmt.Sprint(float64(r.quantity)*r.price, d.Year(), int(d.Month()), d.Day(), (int(d.Weekday())+6)%7, 7)
		doc := gjson.ParseBytes(b)
		got := fmt.Sprint(doc.Get("total_amount").Float(), doc.Get("year").Int(), doc.Get("month").Int(), doc.Get("day").Int(), doc.Get("day_of_week").Int(), doc.Get("customer_id").Int())
		if m.GetError() != nil || got != want {
			t.Errorf("row %d (%s): %s (error %v), want %s", i, r.date, got, m.GetError(), want)
		}
	}
}

func raw(t *testing.T, m *service.Message) string {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
