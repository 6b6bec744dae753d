package sqliteout

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
)

// exactRows reads a query's rows with each value's Go type and exact
// text, sorted, so that both the value (to the last bit of a real) and
// its storage class are compared.
func exactRows(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	var out []string
	eachRow(t, db, query, func(vals []any) {
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case float64:
				parts[i] = "real " + strconv.FormatFloat(v, 'g', -1, 64)
			case []byte:
				parts[i] = "bytes " + strconv.Quote(string(v))
			default:
				parts[i] = fmt.Sprintf("%T %v", v, v)
			}
		}
		out = append(out, strings.Join(parts, " | "))
	})
	slices.Sort(out)
	return out
}

// runOnce writes batches as one complete run and closes the output.
func runOnce(t *testing.T, conf map[string]any, batches ...service.MessageBatch) error {
	t.Helper()
	_, err := runOutput(t, conf, batches...)
	return err
}

// runOutput is runOnce returning the output, closed.
func runOutput(t *testing.T, conf map[string]any, batches ...service.MessageBatch) (*output, error) {
	t.Helper()
	o := connected(t, conf)
	ctx := context.Background()
	r := &runscope.Run{}
	for _, b := range batches {
		r.Emitted()
		if err := o.WriteBatch(ctx, inRun(r, b)); err != nil {
			t.Fatal(err)
		}
		r.Acked(nil)
	}
	r.Ended()
	return o, o.Close(ctx)
}

