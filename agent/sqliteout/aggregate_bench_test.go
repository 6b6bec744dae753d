package sqliteout

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkAggregate: the sales ETL's two summaries aggregated from 1M
// rows already in chunks, as the live summaries feed them (gen_sales.py's
// spread: 90 days, 500 products, 5000 customers, in random order), each
// summary alone on one goroutine: what each costs a row, apart from the
// inserts it runs beside.
//
//	go test -run '^$' -bench Aggregate -count 6 ./agent/sqliteout/
func BenchmarkAggregate(b *testing.B) {
	const n = 1 << 20
	o := connected(b, map[string]any{"path": filepath.Join(b.TempDir(), "sales.db"), "table": "sales_data", "columns": etlColumns(),
		"key": []any{"source_file", "line"}, "transaction": "run", "summaries": etlSummaries()})
	scan, _ := newAggregations(o.summaries)
	// A fixed LCG, so every run sums the same values in the same order.
	x := uint64(7)
	next := func(m int) int64 {
		x = x*6364136223846793005 + 1442695040888963407
		return int64((x >> 33) % uint64(m))
	}
	var chunks []*scanChunk
	for r := 0; r < n; r++ {
		if r%scanChunkRows == 0 {
			chunks = append(chunks, &scanChunk{vals: make([]val, 0, scanChunkRows*len(scan))})
		}
		ck := chunks[len(chunks)-1]
		q, p := 1+next(5), float64(100+next(99900))/100
		row := map[string]val{"date": textVal(fmt.Sprintf("2025-%02d-%02d", 1+next(3), 1+next(28))), "product_id": intVal(1 + next(500)),
			"quantity": intVal(q), "customer_id": intVal(1 + next(5000)), "total_amount": realVal(float64(q) * p)}
		for _, name := range scan {
			v, ok := row[name]
			if !ok {
				b.Fatalf("no value for the scanned column %q", name)
			}
			ck.vals = append(ck.vals, v)
		}
		ck.rows++
	}
	for i, s := range o.summaries {
		b.Run(s.table, func(b *testing.B) {
			for b.Loop() {
				_, aggs := newAggregations(o.summaries)
				a, w := aggs[i], len(scan)
				for _, ck := range chunks {
					for r := 0; r < ck.rows; r++ {
						a.add(ck.vals[r*w : (r+1)*w : (r+1)*w])
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}
