//go:build !wasip1

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
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

// TestSalesTransformManyDates: every day of 1999-2001 (more dates than the
// plugin's cache holds), each twice in a shuffled batch, with bad dates
// between: every row's fields are its own date's, whatever the cache held
// before it.
func TestSalesTransformManyDates(t *testing.T) {
	ctx := context.Background()
	bin := wasmbuild.ForTest(t, "sales.wasm")
	p := wasmtest.Processor(t, wasmtest.Engine(t, wasm.EngineConfig{}), "path: "+bin+"\n")
	var dates []string
	for d := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2002; d = d.AddDate(0, 0, 1) {
		dates = append(dates, d.Format("2006-01-02"), d.Format("2006-01-02"))
	}
	dates = append(dates, "2001-02-29", "1999-13-01", "2000-00-10")
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(dates), func(i, j int) { dates[i], dates[j] = dates[j], dates[i] })
	var batch service.MessageBatch
	for _, d := range dates {
		batch = append(batch, service.NewMessage(fmt.Appendf(nil, `{"date":%q,"quantity":1,"price":2}`, d)))
	}
	out, err := p.ProcessBatch(ctx, batch)
	if err != nil || len(out) != 1 || len(out[0]) != len(dates) {
		t.Fatalf("ProcessBatch: %v, %d batches", err, len(out))
	}
	bad := 0
	for i, d := range dates {
		m := out[0][i]
		want, err := time.Parse("2006-01-02", d)
		if err != nil {
			if m.GetError() == nil {
				t.Errorf("row %d (%s): no error", i, d)
			}
			bad++
			continue
		}
		b, _ := m.AsBytes()
		doc := gjson.ParseBytes(b)
		got := fmt.Sprint(doc.Get("year").Int(), doc.Get("month").Int(), doc.Get("day").Int(), doc.Get("day_of_week").Int())
		if w := fmt.Sprint(want.Year(), int(want.Month()), want.Day(), (int(want.Weekday())+6)%7); m.GetError() != nil || got != w {
			t.Fatalf("row %d (%s): %s (error %v), want %s", i, d, got, m.GetError(), w)
		}
	}
	if bad != 3 {
		t.Errorf("%d rows failed, want the 3 bad dates", bad)
	}
}

// TestDayCacheSlots: no two dates of eight consecutive years share a
// cache entry, so a file's dates, however they alternate, are each parsed
// once.
func TestDayCacheSlots(t *testing.T) {
	for _, first := range []int{1996, 2020, 2093} {
		seen := map[int]string{}
		for d := time.Date(first, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < first+8; d = d.AddDate(0, 0, 1) {
			s := d.Format("2006-01-02")
			e := dayIndex(binary.LittleEndian.Uint64([]byte(s)), binary.LittleEndian.Uint16([]byte(s[8:])))
			if other, ok := seen[e]; ok {
				t.Fatalf("%s and %s share a cache entry", other, s)
			}
			seen[e] = s
		}
	}
}

// TestDayCache: the cache gives each of 200 years' dates its own fields,
// looked up in calendar order (each month's dates share their first 8
// bytes) and again in reverse once the cache is full of others, and
// caches no bad date.
func TestDayCache(t *testing.T) {
	var c dayCache
	var all []time.Time
	for d := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2100; d = d.AddDate(0, 0, 1) {
		all = append(all, d)
	}
	back := slices.Clone(all)
	slices.Reverse(back)
	for _, d := range append(all, back...) {
		s := d.Format("2006-01-02")
		e := c.lookup([]byte(s))
		if e == nil || e.y != int64(d.Year()) || e.m != int64(d.Month()) || e.d != int64(d.Day()) || e.dow != int64((d.Weekday()+6)%7) {
			t.Fatalf("%s: %+v", s, e)
		}
	}
	for _, bad := range []string{"2001-02-29", "2001-1-01", "", "2001-01-011", "2001-01-0x"} {
		if e := c.lookup([]byte(bad)); e != nil {
			t.Errorf("%q: %+v, want nil", bad, e)
		}
	}
}
