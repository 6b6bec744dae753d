package sqliteout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
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
// 8192, each row converted and upserted, a savepoint per batch), and the
// output again given the rows as frames of 8192 (one message a batch,
// typed columns, as csv_file's frames: true makes them). The ratio is the
// output's overhead over the driver. Each runs on an ordinary table and on
// a WITHOUT ROWID one (the output's without_rowid).
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
		bulkLoad(b, suffix, func(dir string) map[string]any { return bulkConf(dir, withoutRowid) }, msgs, args)
	}
	// The output on frames again with the sales ETL's summaries, made live
	// from the rows as they are written, beside the inserts.
	b.Run("output-frames-summaries", func(b *testing.B) {
		loadFrames(b, salesFrames(b, args, bulkBatch), n, func(dir string) map[string]any {
			c := bulkConf(dir, false)
			c["summaries"] = etlSummaries()
			return c
		})
	})
}

// bulkBatch is the rows of a batch (and of a frame) BenchmarkBulkLoad's
// output is given, as sales_etl's csv_file reads them.
const bulkBatch = 8192

// bulkConf is BenchmarkBulkLoad's output: sales_data in a new database in
// dir, in one run transaction.
func bulkConf(dir string, withoutRowid bool) map[string]any {
	return map[string]any{"path": filepath.Join(dir, "sales.db"), "table": "sales_data", "columns": etlColumns(), "key": []any{"source_file", "line"}, "transaction": "run",
		"without_rowid": withoutRowid}
}

// bulkLoad runs the bare insert and the output on the table conf makes.
func bulkLoad(b *testing.B, suffix string, conf func(dir string) map[string]any, msgs [][]byte, args [][]any) {
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
			o := withTable(b, conf(b.TempDir()))
			b.StartTimer()
			if err := bareInsert(ctx, o, vals, cols, bareOptions{}); err != nil {
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
			o := withTable(b, conf(b.TempDir()))
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
	b.Run("output-frames"+suffix, func(b *testing.B) {
		loadFrames(b, salesFrames(b, args, bulkBatch), n, conf)
	})
	b.Run("output"+suffix, func(b *testing.B) {
		loadRun(b, n, conf, func(rctx context.Context) []service.MessageBatch {
			batches := make([]service.MessageBatch, 0, n/bulkBatch+1)
			for start := 0; start < n; start += bulkBatch {
				batch := make(service.MessageBatch, 0, bulkBatch)
				for _, m := range msgs[start:min(start+bulkBatch, n)] {
					batch = append(batch, service.NewMessage(m).WithContext(rctx))
				}
				batches = append(batches, batch)
			}
			return batches
		})
	})
}

// loadRun loads one run's batches (made for the run's context) of n rows
// in all through a fresh output on the table conf makes, timing the writes
// and the commit.
func loadRun(b *testing.B, n int, conf func(dir string) map[string]any, batches func(rctx context.Context) []service.MessageBatch) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		o := connected(b, conf(b.TempDir()))
		run := &runscope.Run{}
		bs := batches(runscope.With(ctx, run))
		b.StartTimer()
		for _, batch := range bs {
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
}

// loadFrames is loadRun with a message a frame.
func loadFrames(b *testing.B, frames [][]byte, n int, conf func(dir string) map[string]any) {
	loadRun(b, n, conf, func(rctx context.Context) []service.MessageBatch {
		var batches []service.MessageBatch
		for _, body := range frames {
			batches = append(batches, service.MessageBatch{service.NewMessage(body).WithContext(rctx)})
		}
		return batches
	})
}

// salesFrames encodes the rows as frames of size rows, a column each of
// etlColumns with the type of its values.
func salesFrames(b *testing.B, args [][]any, size int) [][]byte {
	var out [][]byte
	names := etlColumns()
	for start := 0; start < len(args); start += size {
		cols := make([]frame.Values, len(names))
		for j, c := range names {
			cols[j] = frame.Values{Name: c.(map[string]any)["name"].(string), Type: abi.TypeString}
			switch args[0][j].(type) {
			case int64:
				cols[j].Type = abi.TypeInt
			case float64:
				cols[j].Type = abi.TypeFloat
			}
		}
		for _, row := range args[start:min(start+size, len(args))] {
			for j, v := range row {
				cols[j].Rows = append(cols[j].Rows, v)
			}
		}
		body, err := frame.FromValues(cols, nil)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, body)
	}
	return out
}

