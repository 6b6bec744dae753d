package wasm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// salesFrame is a frame of sales rows as csv_file reads them, with the
// cases the seed's checks and transform care about.
func salesFrame(t testing.TB) []byte {
	t.Helper()
	w := frame.NewWriter()
	date, product, qty, price, customer := w.Add("date", abi.TypeString, false), w.Add("product_id", abi.TypeInt, false),
		w.Add("quantity", abi.TypeInt, false), w.Add("price", abi.TypeFloat, false), w.Add("customer_id", abi.TypeInt, false)
	line := w.Add("line", abi.TypeInt, false)
	raw := w.AddRaw("csv_raw")
	type row struct {
		date              string
		product, qty, cus int64
		price             float64
		nullPrice         bool
		reject            string
	}
	rows := []row{
		{date: "2024-01-15", product: 7, qty: 2, price: 9.99, cus: 100},
		{date: "2024-01-15", product: 8, qty: -1, price: 5, cus: 101},              // negative quantity
		{date: "2024-02-30", product: 9, qty: 1, price: 3.5, cus: 102},             // not a date
		{date: "2024-03-01", product: 9, qty: 3, nullPrice: true, cus: 103},        // missing price
		{date: "2024-03-02", product: 1, qty: 1, price: 1, reject: "csv: earlier"}, // rejected before the step
		{date: "2023-12-31", product: 2, qty: 4, price: 0.1, cus: 104},
	}
	for i, r := range rows {
		date.Text(r.date)
		product.Int(r.product)
		qty.Int(r.qty)
		if r.nullPrice {
			price.Null()
		} else {
			price.Float(r.price)
		}
		customer.Int(r.cus)
		line.Int(int64(i + 2))
		raw.Text(fmt.Sprintf("raw row %d", i))
		if r.reject != "" {
			w.Reject(r.reject)
		} else {
			w.Accept()
		}
	}
	b, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rowsOf unframes a frame message into its rows' messages.
func rowsOf(t testing.TB, msg *service.Message) service.MessageBatch {
	t.Helper()
	b, err := msg.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := frame.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var out service.MessageBatch
	for i := 0; i < f.Rows; i++ {
		out = append(out, f.RowMessage(msg, i))
	}
	return out
}

// describe renders a message as what a user checks: its body as a JSON
// value, its error, its metadata.
func describe(t testing.TB, m *service.Message) string {
	t.Helper()
	b, _ := m.AsBytes()
	var v any
	s := string(b)
	if json.Unmarshal(b, &v) == nil {
		nb, _ := json.Marshal(v)
		s = string(nb)
	}
	if err := m.GetError(); err != nil {
		s += " ! " + err.Error()
	}
	meta := map[string]string{}
	_ = m.MetaWalk(func(k, v string) error { meta[k] = v; return nil })
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		s += fmt.Sprintf(" [%s=%s]", k, meta[k])
	}
	return s
}

// TestFramesMatchRows runs the shipped sales steps over the same rows as
// one frame and as one JSON message each: every row must come out the
// same — body, error and metadata.
func TestFramesMatchRows(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	for _, tc := range []struct {
		name, yaml string
	}{
		{"validate", "builtin: validate\nconfig_file: builtin:suites/sales_data.yaml\nskip_errored: true\n"},
		{"transform", "builtin: sales\nskip_errored: true\n"},
		{"transform in calls of 2 rows", "builtin: sales\nskip_errored: true\nmax_call_messages: 2\n"},
		// Calls at once, each on its own instance: the same rows in the
		// same order.
		{"transform, 3 calls at once", "builtin: sales\nskip_errored: true\nmax_call_messages: 2\nparallel_calls: 3\n"},
		{"validate, 2 calls at once", "builtin: validate\nconfig_file: builtin:suites/sales_data.yaml\nskip_errored: true\nparallel_calls: 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frameMsg := service.NewMessage(salesFrame(t))
			rows := rowsOf(t, frameMsg)
			pr, pf := mustProcessor(t, eng, tc.yaml), mustProcessor(t, eng, tc.yaml)
			var want []string
			for _, m := range run(t, pr, rows) {
				want = append(want, describe(t, m))
			}
			out := run(t, pf, service.MessageBatch{frameMsg})
			if len(out) != 1 {
				t.Fatalf("%d messages out of a frame, want the frame", len(out))
			}
			var got []string
			for _, m := range rowsOf(t, out[0]) {
				got = append(got, describe(t, m))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("frame rows:\n  %s\nJSON rows:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			if !strings.Contains(strings.Join(got, "\n"), "!") {
				t.Error("no row failed: the sample lost its bad rows")
			}
		})
	}
}