// TestSummariesMatchGroupBy: each summary table holds exactly what the
// GROUP BY it stands for gives over the same table (the oracle is SQLite),
// on the seed's sales and on values that test SQLite's rules: NULLs,
// integers and reals mixed in one column, text that holds a number or
// none, integers past 2^53, whole reals, and a run that replaces rows of
// an earlier one.
func TestSummariesMatchGroupBy(t *testing.T) {
	salesSummaries := []any{
		map[string]any{"table": "daily", "group_by": []any{"date"}, "fields": []any{
			map[string]any{"as": "revenue", "op": "sum", "column": "total_amount", "round": 2},
			map[string]any{"as": "quantity", "op": "sum", "column": "quantity"},
			map[string]any{"as": "customers", "op": "count_distinct", "column": "customer_id"},
			map[string]any{"as": "products", "op": "count_distinct", "column": "product_id"},
		}},
		map[string]any{"table": "by_customer", "group_by": []any{"customer_id"}, "fields": []any{
			map[string]any{"as": "spent", "op": "sum", "column": "total_amount", "round": 2},
			map[string]any{"as": "avg_order", "op": "mean", "column": "total_amount", "round": 2},
			map[string]any{"as": "orders", "op": "count"},
			map[string]any{"as": "products", "op": "count_distinct", "column": "product_id"},
			map[string]any{"as": "lifetime_days", "op": "day_span", "column": "date"},
			map[string]any{"as": "first", "op": "min", "column": "date"},
			map[string]any{"as": "top_price", "op": "max", "column": "price"},
		}},
		map[string]any{"table": "by_product_day", "group_by": []any{"product_id", "date"}, "fields": []any{
			map[string]any{"as": "mean_qty", "op": "mean", "column": "quantity"},
			map[string]any{"as": "low", "op": "min", "column": "price", "round": 1},
		}},
	}
	salesOracle := map[string]string{
		"daily": `SELECT date, round(sum(total_amount), 2), sum(quantity), count(DISTINCT customer_id), count(DISTINCT product_id)
			FROM sales GROUP BY date`,
		"by_customer": `SELECT customer_id, round(sum(total_amount), 2), round(avg(total_amount), 2), count(*), count(DISTINCT product_id),
			CAST(julianday(max(date)) - julianday(min(date)) AS INTEGER), min(date), max(price) FROM sales GROUP BY customer_id`,
		"by_product_day": `SELECT product_id, date, avg(quantity), round(min(price), 1) FROM sales GROUP BY product_id, date`,
	}
	// Many customers buy more than once: customer ids repeat every 97 rows.
	salesRun := func(n int, bump int64) service.MessageBatch {
		rows := sales(n, bump)
		for i := range rows {
			rows[i].CustomerID = int64(1000 + i%97)
		}
		return batchOf(lines(t, rows)...)
	}

	mixed := []string{
		`{"k":1,"g":"a","v":1,"d":"2024-01-01"}`,
		`{"k":2,"g":"a","v":1.0,"d":"2024-03-01"}`,
		`{"k":3,"g":"a","v":2.5,"d":null}`,
		`{"k":4,"g":"a","v":null,"d":"2023-12-31"}`,
		`{"k":5,"g":"b","v":"7","d":"2024-02-29"}`,
		`{"k":6,"g":"b","v":"abc","d":"2024-02-28T23:00:00"}`,
		`{"k":7,"g":"b","v":3}`,
		`{"k":8,"g":"big","v":9007199254740993}`,
		`{"k":9,"g":"big","v":4611686018427387904}`,
		`{"k":10,"g":"big","v":0.1}`,
		`{"k":11,"g":"big","v":-4611686018427387903}`,
		`{"k":12,"g":null,"v":5}`,
		`{"k":13,"g":null,"v":6}`,
		`{"k":14,"g":1,"v":0.1}`,
		`{"k":15,"g":1,"v":0.2}`,
		`{"k":16,"g":1,"v":0.3}`,
		`{"k":17,"g":"1","v":"x"}`,
		`{"k":18,"g":"nulls","v":null,"d":null}`,
	}
	mixedSummaries := []any{
		map[string]any{"table": "m", "group_by": []any{"g"}, "fields": []any{
			map[string]any{"as": "s", "op": "sum", "column": "v"},
			map[string]any{"as": "a", "op": "mean", "column": "v", "round": 3},
			map[string]any{"as": "n", "op": "count"},
			map[string]any{"as": "nd", "op": "count_distinct", "column": "v"},
			map[string]any{"as": "lo", "op": "min", "column": "v"},
			map[string]any{"as": "hi", "op": "max", "column": "v"},
			map[string]any{"as": "span", "op": "day_span", "column": "d"},
		}},
	}
	mixedOracle := map[string]string{
		"m": `SELECT g, sum(v), round(avg(v), 3), count(*), count(DISTINCT v), min(v), max(v),
			CAST(julianday(max(d)) - julianday(min(d)) AS INTEGER) FROM t GROUP BY g`,
	}

	// A run that gives some keys twice: its upsert replaces rows it wrote.
	again := append(salesRun(500, 0), salesRun(50, 7)...)

	// Rows without a customer, before and after the customers: SQL's
	// GROUP BY gives them one group, whose key is NULL. The first comes
	// when the largest customer so far is 41, so a summary table whose
	// INTEGER key stood for the rowid would number that group 42, the
	// next customer's id.
	noCustomer := []string{
		`{"k":1,"c":41,"v":1.5}`,
		`{"k":2,"c":null,"v":2}`,
		`{"k":3,"c":42,"v":4}`,
		`{"k":4,"v":8}`,
		`{"k":5,"c":41,"v":16}`,
	}
	noCustomerSummaries := []any{
		map[string]any{"table": "by_c", "group_by": []any{"c"}, "fields": []any{
			map[string]any{"as": "s", "op": "sum", "column": "v"},
			map[string]any{"as": "n", "op": "count"},
		}},
	}
	noCustomerOracle := map[string]string{"by_c": `SELECT c, sum(v), count(*) FROM t GROUP BY c`}
	noCustomerColumns := []any{
		map[string]any{"name": "k", "type": "INTEGER"},
		map[string]any{"name": "c", "type": "INTEGER"},
		map[string]any{"name": "v", "type": "REAL"},
	}

	// Integer groups that start in the map (an id too large for the dense
	// index while there are few groups) and move to the dense index once
	// there are groups enough, negative and very large ones that never do, distinct sets
	// past their inline bitmap and with negative members (a map), text
	// bounds short enough to keep inline, longer, and empty.
	var spread []string
	row := func(k int, c any, v int, s string) {
		js, err := json.Marshal(map[string]any{"k": k, "c": c, "v": v, "s": s})
		if err != nil {
			t.Fatal(err)
		}
		spread = append(spread, string(js))
	}
	row(1, 30000, 1, "short")
	for i := range 20000 {
		v := i * 7 % 1300
		if i%101 == 100 {
			v = -1 - i%7
		}
		row(2+i, i%7000, v, strings.Repeat("x", i%31)+strconv.Itoa(i%13))
	}
	for i, c := range []any{30000, -5, nil, 30000, -5, 7001, int64(1) << 40, int64(1) << 40} {
		row(30000+i, c, 600+i, strconv.Itoa(i))
	}
	spreadSummaries := []any{
		map[string]any{"table": "by_c", "group_by": []any{"c"}, "fields": []any{
			map[string]any{"as": "total", "op": "sum", "column": "v"},
			map[string]any{"as": "n", "op": "count"},
			map[string]any{"as": "nv", "op": "count_distinct", "column": "v"},
			map[string]any{"as": "lo", "op": "min", "column": "s"},
			map[string]any{"as": "hi", "op": "max", "column": "s"},
		}},
		map[string]any{"table": "by_s", "group_by": []any{"s"}, "fields": []any{
			map[string]any{"as": "n", "op": "count"},
			map[string]any{"as": "nc", "op": "count_distinct", "column": "c"},
			map[string]any{"as": "top", "op": "max", "column": "v"},
		}},
	}
	spreadOracle := map[string]string{
		"by_c": `SELECT c, sum(v), count(*), count(DISTINCT v), min(s), max(s) FROM t GROUP BY c`,
		"by_s": `SELECT s, count(*), count(DISTINCT c), max(v) FROM t GROUP BY s`,
	}
	spreadColumns := []any{
		map[string]any{"name": "k", "type": "INTEGER"},
		map[string]any{"name": "c", "type": "INTEGER"},
		map[string]any{"name": "v", "type": "INTEGER"},
		map[string]any{"name": "s", "type": "TEXT"},
	}

	// from is how each run's summaries must be made: "rows" as they are
	// written (livesummary.go: the table was empty, nothing replaced) or
	// "scan" of the table.
	for _, tc := range []struct {
		name      string
		create    string // the table, made before the output connects, or ""
		conf      map[string]any
		runs      []service.MessageBatch
		from      []string
		oracle    map[string]string
		summaries []any
	}{
		{
			name:   "sales, two runs, the second replacing rows and adding more",
			conf:   map[string]any{"table": "sales", "columns": salesColumns(), "key": salesKey},
			runs:   []service.MessageBatch{salesRun(500, 0), salesRun(9000, 3)},
			from:   []string{"rows", "scan"},
			oracle: salesOracle, summaries: salesSummaries,
		},
		{
			name:   "sales, one run replacing some of its own rows",
			conf:   map[string]any{"table": "sales", "columns": salesColumns(), "key": salesKey},
			runs:   []service.MessageBatch{again},
			from:   []string{"scan"},
			oracle: salesOracle, summaries: salesSummaries,
		},
		{
			name:   "sales into a WITHOUT ROWID table, scanned in key order",
			conf:   map[string]any{"table": "sales", "columns": salesColumns(), "key": salesKey, "without_rowid": true},
			runs:   []service.MessageBatch{salesRun(500, 0)},
			from:   []string{"scan"},
			oracle: salesOracle, summaries: salesSummaries,
		},
		{
			// A trigger changes what the table holds: the rows as written
			// would give other summaries than the table.
			name: "sales into a table with a trigger",
			create: `CREATE TABLE sales (date TEXT NOT NULL, product_id INTEGER NOT NULL, quantity INTEGER, price REAL,
				customer_id INTEGER NOT NULL, total_amount REAL, PRIMARY KEY (date, product_id, customer_id));
				CREATE TRIGGER double_quantity AFTER INSERT ON sales BEGIN
					UPDATE sales SET quantity = 2 * quantity WHERE rowid = NEW.rowid;
				END`,
			conf:   map[string]any{"table": "sales", "columns": salesColumns(), "key": salesKey},
			runs:   []service.MessageBatch{salesRun(500, 0)},
			from:   []string{"scan"},
			oracle: salesOracle, summaries: salesSummaries,
		},
		{
			name:   "SQLite's rules on mixed values",
			create: "CREATE TABLE t (k INTEGER PRIMARY KEY, g, v, d TEXT)",
			conf:   map[string]any{"table": "t", "key": []any{"k"}},
			runs:   []service.MessageBatch{batchOf(mixed...)},
			from:   []string{"scan"},
			oracle: mixedOracle, summaries: mixedSummaries,
		},
		{
			name:   "a NULL group of an INTEGER column, from the rows and from a scan",
			conf:   map[string]any{"table": "t", "key": []any{"k"}, "columns": noCustomerColumns},
			runs:   []service.MessageBatch{batchOf(noCustomer...), batchOf(noCustomer...)},
			from:   []string{"rows", "scan"},
			oracle: noCustomerOracle, summaries: noCustomerSummaries,
		},
		{
			name:   "integer groups from sparse to dense, long and short text bounds, large and negative distinct values",
			conf:   map[string]any{"table": "t", "key": []any{"k"}, "columns": spreadColumns},
			runs:   []service.MessageBatch{batchOf(spread...), batchOf(spread[:100]...)},
			from:   []string{"rows", "scan"},
			oracle: spreadOracle, summaries: spreadSummaries,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			if tc.create != "" {
				if _, err := openDB(t, path).Exec(tc.create); err != nil {
					t.Fatal(err)
				}
			}
			conf := map[string]any{"path": path, "transaction": "run", "summaries": tc.summaries}
			for k, v := range tc.conf {
				conf[k] = v
			}
			db := openDB(t, path)
			for i, run := range tc.runs {
				o, err := runOutput(t, conf, run)
				if err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
				if from := o.summarisedBy == summariesFromRows; from != (tc.from[i] == "rows") {
					t.Errorf("run %d: summaries from %s, want from the %s", i, o.summarisedBy, tc.from[i])
				}
				for table, q := range tc.oracle {
					want := exactRows(t, db, q)
					got := exactRows(t, db, "SELECT * FROM "+table)
					if len(want) == 0 {
						t.Fatalf("run %d: the oracle for %s has no rows", i, table)
					}
					if !slices.Equal(got, want) {
						t.Errorf("run %d: summary %s:\n got %q\nwant %q", i, table, got, want)
					}
				}
			}
		})
	}
}

