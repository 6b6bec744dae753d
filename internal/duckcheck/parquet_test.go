package duckcheck

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
)

// TestSalesParquetWithDuckDB runs the sales ETL over its embedded sample
// with the agent built from this checkout, then reads the Parquet files
// with DuckDB: each row is its CSV line after the transform (total_amount,
// year, month, day, day_of_week), every line of the CSV is either there
// once or in rejects.csv, never both.
func TestSalesParquetWithDuckDB(t *testing.T) {
	root, dir := runAgent(t, "builtin:sales_etl", "SALES_OUT=out")
	out := filepath.Join(dir, "out")
	lines := csvLines(t, filepath.Join(root, "pipelines/sample/sales.csv"))
	rejected := map[int]bool{}
	for _, r := range readCSV(t, filepath.Join(out, "rejects.csv"))[1:] {
		n, _ := strconv.Atoi(r[1])
		rejected[n] = true
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT line, CAST(date AS VARCHAR), product_id, quantity, price, customer_id,
		total_amount, year, month, day, day_of_week, source_file
		FROM read_parquet(?) ORDER BY line`, filepath.Join(out, "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[int]bool{}
	for rows.Next() {
		var line, product, quantity, customer, year, month, day, dow int
		var date, source string
		var price, total float64
		if err := rows.Scan(&line, &date, &product, &quantity, &price, &customer, &total, &year, &month, &day, &dow, &source); err != nil {
			t.Fatal(err)
		}
		if seen[line] || rejected[line] {
			t.Errorf("line %d: in Parquet twice, or in Parquet and rejected", line)
		}
		seen[line] = true
		f := lines[line]
		if len(f) != 5 {
			t.Errorf("line %d is in Parquet but is not a row of the CSV: %q", line, f)
			continue
		}
		d, err := time.Parse("2006-01-02", f[0])
		if err != nil {
			t.Errorf("line %d: date %q: %v", line, f[0], err)
			continue
		}
		q, _ := strconv.Atoi(f[2])
		p, _ := strconv.ParseFloat(f[3], 64)
		want := []any{f[0], f[1], q, p, f[4], float64(q) * p, d.Year(), int(d.Month()), d.Day(), (int(d.Weekday()) + 6) % 7, "builtin:sample/sales.csv"}
		got := []any{date, strconv.Itoa(product), quantity, price, strconv.Itoa(customer), total, year, month, day, dow, source}
		for i := range want {
			if want[i] != got[i] {
				t.Errorf("line %d: DuckDB reads %v, want the CSV line after the transform %v", line, got, want)
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for n := range lines {
		if !seen[n] && !rejected[n] {
			t.Errorf("line %d is neither in Parquet nor in rejects.csv", n)
		}
	}
	if len(seen) < 250 || len(rejected) == 0 {
		t.Errorf("%d rows in Parquet, %d rejected: the sample has ~300 rows and some bad ones", len(seen), len(rejected))
	}
}

// TestDAGParquetWithDuckDB runs the DAG once over the sample
// product_catalog and transaction_history and a user_behavior.csv with a
// header and no rows, then reads its Parquet files with DuckDB: the
// transactions' features are the CSV's times' hour, weekday and weekend
// flag, their timestamps DuckDB timestamps; the empty source's file has
// the DAG's columns and no rows.
func TestDAGParquetWithDuckDB(t *testing.T) {
	in := t.TempDir()
	root, _ := filepath.Abs("../..")
	for _, name := range []string{"product_catalog.csv", "transaction_history.csv"} {
		b, err := os.ReadFile(filepath.Join(root, "pipelines/sample", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(in, "user_behavior.csv"), []byte("user_id,page_views,session_duration,timestamp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, dir := runAgent(t, "builtin:ml_dag", "DAG_IN="+in, "DAG_OUT=out", "--once")
	out := filepath.Join(dir, "out")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	txs := readCSV(t, filepath.Join(in, "transaction_history.csv"))[1:]
	rows, err := db.Query(`SELECT transaction_id, typeof(timestamp), strftime(timestamp AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S'),
		hour_of_day, day_of_week, is_weekend FROM read_parquet(?) ORDER BY transaction_id`, filepath.Join(out, "processed_transaction_history_*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		var id, hour, dow int
		var typ, ts string
		var weekend bool
		if err := rows.Scan(&id, &typ, &ts, &hour, &dow, &weekend); err != nil {
			t.Fatal(err)
		}
		if n >= len(txs) {
			continue
		}
		want, err := time.Parse(time.DateTime, txs[n][3])
		if err != nil {
			t.Fatal(err)
		}
		wantDow := (int(want.Weekday()) + 6) % 7
		if strconv.Itoa(id) != txs[n][0] || !strings.HasPrefix(typ, "TIMESTAMP") || ts != txs[n][3] || hour != want.Hour() || dow != wantDow || weekend != (wantDow >= 5) {
			t.Errorf("transaction %d: DuckDB reads %d %s %s %d %d %v, want %s, a timestamp, %d %d %v", n+1, id, typ, ts, hour, dow, weekend, txs[n][3], want.Hour(), wantDow, wantDow >= 5)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(txs) {
		t.Errorf("DuckDB reads %d transactions, want the CSV's %d", n, len(txs))
	}

	var count int
	var cols string
	err = db.QueryRow(`SELECT (SELECT count(*) FROM read_parquet($1)),
		(SELECT string_agg(column_name || ':' || column_type, ' ') FROM (DESCRIBE SELECT * FROM read_parquet($1)))`,
		filepath.Join(out, "processed_user_behavior_*.parquet")).Scan(&count, &cols)
	if err != nil {
		t.Fatal(err)
	}
	if count != 0 || cols != "user_id:BIGINT page_views:BIGINT session_duration:BIGINT timestamp:TIMESTAMP WITH TIME ZONE engagement_score:DOUBLE is_active_user:BOOLEAN" {
		t.Errorf("user_behavior's file: %d rows of %s, want none of the DAG's columns", count, cols)
	}
}

// runAgent builds the agent from this checkout and runs pipeline with env
// (KEY=VALUE; --flags are arguments) in a new directory, which it returns
// with the checkout's root.
func runAgent(t *testing.T, pipeline string, env ...string) (root, dir string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	agent := filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-o", agent, "./cmd/agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	args := []string{"--pipeline", pipeline}
	vars := append(os.Environ(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
	for _, e := range env {
		if strings.HasPrefix(e, "--") {
			args = append(args, e)
		} else {
			vars = append(vars, e)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, agent, args...)
	run.Dir = dir
	run.Env = vars
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", pipeline, err, stderr.String())
	}
	return root, dir
}

// csvLines maps each data line number (the header is line 1) to its
// fields; the sample has no quoted or multi-line fields.
func csvLines(t *testing.T, path string) map[int][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for i, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n")[1:] {
		out[i+2] = strings.Split(l, ",")
	}
	return out
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
