package main

import (
	"database/sql"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver"
	"github.com/parquet-go/parquet-go"
)

// seedSales is the seed's exercise 1 applied to the embedded sample
// independently of the pipeline: rows with a missing value, a value that
// does not parse, a wrong field count, a duplicate earlier in the file, or
// a quantity or price not above zero are rejected; the rest get
// total_amount.
type seedRow struct {
	line                        int
	date                        string
	product, quantity, customer int
	price, total                float64
}

func seedSales(t *testing.T) (good []seedRow, rejected map[int]bool) {
	t.Helper()
	return seedSalesOf(t, "../../pipelines/sample/sales.csv")
}

// seedSalesOf is seedSales over the sales CSV at path.
func seedSalesOf(t *testing.T, path string) (good []seedRow, rejected map[int]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rejected = map[int]bool{}
	seen := map[string]bool{}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, l := range lines[1:] {
		n := i + 2
		f := strings.Split(l, ",")
		bad := len(f) != 5 || seen[l]
		seen[l] = true
		var r seedRow
		if !bad {
			var errs [4]error
			r = seedRow{line: n, date: f[0]}
			r.product, errs[0] = strconv.Atoi(f[1])
			r.quantity, errs[1] = strconv.Atoi(f[2])
			r.price, errs[2] = strconv.ParseFloat(f[3], 64)
			r.customer, errs[3] = strconv.Atoi(f[4])
			for _, e := range errs {
				bad = bad || e != nil
			}
			bad = bad || r.quantity <= 0 || r.price <= 0
		}
		if bad {
			rejected[n] = true
			continue
		}
		r.total = float64(r.quantity) * r.price
		good = append(good, r)
	}
	return good, rejected
}

