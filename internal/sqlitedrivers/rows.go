// Package sqlitedrivers measures SQLite drivers for Go on the sales ETL's
// load: 1M rows upserted into sales_data in one transaction with one
// prepared statement, the bare rate the sqlite output is bounded by. It is
// a test-only module, so the drivers it compares (modernc.org/sqlite, pure
// Go; github.com/mattn/go-sqlite3, cgo) are not dependencies of the agent,
// which uses github.com/ncruces/go-sqlite3 (SQLite compiled to Wasm, run by
// wazero). The cgo driver registers the same name as ncruces' ("sqlite3"),
// so it is measured in its own package: run
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 ./...
//
// from this directory: both packages, one command.
package sqlitedrivers

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// Rows are n rows of sales_data, as Go values, the same every call.
func Rows(n int) [][]any {
	args := make([][]any, n)
	for i := range n {
		date := fmt.Sprintf("2025-%02d-%02d", 1+i%12, 1+i%28)
		q, p := int64(1+i%5), float64(100+i%90000)/100
		args[i] = []any{"data/sales.csv", int64(i + 2), date, int64(1 + i%500), q, p, int64(1 + i%5000), float64(q) * p, int64(2025), int64(1 + i%12), int64(1 + i%28), int64(i % 7)}
	}
	return args
}

// Schema is sales_data as the sqlite output creates it.
const Schema = `CREATE TABLE sales_data (source_file TEXT, line INTEGER, date TEXT, product_id INTEGER, quantity INTEGER,
price REAL, customer_id INTEGER, total_amount REAL, year INTEGER, month INTEGER, day INTEGER, day_of_week INTEGER,
PRIMARY KEY (source_file, line))`

const upsert = `INSERT INTO sales_data VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (source_file, line) DO UPDATE SET date=excluded.date, product_id=excluded.product_id, quantity=excluded.quantity,
price=excluded.price, customer_id=excluded.customer_id, total_amount=excluded.total_amount, year=excluded.year,
month=excluded.month, day=excluded.day, day_of_week=excluded.day_of_week`

// DSN is a file URI with WAL and synchronous=NORMAL, in the _pragma form
// the ncruces and modernc drivers take.
func DSN(dir string) string {
	return "file:" + filepath.Join(dir, "sales.db") + "?_pragma=journal_mode(wal)&_pragma=synchronous(normal)"
}

// Load runs the benchmark for one driver: open db (fresh file per
// iteration), create the table, and time the transaction of rows.
func Load(b *testing.B, open func(dir string) (*sql.DB, error), rows [][]any) {
	LoadSchema(b, open, rows, Schema)
}

// LoadSchema is Load with another CREATE TABLE for sales_data.
func LoadSchema(b *testing.B, open func(dir string) (*sql.DB, error), rows [][]any, schema string) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		db, err := open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		if _, err := db.ExecContext(ctx, schema); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.PrepareContext(ctx, upsert)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range rows {
			if _, err := stmt.ExecContext(ctx, a...); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sales_data").Scan(&n); err != nil || n != len(rows) {
			b.Fatalf("%d rows in the table (%v), want %d", n, err, len(rows))
		}
		_ = db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}
