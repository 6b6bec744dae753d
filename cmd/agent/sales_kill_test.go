package main

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// genSalesCSV writes n rows in the seed's columns, all valid, with dates
// over 60 days and 2000 customers; it returns the distinct days and
// customers, the sizes of the two summaries.
func genSalesCSV(t *testing.T, path string, n int) (days, customers int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("date,product_id,quantity,price,customer_id\n")
	ds, cs := map[int]bool{}, map[int]bool{}
	for i := range n {
		d, c := rng.IntN(60), 1+rng.IntN(2000)
		ds[d], cs[c] = true, true
		// i in the price keeps every row distinct: none is a duplicate.
		fmt.Fprintf(&b, "%s,%d,%d,%d.%02d,%d\n", time.Date(2025, 1, 1+d, 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			1+rng.IntN(500), 1+rng.IntN(5), 1+rng.IntN(900), i%100, c)
	}
	writeFile(t, path, b.String())
	return len(ds), len(cs)
}

// TestSalesETLKilledMidway: the agent SIGKILLed while its first run is
// loading leaves each SQLite table as it was (absent: not even created
// empty) or complete, never some of the run's rows, and every Parquet
// file whole; the next run completes them all.
func TestSalesETLKilledMidway(t *testing.T) {
	const rows = 60000
	for _, tc := range []struct {
		name string
		// loading reports whether the load has visibly begun in out.
		loading func(out string) bool
	}{
		{"while SQLite writes", func(out string) bool {
			st, err := os.Stat(filepath.Join(out, "sales.db-wal"))
			return err == nil && st.Size() > 1<<20
		}},
		{"while Parquet writes", func(out string) bool {
			m, _ := filepath.Glob(filepath.Join(out, "*.parquet.tmp"))
			return len(m) > 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			csvPath := filepath.Join(dir, "sales.csv")
			days, customers := genSalesCSV(t, csvPath, rows)
			out := filepath.Join(dir, "out")
			env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=",
				"SALES_CSV="+csvPath, "SALES_OUT="+out)
			p := startPipeline(t, dir, env, "--pipeline", "builtin:sales_etl")
			waitForLoad(t, p, func() bool { return tc.loading(out) })
			p.stop(syscall.SIGKILL)

			want := map[string]int{"sales_data": rows, "daily_summary": days, "customer_summary": customers}
			check := func(after string, mayBeAbsent bool) {
				t.Helper()
				if db := filepath.Join(out, "sales.db"); fileExists(db) {
					conn, err := sql.Open("sqlite3", "file:"+db)
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					for table, n := range want {
						var got int
						err := conn.QueryRow("SELECT count(*) FROM " + table).Scan(&got)
						if err != nil && mayBeAbsent && strings.Contains(err.Error(), "no such table") {
							continue
						}
						if err != nil || got != n {
							t.Errorf("%s: %s has %d rows (%v), want %d or no table", after, table, got, err, n)
						}
					}
				} else if !mayBeAbsent {
					t.Errorf("%s: no sales.db", after)
				}
				files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
				if len(files) == 0 && !mayBeAbsent {
					t.Errorf("%s: no Parquet file", after)
				}
				for _, f := range files {
					rs, err := parquet.ReadFile[struct {
						Line int64 `parquet:"line"`
					}](f)
					if err != nil || len(rs) != rows {
						t.Errorf("%s: %s holds %d rows (%v), want all %d", after, f, len(rs), err, rows)
					}
				}
			}
			check("after the kill", true)

			// The next run, as the retry or the next schedule would: it
			// removes the .tmp the killed run left (never acknowledged,
			// nobody holds its lock; empty if the kill came before its
			// first page), saying so, and completes everything.
			leftovers, _ := filepath.Glob(filepath.Join(out, "*.parquet.tmp"))
			res := runAgent(t, dir, env, "--pipeline", "builtin:sales_etl")
			if res.code != 0 {
				t.Fatalf("run after the kill: %s", res)
			}
			check("after the next run", false)
			for _, f := range leftovers {
				if fileExists(f) || !strings.Contains(res.stderr, "removed "+f) {
					t.Errorf("after the next run: %s, left by the killed run, is there (%v) or its removal not logged:\n%s", f, fileExists(f), res.stderr)
				}
			}
		})
	}
}