// TestSummaryTables: the summary tables exist, typed after the columns
// they read, as soon as the output connects; an overflowing integer sum
// fails the run as SQLite's sum() would, naming the summary and the
// column, and rolls the run back.
func TestSummaryTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	conf := map[string]any{
		"path": path, "table": "sales", "columns": salesColumns(), "key": salesKey, "transaction": "run",
		"summaries": []any{map[string]any{"table": "daily", "group_by": []any{"date"}, "fields": []any{
			map[string]any{"as": "revenue", "op": "sum", "column": "total_amount"},
			map[string]any{"as": "quantity", "op": "sum", "column": "quantity"},
			map[string]any{"as": "avg_price", "op": "mean", "column": "price"},
			map[string]any{"as": "orders", "op": "count"},
			map[string]any{"as": "first_sale", "op": "min", "column": "date"},
			map[string]any{"as": "span", "op": "day_span", "column": "date"},
		}}},
	}
	rows := sales(3, 0)
	big := lines(t, rows)
	for i := range big {
		big[i] = strings.Replace(big[i], fmt.Sprintf(`"quantity":%d`, rows[i].Quantity), `"quantity":4611686018427387904`, 1)
		big[i] = strings.Replace(big[i], `"date":"2024-01-0`+strconv.Itoa(i+1), `"date":"2024-01-01`, 1)
	}
	err := runOnce(t, conf, batchOf(big...))
	if err == nil || !strings.Contains(err.Error(), "summaries (daily): quantity: sum of \"quantity\": integer overflow") || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("an overflowing sum: %v", err)
	}
	db := openDB(t, path)
	// The run was the file's first: it leaves no table, not even empty.
	if got := literals(t, db, "SELECT count(*) FROM sqlite_schema"); got[0] != "0" {
		t.Errorf("%s objects in the database after a failed first run, want none", got[0])
	}

	if err := runOnce(t, conf, batchOf(lines(t, rows)...)); err != nil {
		t.Fatal(err)
	}
	got := literals(t, db, "SELECT name || ' ' || type || ' ' || pk FROM pragma_table_info('daily')")
	want := []string{"date TEXT 1", "revenue REAL 0", "quantity INTEGER 0", "avg_price REAL 0", "orders INTEGER 0", "first_sale TEXT 0", "span INTEGER 0"}
	if !slices.Equal(got, want) {
		t.Errorf("daily's columns:\n got %q\nwant %q", got, want)
	}
	if n := count(t, db, "daily"); n != 3 {
		t.Errorf("daily has %d rows, want 3", n)
	}
}

