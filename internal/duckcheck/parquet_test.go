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
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-o", agent, "./cmd/agent")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, agent, "--pipeline", "builtin:sales_etl")
	run.Dir = dir
	run.Env = append(os.Environ(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "SALES_OUT="+out)
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("sales_etl: %v\n%s", err, stderr.String())
	}

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