// TestSalesETL runs the seed's sales ETL as the README shows it, over the
// embedded sample: sales_data, daily_summary and customer_summary in SQLite
// and the rows in Parquet equal the seed's logic applied independently;
// each bad row is in rejects.csv with its line and a reason; a second run
// upserts and duplicates nothing.
func TestSalesETL(t *testing.T) {
	dir := t.TempDir()
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
	res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl")
	if res.code != 0 || strings.Contains(res.stderr, "level=ERROR") {
		t.Fatalf("run: %s", res)
	}
	good, rejected := seedSales(t)
	out := filepath.Join(dir, "sales_out")
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(out, "sales.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	check := func(run string) {
		t.Helper()
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sales_data").Scan(&n); err != nil || n != len(good) {
			t.Fatalf("%s: sales_data has %d rows (%v), want %d", run, n, err, len(good))
		}
		for _, r := range good {
			var date string
			var product, quantity, customer, dow int
			var price, total float64
			err := db.QueryRow("SELECT date, product_id, quantity, price, customer_id, total_amount, day_of_week FROM sales_data WHERE line = ?", r.line).
				Scan(&date, &product, &quantity, &price, &customer, &total, &dow)
			d, _ := time.Parse("2006-01-02", r.date)
			want := fmt.Sprint(r.date, r.product, r.quantity, r.price, r.customer, r.total, (int(d.Weekday())+6)%7)
			if got := fmt.Sprint(date, product, quantity, price, customer, total, dow); err != nil || got != want {
				t.Errorf("%s: line %d: %s (%v), want %s", run, r.line, got, err, want)
			}
		}
	}
	check("first run")

	// daily_summary: revenue, quantity, distinct customers and products.
	type day struct {
		rev       float64
		qty       int
		cust, prd map[int]bool
	}
	days := map[string]*day{}
	for _, r := range good {
		d := days[r.date]
		if d == nil {
			d = &day{cust: map[int]bool{}, prd: map[int]bool{}}
			days[r.date] = d
		}
		d.rev += r.total
		d.qty += r.quantity
		d.cust[r.customer], d.prd[r.product] = true, true
	}
	rows, err := db.Query("SELECT date, daily_revenue, daily_quantity, daily_customers, daily_products FROM daily_summary")
	if err != nil {
		t.Fatal(err)
	}
	nDays := 0
	for rows.Next() {
		var date string
		var rev float64
		var qty, cust, prd int
		if err := rows.Scan(&date, &rev, &qty, &cust, &prd); err != nil {
			t.Fatal(err)
		}
		nDays++
		d := days[date]
		if d == nil || math.Abs(rev-d.rev) > 0.005 || qty != d.qty || cust != len(d.cust) || prd != len(d.prd) {
			t.Errorf("daily_summary %s: %v %d %d %d, want %+v", date, rev, qty, cust, prd, d)
		}
	}
	_ = rows.Close()
	if nDays != len(days) {
		t.Errorf("daily_summary has %d days, want %d", nDays, len(days))
	}

	// customer_summary: one customer checked field by field against the
	// seed's definition, and the row count.
	byCust := map[int][]seedRow{}
	for _, r := range good {
		byCust[r.customer] = append(byCust[r.customer], r)
	}
	var nCust int
	if err := db.QueryRow("SELECT count(*) FROM customer_summary").Scan(&nCust); err != nil || nCust != len(byCust) {
		t.Errorf("customer_summary has %d rows (%v), want %d", nCust, err, len(byCust))
	}
	for c, rs := range byCust {
		var spent, avg float64
		var count, products, days int
		if err := db.QueryRow("SELECT total_spent, avg_order_value, order_count, unique_products, customer_lifetime_days FROM customer_summary WHERE customer_id = ?", c).
			Scan(&spent, &avg, &count, &products, &days); err != nil {
			t.Fatalf("customer %d: %v", c, err)
		}
		var sum float64
		prods := map[int]bool{}
		var dates []string
		for _, r := range rs {
			sum += r.total
			prods[r.product] = true
			dates = append(dates, r.date)
		}
		sort.Strings(dates)
		first, _ := time.Parse("2006-01-02", dates[0])
		last, _ := time.Parse("2006-01-02", dates[len(dates)-1])
		want := fmt.Sprint(round2(sum), round2(sum/float64(len(rs))), len(rs), len(prods), int(last.Sub(first).Hours()/24))
		if got := fmt.Sprint(spent, avg, count, products, days); got != want {
			t.Errorf("customer %d: %s, want %s", c, got, want)
		}
	}

	// The rows in Parquet, every good one once, in one file: a run
	// again replaces it rather than adding a copy.
	parquetRows := func(run string) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
		if len(files) != 1 || filepath.Base(files[0]) != "sales.parquet" {
			t.Fatalf("%s: Parquet files %v, want sales.parquet alone", run, files)
		}
		rowsOf, err := parquet.ReadFile[struct {
			Line int64 `parquet:"line"`
		}](files[0])
		if err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		lines := map[int64]bool{}
		for _, r := range rowsOf {
			if lines[r.Line] {
				t.Errorf("%s: line %d twice in sales.parquet", run, r.Line)
			}
			lines[r.Line] = true
		}
		if len(lines) != len(good) {
			t.Errorf("%s: sales.parquet holds %d rows, want %d", run, len(lines), len(good))
		}
	}
	parquetRows("first run")

	// rejects.csv: file, line, reason, the row as it was.
	f, err := os.Open(filepath.Join(out, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(rejected)+1 || strings.Join(recs[0], ",") != "file,line,reason,row" {
		t.Fatalf("rejects.csv has %d records, want a header and %d\n%v", len(recs), len(rejected), recs)
	}
	reasons := map[int]string{ // a reject keeps the first reason found
		23:  `column price: "abc" is not a number`,
		49:  "expect_column_values_to_not_be_null(price)",
		126: "expect_column_values_to_be_between(price)",
		167: "expect_column_values_to_be_between(quantity)",
		208: "duplicate row",
		249: "4 fields, the header has 5",
	}
	for _, r := range recs[1:] {
		n, _ := strconv.Atoi(r[1])
		if !rejected[n] || r[2] == "" || r[3] == "" || !strings.Contains(r[2], reasons[n]) {
			t.Errorf("reject %v: want a bad line with its reason (%q) and row", r, reasons[n])
		}
	}

	// The run's outcome: rows read, loaded, rejected, checked by
	// validate (the CSV reader's rejects never reach it) and the DQS.
	outcome := func(run, stderr string) {
		t.Helper()
		checked := len(good) + len(rejected) - 2 // lines 23 and 249 fail to parse
		want := fmt.Sprintf("rows_in=%d rows_out=%d rows_rejected=%d rows_checked=%d dqs=%.1f%%",
			len(good)+len(rejected), len(good), len(rejected), checked, 100*float64(len(good)+1)/float64(checked))
		if !strings.Contains(stderr, want) {
			t.Errorf("%s: the run outcome lacks %q:\n%s", run, want, stderr)
		}
	}
	outcome("first run", res.stderr)

	// Again: upserts on (source_file, line), nothing doubled.
	res = runAgent(t, dir, env, "--pipeline", "builtin:sales_etl")
	if res.code != 0 {
		t.Fatalf("second run: %s", res)
	}
	check("second run")
	parquetRows("second run")
	outcome("second run", res.stderr)
}

// TestSalesETLFileReadAgain: the sales ETL over a file, then over the
// same file after it lost its last rows and one good row turned bad (a
// corrected export): sales_data then holds the file's current good rows
// alone, not the old versions of the rows it no longer has, and the
// summaries are of those rows (sales_etl's replace_by: [source_file]);
// then over it once it has its header and no rows: none of its rows stay.
func TestSalesETLFileReadAgain(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out")
	sample, err := os.ReadFile("../../pipelines/sample/sales.csv")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, in, string(sample))
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "SALES_CSV="+in, "SALES_OUT="+out)
	if res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl"); res.code != 0 {
		t.Fatalf("first run: %s", res)
	}
	// The header and 60 rows, the first good one's price made negative.
	good, _ := seedSalesOf(t, in)
	lines := strings.SplitAfter(string(sample), "\n")[:61]
	f := strings.Split(lines[good[0].line-1], ",")
	f[3] = "-" + f[3]
	lines[good[0].line-1] = strings.Join(f, ",")
	writeFile(t, in, strings.Join(lines, ""))
	res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl")
	if res.code != 0 {
		t.Fatalf("second run: %s", res)
	}
	good, _ = seedSalesOf(t, in)
	var want []string
	qty := 0
	for _, r := range good {
		want = append(want, fmt.Sprint(r.line, r.quantity))
		qty += r.quantity
	}
	db := filepath.Join(out, "sales.db")
	got := queryRows(t, db, "SELECT line, quantity FROM sales_data ORDER BY line")
	if strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("sales_data after the file was read again: %d rows\n%v\nwant the file's %d good rows\n%v", len(got), got, len(want), want)
	}
	if summed := queryRows(t, db, "SELECT sum(daily_quantity) FROM daily_summary"); len(summed) != 1 || summed[0] != fmt.Sprint(qty) {
		t.Errorf("daily_summary's quantities sum to %v, want the file's %d", summed, qty)
	}
	if !strings.Contains(res.stderr, "replace_by replaced") {
		t.Errorf("the second run's log does not say what replace_by replaced:\n%s", res.stderr)
	}
	// sales.parquet, replaced by the run, holds the same rows.
	parquetLines := func() []string {
		rs, err := parquet.ReadFile[struct {
			Line     int64 `parquet:"line"`
			Quantity int64 `parquet:"quantity"`
		}](filepath.Join(out, "sales.parquet"))
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].Line < rs[j].Line })
		var got []string
		for _, r := range rs {
			got = append(got, fmt.Sprint(r.Line, r.Quantity))
		}
		return got
	}
	if got := parquetLines(); strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("sales.parquet after the file was read again: %d rows, want the file's %d good rows", len(got), len(want))
	}

	writeFile(t, in, lines[0])
	if res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl"); res.code != 0 {
		t.Fatalf("third run, the header alone: %s", res)
	}
	for _, table := range []string{"sales_data", "daily_summary", "customer_summary"} {
		if got := queryRows(t, db, "SELECT count(*) FROM "+table); len(got) != 1 || got[0] != "0" {
			t.Errorf("%s after the file lost all its rows: %v rows, want 0", table, got)
		}
	}
	if got := parquetLines(); len(got) != 0 {
		t.Errorf("sales.parquet after the file lost all its rows: %d rows, want 0", len(got))
	}
}

