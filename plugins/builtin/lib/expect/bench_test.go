package expect

import (
	"fmt"
	"runtime/debug"
	"testing"
)

// userEventRows are records in the seed's Kafka event shape, as the host
// hands them to the plugin: valid ones, and ones breaking several
// expectations each.
func userEventRows(tb testing.TB, s *Suite, good bool) []*Row {
	tb.Helper()
	types := []string{"page_view", "click", "add_to_cart", "purchase", "search"}
	rows := make([]*Row, 1024)
	for i := range rows {
		var rec string
		if good {
			rec = fmt.Sprintf(`{"user_id":%d,"event_type":%q,"event_data":{"amount":%d.5,"page":"/products/%d"},"timestamp":"2025-01-%02dT05:28:42.268"}`,
				1+i%1000, types[i%5], i%200, i, 1+i%28)
		} else {
			rec = fmt.Sprintf(`{"user_id":"u%d","event_type":"login","event_data":[%d],"timestamp":"yesterday"}`, i, i)
		}
		rows[i] = rowFor(tb, s, rec)
	}
	return rows
}

// allocsPerRun is testing.AllocsPerRun with the collector held off: a
// collection empties every sync.Pool, and the next Get of one (regexp
// keeps its matchers in pools) allocates the pool's array again, which
// counted as the validator's in a run that a collection happened to
// overlap (seen on a loaded machine, about once in a hundred runs).
func allocsPerRun(runs int, f func()) float64 {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	return testing.AllocsPerRun(runs, f)
}

// TestPassingRowsDoNotAllocate: the hot path of a clean stream.
func TestPassingRowsDoNotAllocate(t *testing.T) {
	s := shippedSuite(t, "user_events.yaml")
	v := s.NewValidator()
	rows := userEventRows(t, s, true)
	i := 0
	allocs := allocsPerRun(1000, func() {
		if i%len(rows) == 0 {
			v.Begin()
		}
		if out := v.Check(rows[i%len(rows)]); out.Violations != 0 {
			t.Fatalf("row %d: %s", i, v.AppendReason(nil))
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per passing row, want 0", allocs)
	}

	// With uniqueness, a new value rewrites the key's state into the
	// validator's buffer: nothing allocated once it has grown.
	s = shippedSuite(t, "user_data.yaml")
	v = s.NewValidator()
	// 1400 minutes, all within the day horizon: past the 1000th, each new
	// value pushes the oldest out.
	uniq := make([]*Row, 1400)
	for n := range uniq {
		uniq[n] = rowFor(t, s, fmt.Sprintf(`{"user_id":1,"page_views":3,"session_duration":60,"timestamp":"2025-01-01T%02d:%02d:00"}`, n/60, n%60))
		uniq[n].Key = []byte("1")
	}
	var state []byte
	pass := func() {
		v.Begin()
		state = state[:0]
		for _, r := range uniq {
			r.State = state
			out := v.Check(r)
			if out.Violations != 0 || !out.SetState {
				t.Fatalf("%+v %s", out, v.AppendReason(nil))
			}
			state = append(state[:0], out.State...)
		}
	}
	pass() // grow the buffers to a full horizon
	if allocs := allocsPerRun(1, pass); allocs != 0 {
		t.Errorf("%.0f allocations for %d new unique rows, want 0", allocs, len(uniq))
	}
}

func benchmarkUserEvents(b *testing.B, good bool) {
	s := shippedSuite(b, "user_events.yaml")
	v := s.NewValidator()
	rows := userEventRows(b, s, good)
	var text []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(rows)
		if j == 0 {
			v.Begin()
		}
		out := v.Check(rows[j])
		if out.Violations > 0 {
			// What the plugin does for a failing row.
			text = v.AppendViolations(text[:0])
			text = v.AppendReason(text[:0])
		}
	}
}

// BenchmarkUserEventsPass is the per-row cost of the user_events suite on
// valid events.
func BenchmarkUserEventsPass(b *testing.B) { benchmarkUserEvents(b, true) }

// BenchmarkUserEventsFail is the per-row cost on events breaking 6
// expectations each, with the reason and metadata rendered.
func BenchmarkUserEventsFail(b *testing.B) { benchmarkUserEvents(b, false) }

// BenchmarkUserEventsBatch is the plugin's path: a 1024-row batch
// evaluated at once, then each row finished; the figure is per row.
func BenchmarkUserEventsBatch(b *testing.B) {
	for _, good := range []bool{true, false} {
		b.Run(map[bool]string{true: "pass", false: "fail"}[good], func(b *testing.B) {
			s := shippedSuite(b, "user_events.yaml")
			v := s.NewValidator()
			ptrs := userEventRows(b, s, good)
			rows := make([]Row, len(ptrs))
			for i, r := range ptrs {
				rows[i] = *r
			}
			var text []byte
			var out Outcome
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				v.Begin()
				v.Evaluate(rows)
				for i := range rows {
					if v.Finish(i, &rows[i], &out); out.Violations > 0 {
						text = v.AppendViolations(text[:0])
						text = v.AppendReason(text[:0])
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
		})
	}
}

// BenchmarkUserDataUnique is a row of the user_data suite, whose
// (user_id, timestamp) uniqueness reads and rewrites the key's state.
func BenchmarkUserDataUnique(b *testing.B) {
	s := shippedSuite(b, "user_data.yaml")
	v := s.NewValidator()
	rows := make([]*Row, 1440)
	for i := range rows {
		rows[i] = rowFor(b, s, fmt.Sprintf(`{"user_id":7,"page_views":3,"session_duration":60,"timestamp":"2025-01-01T%02d:%02d:00"}`, i/60, i%60))
		rows[i].Key = []byte("7")
	}
	var state []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(rows)
		if j == 0 {
			v.Begin()
			state = state[:0] // a new day of records: start the key afresh
		}
		r := rows[j]
		r.State = state
		out := v.Check(r)
		if out.SetState {
			state = append(state[:0], out.State...)
		}
	}
}

// BenchmarkReport is building and rendering the GX result of a 1024-row
// batch.
func BenchmarkReport(b *testing.B) {
	s := shippedSuite(b, "user_events.yaml")
	v := s.NewValidator()
	v.Begin()
	for _, r := range userEventRows(b, s, false) {
		v.Check(r)
	}
	var text []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		text = v.Report().AppendJSON(text[:0])
	}
}

// BenchmarkSalesData is the sales ETL's suite (sales_data.yaml) on an
// 8192-row batch of good sales rows, as the validate plugin runs it:
// evaluated at once, then each row finished. Natively; the plugin runs
// the same code in Wasm.
//
//	go test -run '^$' -bench SalesData -count 6 ./plugins/builtin/lib/expect/
func BenchmarkSalesData(b *testing.B) {
	s := shippedSuite(b, "sales_data.yaml")
	v := s.NewValidator()
	rows := make([]Row, 8192)
	for i := range rows {
		rows[i] = *rowFor(b, s, fmt.Sprintf(`{"date":"2025-01-%02d","product_id":%d,"quantity":%d,"price":%d.5,"customer_id":%d}`,
			1+i%28, i%500, 1+i%5, i%100, i%5000))
	}
	var out Outcome
	b.ReportAllocs()
	for b.Loop() {
		v.Begin()
		v.Evaluate(rows)
		for i := range rows {
			if v.Finish(i, &rows[i], &out); !out.Valid {
				b.Fatalf("row %d is not valid", i)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}