// BenchmarkSummaries: the sales ETL's daily and customer summaries over
// 1M rows of sales_data (gen_sales.py's spread: 90 days, 500 products,
// 5000 customers, in random order), side by side: as the two SQL GROUP BYs
// the pipeline ran in after_run, and as the output's summaries (one scan,
// hash tables). Each runs inside a transaction that is rolled back, as in
// a run before its commit.
func BenchmarkSummaries(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	conf := map[string]any{"path": filepath.Join(dir, "sales.db"), "table": "sales_data", "columns": etlColumns(), "key": []any{"source_file", "line"},
		"transaction": "run", "summaries": etlSummaries()}
	o := withTable(b, conf)
	ctx := context.Background()
	// A fixed LCG, so every run sums the same values in the same order.
	x := uint64(7)
	next := func(m int) int64 {
		x = x*6364136223846793005 + 1442695040888963407
		return int64((x >> 33) % uint64(m))
	}
	err := o.raw(ctx, func(c *sqlite3.Conn) error {
		if err := c.Exec("BEGIN"); err != nil {
			return err
		}
		stmt, _, err := c.Prepare(o.schema.insert)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range n {
			q, p := 1+next(5), float64(100+next(99900))/100
			row := []val{textVal("sales.csv"), intVal(int64(i + 2)), textVal(fmt.Sprintf("2025-%02d-%02d", 1+next(3), 1+next(28))),
				intVal(1 + next(500)), intVal(q), realVal(p), intVal(1 + next(5000)), realVal(float64(q) * p),
				intVal(2025), intVal(1), intVal(1), intVal(0)}
			if err := bindRow(stmt, row); err != nil {
				return err
			}
			if err := stmt.Exec(); err != nil {
				return err
			}
		}
		return c.Exec("COMMIT")
	})
	if err != nil {
		b.Fatal(err)
	}
	inTxn := func(b *testing.B, f func(c *sqlite3.Conn) error) {
		for b.Loop() {
			err := o.raw(ctx, func(c *sqlite3.Conn) error {
				if err := c.Exec("BEGIN"); err != nil {
					return err
				}
				defer c.Exec("ROLLBACK")
				return f(c)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("sql-group-by", func(b *testing.B) {
		inTxn(b, func(c *sqlite3.Conn) error {
			for _, q := range []string{
				"DELETE FROM daily_summary",
				`INSERT INTO daily_summary SELECT date, round(sum(total_amount), 2), sum(quantity),
				 count(DISTINCT customer_id), count(DISTINCT product_id) FROM sales_data GROUP BY date`,
				"DELETE FROM customer_summary",
				`INSERT INTO customer_summary SELECT customer_id, round(sum(total_amount), 2), round(avg(total_amount), 2),
				 count(*), count(DISTINCT product_id), CAST(julianday(max(date)) - julianday(min(date)) AS INTEGER)
				 FROM sales_data GROUP BY customer_id`,
			} {
				if err := c.Exec(q); err != nil {
					return err
				}
			}
			return nil
		})
	})
	b.Run("summaries", func(b *testing.B) {
		inTxn(b, o.computeSummaries)
	})
}

// etlSummaries are pipelines/sales_etl.yaml's summaries.
func etlSummaries() []any {
	f := func(as, op, column string, round int) map[string]any {
		return map[string]any{"as": as, "op": op, "column": column, "round": round}
	}
	return []any{
		map[string]any{"table": "daily_summary", "group_by": []any{"date"}, "fields": []any{
			f("daily_revenue", "sum", "total_amount", 2), f("daily_quantity", "sum", "quantity", -1),
			f("daily_customers", "count_distinct", "customer_id", -1), f("daily_products", "count_distinct", "product_id", -1),
		}},
		map[string]any{"table": "customer_summary", "group_by": []any{"customer_id"}, "fields": []any{
			f("total_spent", "sum", "total_amount", 2), f("avg_order_value", "mean", "total_amount", 2), f("order_count", "count", "", -1),
			f("unique_products", "count_distinct", "product_id", -1), f("customer_lifetime_days", "day_span", "date", -1),
		}},
	}
}

// BenchmarkBulkLoadFrom: the driver's bare rate (as BenchmarkBulkLoad's
// bare case) on the rows of a sales_data table a run already wrote, so the
// run and the bare insert compare on the same rows: compare.sh points
// SLUICE_BULK_FROM at its run's sales.db. Without it, it skips.
//
//	SLUICE_BULK_FROM=out/sales.db go test -run '^$' -bench 'BulkLoadFrom$' -benchtime 1x -count 3 ./agent/sqliteout/
func BenchmarkBulkLoadFrom(b *testing.B) {
	vals, cols := rowsFrom(b)
	bareLoad(b, vals, cols, bareOptions{})
}

// BenchmarkBulkLoadFromSavepoints: what the output's run transaction adds
// to the bare insert on the database's side, on the same rows, with
// SQLite's temporary files on disk and in memory: a savepoint around each
// frame's rows (so a failed batch rolls back alone) makes SQLite copy each
// page it spills from its cache mid-batch into a savepoint journal, as
// each upsert does into its statement journal, both temporary files
// unless temp_store is memory.
//
//	SLUICE_BULK_FROM=out/sales.db go test -run '^$' -bench 'BulkLoadFromSavepoints' -benchtime 1x -count 3 ./agent/sqliteout/
func BenchmarkBulkLoadFromSavepoints(b *testing.B) {
	vals, cols := rowsFrom(b)
	for _, sp := range []int{0, 8192} {
		for _, temp := range []string{"default", "memory"} {
			name := "bare"
			if sp > 0 {
				name = "savepoint-per-frame"
			}
			b.Run(name+"/temp_store="+temp, func(b *testing.B) {
				bareLoad(b, vals, cols, bareOptions{savepointRows: sp, pragma: "PRAGMA temp_store=" + temp})
			})
		}
	}
}

// rowsFrom reads the rows of the sales_data table SLUICE_BULK_FROM names,
// as the values a bare insert binds, cols a row; without it, it skips.
func rowsFrom(b *testing.B) (vals []val, cols int) {
	from := os.Getenv("SLUICE_BULK_FROM")
	if from == "" {
		b.Skip("SLUICE_BULK_FROM names no sales.db to take the rows from")
	}
	var names []string
	for _, c := range etlColumns() {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	vals, err := readRows(from, "SELECT "+strings.Join(names, ", ")+" FROM sales_data ORDER BY rowid", len(names))
	if err != nil {
		b.Fatalf("rows of %s: %v", from, err)
	}
	return vals, len(names)
}

// withTable is a connected output with its file open and its table (and
// summary tables) created, as a run's first write leaves them (in run mode a new file is
// opened, and the table created, by the run): what a benchmark times comes
// after.
func withTable(b *testing.B, conf map[string]any) *output {
	b.Helper()
	o := connected(b, conf)
	ctx := context.Background()
	if err := o.open(ctx); err != nil {
		b.Fatal(err)
	}
	err := o.raw(ctx, func(c *sqlite3.Conn) error {
		if err := c.Exec(createSQL(o.table, o.schema.cols, o.key, o.withoutRowid)); err != nil {
			return err
		}
		return createSummaries(c, o.summaries, o.schema.cols)
	})
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// bareLoad times the bare insert of vals into a new database each round.
func bareLoad(b *testing.B, vals []val, cols int, opts bareOptions) {
	rows := len(vals) / cols
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		o := withTable(b, map[string]any{"path": filepath.Join(b.TempDir(), "sales.db"), "table": "sales_data",
			"columns": etlColumns(), "key": []any{"source_file", "line"}, "transaction": "run"})
		b.StartTimer()
		if err := bareInsert(ctx, o, vals, cols, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}

// bareOptions vary the bare insert: a savepoint around every
// savepointRows rows (0: none), a pragma run before the transaction.
type bareOptions struct {
	savepointRows int
	pragma        string
}

// bareInsert is the driver's bare bulk insert into o's table: its own API
// on o's connection, one transaction, one prepared upsert bound and
// stepped per row of cols values, varied by opts.
func bareInsert(ctx context.Context, o *output, vals []val, cols int, opts bareOptions) error {
	return o.raw(ctx, func(c *sqlite3.Conn) error {
		if opts.pragma != "" {
			if err := c.Exec(opts.pragma); err != nil {
				return err
			}
		}
		if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
			return err
		}
		stmt, _, err := c.Prepare(o.schema.insert)
		if err != nil {
			return err
		}
		defer stmt.Close()
		per := len(vals)
		if opts.savepointRows > 0 {
			per = opts.savepointRows * cols
		}
		for lo := 0; lo < len(vals); lo += per {
			hi := min(lo+per, len(vals))
			if opts.savepointRows > 0 {
				if err := c.Exec("SAVEPOINT bench"); err != nil {
					return err
				}
			}
			if err := insertRows(stmt, vals[lo:hi], cols); err != nil {
				return err
			}
			if opts.savepointRows > 0 {
				if err := c.Exec("RELEASE bench"); err != nil {
					return err
				}
			}
		}
		return c.Exec("COMMIT")
	})
}

// readRows reads query's rows of cols columns from the database at path
// as the values a bare insert binds.
func readRows(path, query string, cols int) ([]val, error) {
	c, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stmt, _, err := c.Prepare(query)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	var vals []val
	for stmt.Step() {
		for i := range cols {
			switch stmt.ColumnType(i) {
			case sqlite3.INTEGER:
				vals = append(vals, intVal(stmt.ColumnInt64(i)))
			case sqlite3.FLOAT:
				vals = append(vals, realVal(stmt.ColumnFloat(i)))
			case sqlite3.TEXT:
				vals = append(vals, textVal(stmt.ColumnText(i)))
			default:
				return nil, fmt.Errorf("column %d of row %d: %v, want INTEGER, REAL or TEXT", i, len(vals)/cols+1, stmt.ColumnType(i))
			}
		}
	}
	return vals, stmt.Err()
}
