package sqliteout

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"   // file input and output
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // generate, fallback, mapping
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
)

// sale is a row of the seed's sales CSV, with the total the ETL adds.
type sale struct {
	Date       string  `json:"date"`
	ProductID  int64   `json:"product_id"`
	Quantity   int64   `json:"quantity"`
	Price      float64 `json:"price"`
	CustomerID int64   `json:"customer_id"`
	Total      float64 `json:"total_amount"`
}

// sales makes n distinct sales; bump changes quantities and totals, not
// keys, as a corrected re-delivery of the same day would.
func sales(n int, bump int64) []sale {
	out := make([]sale, n)
	for i := range out {
		q := int64(i%5+1) + bump
		// Cents, and never whole in the first row, so that a schema
		// inferred from it makes price REAL.
		p := float64(101+i*37%900) / 100
		out[i] = sale{
			Date:       fmt.Sprintf("2024-01-%02d", i%28+1),
			ProductID:  int64(100 + i%13),
			Quantity:   q,
			Price:      p,
			CustomerID: int64(1000 + i),
			Total:      float64(q) * p,
		}
	}
	return out
}

func lines(t testing.TB, rows []sale) []string {
	t.Helper()
	out := make([]string, len(rows))
	for i, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}

func salesColumns() []any {
	return []any{
		map[string]any{"name": "date", "type": "TEXT"},
		map[string]any{"name": "product_id", "type": "INTEGER"},
		map[string]any{"name": "quantity", "type": "INTEGER"},
		map[string]any{"name": "price", "type": "REAL"},
		map[string]any{"name": "customer_id", "type": "INTEGER"},
		map[string]any{"name": "total_amount", "type": "REAL"},
	}
}

var salesKey = []any{"date", "product_id", "customer_id"}

// batching makes batches of exactly count, with no period that could cut
// one short on a slow machine. Tests send whole batches only: a finite
// input waits for its last message's acknowledgement before it ends, so a
// partial batch would wait forever.
func batching(count int) map[string]any {
	return map[string]any{"count": count}
}

