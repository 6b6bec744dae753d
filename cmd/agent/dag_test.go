package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

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
	return recs[1:]
}

func readParquet[T any](t *testing.T, dir, source string) []T {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "processed_"+source+"_*.parquet"))
	if len(files) != 1 {
		t.Fatalf("%s: %d Parquet files, want one per run: %v", source, len(files), files)
	}
	rows, err := parquet.ReadFile[T](files[0])
	if err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	return rows
}

// TestMLDag runs the seed's Airflow DAG as its pipeline: the first run of
// the hourly schedule over the embedded samples writes one Parquet file per
// source, and every transform equals the DAG's, computed here from the
// CSVs: forward-filled gaps, engagement_score and the median split,
// pandas.cut price categories, and the timestamp features.
func TestMLDag(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "DAG_OUT="+out)
	p := startPipeline(t, dir, env, "--pipeline", "builtin:ml_dag")
	p.waitLog("run succeeded")
	p.waitLog("next run")
	p.stop(syscall.SIGTERM)

	// user_behavior
	users := readCSV(t, "../../pipelines/sample/user_behavior.csv")
	type user struct {
		UserID int64   `parquet:"user_id"`
		Views  int64   `parquet:"page_views"`
		Score  float64 `parquet:"engagement_score"`
		Active bool    `parquet:"is_active_user"`
	}
	got := readParquet[user](t, out, "user_behavior")
	if len(got) != len(users) {
		t.Fatalf("user_behavior: %d rows, want %d", len(got), len(users))
	}
	var scores []float64
	views := make([]int64, len(users))
	for i, r := range users {
		v, err := strconv.ParseInt(r[1], 10, 64)
		if err != nil { // a gap: pandas' ffill takes the row before's
			v = views[i-1]
		}
		views[i] = v
		d, _ := strconv.ParseFloat(r[2], 64)
		scores = append(scores, float64(v)*0.3+d*0.7)
	}
	sorted := append([]float64(nil), scores...)
	sort.Float64s(sorted)
	median := (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	for i, g := range got {
		if g.UserID != int64(i+1) || g.Views != views[i] || g.Score-scores[i] > 1e-9 || scores[i]-g.Score > 1e-9 || g.Active != (scores[i] > median) {
			t.Errorf("user_behavior row %d: %+v, want views %d score %v active %v", i+1, g, views[i], scores[i], scores[i] > median)
		}
	}

	// Each file has the DAG's columns, typed as pandas writes them (the
	// times as Parquet timestamps), and no more: not the median the
	// pipeline puts beside each row to split on.
	for source, want := range dagColumns() {
		if got, _ := parquetColumns(t, out, source); got != want {
			t.Errorf("%s columns:\n%s\nwant\n%s", source, got, want)
		}
	}
	type stamped struct {
		TS int64 `parquet:"timestamp"`
	}
	times := txsTimes(t)
	for i, r := range readParquet[stamped](t, out, "transaction_history") {
		if want, _ := time.Parse("2006-01-02 15:04:05", times[i]); r.TS != want.UnixMicro() {
			t.Errorf("transaction row %d: timestamp %d µs, want %s", i+1, r.TS, want)
			break
		}
	}

	// product_catalog
	products := readCSV(t, "../../pipelines/sample/product_catalog.csv")
	type product struct {
		Price    float64 `parquet:"price"`
		Category *string `parquet:"price_category,optional"`
	}
	gotP := readParquet[product](t, out, "product_catalog")
	if len(gotP) != len(products) {
		t.Fatalf("product_catalog: %d rows, want %d", len(gotP), len(products))
	}
	for i, r := range products {
		price, _ := strconv.ParseFloat(r[2], 64)
		want := "premium"
		switch {
		case price <= 50:
			want = "budget"
		case price <= 200:
			want = "mid-range"
		}
		if gotP[i].Category == nil || *gotP[i].Category != want || gotP[i].Price != price {
			t.Errorf("product row %d: price %v category %v, want %v %s", i+1, gotP[i].Price, gotP[i].Category, price, want)
		}
	}

	// transaction_history
	txs := readCSV(t, "../../pipelines/sample/transaction_history.csv")
	type tx struct {
		ID      int64 `parquet:"transaction_id"`
		Hour    int64 `parquet:"hour_of_day"`
		Day     int64 `parquet:"day_of_week"`
		Weekend bool  `parquet:"is_weekend"`
	}
	gotT := readParquet[tx](t, out, "transaction_history")
	if len(gotT) != len(txs) {
		t.Fatalf("transaction_history: %d rows, want %d", len(gotT), len(txs))
	}
	for i, r := range txs {
		ts, _ := time.Parse("2006-01-02 15:04:05", r[3])
		dow := (int64(ts.Weekday()) + 6) % 7
		if g := gotT[i]; g.Hour != int64(ts.Hour()) || g.Day != dow || g.Weekend != (dow >= 5) {
			t.Errorf("transaction %s at %s: %+v", r[0], r[3], g)
		}
	}
}