// TestFramesInTurn: one step over frames in turn, as a pipeline runs it;
// each frame comes out as its rows would as JSON messages, whether the
// frame before it had good rows (outputs, the validate step's metadata)
// or only bad ones, and another number of rows. (It guards any state a
// step keeps between frames: a session-23 pool of output scratch, not
// kept, failed it when a reused buffer was not cleared.)
func TestFramesInTurn(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	all := salesFrame(t)
	f, err := frame.Decode(all)
	if err != nil {
		t.Fatal(err)
	}
	// Rows 1-3 of salesFrame fail both steps' checks.
	badOnly := f.Append(nil, []bool{false, true, true, true, false, false})
	for _, tc := range []struct{ name, yaml string }{
		{"validate", "builtin: validate\nconfig_file: builtin:suites/sales_data.yaml\nskip_errored: true\n"},
		{"transform", "builtin: sales\nskip_errored: true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := mustProcessor(t, eng, tc.yaml)
			for i, body := range [][]byte{all, badOnly, all, badOnly} {
				frameMsg := service.NewMessage(body)
				var want []string
				for _, m := range run(t, mustProcessor(t, eng, tc.yaml), rowsOf(t, frameMsg)) {
					want = append(want, describe(t, m))
				}
				out := run(t, pf, service.MessageBatch{frameMsg})
				var got []string
				for _, m := range rowsOf(t, out[0]) {
					got = append(got, describe(t, m))
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("frame %d: frame rows:\n  %s\nJSON rows:\n  %s", i, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			}
		})
	}
}

// TestFrameRefused: a step that cannot take a frame rejects its rows with
// a reason that says what to do, and loses none of them.
func TestFrameRefused(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, "path: "+plugins["echo"])
	out := run(t, p, service.MessageBatch{service.NewMessage(salesFrame(t))})
	rows := rowsOf(t, out[0])
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	for i, m := range rows {
		err := m.GetError()
		if i == 4 {
			if err == nil || err.Error() != "csv: earlier" {
				t.Errorf("row 4: error %v, want its first reason kept", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "bytes-mode plugin does not take frames; put `unframe` before it") {
			t.Errorf("row %d: error %v, want the refusal", i, err)
		}
		if b, _ := m.AsBytes(); !strings.Contains(string(b), fmt.Sprintf(`"line":%d`, i+2)) {
			t.Errorf("row %d: body %s, want the row as it was", i, b)
		}
	}
}

// TestFrameUnwritableOutput: a float output JSON has no number for (the
// transform's total_amount of an infinite price) rejects the row, with
// the reason the JSON path fails its message with, and sets nothing.
func TestFrameUnwritableOutput(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	p := mustProcessor(t, eng, "builtin: sales\n")
	body, err := frame.FromValues([]frame.Values{
		{Name: "date", Type: abi.TypeString, Rows: []any{"2024-01-15", "2024-01-16"}},
		{Name: "quantity", Type: abi.TypeInt, Rows: []any{2, 3}},
		{Name: "price", Type: abi.TypeFloat, Rows: []any{math.Inf(1), 1.5}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(t, run(t, p, service.MessageBatch{service.NewMessage(body)})[0])
	if err := rows[0].GetError(); err == nil || !strings.HasSuffix(err.Error(), `output field "total_amount": +Inf cannot be written as JSON`) {
		t.Errorf("row 0: error %v, want the infinite total refused", err)
	}
	if b, _ := rows[0].AsBytes(); strings.Contains(string(b), "year") {
		t.Errorf("row 0: %s, want no output set on a refused row", b)
	}
	if b, _ := rows[1].AsBytes(); rows[1].GetError() != nil || !strings.Contains(string(b), `"total_amount":4.5`) {
		t.Errorf("row 1: %s (%v), want it transformed", b, rows[1].GetError())
	}
}

// TestFrameIntsAsFloats: a frame's int column read by a float field gives
// the plugin what the row's JSON would (the nearest float, large integers
// included), so the dag builtin's features come out the same either way.
func TestFrameIntsAsFloats(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	body, err := frame.FromValues([]frame.Values{
		{Name: "page_views", Type: abi.TypeInt, Rows: []any{10, nil, 9007199254740993, -5, 1 << 62, 0}},
		{Name: "session_duration", Type: abi.TypeInt, Rows: []any{100, 3, 1, 7, 3, -9223372036854775807}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const yaml = "builtin: dag\nconfig: {source: user_behavior}\n"
	frameMsg := service.NewMessage(body)
	var want, got []string
	for _, m := range run(t, mustProcessor(t, eng, yaml), rowsOf(t, frameMsg)) {
		want = append(want, describe(t, m))
	}
	for _, m := range rowsOf(t, run(t, mustProcessor(t, eng, yaml), service.MessageBatch{frameMsg})[0]) {
		got = append(got, describe(t, m))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || !strings.Contains(want[0], `"engagement_score":73`) {
		t.Errorf("frame rows:\n  %s\nJSON rows:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestValidateFrameNumbersMatchRows: the validate builtin asks for a
// not-null column's kinds only and a range-checked column's numbers as
// their bytes; on a frame it then gets them so, and as JSON rows it gets
// text. Every row must come out the same either way (verdict, reason,
// the observed value in sluice_validation, the batch's report), for
// numbers whose text is least like their bytes: -0, exponents, integers
// past 2^53, the edges of a strict bound.
func TestValidateFrameNumbersMatchRows(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	w := frame.NewWriter()
	id, n, x, when := w.Add("id", abi.TypeInt, false), w.Add("n", abi.TypeInt, false), w.Add("x", abi.TypeFloat, false), w.Add("at", abi.TypeTime, false)
	ints := []int64{0, 1, -1, 10, 11, math.MaxInt64, math.MinInt64, 1<<53 + 1, -(1<<53 + 1)}
	floats := []float64{0, math.Copysign(0, -1), 0.1, -0.1, 1e-7, 1e21, -1e21, 123456789.125, 2.5, 2.4999999999999996, math.MaxFloat64, 5e-324}
	rows := max(len(ints), len(floats)) + 2
	for r := range rows {
		switch r {
		case rows - 2: // nothing there
			id.Absent()
			n.Absent()
			x.Absent()
			when.Absent()
		case rows - 1: // null
			id.Null()
			n.Null()
			x.Null()
			when.Null()
		default:
			id.Int(int64(r))
			n.Int(ints[r%len(ints)])
			x.Float(floats[r%len(floats)])
			when.Int(int64(r) * 1e9)
		}
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := `builtin: validate
config:
  suite: edges
  on_failure: fail
  report: batch
  expectations:
    - expect_column_values_to_not_be_null: {column: id}
    - expect_column_values_to_not_be_null: {column: at}
    - expect_column_values_to_be_between: {column: n, min_value: 0, max_value: 10, strict_min: true}
    - expect_column_values_to_be_between: {column: x, min_value: 0, max_value: 2.5, strict_min: true, mostly: 0.5}
    - expect_column_values_to_be_between: {column: x, min_value: -1e21, max_value: 1e21}
`
	frameMsg := service.NewMessage(body)
	var want []string
	for _, m := range run(t, mustProcessor(t, eng, conf), rowsOf(t, frameMsg)) {
		want = append(want, describe(t, m))
	}
	out := run(t, mustProcessor(t, eng, conf), service.MessageBatch{frameMsg})
	var got []string
	for _, m := range rowsOf(t, out[0]) {
		got = append(got, describe(t, m))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("frame rows:\n  %s\nJSON rows:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	all := strings.Join(got, "\n")
	for _, seen := range []string{`"observed_value":-1e+21`, `"observed_value":9223372036854775807`, `"observed_value":-0`, "sluice_quality_report"} {
		if !strings.Contains(all, seen) {
			t.Errorf("no row shows %s: the rows no longer exercise it\n%s", seen, all)
		}
	}
}