// TestSalesETLPathSpelling: the sales ETL over one file, run by hand in
// its directory with a relative SALES_CSV, then as cron would run it,
// from elsewhere with the file's absolute path: sales_data holds each of
// the file's good rows once, under one source_file, its absolute path.
func TestSalesETLPathSpelling(t *testing.T) {
	dir := t.TempDir()
	jobs, elsewhere := filepath.Join(dir, "jobs"), filepath.Join(dir, "elsewhere")
	in, out := filepath.Join(jobs, "in.csv"), filepath.Join(dir, "out")
	sample, err := os.ReadFile("../../pipelines/sample/sales.csv")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, in, string(sample))
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "SALES_OUT="+out)
	for _, run := range []struct{ wd, csv string }{{jobs, "in.csv"}, {elsewhere, in}, {jobs, "./in.csv"}} {
		if res := runAgent(t, run.wd, append(env, "SALES_CSV="+run.csv), "--pipeline", "builtin:sales_etl"); res.code != 0 {
			t.Fatalf("run in %s with SALES_CSV=%s: %s", run.wd, run.csv, res)
		}
	}
	good, _ := seedSalesOf(t, in)
	db := filepath.Join(out, "sales.db")
	if got := queryRows(t, db, "SELECT source_file, count(*), count(DISTINCT line) FROM sales_data GROUP BY source_file"); len(got) != 1 || got[0] != fmt.Sprintf("%s %d %d", in, len(good), len(good)) {
		t.Errorf("sales_data by source_file after three runs over one file: %v, want %q", got, fmt.Sprintf("%s %d %d", in, len(good), len(good)))
	}
}