// load runs a stream that reads rows (NDJSON) from a file and writes them
// with the sqlite output configured as conf; messages the output fails go
// through a fallback to a file, whose lines (each message's error) it
// returns.
func load(t *testing.T, conf map[string]any, rows []string) []string {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	if err := os.WriteFile(in, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := filepath.Join(dir, "errors.txt")
	out, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
input:
  file:
    paths: [%q]
    scanner: {lines: {}}
output:
  fallback:
    - sqlite: %s
    - file: {path: %q, codec: lines}
      processors:
        - mapping: 'root = meta("fallback_error")'
logger: {level: ${SQLITEOUT_LOG:none}}
`, in, out, errs)
	if err := runStream(t, yaml); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(errs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func runStream(t *testing.T, yaml string) error {
	t.Helper()
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		t.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	if err := sb.SetYAML(yaml); err != nil {
		return err
	}
	stream, err := sb.Build()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return stream.Run(ctx)
}

// openDB opens the file as another client would, with its own connection.
func openDB(t testing.TB, path string, pragmas ...string) *sql.DB {
	t.Helper()
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	db, err := sql.Open(driverName, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func readSales(t *testing.T, path, table string) []sale {
	t.Helper()
	return readSalesBy(t, path, table, "rowid")
}

// readSalesBy reads the rows in the order of the column order (a WITHOUT
// ROWID table has no rowid).
func readSalesBy(t *testing.T, path, table, order string) []sale {
	t.Helper()
	db := openDB(t, path)
	rows, err := db.Query(fmt.Sprintf("SELECT date, product_id, quantity, price, customer_id, total_amount FROM %s ORDER BY %s", table, order))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []sale
	for rows.Next() {
		var s sale
		if err := rows.Scan(&s.Date, &s.ProductID, &s.Quantity, &s.Price, &s.CustomerID, &s.Total); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// literals reads each row of a query as SQLite's quote() of every column,
// so that both a value and its storage class are compared.
func literals(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	var out []string
	eachRow(t, db, query, func(vals []any) {
		parts := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, " | "))
	})
	return out
}

// eachRow runs query and calls f with each row's values as the driver
// gives them.
func eachRow(t *testing.T, db *sql.DB, query string, f func(vals []any)) {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		f(vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// rowsOrAbsent is count, or -1 if there is no such table.
func rowsOrAbsent(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func count(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// newTestOutput builds the output outside a stream, for what a stream
// hides: the error of a batch and of Connect.
func newTestOutput(t testing.TB, conf map[string]any) (*output, error) {
	t.Helper()
	return newTestOutputIn(t, conf, service.MockResources())
}

// newTestOutputIn is newTestOutput with the stream's resources.
func newTestOutputIn(t testing.TB, conf map[string]any, res *service.Resources) (*output, error) {
	t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ConfigSpec().ParseYAML(string(b), nil)
	if err != nil {
		return nil, err
	}
	o, _, _, err := newOutput(parsed, res)
	return o, err
}

func connected(t testing.TB, conf map[string]any) *output {
	t.Helper()
	o, err := newTestOutput(t, conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	return o
}

func batchOf(rows ...string) service.MessageBatch {
	b := make(service.MessageBatch, len(rows))
	for i, r := range rows {
		b[i] = service.NewMessage([]byte(r))
	}
	return b
}

// TestSalesRows: the seed's sales rows, with explicit columns, in batches,
// are all in the table as sent, in a database whose directory did not
// exist.
func TestSalesRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warehouse", "daily", "sales.db")
	want := sales(60, 0)
	errs := load(t, map[string]any{
		"path": path, "table": "sales", "columns": salesColumns(),
		"batching": batching(10),
	}, lines(t, want))
	if len(errs) > 0 {
		t.Fatalf("failed messages: %q", errs)
	}
	got := readSales(t, path, "sales")
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d is %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestConversions: each column type stores what its description promises,
// from every form of value it accepts, and reads values at gjson paths.
func TestConversions(t *testing.T) {
	for _, tc := range []struct {
		typ, path string
		in        string // the message's value at path, as JSON
		want      string // quote() of the stored value
	}{
		{"TEXT", "", `"Sam's"`, `'Sam''s'`},
		{"TEXT", "", `12.50`, `'12.50'`},
		{"TEXT", "", `{"a":1}`, `'{"a":1}'`},
		{"INTEGER", "", `42`, `42`},
		{"INTEGER", "", `"42"`, `42`},
		{"INTEGER", "", `3.0`, `3`},
		{"INTEGER", "", `-9223372036854775808`, `-9223372036854775808`},
		{"REAL", "", `19.99`, `19.99`},
		{"REAL", "", `"19.99"`, `19.99`},
		{"REAL", "", `7`, `7.0`},
		{"BOOLEAN", "", `true`, `1`},
		{"BOOLEAN", "", `false`, `0`},
		{"BOOLEAN", "", `"true"`, `1`},
		{"BOOLEAN", "", `0`, `0`},
		{"TIMESTAMP", "", `"2024-03-01T12:30:00+02:00"`, `'2024-03-01T10:30:00Z'`},
		{"TIMESTAMP", "", `"2024-03-01T10:30:00.25Z"`, `'2024-03-01T10:30:00.25Z'`},
		{"TIMESTAMP", "", `"2024-03-01 10:30:00"`, `'2024-03-01T10:30:00Z'`},
		{"TIMESTAMP", "", `"2024-03-01"`, `'2024-03-01T00:00:00Z'`},
		{"TIMESTAMP", "", `1709289000`, `'2024-03-01T10:30:00Z'`},
		{"TIMESTAMP", "", `1709289000.5`, `'2024-03-01T10:30:00.5Z'`},
		{"TIMESTAMP", "", `"1709289000"`, `'2024-03-01T10:30:00Z'`},
		{"BLOB", "", `"hi"`, `X'6869'`},
		{"INTEGER", "customer.id", `{"id":7}`, `7`},
		{"TEXT", "", `null`, `NULL`},
	} {
		t.Run(tc.typ+" "+tc.in, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.db")
			field := "v"
			if tc.path != "" {
				field = strings.SplitN(tc.path, ".", 2)[0]
			}
			o := connected(t, map[string]any{
				"path": path, "table": "t",
				"columns": []any{map[string]any{"name": "v", "type": tc.typ, "path": tc.path}},
			})
			if err := o.WriteBatch(context.Background(), batchOf(fmt.Sprintf(`{"%s":%s}`, field, tc.in))); err != nil {
				t.Fatal(err)
			}
			got := literals(t, openDB(t, path), "SELECT quote(v) FROM t")
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("stored %q, want %s", got, tc.want)
			}
		})
	}
}

// TestInferredSchema: without columns, a new table takes the first
// message's fields in order with their types, and an existing table's
// columns are used as they are; either way a field that is no column fails
// its message, by name.
func TestInferredSchema(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing string // DDL run before the load, if any
		batch    int    // messages a batch
		rows     []string
		wantCols []string // name type, from PRAGMA table_info
		wantRows []string
		wantErr  []string // in the failed message's error
	}{
		{
			name: "new table",
			// The first batch is the first two: a round price and a null
			// promo in the first do not decide their types.
			batch: 2,
			rows: []string{
				`{"date":"2024-01-01","product_id":101,"price":20,"promo":null,"tags":["a","b"],"extra":{"x":1},"note":null}`,
				`{"product_id":102,"date":"2024-01-02","price":19.99,"promo":false}`,
				`{"date":"2024-01-03","product_id":103,"discount":0.1}`,
				`{"date":"2024-01-04","product_id":104}`,
			},
			wantCols: []string{"date TEXT", "product_id INTEGER", "price REAL", "promo BOOLEAN", "tags TEXT", "extra TEXT", "note TEXT"},
			wantRows: []string{
				`'2024-01-01' | 101 | 20.0 | NULL | '["a","b"]' | '{"x":1}' | NULL`,
				`'2024-01-02' | 102 | 19.99 | 0 | NULL | NULL | NULL`,
			},
			wantErr: []string{"message 0", `"discount"`, "not a column"},
		},
		{
			name:     "existing table",
			batch:    1,
			existing: `CREATE TABLE sales (date DATE, product_id INT, qty INTEGER, price DECIMAL(10,2), label VARCHAR(20))`,
			rows: []string{
				`{"qty":2,"date":"2024-01-01","product_id":"101","price":19.99}`,
				`{"date":"2024-01-02","product_id":102,"label":"x","price":"7.5"}`,
				`{"date":"2024-01-03","product_id":103,"quantity":1}`,
			},
			wantCols: []string{"date DATE", "product_id INT", "qty INTEGER", "price DECIMAL(10,2)", "label VARCHAR(20)"},
			wantRows: []string{
				`'2024-01-01' | 101 | 2 | 19.99 | NULL`,
				`'2024-01-02' | 102 | NULL | 7.5 | 'x'`,
			},
			wantErr: []string{"message 0", `"quantity"`, "not a column"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			db := openDB(t, path)
			if tc.existing != "" {
				if _, err := db.Exec(tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			errs := load(t, map[string]any{"path": path, "table": "sales", "batching": batching(tc.batch)}, tc.rows)
			cols := literals(t, db, "SELECT name || ' ' || type FROM pragma_table_info('sales')")
			if strings.Join(cols, ", ") != strings.Join(tc.wantCols, ", ") {
				t.Errorf("columns %q, want %q", cols, tc.wantCols)
			}
			got := literals(t, db, "SELECT "+quoteAllCols(cols)+" FROM sales ORDER BY rowid")
			if strings.Join(got, "\n") != strings.Join(tc.wantRows, "\n") {
				t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.wantRows, "\n"))
			}
			if len(errs) != tc.batch {
				t.Fatalf("failed messages %q, want the last batch's %d", errs, tc.batch)
			}
			if !strings.Contains(errs[0], tc.wantErr[1]) {
				errs[0], errs[1] = errs[1], errs[0]
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs[0], w) {
					t.Errorf("error %q does not say %s", errs[0], w)
				}
			}
			for _, e := range errs[1:] {
				if !strings.Contains(e, "not written") {
					t.Errorf("error %q of a good message does not say it was not written", e)
				}
			}
		})
	}
}

// quoteAllCols makes quote(c1), quote(c2), ... of "name type" strings.
func quoteAllCols(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = "quote(" + strings.Fields(c)[0] + ")"
	}
	return strings.Join(q, ", ")
}

// TestUpsert: loading the same sales twice with a key leaves one row per
// key holding the second load's values; without a key, every row twice.
func TestUpsert(t *testing.T) {
	for _, tc := range []struct {
		name         string
		key          []any
		withoutRowid bool
		want         func(first, second []sale) []sale
	}{
		{"key", salesKey, false, func(_, second []sale) []sale { return second }},
		{"key without rowid", salesKey, true, func(_, second []sale) []sale { return second }},
		{"no key", []any{}, false, func(first, second []sale) []sale { return append(append([]sale(nil), first...), second...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			conf := map[string]any{
				"path": path, "table": "sales", "columns": salesColumns(), "key": tc.key,
				"batching": batching(8), "without_rowid": tc.withoutRowid,
			}
			first, second := sales(32, 0), sales(32, 10)
			for _, run := range [][]sale{first, second} {
				if errs := load(t, conf, lines(t, run)); len(errs) > 0 {
					t.Fatalf("failed messages: %q", errs)
				}
			}
			order := "rowid"
			if tc.withoutRowid {
				order = "customer_id" // the rows' order in sales()
			}
			got, want := readSalesBy(t, path, "sales", order), tc.want(first, second)
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("row %d is %+v, want %+v", i, got[i], want[i])
				}
			}
			var ddl string
			if err := openDB(t, path).QueryRow(`SELECT sql FROM sqlite_schema WHERE name = 'sales'`).Scan(&ddl); err != nil {
				t.Fatal(err)
			}
			if got := strings.HasSuffix(ddl, "WITHOUT ROWID"); got != tc.withoutRowid {
				t.Errorf("table created as %q, want WITHOUT ROWID %v", ddl, tc.withoutRowid)
			}
		})
	}
}

// TestBadRowFailsItsBatch: a message that cannot be written fails, named
// by its index in the batch, its column and its value; nothing of its batch
// is written, every other message of it is failed too (saying why), and the
// next batch is written.
func TestBadRowFailsItsBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bad     string
		wantErr []string
	}{
		{"price not a number", `{"date":"2024-01-01","product_id":1,"quantity":1,"price":"abc","customer_id":9,"total_amount":1}`,
			[]string{"message 2", `column "price"`, `"abc"`}},
		{"key column missing", `{"date":"2024-01-01","product_id":1,"quantity":1,"price":2.5,"total_amount":1}`,
			[]string{"message 2", `column "customer_id"`, "part of the key", "missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			rows := lines(t, sales(10, 0))
			rows[2] = tc.bad
			errs := load(t, map[string]any{
				"path": path, "table": "sales", "columns": salesColumns(), "key": salesKey,
				"batching": batching(5),
			}, rows)
			if len(errs) != 5 {
				t.Fatalf("failed messages %q, want the 5 of the first batch", errs)
			}
			bad := 0
			for _, e := range errs {
				if strings.Contains(e, tc.wantErr[1]) {
					bad++
					for _, w := range tc.wantErr {
						if !strings.Contains(e, w) {
							t.Errorf("error %q does not say %s", e, w)
						}
					}
				} else if !strings.Contains(e, "not written") || !strings.Contains(e, "message 2 of its batch failed") {
					t.Errorf("error %q of a good message does not say it was not written for message 2", e)
				}
			}
			if bad != 1 {
				t.Errorf("%d messages failed for the bad value, want 1: %q", bad, errs)
			}
			got, want := readSales(t, path, "sales"), sales(10, 0)[5:]
			if len(got) != len(want) {
				t.Fatalf("%d rows, want the second batch's %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("row %d is %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestWriteErrors: what fails a message, outside a stream: the batch error
// names index, column and value, and holds an error for every message;
// the table is as it was.
func TestWriteErrors(t *testing.T) {
	good := `{"id":1,"qty":2,"price":1.5,"ok":true,"at":"2024-01-01"}`
	for _, tc := range []struct {
		name    string
		columns bool // explicit columns; otherwise the table's
		bad     string
		wantErr []string
	}{
		{"not JSON", true, `id,qty,price`, []string{"message 1", "not a JSON object", "id,qty,price"}},
		{"not an object", true, `[1,2]`, []string{"message 1", "not a JSON object"}},
		{"integer", true, `{"id":2,"qty":"abc"}`, []string{"message 1", `column "qty" (INTEGER)`, `"abc"`, "not an integer"}},
		{"fraction for integer", true, `{"id":2,"qty":2.5}`, []string{"message 1", `column "qty"`, "2.5"}},
		{"real", true, `{"id":2,"price":"abc"}`, []string{"message 1", `column "price" (REAL)`, `"abc"`}},
		{"boolean", true, `{"id":2,"ok":"maybe"}`, []string{"message 1", `column "ok" (BOOLEAN)`, `"maybe"`}},
		{"timestamp", true, `{"id":2,"at":"yesterday"}`, []string{"message 1", `column "at" (TIMESTAMP)`, `"yesterday"`}},
		{"key null", true, `{"id":null,"qty":1}`, []string{"message 1", `column "id" is part of the key`, "null"}},
		{"key missing", true, `{"qty":1}`, []string{"message 1", `column "id" is part of the key`, "missing"}},
		{"unknown field", false, `{"id":2,"colour":"red"}`, []string{"message 1", `field "colour" is not a column`}},
		{"rejected by SQLite", true, `{"id":2,"qty":-1}`, []string{"message 1", "negative quantity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.db")
			conf := map[string]any{
				"path": path, "table": "t", "key": []any{"id"},
				"columns": []any{
					map[string]any{"name": "id", "type": "INTEGER"},
					map[string]any{"name": "qty", "type": "INTEGER"},
					map[string]any{"name": "price", "type": "REAL"},
					map[string]any{"name": "ok", "type": "BOOLEAN"},
					map[string]any{"name": "at", "type": "TIMESTAMP"},
				},
				"init_statements": []any{`CREATE TRIGGER IF NOT EXISTS t_qty BEFORE INSERT ON t WHEN NEW.qty < 0 BEGIN SELECT RAISE(ABORT, 'negative quantity'); END`},
			}
			o := connected(t, conf)
			if !tc.columns {
				// Connect again on the table the first connection made, with
				// no columns: the table's are used.
				_ = o.Close(context.Background())
				delete(conf, "columns")
				o = connected(t, conf)
			}
			ctx := context.Background()
			if err := o.WriteBatch(ctx, batchOf(good)); err != nil {
				t.Fatal(err)
			}
			batch := batchOf(`{"id":5}`, tc.bad, `{"id":6}`)
			err := o.WriteBatch(ctx, batch)
			var berr *service.BatchError
			if !errors.As(err, &berr) {
				t.Fatalf("error %v, want a batch error", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %s", err, w)
				}
			}
			if n := berr.IndexedErrors(); n != len(batch) {
				t.Errorf("%d messages failed, want all %d", n, len(batch))
			}
			if n := count(t, openDB(t, path), "t"); n != 1 {
				t.Errorf("%d rows, want only the first batch's", n)
			}
		})
	}
}

// TestConnect: what is wrong with the table fails Connect, saying what.
func TestConnect(t *testing.T) {
	cols := []any{map[string]any{"name": "id", "type": "INTEGER"}, map[string]any{"name": "v", "type": "TEXT"}}
	for _, tc := range []struct {
		name     string
		existing string
		conf     map[string]any
		wantErr  []string
	}{
		{"no table, create_table false", "", map[string]any{"columns": cols, "create_table": false}, []string{`table "t" does not exist`, "create_table"}},
		{"no table, no columns, create_table false", "", map[string]any{"create_table": false}, []string{`table "t" does not exist`}},
		{"column missing from table", "CREATE TABLE t (id INTEGER)", map[string]any{"columns": cols}, []string{`no column "v"`}},
		{"key without unique index", "CREATE TABLE t (id INTEGER, v TEXT)", map[string]any{"key": []any{"id"}}, []string{"primary key or a unique index", `"id"`}},
		{"key not a column of the table", "CREATE TABLE t (id INTEGER, v TEXT)", map[string]any{"key": []any{"nope"}}, []string{`"nope"`, "key"}},
		{"bad init statement", "", map[string]any{"columns": cols, "init_statements": []any{"CREATE INDEX IF NOT EXISTS t_v ON t(v)", "CREATE NONSENSE"}}, []string{"init_statements[1]", "CREATE NONSENSE"}},
		{"fine", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", map[string]any{"key": []any{"id"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.db")
			if tc.existing != "" {
				if _, err := openDB(t, path).Exec(tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			tc.conf["path"], tc.conf["table"] = path, "t"
			o, err := newTestOutput(t, tc.conf)
			if err != nil {
				t.Fatal(err)
			}
			err = o.Connect(context.Background())
			defer o.Close(context.Background())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("connected, want an error")
			}
			for _, w := range append(tc.wantErr, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %s", err, w)
				}
			}
		})
	}
}

// TestConfig: names that are not identifiers and keys that are not columns
// are refused before anything is opened.
func TestConfig(t *testing.T) {
	col := func(name, typ string) map[string]any { return map[string]any{"name": name, "type": typ} }
	for _, tc := range []struct {
		name    string
		conf    map[string]any
		wantErr string
	}{
		{"table with SQL in it", map[string]any{"table": `sales"; DROP TABLE x; --`}, "table"},
		{"table starting with a digit", map[string]any{"table": "1sales"}, "table"},
		{"column name", map[string]any{"columns": []any{col("total amount", "REAL")}}, `"total amount"`},
		{"column twice", map[string]any{"columns": []any{col("a", "REAL"), col("A", "TEXT")}}, "twice"},
		{"unknown type", map[string]any{"columns": []any{col("a", "DECIMAL")}}, "DECIMAL"},
		{"key not a column", map[string]any{"columns": []any{col("a", "REAL")}, "key": []any{"b"}}, `"b" is not one of the columns`},
		{"synchronous", map[string]any{"synchronous": "off"}, "off"},
		{"without rowid, no key", map[string]any{"without_rowid": true}, "without_rowid needs key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := map[string]any{"path": filepath.Join(t.TempDir(), "t.db"), "table": "t"}
			for k, v := range tc.conf {
				conf[k] = v
			}
			_, err := newTestOutput(t, conf)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one saying %s", err, tc.wantErr)
			}
		})
	}
}

