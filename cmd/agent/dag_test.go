package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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