// round2 rounds to the cent as Python's round(x, 2) does, on the double's
// exact value: 3779.015 is stored just below it and rounds down, where
// math.Round(x*100)/100 rounds the product, 377901.5, up.
func round2(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64)
	return v
}

// TestSalesETLAwkwardFiles: the sales ETL over a glob of files a real
// export directory holds: one with a BOM, CRLF line ends, quoted cells, its
// columns in another order and one more column; one missing a required
// column; an empty one. The good rows load; every bad file and row is in
// rejects.csv with its file, line, reason and its text exactly as written
// (empty for the empty file, not "null").
func TestSalesETLAwkwardFiles(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	files := map[string]string{
		"a.csv": "\xef\xbb\xbfcustomer_id,price,quantity,product_id,date,channel\r\n" +
			"7,3.5,2,1,2024-01-01,web\r\n" +
			"8,\"4.25\",1,2,2024-01-02,\"shop, east\"\r\n" +
			"9,abc,1,3,2024-01-03,web\r\n",
		"b.csv": "date,product_id,quantity\n2024-01-01,1,2\n",
		"c.csv": "",
	}
	for name, text := range files {
		writeFile(t, filepath.Join(in, name), text)
	}
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=",
		"SALES_CSV="+filepath.Join(in, "*.csv"), "SALES_OUT="+out)
	if res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl"); res.code != 0 {
		t.Fatalf("run: %s", res)
	}

	got := queryRows(t, filepath.Join(out, "sales.db"), "SELECT line, date, product_id, quantity, price, customer_id, total_amount FROM sales_data ORDER BY line")
	want := []string{"2 2024-01-01 1 2 3.5 7 7", "3 2024-01-02 2 1 4.25 8 4.25"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("sales_data:\n%v\nwant\n%v", got, want)
	}

	recs := readCSV(t, filepath.Join(out, "rejects.csv"))
	type reject struct{ file, line, reason, row string }
	wantRejects := []reject{
		{"a.csv", "4", `column price: "abc" is not a number`, "9,abc,1,3,2024-01-03,web"},
		{"b.csv", "1", "missing required columns: price, customer_id", "date,product_id,quantity"},
		{"c.csv", "1", "the file is empty", ""},
	}
	if len(recs) != len(wantRejects) {
		t.Fatalf("rejects.csv has %d rows, want %d:\n%q", len(recs), len(wantRejects), recs)
	}
	for i, w := range wantRejects {
		r := recs[i]
		if r[0] != filepath.Join(in, w.file) || r[1] != w.line || !strings.Contains(r[2], w.reason) || r[3] != w.row {
			t.Errorf("reject %d: %q\nwant file %s, line %s, a reason with %q, row %q", i+1, r, w.file, w.line, w.reason, w.row)
		}
	}
}

// queryRows runs query on the SQLite database at path, read-only, and
// returns each row's values as text, separated by spaces.
func queryRows(t *testing.T, path, query string) []string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		texts := make([]string, len(vals))
		for i, v := range vals {
			texts[i] = v.String
		}
		out = append(out, strings.Join(texts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSalesETLLocale: an export from a European locale (semicolons,
// dates day first, decimal commas, points between thousands) reads with
// SALES_DELIMITER, SALES_DATE_FORMAT, SALES_DECIMAL and SALES_THOUSANDS:
// its rows load as the same dates and numbers, with their features, and a
// date the calendar lacks is rejected saying so.
func TestSalesETLLocale(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "eu.csv"), filepath.Join(dir, "out")
	writeFile(t, in, "date;product_id;quantity;price;customer_id\n15.01.2024;1;2;3,5;7\n3.2.2024;2;1;1.234,25;8\n30.02.2024;3;1;5;9\n")
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=",
		"SALES_CSV="+in, "SALES_OUT="+out, "SALES_DATE_FORMAT=%d.%m.%Y",
		"SALES_DELIMITER=;", "SALES_DECIMAL=,", "SALES_THOUSANDS=.")
	if res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl"); res.code != 0 {
		t.Fatalf("run: %s", res)
	}
	got := queryRows(t, filepath.Join(out, "sales.db"), "SELECT line, date, price, total_amount, year, month, day, day_of_week FROM sales_data ORDER BY line")
	if want := []string{"2 2024-01-15 3.5 7 2024 1 15 0", "3 2024-02-03 1234.25 1234.25 2024 2 3 5"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("sales_data: %v, want %v", got, want)
	}
	recs := readCSV(t, filepath.Join(out, "rejects.csv"))
	if len(recs) != 1 || recs[0][1] != "4" || !strings.Contains(recs[0][2], `"30.02.2024" is not a valid date`) {
		t.Errorf("rejects: %q, want line 4's date as not valid", recs)
	}
}