// runDAGWithUsers runs the DAG once over the sample product_catalog and
// transaction_history and the given user_behavior.csv, and returns its
// output directory.
func runDAGWithUsers(t *testing.T, users string) string {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, name := range []string{"product_catalog.csv", "transaction_history.csv"} {
		writeFile(t, filepath.Join(in, name), readFileString(t, filepath.Join("../../pipelines/sample", name)))
	}
	writeFile(t, filepath.Join(in, "user_behavior.csv"), users)
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "DAG_IN="+in, "DAG_OUT="+out)
	if res := runAgent(t, dir, env, "--pipeline", "builtin:ml_dag", "--once"); res.code != 0 {
		t.Fatalf("run: %s", res)
	}
	return out
}

// dagColumns are the columns of each source's Parquet file, as name:type.
func dagColumns() map[string]string {
	return map[string]string{
		"user_behavior":       "user_id:INT(64,true) page_views:INT(64,true) session_duration:INT(64,true) timestamp:TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) engagement_score:DOUBLE is_active_user:BOOLEAN",
		"product_catalog":     "product_id:INT(64,true) category:STRING price:DOUBLE rating:DOUBLE price_category:STRING",
		"transaction_history": "transaction_id:INT(64,true) user_id:INT(64,true) amount:DOUBLE timestamp:TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) hour_of_day:INT(64,true) day_of_week:INT(64,true) is_weekend:BOOLEAN",
	}
}

// parquetColumns opens the one Parquet file of source in dir and gives
// its columns as name:type, and its rows.
func parquetColumns(t *testing.T, dir, source string) (string, int64) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "processed_"+source+"_*.parquet"))
	if len(files) != 1 {
		t.Fatalf("%s: files %v, want one", source, files)
	}
	b := readFileString(t, files[0])
	pf, err := parquet.OpenFile(strings.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, f := range pf.Schema().Fields() {
		cols = append(cols, f.Name()+":"+f.Type().String())
	}
	return strings.Join(cols, " "), pf.NumRows()
}

func txsTimes(t *testing.T) []string {
	t.Helper()
	var ts []string
	for _, r := range readCSV(t, "../../pipelines/sample/transaction_history.csv") {
		ts = append(ts, r[3])
	}
	return ts
}