// TestInitStatements: the statements run once the table exists, whether
// it is made at connection (columns) or by the first batch (inferred), and
// again harmlessly on the next start.
func TestInitStatements(t *testing.T) {
	for _, tc := range []struct {
		name    string
		columns []any
	}{
		{"columns", salesColumns()},
		{"inferred", []any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			conf := map[string]any{
				"path": path, "table": "sales", "columns": tc.columns, "key": salesKey,
				"init_statements": []any{
					"CREATE INDEX IF NOT EXISTS sales_by_customer ON sales(customer_id)",
					"CREATE VIEW IF NOT EXISTS daily AS SELECT date, sum(total_amount) AS total FROM sales GROUP BY date",
				},
			}
			for range 2 {
				if errs := load(t, conf, lines(t, sales(5, 0))); len(errs) > 0 {
					t.Fatalf("failed messages: %q", errs)
				}
			}
			db := openDB(t, path)
			got := literals(t, db, "SELECT type || ' ' || name || ' on ' || tbl_name FROM sqlite_master WHERE name IN ('sales_by_customer', 'daily') ORDER BY name")
			want := []string{"view daily on daily", "index sales_by_customer on sales"}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("schema has %q, want %q", got, want)
			}
			if n := count(t, db, "daily"); n != 5 {
				t.Errorf("the view has %d days, want 5", n)
			}
		})
	}
}