// TestSummaryConfig: mistakes in summaries are refused with the field
// that is wrong, at config time or, for columns the table lacks, at
// connection.
func TestSummaryConfig(t *testing.T) {
	sum := func(fields ...any) []any {
		if fields == nil {
			fields = []any{}
		}
		return []any{map[string]any{"table": "daily", "group_by": []any{"date"}, "fields": fields}}
	}
	field := func(as, op, column string) map[string]any {
		return map[string]any{"as": as, "op": op, "column": column}
	}
	for _, tc := range []struct {
		name      string
		mode      string
		summaries []any
		want      string
	}{
		{"batch mode", "batch", sum(field("r", "sum", "total_amount")), "summaries needs transaction: run"},
		{"the output's own table", "run", []any{map[string]any{"table": "sales", "group_by": []any{"date"}, "fields": []any{field("r", "sum", "price")}}}, "is the output's table or another summary's"},
		{"two summaries, one table", "run", append(sum(field("r", "sum", "price")), sum(field("q", "sum", "quantity"))...), "is the output's table or another summary's"},
		{"no group_by", "run", []any{map[string]any{"table": "t", "group_by": []any{}, "fields": []any{field("r", "sum", "price")}}}, "group_by needs at least one column"},
		{"no fields", "run", sum(), "fields: at least one is required"},
		{"an unknown op", "run", sum(field("r", "median", "price")), `op "median" is not one of`},
		{"count with a column", "run", sum(field("n", "count", "price")), "count counts rows and takes no column"},
		{"sum without a column", "run", sum(field("r", "sum", "")), "sum needs a column"},
		{"a name used twice", "run", sum(field("date", "max", "price")), `"date" names two columns of the summary`},
		{"round on a count", "run", sum(map[string]any{"as": "n", "op": "count_distinct", "column": "price", "round": 2}), "round applies to sum, mean, min and max"},
		{"a column the table lacks", "run", sum(field("r", "sum", "revenue")), `summaries (daily): the table has no column "revenue"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTestOutput(t, map[string]any{"path": "x.db", "table": "sales", "columns": salesColumns(), "transaction": tc.mode, "summaries": tc.summaries})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// Without columns in the config, the table's are checked at connection,
	// which fails the run (summaries need run mode).
	path := filepath.Join(t.TempDir(), "s.db")
	if _, err := openDB(t, path).Exec("CREATE TABLE sales (date TEXT, price REAL)"); err != nil {
		t.Fatal(err)
	}
	res := service.MockResources()
	o, err := newTestOutputIn(t, map[string]any{"path": path, "table": "sales", "transaction": "run", "summaries": sum(field("r", "sum", "total_amount"))}, res)
	if err != nil {
		t.Fatal(err)
	}
	err = o.Connect(context.Background())
	if why := runscope.ForStream(res).Failed(); err != nil || why == nil || !strings.Contains(why.Error(), `the table has no column "total_amount" (it has [date, price])`) {
		t.Errorf("connect with a column the table lacks: %v, the run's failure %v", err, why)
	}
}

// TestIntSet: the set counts each member once whether it is a bitmap, a
// map, or a bitmap that became a map midway (a negative or a sparse value,
// or a field whose bitmaps reached their budget).
func TestIntSet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		values  []int64
		budget  bitBudget // the field's budget used before this set
		wantMap bool
	}{
		{"dense ids", []int64{5, 3, 5, 4095, 0, 3, 63, 64}, bitBudget{}, false},
		{"a negative value", []int64{1, 2, -7, 2, 1, -7}, bitBudget{}, true},
		{"sparse: one huge id", []int64{1, 2, 1 << 40, 2}, bitBudget{}, true},
		{"the field's budget spent", []int64{10, 20, 10}, bitBudget{words: 4*1 + 8192, members: 0}, true},
		{"ids above 4096 grow the bitmap", []int64{4000, 9000, 4000, 70000, 9000}, bitBudget{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s intSet
			b := tc.budget
			want := map[int64]bool{}
			for _, v := range tc.values {
				s.add(v, &b)
				want[v] = true
			}
			if s.len() != len(want) {
				t.Errorf("len %d, want %d", s.len(), len(want))
			}
			if (s.m != nil) != tc.wantMap {
				t.Errorf("a map: %v, want %v", s.m != nil, tc.wantMap)
			}
			if s.m != nil && (len(s.bits) != 0 || b.members != tc.budget.members || b.words != tc.budget.words) {
				t.Errorf("a map still holds %d bitmap words, budget %+v (was %+v)", len(s.bits), b, tc.budget)
			}
		})
	}
}

// TestSummariesOfAnInferredTable: with no columns configured and no table
// yet, the table comes from the first batch and its summaries are created
// and filled at the end of the run; a summary naming a column the first
// batch did not have fails the run, naming the column, and rolls it back.
func TestSummariesOfAnInferredTable(t *testing.T) {
	rows := lines(t, sales(40, 0))
	for _, tc := range []struct {
		name    string
		column  string
		wantErr string
	}{
		{"a column the rows have", "total_amount", ""},
		{"a column they lack", "revenue", `summaries (days): the table has no column "revenue"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			conf := map[string]any{"path": path, "table": "sales", "transaction": "run", "summaries": []any{
				map[string]any{"table": "days", "group_by": []any{"date"}, "fields": []any{
					map[string]any{"as": "revenue", "op": "sum", "column": tc.column, "round": 2},
				}},
			}}
			err := runOnce(t, conf, batchOf(rows...))
			db := openDB(t, path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if n := literals(t, db, "SELECT count(*) FROM sqlite_master WHERE name = 'sales'"); n[0] != "0" {
					t.Errorf("the inferred table survived a failed run")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := exactRows(t, db, "SELECT date, round(sum(total_amount), 2) FROM sales GROUP BY date")
			if got := exactRows(t, db, "SELECT * FROM days"); len(want) != 28 || !slices.Equal(got, want) {
				t.Errorf("days:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestSummaryKeyRowid: a summary grouped by one INTEGER column gets a key
// that can hold the NULL group (rows without the column's value); a
// summary table an earlier agent made with that column as an INTEGER
// PRIMARY KEY (SQLite's rowid, which numbers a NULL itself) fails the
// run when such a group comes, saying what to do, and the run is rolled
// back; without one, the table serves as before.
func TestSummaryKeyRowid(t *testing.T) {
	columns := []any{
		map[string]any{"name": "k", "type": "INTEGER"},
		map[string]any{"name": "c", "type": "INTEGER"},
		map[string]any{"name": "v", "type": "REAL"},
	}
	summaries := []any{map[string]any{"table": "by_c", "group_by": []any{"c"}, "fields": []any{
		map[string]any{"as": "n", "op": "count"},
	}}}
	withNull := batchOf(`{"k":1,"c":7,"v":1}`, `{"k":2,"v":2}`)
	for _, tc := range []struct {
		name    string
		create  string
		rows    service.MessageBatch
		wantErr string
		want    []string // by_c's rows, when the run succeeds
	}{
		{
			name: "a new table", rows: withNull,
			want: []string{"<nil> 1", "7 1"},
		},
		{
			name: "an earlier agent's table, no NULL group", rows: batchOf(`{"k":1,"c":7,"v":1}`),
			create: "CREATE TABLE by_c (c INTEGER, n INTEGER, PRIMARY KEY (c))",
			want:   []string{"7 1"},
		},
		{
			name: "an earlier agent's table and a NULL group", rows: withNull,
			create:  "CREATE TABLE by_c (c INTEGER, n INTEGER, PRIMARY KEY (c))",
			wantErr: `summaries (by_c): rows whose "c" is NULL make a group of their own, and the table's key "c" is an INTEGER PRIMARY KEY, SQLite's rowid, which cannot hold NULL; drop the table`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			db := openDB(t, path)
			if tc.create != "" {
				if _, err := db.Exec(tc.create); err != nil {
					t.Fatal(err)
				}
			}
			conf := map[string]any{"path": path, "table": "t", "key": []any{"k"}, "columns": columns, "transaction": "run", "summaries": summaries}
			err := runOnce(t, conf, tc.rows)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "rolled back") {
					t.Fatalf("got %v, want an error with %q, rolled back", err, tc.wantErr)
				}
				if got := literals(t, db, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"); got[0] != "0" {
					t.Errorf("the failed run left table t")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := literals(t, db, "SELECT coalesce(c, '<nil>') || ' ' || n FROM by_c ORDER BY c")
			if !slices.Equal(got, tc.want) {
				t.Errorf("by_c: got %q, want %q", got, tc.want)
			}
		})
	}
}
