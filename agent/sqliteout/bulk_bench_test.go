package sqliteout

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
)

// etlColumns are sales_data's columns in pipelines/sales_etl.yaml.
func etlColumns() []any {
	var cols []any
	for _, c := range []string{"source_file TEXT", "line INTEGER", "date TEXT", "product_id INTEGER", "quantity INTEGER",
		"price REAL", "customer_id INTEGER", "total_amount REAL", "year INTEGER", "month INTEGER", "day INTEGER", "day_of_week INTEGER"} {
		var name, typ string
		fmt.Sscan(c, &name, &typ)
		cols = append(cols, map[string]any{"name": name, "type": typ})
	}
	return cols
}

// BenchmarkBulkLoad: the sales ETL's load of 1M rows into sales_data, in
// one transaction, on the same rows: the driver's bare rate (one prepared
// upsert bound and stepped per row with its own API, the values already Go
// values), the same through database/sql, and the sqlite output in
// transaction: run mode (JSON messages in batches of
// 8192, each row converted and upserted, a savepoint per batch). The ratio
// is the output's overhead over the driver. Each runs on an ordinary table
// and on a WITHOUT ROWID one (the output's without_rowid).
func BenchmarkBulkLoad(b *testing.B) {
	const n = 1_000_000
	msgs := make([][]byte, n)
	args := make([][]any, n)
	for i := range n {
		date := fmt.Sprintf("2025-%02d-%02d", 1+i%12, 1+i%28)
		q, p := int64(1+i%5), float64(100+i%90000)/100
		args[i] = []any{"data/sales.csv", int64(i + 2), date, int64(1 + i%500), q, p, int64(1 + i%5000), float64(q) * p, int64(2025), int64(1 + i%12), int64(1 + i%28), int64(i % 7)}
		msgs[i] = fmt.Appendf(nil, `{"date":%q,"product_id":%d,"quantity":%d,"price":%v,"customer_id":%d,"source_file":"data/sales.csv","line":%d,"total_amount":%v,"year":2025,"month":%d,"day":%d,"day_of_week":%d}`,
			date, args[i][3], q, p, args[i][6], i+2, args[i][7], args[i][9], args[i][10], args[i][11])
	}
	for _, withoutRowid := range []bool{false, true} {
		suffix := ""
		if withoutRowid {
			suffix = "-without-rowid"
		}
		conf := func(dir string) map[string]any {
			return map[string]any{"path": filepath.Join(dir, "sales.db"), "table": "sales_data", "columns": etlColumns(), "key": []any{"source_file", "line"}, "transaction": "run",
				"without_rowid": withoutRowid}
		}
		bulkLoad(b, suffix, conf, msgs, args)
	}
}

// bulkLoad runs the bare insert and the output on the table conf makes.
func bulkLoad(b *testing.B, suffix string, conf func(dir string) map[string]any, msgs [][]byte, args [][]any) {
	const batchSize = 8192
	n := len(msgs)
	ctx := context.Background()
	cols := len(args[0])
	vals := make([]val, 0, n*cols)
	for _, a := range args {
		for _, x := range a {
			switch t := x.(type) {
			case string:
				vals = append(vals, textVal(t))
			case int64:
				vals = append(vals, intVal(t))
			case float64:
				vals = append(vals, realVal(t))
			}
		}
	}
	// The driver's bare rate: its own API, a prepared upsert bound and
	// stepped per row, the values already Go values.
	b.Run("bare"+suffix, func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			o := connected(b, conf(b.TempDir())) // creates the table, as the output would
			s := o.schema
			b.StartTimer()
			err := o.raw(ctx, func(c *sqlite3.Conn) error {
				if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
					return err
				}
				stmt, _, err := c.Prepare(s.insert)
				if err != nil {
					return err
				}
				defer stmt.Close()
				if err := insertRows(stmt, vals, cols); err != nil {
					return err
				}
				return c.Exec("COMMIT")
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	})
	// The same through database/sql, as the output wrote before it used
	// the driver's API.
	b.Run("database-sql"+suffix, func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			o := connected(b, conf(b.TempDir()))
			s := o.schema
			b.StartTimer()
			tx, err := o.conn.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			stmt, err := tx.PrepareContext(ctx, s.insert)
			if err != nil {
				b.Fatal(err)
			}
			for _, a := range args {
				if _, err := stmt.ExecContext(ctx, a...); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("output"+suffix, func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			o := connected(b, conf(b.TempDir()))
			run := &runscope.Run{}
			rctx := runscope.With(ctx, run)
			batches := make([]service.MessageBatch, 0, n/batchSize+1)
			for start := 0; start < n; start += batchSize {
				batch := make(service.MessageBatch, 0, batchSize)
				for _, m := range msgs[start:min(start+batchSize, n)] {
					batch = append(batch, service.NewMessage(m).WithContext(rctx))
				}
				batches = append(batches, batch)
			}
			b.StartTimer()
			for _, batch := range batches {
				run.Emitted()
				if err := o.WriteBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
				run.Acked(nil)
			}
			run.Ended()
			if err := o.Close(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	})
}