// TestReaderWhileWriting: another connection, as the sqlite3 CLI or pandas
// would open, reads while the output writes: a batch commits while a
// reader's transaction is open (which the rollback journal would forbid),
// the reader keeps its snapshot, and a reader polling during a stream only
// ever sees whole batches.
func TestReaderWhileWriting(t *testing.T) {
	t.Run("open read transaction", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sales.db")
		o := connected(t, map[string]any{"path": path, "table": "sales", "columns": salesColumns(), "key": salesKey})
		ctx := context.Background()
		rows := lines(t, sales(20, 0))
		if err := o.WriteBatch(ctx, batchOf(rows[:10]...)); err != nil {
			t.Fatal(err)
		}
		// No busy timeout: the reader must never wait.
		reader := openDB(t, path, "busy_timeout(0)")
		var mode string
		if err := reader.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal mode %q (%v), want wal", mode, err)
		}
		tx, err := reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var before int
		if err := tx.QueryRow("SELECT count(*) FROM sales").Scan(&before); err != nil {
			t.Fatal(err)
		}
		// Well under the output's busy timeout, so that a writer blocked
		// by the reader fails the test instead of waiting it out.
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := o.WriteBatch(wctx, batchOf(rows[10:]...)); err != nil {
			t.Fatalf("writing while a reader's transaction is open: %v", err)
		}
		var during int
		if err := tx.QueryRow("SELECT count(*) FROM sales").Scan(&during); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		after := count(t, reader, "sales")
		if before != 10 || during != 10 || after != 20 {
			t.Errorf("reader saw %d rows, then %d in the same transaction, then %d; want 10, 10, 20", before, during, after)
		}
	})

	t.Run("polling during a stream", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "events.db")
		// Whole batches only, with no period to flush a partial one: the
		// count is what the reader checks, and the generator's last batch
		// is full, so the input's wait for its acknowledgement ends.
		const batches, size = 40, 64
		// Create the table first, so that the reader has something to read
		// from the start.
		connected(t, map[string]any{"path": path, "table": "events", "key": []any{"id"}, "columns": []any{
			map[string]any{"name": "id", "type": "INTEGER"}, map[string]any{"name": "at", "type": "TIMESTAMP"},
		}}).Close(context.Background())
		reader := openDB(t, path, "busy_timeout(1000)")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var reads int
		counts := map[int]bool{}
		var readErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := reader.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
					readErr = err
					return
				}
				reads++
				counts[n] = true
				if n%size != 0 {
					readErr = fmt.Errorf("a reader saw %d rows, not a whole number of batches of %d", n, size)
					return
				}
			}
		}()
		err := runStream(t, fmt.Sprintf(`
input:
  generate:
    count: %d
    interval: ""
    mapping: 'root = {"id": counter(), "at": now()}'
output:
  sqlite:
    path: %q
    table: events
    columns: [{name: id, type: INTEGER}, {name: at, type: TIMESTAMP}]
    key: [id]
    batching: {count: %d}
logger: {level: ${SQLITEOUT_LOG:none}}
`, batches*size, path, size))
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if readErr != nil {
			t.Fatal(readErr)
		}
		if n := count(t, reader, "events"); n != batches*size {
			t.Errorf("%d rows, want %d", n, batches*size)
		}
		t.Logf("%d reads during the stream saw %d different row counts", reads, len(counts))
	})
}