// TestMLDagRuns: a DAG run whose output cannot write fails, says why,
// exits 1 under --once and leaves no file of any source (before, the run
// was logged ok and exited 0 with nothing written); a run again within
// the same minute replaces that minute's files, as the DAG's to_parquet
// does (before, it too was logged ok with nothing written).
func TestMLDagRuns(t *testing.T) {
	shipped, err := os.ReadFile("../../pipelines/ml_dag.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("an output that cannot write", func(t *testing.T) {
		dir := t.TempDir()
		// The shipped DAG, retried once at once rather than 3 times 5 minutes apart.
		job := strings.Replace(strings.Replace(string(shipped), "retries: 3", "retries: 1", 1), "backoff: 5m", "backoff: 10ms", 1)
		writeFile(t, filepath.Join(dir, "dag.yaml"), job)
		writeFile(t, filepath.Join(dir, "blocker"), "not a directory")
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=",
			"DAG_OUT="+filepath.Join(dir, "blocker", "out"))
		res := runAgent(t, dir, env, "--pipeline", filepath.Join(dir, "dag.yaml"), "--once")
		if res.code != 1 || !strings.Contains(res.stderr, "not a directory") || strings.Count(res.stderr, "ok=false") != 2 || strings.Contains(res.stderr, "ok=true") {
			t.Fatalf("want two failed runs saying the directory cannot be made, exit 1: %s", res)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*", "*.parquet*")); len(m) > 0 {
			t.Errorf("a failed run left %v", m)
		}
	})
	t.Run("rejected rows, gaps in every source", func(t *testing.T) {
		// The samples, one transaction's amount not a number: it is in
		// rejects.csv with its source, file, line, reason and text, not in
		// the Parquet file; a second run replaces rejects.csv rather than
		// adding to it. Product 3's price is missing: forward-filled from
		// product 2's (the DAG fills every source), with its category.
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
		// The sample with cell col of line (0: the header) set to value.
		edited := map[string]struct {
			line, col int
			value     string
		}{"transaction_history.csv": {4, 2, "abc"}, "product_catalog.csv": {3, 2, ""}}
		for _, name := range []string{"user_behavior.csv", "product_catalog.csv", "transaction_history.csv"} {
			text := readFileString(t, filepath.Join("../../pipelines/sample", name))
			if e, ok := edited[name]; ok {
				lines := strings.SplitAfter(text, "\n")
				f := strings.Split(lines[e.line], ",")
				f[e.col] = e.value
				lines[e.line] = strings.Join(f, ",")
				text = strings.Join(lines, "")
			}
			writeFile(t, filepath.Join(in, name), text)
		}
		bad := strings.TrimSpace(strings.SplitAfter(readFileString(t, filepath.Join(in, "transaction_history.csv")), "\n")[4])
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "DAG_IN="+in, "DAG_OUT="+out)
		for run := 1; run <= 2; run++ {
			res := runAgent(t, dir, env, "--pipeline", "builtin:ml_dag", "--once")
			if res.code != 0 {
				t.Fatalf("run %d: %s", run, res)
			}
			// The outcome sums the three sources' loaded rows.
			if !strings.Contains(res.stderr, "rows_in=600 rows_out=599 rows_rejected=1") {
				t.Errorf("run %d: want rows_in=600 rows_out=599 rows_rejected=1 in its outcome: %s", run, res.stderr)
			}
			recs := readCSV(t, filepath.Join(out, "rejects.csv"))
			if len(recs) != 1 || recs[0][0] != "transaction_history" || recs[0][1] != filepath.Join(in, "transaction_history.csv") ||
				recs[0][2] != "5" || !strings.Contains(recs[0][3], "amount") || recs[0][4] != bad {
				t.Errorf("run %d: rejects %q, want line 5 of transaction_history.csv, %q, with its reason", run, recs, bad)
			}
		}
		type product struct {
			ID       int64   `parquet:"product_id"`
			Price    float64 `parquet:"price"`
			Category *string `parquet:"price_category,optional"`
		}
		products := readParquet[product](t, out, "product_catalog")
		samples := readCSV(t, "../../pipelines/sample/product_catalog.csv")
		if p := products[2]; p.ID != 3 || fmt.Sprint(p.Price) != samples[1][2] || p.Category == nil || *p.Category != "premium" {
			t.Errorf("product 3: %+v, want product 2's price %s, premium", p, samples[1][2])
		}
		files, _ := filepath.Glob(filepath.Join(out, "processed_transaction_history_*.parquet"))
		for _, f := range files {
			pf := readFileString(t, f)
			rows, err := parquet.OpenFile(strings.NewReader(pf), int64(len(pf)))
			if err != nil {
				t.Fatal(err)
			}
			if rows.NumRows() != 299 {
				t.Errorf("%s: %d rows, want the sample's 300 but the rejected one", f, rows.NumRows())
			}
		}
	})
	t.Run("a source with no rows", func(t *testing.T) {
		// user_behavior.csv has its header and no rows: its file of the
		// run has the DAG's columns and no rows, as pandas' to_parquet
		// writes an empty DataFrame; the other sources are as ever.
		out := runDAGWithUsers(t, "user_id,page_views,session_duration,timestamp\n")
		for source, want := range dagColumns() {
			wantRows := map[string]int64{"user_behavior": 0, "product_catalog": 100, "transaction_history": 300}[source]
			if got, rows := parquetColumns(t, out, source); got != want || rows != wantRows {
				t.Errorf("%s: %d rows of\n%s\nwant %d of\n%s", source, rows, got, wantRows, want)
			}
		}
	})
	t.Run("a gap nothing fills", func(t *testing.T) {
		// The first user's page_views is missing and no row before it can
		// fill it: as pandas' NaN, no score, left out of the median, not
		// active; the other users are scored against the median of theirs.
		// The file is as pandas writes a frame whose integer columns had a
		// gap (10.0): the integers read back.
		out := runDAGWithUsers(t, "user_id,page_views,session_duration,timestamp\n1,,100.0,2025-01-01 00:00:00\n2,10.0,200.0,2025-01-01 01:00:00\n3,20.0,300.0,2025-01-01 02:00:00\n")
		type user struct {
			ID     int64    `parquet:"user_id"`
			Score  *float64 `parquet:"engagement_score,optional"`
			Active bool     `parquet:"is_active_user"`
		}
		var got []string
		for _, u := range readParquet[user](t, out, "user_behavior") {
			score := "null"
			if u.Score != nil {
				score = fmt.Sprint(*u.Score)
			}
			got = append(got, fmt.Sprint(u.ID, " ", score, " ", u.Active))
		}
		// 10*0.3+200*0.7 = 143, 20*0.3+300*0.7 = 216: the median 179.5.
		if want := []string{"1 null false", "2 143 false", "3 216 true"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("user_behavior: %v, want %v", got, want)
		}
		if recs := readCSV(t, filepath.Join(out, "rejects.csv")); len(recs) != 0 {
			t.Errorf("rejects: %q, want none", recs)
		}
	})
	t.Run("a run again within the minute", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		// Files of an earlier run this minute, or the next one if the
		// minute turns before the run opens its files (in UTC or local
		// time, whichever the agent's clock formats).
		sources := map[string]int{"user_behavior": 200, "product_catalog": 100, "transaction_history": 300}
		now := time.Now()
		var stamps []string
		for _, ts := range []time.Time{now, now.Add(time.Minute), now.UTC(), now.UTC().Add(time.Minute)} {
			if st := ts.Format("20060102_1504"); !slices.Contains(stamps, st) {
				stamps = append(stamps, st)
			}
		}
		for src := range sources {
			for _, st := range stamps {
				writeFile(t, filepath.Join(out, "processed_"+src+"_"+st+".parquet"), "an earlier run's file")
			}
		}
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "DAG_OUT="+out)
		res := runAgent(t, dir, env, "--pipeline", "builtin:ml_dag", "--once")
		if res.code != 0 || strings.Contains(res.stderr, "ok=false") {
			t.Fatalf("the run again failed: %s", res)
		}
		for src, rows := range sources {
			replaced := 0
			for _, st := range stamps {
				path := filepath.Join(out, "processed_"+src+"_"+st+".parquet")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) == "an earlier run's file" {
					continue
				}
				replaced++
				pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if n := pf.NumRows(); n != int64(rows) {
					t.Errorf("%s: %d rows, want %d", path, n, rows)
				}
			}
			if replaced != 1 {
				t.Errorf("%s: %d files replaced, want the run's one", src, replaced)
			}
		}
	})
}
