package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // generate, system_window
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

func newProc(t testing.TB, yaml string) *Processor {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(conf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runBatch(t *testing.T, p *Processor, docs ...string) service.MessageBatch {
	t.Helper()
	var b service.MessageBatch
	for _, d := range docs {
		b = append(b, service.NewMessage([]byte(d)))
	}
	out, err := p.ProcessBatch(context.Background(), b)
	if err != nil || len(out) != 1 {
		t.Fatalf("ProcessBatch: %v, %d batches", err, len(out))
	}
	return out[0]
}

// sale is a row of the seed's sales data after its transform.
type sale struct {
	Date       string  `json:"date"`
	ProductID  int     `json:"product_id"`
	Quantity   int     `json:"quantity"`
	Price      float64 `json:"price"`
	CustomerID int     `json:"customer_id"`
	Total      float64 `json:"total_amount"`
}

func sales() []sale {
	var out []sale
	for i := range 60 {
		s := sale{
			Date:       time.Date(2024, 1, 1+i%9, 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			ProductID:  100 + i%7,
			Quantity:   1 + i%4,
			Price:      float64(5+i%11) + 0.25,
			CustomerID: 1 + i%5,
		}
		s.Total = float64(s.Quantity) * s.Price
		out = append(out, s)
	}
	return out
}

func docs(t *testing.T, rows []sale) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestSeedCustomerSummary: the seed's customer_summary (total_spent,
// avg_order_value, order_count, unique_products, customer_lifetime_days,
// rounded to 2) equals a direct computation over the same rows.
func TestSeedCustomerSummary(t *testing.T) {
	p := newProc(t, `
group_by: [customer_id]
fields:
  - {as: total_spent, op: sum, path: total_amount, round: 2}
  - {as: avg_order_value, op: mean, path: total_amount, round: 2}
  - {as: order_count, op: count}
  - {as: unique_products, op: count_distinct, path: product_id}
  - {as: customer_lifetime_days, op: day_span, path: date}
`)
	rows := sales()
	out := runBatch(t, p, docs(t, rows)...)
	type want struct {
		spent    float64
		n        int
		products map[int]bool
		min, max time.Time
	}
	by := map[int]*want{}
	for _, r := range rows {
		w := by[r.CustomerID]
		if w == nil {
			w = &want{products: map[int]bool{}}
			by[r.CustomerID] = w
		}
		d, _ := time.Parse("2006-01-02", r.Date)
		if w.n == 0 || d.Before(w.min) {
			w.min = d
		}
		if w.n == 0 || d.After(w.max) {
			w.max = d
		}
		w.spent += r.Total
		w.n++
		w.products[r.ProductID] = true
	}
	if len(out) != len(by) {
		t.Fatalf("%d summaries for %d customers", len(out), len(by))
	}
	round2 := func(v float64) float64 { return math.Round(v*100) / 100 }
	for i, m := range out {
		var got struct {
			CustomerID int     `json:"customer_id"`
			Spent      float64 `json:"total_spent"`
			Avg        float64 `json:"avg_order_value"`
			Count      int     `json:"order_count"`
			Products   int     `json:"unique_products"`
			Days       int     `json:"customer_lifetime_days"`
		}
		b, _ := m.AsBytes()
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("summary %s: %v", b, err)
		}
		if got.CustomerID != i+1 {
			t.Errorf("summary %d is customer %d: want groups sorted by customer_id", i, got.CustomerID)
		}
		w := by[got.CustomerID]
		exp := fmt.Sprint(round2(w.spent), round2(w.spent/float64(w.n)), w.n, len(w.products), int(w.max.Sub(w.min).Hours()/24))
		if g := fmt.Sprint(got.Spent, got.Avg, got.Count, got.Products, got.Days); g != exp {
			t.Errorf("customer %d: got %s, want %s (%s)", got.CustomerID, g, exp, b)
		}
	}
}

// TestSeedDailySummary: the seed's daily_summary, grouped by a date
// string, sorted by date, every field checked.
func TestSeedDailySummary(t *testing.T) {
	p := newProc(t, `
group_by: [date]
fields:
  - {as: daily_revenue, op: sum, path: total_amount, round: 2}
  - {as: daily_quantity, op: sum, path: quantity}
  - {as: daily_customers, op: count_distinct, path: customer_id}
  - {as: daily_products, op: count_distinct, path: product_id}
`)
	rows := sales()
	out := runBatch(t, p, docs(t, rows)...)
	type day struct {
		rev       float64
		qty       int
		cust, prd map[int]bool
	}
	by := map[string]*day{}
	for _, r := range rows {
		d := by[r.Date]
		if d == nil {
			d = &day{cust: map[int]bool{}, prd: map[int]bool{}}
			by[r.Date] = d
		}
		d.rev += r.Total
		d.qty += r.Quantity
		d.cust[r.CustomerID], d.prd[r.ProductID] = true, true
	}
	prev := ""
	for _, m := range out {
		b, _ := m.AsBytes()
		var got struct {
			Date           string
			Rev            float64 `json:"daily_revenue"`
			Qty, Cust, Prd int
			DailyQuantity  int `json:"daily_quantity"`
			DailyCustomers int `json:"daily_customers"`
			DailyProducts  int `json:"daily_products"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Date <= prev {
			t.Errorf("date %s after %s: want sorted by date", got.Date, prev)
		}
		prev = got.Date
		d := by[got.Date]
		if got.Rev != math.Round(d.rev*100)/100 || got.DailyQuantity != d.qty || got.DailyCustomers != len(d.cust) || got.DailyProducts != len(d.prd) {
			t.Errorf("%s: got %s, want revenue %.2f quantity %d customers %d products %d", got.Date, b, d.rev, d.qty, len(d.cust), len(d.prd))
		}
	}
	if len(out) != len(by) {
		t.Errorf("%d summaries for %d days", len(out), len(by))
	}
}

// TestRowsNotCounted: a message already errored, one without its group
// field and one with a string to sum pass through after the summaries,
// errored with the reason and their bytes intact; the rest is summarised.
func TestRowsNotCounted(t *testing.T) {
	p := newProc(t, "group_by: [k]\nfields: [{as: total, op: sum, path: v}, {as: lo, op: min, path: v}, {as: hi, op: max, path: v}, {as: n, op: count}]\n")
	pre := service.NewMessage([]byte(`{"k":"a","v":100}`))
	pre.SetError(fmt.Errorf("failed upstream"))
	b := service.MessageBatch{
		service.NewMessage([]byte(`{"k":"b","v":2}`)),
		pre,
		service.NewMessage([]byte(`{"v":3}`)),
		service.NewMessage([]byte(`{"k":"a","v":"x"}`)),
		service.NewMessage([]byte(`{"k":"a","v":4.5}`)),
		service.NewMessage([]byte(`{"k":"b","v":-1}`)),
		service.NewMessage([]byte(`{"k":"b"}`)),
	}
	outs, err := p.ProcessBatch(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range outs[0] {
		body, _ := m.AsBytes()
		s := string(body)
		if err := m.GetError(); err != nil {
			s += " ! " + err.Error()
		}
		got = append(got, s)
	}
	want := []string{
		`{"k":"a","total":4.5,"lo":4.5,"hi":4.5,"n":1}`,
		`{"k":"b","total":1,"lo":-1,"hi":2,"n":3}`,
		`{"k":"a","v":100} ! failed upstream`,
		`{"v":3} ! aggregate: group_by field "k" is missing`,
		`{"k":"a","v":"x"} ! aggregate: field "v" (sum of total): want a number, got "x"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCompensatedSums: sums and means are compensated, as SQLite's sum()
// and avg() (and the sqlite output's summaries) are: ten payments of 0.10
// total 1, not 0.9999999999999999, and a small amount between two large
// ones that cancel is kept.
func TestCompensatedSums(t *testing.T) {
	p := newProc(t, "group_by: [k]\nfields: [{as: total, op: sum, path: v}, {as: avg, op: mean, path: v}]\n")
	var in []string
	for range 10 {
		in = append(in, `{"k":"a","v":0.1}`)
	}
	in = append(in, `{"k":"b","v":1e16}`, `{"k":"b","v":3}`, `{"k":"b","v":-1e16}`)
	var got []string
	for _, m := range runBatch(t, p, in...) {
		body, _ := m.AsBytes()
		got = append(got, string(body))
	}
	want := []string{`{"k":"a","total":1,"avg":0.1}`, `{"k":"b","total":3,"avg":1}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMedian: pandas' median per group, the middle value or the mean of
// the two middle ones, nulls skipped, rounded if asked; a string is not
// counted and passes through with the reason.
func TestMedian(t *testing.T) {
	p := newProc(t, "group_by: [k]\nfields: [{as: m, op: median, path: v}, {as: r, op: median, path: v, round: 0}]\n")
	out := runBatch(t, p,
		`{"k":"odd","v":3}`, `{"k":"odd","v":1}`, `{"k":"odd","v":2.5}`,
		`{"k":"even","v":4}`, `{"k":"even","v":null}`, `{"k":"even","v":1}`, `{"k":"even","v":3}`, `{"k":"even","v":2}`,
		`{"k":"none","v":null}`, `{"k":"odd","v":"x"}`)
	var got []string
	for _, m := range out {
		b, _ := m.AsBytes()
		s := string(b)
		if err := m.GetError(); err != nil {
			s += " ! " + err.Error()
		}
		got = append(got, s)
	}
	want := []string{`{"k":"even","m":2.5,"r":3}`, `{"k":"none","m":null,"r":null}`, `{"k":"odd","m":2.5,"r":3}`, `{"k":"odd","v":"x"} ! aggregate:`}
	if len(got) != len(want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("message %d: %s, want %s", i, got[i], want[i])
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"group_by: [k]\nfields: []\n", "at least one summary field"},
		{"group_by: [k]\nfields: [{as: n, op: count, path: v}]\n", "takes no path"},
		{"group_by: [k]\nfields: [{as: s, op: sum}]\n", "sum needs a path"},
		{"group_by: [k]\nfields: [{as: k, op: count}]\n", `"k" names two summary fields`},
		{"group_by: [k]\nfields: [{as: s, op: mode, path: v}]\n", `op "mode" is not one of`},
	} {
		conf, err := ConfigSpec().ParseYAML(tc.yaml, nil)
		if err == nil {
			_, err = New(conf)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
}

func BenchmarkAggregate(b *testing.B) {
	conf, _ := ConfigSpec().ParseYAML(`
group_by: [customer_id]
fields:
  - {as: total_spent, op: sum, path: total_amount, round: 2}
  - {as: avg_order_value, op: mean, path: total_amount, round: 2}
  - {as: order_count, op: count}
  - {as: unique_products, op: count_distinct, path: product_id}
  - {as: customer_lifetime_days, op: day_span, path: date}
`, nil)
	p, _ := New(conf)
	var rows []sale
	for range 170 {
		rows = append(rows, sales()...)
	}
	var batch service.MessageBatch
	for _, r := range rows {
		body, _ := json.Marshal(r)
		batch = append(batch, service.NewMessage(body))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.ProcessBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(batch)*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestFrames: a frame's rows are summarised as the messages they stand
// for: the summaries equal those of the same rows as JSON messages, and
// the frame's rejected rows, and a row that cannot be counted, pass
// through as messages with their reasons.
func TestFrames(t *testing.T) {
	conf := `
group_by: [date]
fields:
  - {as: quantity, op: sum, path: quantity}
  - {as: customers, op: count_distinct, path: customer_id}
`
	w := frame.NewWriter()
	date, qty, cust := w.Add("date", abi.TypeString, false), w.Add("quantity", abi.TypeInt, false), w.Add("customer_id", abi.TypeInt, false)
	var docs []string
	for i, r := range sales() {
		switch i {
		case 7: // rejected upstream
			date.Null()
			qty.Null()
			cust.Null()
			w.Reject("price: not a number")
			continue
		case 11: // no date: cannot be counted
			date.Null()
		default:
			date.Text(r.Date)
			docs = append(docs, fmt.Sprintf(`{"date":%q,"quantity":%d,"customer_id":%d}`, r.Date, r.Quantity, r.CustomerID))
		}
		qty.Int(int64(r.Quantity))
		cust.Int(int64(r.CustomerID))
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := runBatch(t, newProc(t, conf), docs...)
	got := runBatch(t, newProc(t, conf), string(body))
	if len(got) != len(want)+2 {
		t.Fatalf("%d messages out, want %d summaries and 2 rows not counted", len(got), len(want))
	}
	for i, m := range want {
		wb, _ := m.AsBytes()
		gb, _ := got[i].AsBytes()
		if string(gb) != string(wb) || got[i].GetError() != nil {
			t.Errorf("summary %d: %s (%v), want %s", i, gb, got[i].GetError(), wb)
		}
	}
	for i, reason := range []string{"price: not a number", `group_by field "date" is missing`} {
		m := got[len(want)+i]
		if err := m.GetError(); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("row not counted %d: error %v, want %q", i, err, reason)
		}
	}
}

// TestAnnotate: with annotate every message stays, in its place, with its
// group's summary fields added (one of the same name replaced); messages
// not counted stay errored in their places; an empty group_by is the whole
// batch; a frame stays a frame, its rows as they would be as messages: the
// summaries as typed columns (a column of the same name and type replaced,
// kept for rows not counted), rows not counted rejected in it.
func TestAnnotate(t *testing.T) {
	render := func(out service.MessageBatch) []string {
		var got []string
		for _, m := range unframeAll(t, out) {
			b, _ := m.AsBytes()
			s := string(b)
			if line, ok := m.MetaGet("csv_line"); ok {
				s += " @" + line
			}
			if err := m.GetError(); err != nil {
				s += " ! " + err.Error()
			}
			got = append(got, s)
		}
		return got
	}
	check := func(t *testing.T, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	t.Run("by group", func(t *testing.T) {
		p := newProc(t, "group_by: [k]\nannotate: true\nfields: [{as: m, op: median, path: v}, {as: n, op: count}]\n")
		in := service.MessageBatch{
			service.NewMessage([]byte(`{"k":"a","v":1}`)),
			service.NewMessage([]byte(`{"k":"b","v":10}`)),
			service.NewMessage([]byte(`{"m":"old","k":"a","v":3}`)),
			service.NewMessage([]byte(`{"k":"a","v":99}`)),
			service.NewMessage([]byte(`{"k":"a"}`)),
			service.NewMessage([]byte(`{"v":5}`)),
		}
		in[3].SetError(errors.New("rejected upstream"))
		out, err := p.ProcessBatch(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		check(t, render(out[0]), []string{
			`{"k":"a","v":1,"m":2,"n":3}`,
			`{"k":"b","v":10,"m":10,"n":1}`,
			`{"k":"a","v":3,"m":2,"n":3}`,
			`{"k":"a","v":99} ! rejected upstream`,
			`{"k":"a","m":2,"n":3}`,
			`{"v":5} ! aggregate: group_by field "k" is missing`,
		})
	})
	t.Run("the whole batch, from a frame", func(t *testing.T) {
		p := newProc(t, "group_by: []\nannotate: true\nfields: [{as: med, op: median, path: score}]\n")
		w := frame.NewWriter()
		score, line := w.Add("score", abi.TypeFloat, false), w.Add("csv_line", abi.TypeInt, true)
		for i, v := range []float64{4, 1, 0, 3} {
			line.Int(int64(i + 2))
			if i == 2 {
				score.Null()
				w.Reject("not a number")
				continue
			}
			score.Float(v)
			w.Accept()
		}
		body, err := w.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(body)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out[0]) != 1 {
			t.Fatalf("%d messages out of one frame, want the frame", len(out[0]))
		}
		check(t, render(out[0]), []string{
			`{"score":4,"med":3} @2`,
			`{"score":1,"med":3} @3`,
			`{"score":null} @4 ! not a number`,
			`{"score":3,"med":3} @5`,
		})
	})
	t.Run("by group, from a frame", func(t *testing.T) {
		p := newProc(t, "group_by: [k]\nannotate: true\nfields: [{as: m, op: median, path: v}, {as: n, op: count}, {as: lo, op: min, path: v}]\n")
		body, err := frame.FromValues([]frame.Values{
			{Name: "k", Type: abi.TypeString, Rows: []any{"a", "b", "a", "a", "a", nil}},
			{Name: "v", Type: abi.TypeInt, Rows: []any{1, 10, 3, 99, nil, 5}},
			{Name: "m", Type: abi.TypeFloat, Rows: []any{nil, nil, 7.5, 8.5, nil, nil}},
			{Name: "csv_line", Type: abi.TypeInt, Meta: true, Rows: []any{2, 3, 4, 5, 6, 7}},
		}, map[int]string{3: "rejected upstream"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(body)})
		if err != nil {
			t.Fatal(err)
		}
		check(t, render(out[0]), []string{
			`{"k":"a","v":1,"m":2,"n":3,"lo":1} @2`,
			`{"k":"b","v":10,"m":10,"n":1,"lo":10} @3`,
			`{"k":"a","v":3,"m":2,"n":3,"lo":1} @4`,
			`{"k":"a","v":99,"m":8.5} @5 ! rejected upstream`,
			`{"k":"a","v":null,"m":2,"n":3,"lo":1} @6`,
			`{"k":null,"v":5,"m":null} @7 ! aggregate: group_by field "k" is missing`,
		})
	})
}

// unframeAll hands on each message, a frame as the messages of its rows.
func unframeAll(t *testing.T, batch service.MessageBatch) service.MessageBatch {
	t.Helper()
	var out service.MessageBatch
	for _, m := range batch {
		b, err := m.AsBytes()
		if err != nil || !frame.Is(b) {
			out = append(out, m)
			continue
		}
		f, err := frame.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range f.Rows {
			out = append(out, f.RowMessage(m, i))
		}
	}
	return out
}

// TestFramesMatchRows: a frame's rows, read from its columns, summarise
// (and annotate) exactly as the same rows as JSON messages do, for every
// op on every column type, nulls and absent groups included.
func TestFramesMatchRows(t *testing.T) {
	const rows = 60
	cols := []frame.Values{
		{Name: "g", Type: abi.TypeString}, {Name: "n", Type: abi.TypeInt}, {Name: "x", Type: abi.TypeFloat},
		{Name: "s", Type: abi.TypeString}, {Name: "b", Type: abi.TypeBool}, {Name: "at", Type: abi.TypeTime},
	}
	for i := range rows {
		vals := []any{[]string{"a", "b", "c \"q\""}[i%3], i*7%23 - 5, float64(i%9) * 1.1, fmt.Sprint("s", i%5), i%4 == 0,
			time.Date(2025, 1, 1+i%40, i%24, 0, 0, 0, time.UTC)}
		if i%11 == 4 {
			vals[1], vals[2], vals[3], vals[5] = nil, nil, nil, nil
		}
		if i == 17 {
			vals[0] = nil // no group: not counted
		}
		for c := range cols {
			cols[c].Rows = append(cols[c].Rows, vals[c])
		}
	}
	body, err := frame.FromValues(cols, map[int]string{5: "rejected upstream"})
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	f, err := frame.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Rows {
		if !f.Rejected(i) {
			docs = append(docs, string(f.AppendRowJSON(nil, i)))
		}
	}
	fields := `
  - {as: sn, op: sum, path: n}
  - {as: mx, op: mean, path: x, round: 2}
  - {as: md, op: median, path: n}
  - {as: c, op: count}
  - {as: ds, op: count_distinct, path: s}
  - {as: dn, op: count_distinct, path: n}
  - {as: lo, op: min, path: x}
  - {as: hi, op: max, path: s}
  - {as: first, op: first, path: b}
  - {as: last, op: last, path: at}
  - {as: late, op: max, path: at}
  - {as: span, op: day_span, path: at}
`
	render := func(out service.MessageBatch) []string {
		var got []string
		for _, m := range unframeAll(t, out) {
			b, _ := m.AsBytes()
			s := string(b)
			if err := m.GetError(); err != nil {
				s += " ! " + err.Error()
			}
			if strings.Contains(s, "rejected upstream") {
				continue // the JSON rows leave it out
			}
			got = append(got, s)
		}
		return got
	}
	for _, mode := range []string{"annotate: false", "annotate: true"} {
		conf := "group_by: [g]\n" + mode + "\nfields:" + fields
		want := render(runBatch(t, newProc(t, conf), docs...))
		got := render(runBatch(t, newProc(t, conf), string(body)))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: from the frame\n%s\nfrom its rows as JSON\n%s", mode, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// metaOf renders a message's metadata, sorted, as a user would list it.
func metaOf(m *service.Message) string {
	var kv []string
	_ = m.MetaWalk(func(k, v string) error { kv = append(kv, k+"="+v); return nil })
	slices.Sort(kv)
	return strings.Join(kv, " ")
}

// TestSummaryMetadata: a summary carries the metadata every message of its
// group has, with the same value (a system_window's window_end_timestamp,
// the file of a csv_file batch), and no key whose values differ between
// them or that some lack (a row's line, a Kafka offset), so a summary of a
// window says which window it is; a frame's rows count with their
// metadata columns over the frame message's metadata, as unframe gives
// them.
func TestSummaryMetadata(t *testing.T) {
	p := newProc(t, "group_by: [user]\nfields: [{as: n, op: count}]\n")
	type in struct {
		body string
		meta map[string]string
	}
	const end = "2024-03-09T14:06:00Z"
	for _, tc := range []struct {
		name string
		msgs []in
		want []string // per summary, in group order
	}{
		{"a window's messages", []in{
			{`{"user":"a"}`, map[string]string{"window_end_timestamp": end, "kafka_offset": "1", "kafka_topic": "events"}},
			{`{"user":"b"}`, map[string]string{"window_end_timestamp": end, "kafka_offset": "2", "kafka_topic": "events"}},
			{`{"user":"a"}`, map[string]string{"window_end_timestamp": end, "kafka_offset": "3", "kafka_topic": "events"}},
		}, []string{"kafka_topic=events window_end_timestamp=" + end, "kafka_offset=2 kafka_topic=events window_end_timestamp=" + end}},
		{"a key some members lack", []in{
			{`{"user":"a"}`, map[string]string{"w": "1", "x": "only here"}},
			{`{"user":"a"}`, map[string]string{"w": "1"}},
		}, []string{"w=1"}},
		{"no metadata", []in{{`{"user":"a"}`, nil}}, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b service.MessageBatch
			for _, m := range tc.msgs {
				msg := service.NewMessage([]byte(m.body))
				for k, v := range m.meta {
					msg.MetaSetMut(k, v)
				}
				b = append(b, msg)
			}
			out, err := p.ProcessBatch(context.Background(), b)
			if err != nil || len(out) != 1 || len(out[0]) != len(tc.want) {
				t.Fatalf("%v: %v", err, out)
			}
			for i, m := range out[0] {
				if got := metaOf(m); got != tc.want[i] {
					body, _ := m.AsBytes()
					t.Errorf("summary %s: metadata %q, want %q", body, got, tc.want[i])
				}
			}
		})
	}

	t.Run("two files' frames", func(t *testing.T) {
		var b service.MessageBatch
		for _, file := range []string{"/data/a.csv", "/data/b.csv"} {
			w := frame.NewWriter()
			user := w.Add("user", abi.TypeString, false)
			w.AddConst("csv_file", abi.TypeString, true).Text(file)
			region := w.Add("region", abi.TypeString, true)
			for range 2 {
				user.Text("a")
				region.Text("eu")
				w.Accept()
			}
			body, err := w.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, service.NewMessage(body))
		}
		out, err := p.ProcessBatch(context.Background(), b)
		if err != nil || len(out) != 1 || len(out[0]) != 1 {
			t.Fatalf("%v: %v", err, out)
		}
		if got := metaOf(out[0][0]); got != "region=eu" {
			t.Errorf("a summary of both files' rows: metadata %q, want %q", got, "region=eu")
		}
	})

	t.Run("a csv_file frame", func(t *testing.T) {
		w := frame.NewWriter()
		user := w.Add("user", abi.TypeString, false)
		w.AddConst("csv_file", abi.TypeString, true).Text("/data/events.csv")
		line, raw := w.Add("csv_line", abi.TypeString, true), w.AddRaw("csv_raw")
		// Per row, but the same on every row: shared all the same.
		region := w.Add("region", abi.TypeString, true)
		for i, u := range []string{"a", "b", "a"} {
			user.Text(u)
			region.Text("eu")
			line.Text(fmt.Sprint(i + 2))
			raw.Text(fmt.Sprintf("%s,%d", u, i))
			w.Accept()
		}
		body, err := w.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := service.NewMessage(body)
		msg.MetaSetMut("source", "events")
		msg.MetaSetMut("csv_file", "overridden by the column")
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
		if err != nil || len(out) != 1 || len(out[0]) != 2 {
			t.Fatalf("%v: %v", err, out)
		}
		// b has one row, so its line and text are its own.
		for i, want := range []string{"csv_file=/data/events.csv region=eu source=events", "csv_file=/data/events.csv csv_line=3 csv_raw=b,1 region=eu source=events"} {
			if got := metaOf(out[0][i]); got != want {
				t.Errorf("summary %d: metadata %q, want %q", i, got, want)
			}
		}
	})
}

// TestStreamWindows: the docs' way to summarise a stream per window, a
// system_window buffer before the step: every summary says which window
// it is of (window_end_timestamp, from the messages it sums), a window
// has one summary per group, and the first windows count the stream's
// first messages, each once.
func TestStreamWindows(t *testing.T) {
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		t.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	for _, add := range []func() error{
		func() error {
			return sb.AddInputYAML(`
generate:
  interval: 100ms
  mapping: |
    let i = counter()
    root = {"user": "u" + ($i % 2).string(), "amount": $i, "ts": now()}
`)
		},
		func() error {
			return sb.SetBufferYAML(`
system_window:
  timestamp_mapping: 'root = this.ts.ts_parse("2006-01-02T15:04:05.999999999Z07:00")'
  size: 1s
  # A message stamped just before a window's end still reaches it, on a
  # machine busy with other tests too (it must be under the size).
  allowed_lateness: 900ms
`)
		},
		func() error {
			return sb.AddProcessorYAML(`
aggregate:
  group_by: [user]
  fields: [{as: total, op: sum, path: amount}, {as: n, op: count}]
`)
		},
	} {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	type summary struct {
		User  string  `json:"user"`
		Total float64 `json:"total"`
		N     int     `json:"n"`
		end   string
	}
	const windows = 2
	var (
		mu   sync.Mutex
		got  []summary
		ends []string // the windows seen, in order
		done = make(chan struct{})
	)
	if err := sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		var s summary
		body, err := m.AsBytes()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(body, &s); err != nil {
			return err
		}
		s.end, _ = m.MetaGet("window_end_timestamp")
		mu.Lock()
		defer mu.Unlock()
		if len(ends) == 0 || ends[len(ends)-1] != s.end {
			// A window's summaries come together: a new end means the
			// windows before it are whole.
			if ends = append(ends, s.end); len(ends) == windows+1 {
				close(done)
			}
		}
		if len(ends) <= windows {
			got = append(got, s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	strm, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var runErr error
	go func() { runErr = strm.Run(ctx); close(stopped) }()
	select {
	case <-done:
	case <-stopped:
		t.Fatalf("the stream stopped: %v", runErr)
	case <-time.After(time.Minute):
		t.Errorf("%d windows' summaries within a minute, want %d", len(ends), windows+1)
	}
	cancel()
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	total, n := 0.0, 0
	seen := map[string]bool{}
	for _, s := range got {
		if _, err := time.Parse(time.RFC3339Nano, s.end); err != nil {
			t.Errorf("summary %+v: window_end_timestamp: %v", s, err)
		}
		if k := s.end + " " + s.User; seen[k] {
			t.Errorf("two summaries of %s in the window ending %s", s.User, s.end)
		} else {
			seen[k] = true
		}
		total, n = total+s.Total, n+s.N
	}
	// The first n messages have amounts 1..n.
	if n == 0 || total != float64(n*(n+1)/2) {
		t.Errorf("the first %d windows' summaries count %d messages summing to %v, want the stream's first %d, summing to %d: %+v", windows, n, total, n, n*(n+1)/2, got)
	}
}