// TestOutputsSharingAFile: outputs writing tables of one new file at once
// (as a pipeline loading rows and their summaries does) take turns at
// SQLite's write lock instead of failing.
func TestOutputsSharingAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sales.db")
	const n = 256
	err := runStream(t, fmt.Sprintf(`
input:
  generate:
    count: %d
    interval: ""
    mapping: 'root = {"id": counter(), "customer_id": counter() %% 7, "amount": counter() / 4}'
output:
  broker:
    pattern: fan_out
    outputs:
      - sqlite:
          path: %[2]q
          table: rows
          key: [id]
          columns: [{name: id, type: INTEGER}, {name: customer_id, type: INTEGER}, {name: amount, type: REAL}]
          batching: {count: 16}
      - sqlite:
          path: %[2]q
          table: by_customer
          key: [customer_id]
          batching: {count: 32}
        processors:
          - mapping: 'root = {"customer_id": this.customer_id, "last_amount": this.amount}'
logger: {level: ${SQLITEOUT_LOG:none}}
`, n, path))
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	if got := count(t, db, "rows"); got != n {
		t.Errorf("rows has %d rows, want %d", got, n)
	}
	got := literals(t, db, "SELECT (SELECT count(*) FROM by_customer) || ' ' || (SELECT group_concat(name || ' ' || type, ', ') FROM pragma_table_info('by_customer'))")
	if want := "7 customer_id INTEGER, last_amount REAL"; got[0] != want {
		t.Errorf("by_customer is %q, want %q", got[0], want)
	}
}