// waitForLoad returns once loading reports that the run's load has begun;
// it fails the test if the run ends first or runTimeout passes.
func waitForLoad(t *testing.T, p *agentProc, loading func() bool) {
	t.Helper()
	deadline := time.Now().Add(runTimeout)
	for !loading() {
		select {
		case <-p.done:
			t.Fatalf("the run finished before the load was seen; make the input larger\n%s", p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load did not begin within %s\n%s", runTimeout, p.stderr)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// writeJob writes dir/job.yaml: a batch job reading the CSV files paths
// matches (one int column, a), retried once, its timeout an hour (a run
// left to wait for it would hit the test's own deadline instead), into
// the outputs (items of a fan_out broker's list, as YAML).
func writeJob(t *testing.T, dir, paths, outputs string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(`
input:
  csv_file:
    paths: [%q]
    columns: [{name: a, type: int}]
schedule: {retries: 1, backoff: 10ms, timeout: 1h}
output:
  broker:
    pattern: fan_out
    outputs:%s`, paths, outputs))
}

// runFailingTwice runs dir/job.yaml (one retry), which must fail both
// attempts, the agent saying why (want).
func runFailingTwice(t *testing.T, dir, want string) result {
	t.Helper()
	res := runAgent(t, dir, append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS="), "--pipeline", filepath.Join(dir, "job.yaml"))
	if res.code == 0 || !strings.Contains(res.stderr, want) {
		t.Fatalf("want a failure saying %s: %s", want, res)
	}
	if n := strings.Count(res.stderr, "ok=false"); n != 2 || strings.Contains(res.stderr, "ok=true") {
		t.Errorf("%d failed run outcomes, want 2 (a retry): %s", n, res)
	}
	return res
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestBatchRunFailures: a batch run whose input cannot be read, or one of
// whose outputs cannot write, fails at once with the reason, each
// attempt, and publishes nothing (not even an empty rejects file, nor the
// outputs' directory); a run stopped by a shutdown before the end of its
// input is reported as failed, not as a success, and publishes nothing.
func TestBatchRunFailures(t *testing.T) {
	t.Run("missing input", func(t *testing.T) {
		dir := t.TempDir()
		outDir := filepath.Join(dir, "out")
		out, db := filepath.Join(outDir, "rejects.csv"), filepath.Join(outDir, "a.db")
		writeJob(t, dir, filepath.Join(dir, "missing-*.csv"), fmt.Sprintf(`
      - csv_file:
          path: %q
          transaction: run
          columns: [{name: a, value: '${! json("a") }'}]
      - sqlite:
          path: %q
          table: a
          transaction: run
          columns: [{name: a, type: INTEGER}]
`, out, db))
		runFailingTwice(t, dir, `csv_file: paths: \"`+filepath.Join(dir, "missing-*.csv")+`\" matches no file`)
		// Not even the outputs' directory: the run changed nothing.
		if fileExists(outDir) {
			m, _ := filepath.Glob(filepath.Join(outDir, "*"))
			t.Errorf("%s (holding %v) was made by a run that read nothing", outDir, m)
		}
	})
	t.Run("an output that cannot write", func(t *testing.T) {
		// The Parquet file's directory cannot be made (a file is in the
		// way), which the output finds at its first batch: retrying the
		// batch would never mend it, so the run fails at once with that
		// reason, not at its timeout (an hour) as "did not finish".
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "in.csv"), "a\n1\n2\n")
		writeFile(t, filepath.Join(dir, "blocker"), "not a directory")
		writeJob(t, dir, filepath.Join(dir, "in.csv"), fmt.Sprintf(`
      - parquet:
          path: %q
          transaction: run
      - csv_file:
          path: %q
          transaction: run
          columns: [{name: a, value: '${! json("a") }'}]
`, filepath.Join(dir, "blocker", "a.parquet"), filepath.Join(dir, "out", "a.csv")))
		res := runFailingTwice(t, dir, "parquet output: ")
		if !strings.Contains(res.stderr, "not a directory") || strings.Contains(res.stderr, "timeout of") {
			t.Errorf("want the parquet output's error, not a timeout: %s", res)
		}
		if fileExists(filepath.Join(dir, "out", "a.csv")) {
			t.Errorf("the csv_file output published a run that failed")
		}
	})
	t.Run("an output that cannot connect", func(t *testing.T) {
		// An earlier run's table lacks the column the job now writes:
		// the sqlite output finds it at connect, where Benthos would try
		// again until the run's timeout; the run fails at once saying so.
		dir := t.TempDir()
		db := filepath.Join(dir, "a.db")
		conn, err := sql.Open("sqlite3", "file:"+db+"?_pragma=journal_mode(wal)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec("CREATE TABLE a (b INTEGER)"); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
		writeFile(t, filepath.Join(dir, "in.csv"), "a\n1\n2\n")
		writeJob(t, dir, filepath.Join(dir, "in.csv"), fmt.Sprintf(`
      - sqlite:
          path: %q
          table: a
          transaction: run
          columns: [{name: a, type: INTEGER}]
`, db))
		res := runFailingTwice(t, dir, `table \"a\" has no column \"a\"`)
		if strings.Contains(res.stderr, "timeout of") {
			t.Errorf("the failure is reported as a timeout: %s", res)
		}
	})
	t.Run("shutdown midway", func(t *testing.T) {
		dir := t.TempDir()
		csvPath := filepath.Join(dir, "sales.csv")
		genSalesCSV(t, csvPath, 60000)
		out := filepath.Join(dir, "out")
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=",
			"SALES_CSV="+csvPath, "SALES_OUT="+out)
		p := startPipeline(t, dir, env, "--pipeline", "builtin:sales_etl")
		waitForLoad(t, p, func() bool {
			m, _ := filepath.Glob(filepath.Join(out, "*.parquet.tmp"))
			return len(m) > 0
		})
		p.stop(syscall.SIGTERM)
		stderr := p.stderr.String()
		if !strings.Contains(stderr, "the run was stopped before the end of its input") || strings.Contains(stderr, "run succeeded") || strings.Contains(stderr, "ok=true") {
			t.Errorf("a run stopped midway is not reported as failed:\n%s", stderr)
		}
		// Its outputs had taken batches, all rolled back: none went out.
		if !strings.Contains(stderr, "rows_out=0 rows_rejected=0") {
			t.Errorf("the stopped run's outcome counts rows out that were rolled back:\n%s", stderr)
		}
		for _, name := range []string{"rejects.csv", "*.parquet"} {
			if m, _ := filepath.Glob(filepath.Join(out, name)); len(m) > 0 {
				t.Errorf("%v published by a run stopped midway", m)
			}
		}
		// The run was sales.db's first: it leaves no table in it.
		conn, err := sql.Open("sqlite3", "file:"+filepath.Join(out, "sales.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var tables string
		if err := conn.QueryRow("SELECT coalesce(group_concat(name), '') FROM sqlite_schema").Scan(&tables); err != nil || tables != "" {
			t.Errorf("sales.db holds %q (%v) after a first run stopped midway, want nothing", tables, err)
		}
	})
}