// BenchmarkSQLiteUpsert: rows per second upserted in batches of 1024 seed
// sales rows, over a key space of 8 batches, so that after the first 8
// batches every row replaces one.
func BenchmarkSQLiteUpsert(b *testing.B) {
	const size, distinct = 1024, 8
	rows := lines(b, sales(size*distinct, 0))
	batches := make([]service.MessageBatch, distinct)
	for i := range batches {
		batches[i] = batchOf(rows[i*size : (i+1)*size]...)
	}
	for _, mode := range []string{"full", "normal"} {
		b.Run("synchronous="+mode, func(b *testing.B) {
			o := connected(b, map[string]any{
				"path": filepath.Join(b.TempDir(), "sales.db"), "table": "sales",
				"columns": salesColumns(), "key": salesKey, "synchronous": mode,
			})
			ctx := context.Background()
			n := 0
			for b.Loop() {
				if err := o.WriteBatch(ctx, batches[n%distinct]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// inRun puts every message of b in run r, as csv_file does.
func inRun(r *runscope.Run, b service.MessageBatch) service.MessageBatch {
	ctx := runscope.With(context.Background(), r)
	for i, m := range b {
		b[i] = m.WithContext(ctx)
	}
	return b
}

// TestRunTransaction: with transaction: run the rows of every batch and
// the after_run summary appear at Close, together, and only if the run
// completed; a batch that fails is rolled back alone; a message from no
// run is refused.
func TestRunTransaction(t *testing.T) {
	rows := lines(t, sales(30, 0))
	const absent = -1 // no such table
	for _, tc := range []struct {
		name string
		// existing: the file holds the table, with one row, and no days
		// table before the run.
		existing bool
		deliver  bool // whether the run's batches reach the output
		// finish ends the run as the input would, or not.
		finish   func(r *runscope.Run)
		want     int // rows after Close
		wantDays int
	}{
		{"complete", false, true, func(r *runscope.Run) { r.Acked(nil); r.Acked(nil); r.Acked(nil); r.Ended() }, 20, 18}, // days 1-10 and 21-28, 1-2 again
		{"stopped before its end", false, true, func(r *runscope.Run) { r.Acked(nil); r.Acked(nil); r.Acked(nil) }, absent, absent},
		{"a batch not acknowledged", false, true, func(r *runscope.Run) { r.Acked(nil); r.Acked(nil); r.Ended() }, absent, absent},
		{"complete, no rows", false, false, func(r *runscope.Run) { r.Ended() }, 0, 0},
		{"stopped before a row", false, false, func(*runscope.Run) {}, absent, absent},
		{"complete, into a table", true, true, func(r *runscope.Run) { r.Acked(nil); r.Acked(nil); r.Acked(nil); r.Ended() }, 21, 19},
		{"stopped, into a table", true, true, func(r *runscope.Run) { r.Acked(nil); r.Acked(nil); r.Acked(nil) }, 1, absent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			before := absent
			if tc.existing {
				db := openDB(t, path, "journal_mode(wal)")
				if _, err := db.Exec(`CREATE TABLE sales (date TEXT, product_id INTEGER, quantity INTEGER, price REAL, customer_id INTEGER, total_amount REAL, PRIMARY KEY (date, product_id, customer_id))`); err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(`INSERT INTO sales (date, product_id, customer_id, total_amount) VALUES ('2023-12-31', 1, 1, 5)`); err != nil {
					t.Fatal(err)
				}
				before = 1
			}
			conf := map[string]any{
				"path": path, "table": "sales", "columns": salesColumns(), "key": salesKey,
				"transaction":     "run",
				"init_statements": []any{"CREATE TABLE IF NOT EXISTS days (date TEXT PRIMARY KEY, revenue REAL)"},
				"after_run":       []any{"DELETE FROM days", "INSERT INTO days SELECT date, sum(total_amount) FROM sales GROUP BY date"},
			}
			// The run is the stream's, as a csv_file input makes it, so
			// that Close finds it when no batch brought it.
			res := service.MockResources()
			r := runscope.ForStream(res)
			o, err := newTestOutputIn(t, conf, res)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := o.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			if !tc.existing && fileExists(path) {
				t.Errorf("connecting in run mode created %s", path)
			}
			bad := `{"date":"2024-01-01","product_id":"x","quantity":1,"price":1,"customer_id":1,"total_amount":1}`
			for i, b := range []service.MessageBatch{batchOf(rows[:10]...), batchOf(append(rows[10:19:19], bad)...), batchOf(rows[20:30]...)} {
				if !tc.deliver {
					break
				}
				r.Emitted()
				err := o.WriteBatch(ctx, inRun(r, b))
				if (err != nil) != (i == 1) {
					t.Fatalf("batch %d: %v (only batch 1, with a bad row, should fail)", i, err)
				}
			}
			if err := r.Failed(); err != nil {
				// A fallback output may take the bad row, and the run complete.
				t.Errorf("a row's own fault failed the run: %v", err)
			}
			var db *sql.DB
			if tc.deliver {
				db = openDB(t, path)
				if n := rowsOrAbsent(t, db, "sales"); n != before {
					t.Errorf("a reader sees %d rows before the run ended, want %d (-1: no table)", n, before)
				}
			}
			tc.finish(r)
			if err := o.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if !fileExists(path) {
				if tc.want != absent {
					t.Fatalf("no %s after Close", path)
				}
				return // a first run that wrote nothing, as it should
			}
			if !tc.deliver && tc.want == absent {
				t.Errorf("a run stopped before its first row left %s", path)
			}
			if db == nil {
				db = openDB(t, path)
			}
			if n := rowsOrAbsent(t, db, "sales"); n != tc.want {
				t.Errorf("%d rows after Close, want %d (batches 0 and 2, batch 1 rolled back alone; -1: no table)", n, tc.want)
			}
			if n := rowsOrAbsent(t, db, "days"); n != tc.wantDays {
				t.Errorf("after_run's table has %d rows, want %d (-1: no table)", n, tc.wantDays)
			}
		})
	}

	t.Run("a table the run cannot use", func(t *testing.T) {
		// The file's table lacks a configured column: found at connect,
		// where Benthos would retry until the run's timeout. The run
		// fails with the reason instead, and its batches are dropped.
		path := filepath.Join(t.TempDir(), "sales.db")
		db := openDB(t, path, "journal_mode(wal)")
		if _, err := db.Exec(`CREATE TABLE sales (date TEXT, product_id INTEGER, customer_id INTEGER, PRIMARY KEY (date, product_id, customer_id))`); err != nil {
			t.Fatal(err)
		}
		res := service.MockResources()
		r := runscope.ForStream(res)
		o, err := newTestOutputIn(t, map[string]any{"path": path, "table": "sales", "columns": salesColumns(), "key": salesKey, "transaction": "run"}, res)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := o.Connect(ctx); err != nil {
			t.Fatalf("Connect: %v, want the run failed instead", err)
		}
		if err := r.Failed(); err == nil || !strings.Contains(err.Error(), `has no column "quantity"`) || !strings.Contains(err.Error(), path) {
			t.Errorf("the run's failure: %v, want one naming the missing column and the file", err)
		}
		r.Emitted()
		if err := o.WriteBatch(ctx, inRun(r, batchOf(rows[0]))); err != nil {
			t.Errorf("a batch of the failed run: %v, want it dropped", err)
		}
		if err := o.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "sales"); n != 0 {
			t.Errorf("the table has %d rows, want it as it was", n)
		}
	})
	t.Run("a write no retry mends", func(t *testing.T) {
		// The database's directory cannot be made at the first batch (a
		// file took its place after connect): the run fails with the
		// reason, and its later batches are dropped with it, not retried.
		dir := t.TempDir()
		o := connected(t, map[string]any{"path": filepath.Join(dir, "sub", "x.db"), "table": "sales", "columns": salesColumns(), "transaction": "run"})
		if err := os.WriteFile(filepath.Join(dir, "sub"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := &runscope.Run{}
		ctx := context.Background()
		err := o.WriteBatch(ctx, inRun(r, batchOf(rows[0])))
		if err == nil || !errors.Is(r.Failed(), err) {
			t.Fatalf("first batch: %v; the run's failure: %v, want that error", err, r.Failed())
		}
		if err := o.WriteBatch(ctx, inRun(r, batchOf(rows[1]))); err != nil {
			t.Errorf("a batch of the failed run: %v, want it dropped with the run", err)
		}
	})

	o := connected(t, map[string]any{"path": filepath.Join(t.TempDir(), "x.db"), "table": "sales", "columns": salesColumns(), "transaction": "run"})
	if err := o.WriteBatch(context.Background(), batchOf(rows[0])); err == nil || !strings.Contains(err.Error(), "transaction: run needs a bounded input") {
		t.Errorf("a message from no run: %v", err)
	}
	if _, err := newTestOutput(t, map[string]any{"path": "x.db", "table": "t", "after_run": []any{"SELECT 1"}}); err == nil || !strings.Contains(err.Error(), "after_run needs transaction: run") {
		t.Errorf("after_run without run mode: %v", err)
	}
}
