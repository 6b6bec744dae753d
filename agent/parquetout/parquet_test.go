package parquetout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/atomicfile"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/tidwall/gjson"
)

// runStream runs a Benthos stream with the output registered until its
// input ends. extra registers more plugins on the same environment.
func runStream(t *testing.T, yaml string, extra ...func(*service.Environment) error) {
	t.Helper()
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		if err := f(env); err != nil {
			t.Fatal(err)
		}
	}
	b := env.NewStreamBuilder()
	if err := b.SetYAML(yaml); err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	if err := b.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stream.Run(ctx); err != nil {
		t.Fatalf("stream: %v", err)
	}
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// parquetFile is a file read back whole.
type parquetFile struct {
	schema    *parquet.Schema
	meta      *format.FileMetaData
	rowGroups int
	rows      []map[string]any
}

// readParquet reads every row, with values as Go values: nil for a null,
// int64, float64, bool, string, time.Time for a timestamp and
// "2006-01-02" for a date.
func readParquet(t testing.TB, path string) parquetFile {
	t.Helper()
	pf, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

func readFile(path string) (parquetFile, error) {
	var out parquetFile
	fh, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return out, err
	}
	pf, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		return out, fmt.Errorf("open %s: %w", path, err)
	}
	out = parquetFile{schema: pf.Schema(), meta: pf.Metadata(), rowGroups: len(pf.RowGroups())}
	fields := pf.Schema().Fields()
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			m := map[string]any{}
			for _, v := range row {
				f := fields[v.Column()]
				m[f.Name()] = goValue(f.Type(), v)
			}
			out.rows = append(out.rows, m)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if int64(len(out.rows)) != pf.NumRows() {
		return out, fmt.Errorf("%s: read %d rows, footer says %d", path, len(out.rows), pf.NumRows())
	}
	return out, nil
}

func goValue(typ parquet.Type, v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	lt := ""
	if l := typ.LogicalType(); l != nil {
		lt = l.String()
	}
	switch {
	case strings.HasPrefix(lt, "TIMESTAMP"):
		return time.UnixMicro(v.Int64()).UTC()
	case lt == "DATE":
		return time.Unix(int64(v.Int32())*86400, 0).UTC().Format("2006-01-02")
	}
	switch typ.Kind() {
	case parquet.Int64:
		return v.Int64()
	case parquet.Double:
		return v.Double()
	case parquet.Boolean:
		return v.Boolean()
	case parquet.ByteArray:
		return string(v.ByteArray())
	}
	return fmt.Sprintf("unexpected kind %s", typ.Kind())
}

// finalFiles lists the finished files under dir, and fails on a .tmp.
func finalFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".tmp"):
			t.Errorf("%s is left behind", p)
		case strings.HasSuffix(p, ".parquet"):
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// schemaOf describes a file's columns as "name kind logical-type optional".
func schemaOf(s *parquet.Schema) []string {
	var out []string
	for _, f := range s.Fields() {
		d := f.Name() + " " + f.Type().Kind().String()
		if lt := f.Type().LogicalType(); lt != nil {
			d += " " + lt.String()
		}
		if f.Optional() {
			d += " optional"
		}
		out = append(out, d)
	}
	return out
}

// sale is a row of the seed's sales data after its transform, plus the
// time of the sale and where it was made.
type sale struct {
	Date       string  `json:"date"`
	ProductID  int     `json:"product_id"`
	Quantity   int     `json:"quantity"`
	Price      float64 `json:"price"`
	CustomerID int     `json:"customer_id"`
	Total      float64 `json:"total_amount"`
	SoldAt     any     `json:"sold_at,omitempty"`
	Meta       any     `json:"meta,omitempty"`
}

func sales(n int) []sale {
	out := make([]sale, n)
	for i := range out {
		s := sale{
			Date:       time.Date(2024, 1, 1+i%28, 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			ProductID:  100 + i%7,
			Quantity:   1 + i%4,
			Price:      float64(5+i%11) + 0.25,
			CustomerID: 1 + i%5,
		}
		s.Total = float64(s.Quantity) * s.Price
		out[i] = s
	}
	return out
}

func jsonLines(t testing.TB, rows []sale) []string {
	var out []string
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// typedColumns are the sales columns as a frame of them types them, each
// taking the frame's values as they are.
const typedColumns = `columns:
  - {name: date, type: string}
  - {name: product_id, type: int64}
  - {name: quantity, type: int64}
  - {name: price, type: double}
  - {name: customer_id, type: int64}
  - {name: total_amount, type: double}
  - {name: sold_at, type: string}
`

const salesColumns = `columns:
  - {name: date, type: date, optional: false}
  - {name: product_id, type: int64, optional: false}
  - {name: quantity, type: int64}
  - {name: price, type: double}
  - {name: customer_id, type: int64}
  - {name: total_amount, type: double}
  - {name: sold_at, type: timestamp}
  - {name: channel, type: string, path: meta.channel}
`

// indent puts YAML under a key at the given depth.
func indent(yaml, by string) string {
	return by + strings.ReplaceAll(strings.TrimSuffix(yaml, "\n"), "\n", "\n"+by)
}

// TestSalesRows: the seed's sales rows, with explicit columns, come back
// from the file value for value, with the columns' types in order.
func TestSalesRows(t *testing.T) {
	dir := t.TempDir()
	rows := sales(60)
	soldAt := []struct {
		in   any
		want time.Time
	}{
		{"2024-01-02T10:20:30Z", time.Date(2024, 1, 2, 10, 20, 30, 0, time.UTC)},
		{"2024-01-02T10:20:30.123456+02:00", time.Date(2024, 1, 2, 8, 20, 30, 123456000, time.UTC)},
		{"2024-01-02 10:20:30", time.Date(2024, 1, 2, 10, 20, 30, 0, time.UTC)},
		{"2024-01-02", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)},
		{1704190830, time.Date(2024, 1, 2, 10, 20, 30, 0, time.UTC)},
		{1704190830.5, time.Date(2024, 1, 2, 10, 20, 30, 500000000, time.UTC)},
		{nil, time.Time{}},
	}
	for i := range rows {
		rows[i].SoldAt = soldAt[i%len(soldAt)].in
		if i%3 != 0 {
			rows[i].Meta = map[string]any{"channel": fmt.Sprintf("web-%d", i%3)}
		}
	}
	in := filepath.Join(dir, "sales.ndjson")
	writeLines(t, in, jsonLines(t, rows))
	runStream(t, fmt.Sprintf(`
input:
  file: {paths: [%q]}
output:
  parquet:
    path: '%s/out/sales-${! timestamp_unix_nano() }.parquet'
    max_age: 100ms
    batching: {count: 60, period: 5s}
%s
`, in, dir, indent(salesColumns, "    ")))

	files := finalFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("files: %v, want one", files)
	}
	got := readParquet(t, files[0])
	wantSchema := []string{
		"date INT32 DATE",
		"product_id INT64 INT(64,true)",
		"quantity INT64 INT(64,true) optional",
		"price DOUBLE optional",
		"customer_id INT64 INT(64,true) optional",
		"total_amount DOUBLE optional",
		"sold_at INT64 TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) optional",
		"channel BYTE_ARRAY STRING optional",
	}
	if s := schemaOf(got.schema); !slices.Equal(s, wantSchema) {
		t.Errorf("schema:\n%s\nwant:\n%s", strings.Join(s, "\n"), strings.Join(wantSchema, "\n"))
	}
	if len(got.rows) != len(rows) {
		t.Fatalf("%d rows, want %d", len(got.rows), len(rows))
	}
	for i, r := range rows {
		want := map[string]any{
			"date": r.Date, "product_id": int64(r.ProductID), "quantity": int64(r.Quantity), "price": r.Price,
			"customer_id": int64(r.CustomerID), "total_amount": r.Total, "sold_at": nil, "channel": nil,
		}
		if ts := soldAt[i%len(soldAt)].want; !ts.IsZero() {
			want["sold_at"] = ts
		}
		if r.Meta != nil {
			want["channel"] = fmt.Sprintf("web-%d", i%3)
		}
		if g := got.rows[i]; fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("row %d:\n got %v\nwant %v", i, g, want)
		}
	}
}

// TestInferredSchema: without columns, the first batch's fields in the
// order they appear, typed from their values in the batch, nulls aside: a
// field null in the first row takes its type from a later one, a number
// whole in the first row and not in a later one is a double (a first-row
// guess made both fail); later messages may leave fields out.
func TestInferredSchema(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	writeLines(t, in, []string{
		`{"zeta":"a","id":1,"price":2.5,"ok":true,"tags":["x","y"],"obj":{"k":1},"nothing":null,"big":9007199254740993,"late":null,"whole":1}`,
		`{"zeta":"b","id":2,"price":3,"ok":false,"tags":[],"obj":{},"nothing":"now","big":-1,"late":2.5,"whole":1.5}`,
		`{"id":3,"never":null}`,
	})
	runStream(t, fmt.Sprintf(`
input:
  file: {paths: [%q]}
output:
  parquet:
    path: '%s/inferred.parquet'
    max_age: 50ms
    batching: {count: 3, period: 5s}
`, in, dir))
	got := readParquet(t, filepath.Join(dir, "inferred.parquet"))
	wantSchema := []string{
		"zeta BYTE_ARRAY STRING optional",
		"id INT64 INT(64,true) optional",
		"price DOUBLE optional",
		"ok BOOLEAN optional",
		"tags BYTE_ARRAY STRING optional",
		"obj BYTE_ARRAY STRING optional",
		"nothing BYTE_ARRAY STRING optional",
		"big INT64 INT(64,true) optional",
		"late DOUBLE optional",
		"whole DOUBLE optional",
		"never BYTE_ARRAY STRING optional",
	}
	if s := schemaOf(got.schema); !slices.Equal(s, wantSchema) {
		t.Errorf("schema:\n%s\nwant:\n%s", strings.Join(s, "\n"), strings.Join(wantSchema, "\n"))
	}
	want := []map[string]any{
		{"zeta": "a", "id": int64(1), "price": 2.5, "ok": true, "tags": `["x","y"]`, "obj": `{"k":1}`, "nothing": nil, "big": int64(9007199254740993), "late": nil, "whole": 1.0, "never": nil},
		{"zeta": "b", "id": int64(2), "price": 3.0, "ok": false, "tags": `[]`, "obj": `{}`, "nothing": "now", "big": int64(-1), "late": 2.5, "whole": 1.5, "never": nil},
		{"zeta": nil, "id": int64(3), "price": nil, "ok": nil, "tags": nil, "obj": nil, "nothing": nil, "big": nil, "late": nil, "whole": nil, "never": nil},
	}
	if fmt.Sprint(got.rows) != fmt.Sprint(want) {
		t.Errorf("rows:\n got %v\nwant %v", got.rows, want)
	}
}

// testOutput builds the output from YAML for calling it directly.
func testOutput(t *testing.T, yaml string) *output {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, service.NewEnvironment())
	if err != nil {
		t.Fatal(err)
	}
	o, _, _, err := newOutput(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	return o
}

func batchOf(lines ...string) service.MessageBatch {
	var b service.MessageBatch
	for _, l := range lines {
		b = append(b, service.NewMessage([]byte(l)))
	}
	return b
}

// TestRejectedMessages: a message that cannot be a row fails alone, with
// an error naming its index, the column and the value; the other rows of
// its batch are written and acknowledged.
func TestRejectedMessages(t *testing.T) {
	good := `{"date":"2024-01-02","product_id":7,"quantity":2,"price":1.5,"sold_at":"2024-01-02 03:04:05"}`
	cases := []struct {
		name, bad string
		want      []string // in the message's error
	}{
		{"int64 from letters", `{"date":"2024-01-02","product_id":7,"quantity":"abc"}`, []string{"message 1", `column "quantity"`, `value "abc"`, "not an int64"}},
		{"int64 from a fraction", `{"date":"2024-01-02","product_id":7,"quantity":2.5}`, []string{"message 1", `column "quantity"`, "value 2.5", "not an int64"}},
		{"required missing", `{"date":"2024-01-02","quantity":2}`, []string{"message 1", `column "product_id"`, "no value", "not optional"}},
		{"required null", `{"date":"2024-01-02","product_id":null}`, []string{"message 1", `column "product_id"`, "no value"}},
		{"bad date", `{"date":"02/01/2024","product_id":7}`, []string{"message 1", `column "date"`, `value "02/01/2024"`, "not a date"}},
		{"bad timestamp", `{"date":"2024-01-02","product_id":7,"sold_at":"yesterday"}`, []string{"message 1", `column "sold_at"`, `value "yesterday"`, "not a timestamp"}},
		{"bad double", `{"date":"2024-01-02","product_id":7,"price":"cheap"}`, []string{"message 1", `column "price"`, `value "cheap"`, "not a double"}},
		{"double from a bool", `{"date":"2024-01-02","product_id":7,"price":true}`, []string{"message 1", `column "price"`, "value true"}},
		{"not JSON", `{"date":`, []string{"message 1", "not valid JSON"}},
		{"not an object", `[1,2]`, []string{"message 1", "not a JSON object"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf(`
path: '%s/x.parquet'
max_in_flight: 1
%s`, dir, salesColumns))
			err := o.WriteBatch(context.Background(), batchOf(good, c.bad, good))
			var berr *service.BatchError
			if !errors.As(err, &berr) {
				t.Fatalf("error %v (%T), want a batch error", err, err)
			}
			if berr.IndexedErrors() != 1 {
				t.Errorf("%d messages failed, want 1", berr.IndexedErrors())
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got := readParquet(t, filepath.Join(dir, "x.parquet")); len(got.rows) != 2 {
				t.Errorf("%d rows written, want the 2 good ones", len(got.rows))
			}
		})
	}
}

// TestInferredExtraField: a field the inferred schema lacks fails its
// message, naming the field.
func TestInferredExtraField(t *testing.T) {
	dir := t.TempDir()
	o := testOutput(t, fmt.Sprintf("path: '%s/x-${! counter() }.parquet'\nmax_in_flight: 1\n", dir))
	err := o.WriteBatch(context.Background(), batchOf(`[1]`, `{}`))
	if err == nil || !strings.Contains(err.Error(), "message 0: no schema can be inferred from it: not a JSON object") {
		t.Fatalf("error %v, want none inferred from message 0", err)
	}
	if err := o.WriteBatch(context.Background(), batchOf(`{"a":1,"b":"x"}`)); err != nil {
		t.Fatal(err)
	}
	err = o.WriteBatch(context.Background(), batchOf(`{"a":2}`, `{"a":3,"c":true}`))
	if err == nil || !strings.Contains(err.Error(), `message 1: field "c" is not in the schema`) {
		t.Fatalf("error %v, want one naming message 1 and field c", err)
	}
	if n := len(finalFiles(t, dir)); n != 2 {
		t.Errorf("%d files, want 2", n)
	}
}

// TestFallbackTakesRejected: in a stream, the rejected messages go on to
// a fallback output with the error, the rest to the file.
func TestFallbackTakesRejected(t *testing.T) {
	dir := t.TempDir()
	runStream(t, fmt.Sprintf(`
input:
  generate:
    count: 20
    batch_size: 10
    interval: ""
    mapping: |
      let n = counter()
      root.date = "2024-01-02"
      root.product_id = $n
      root.quantity = if $n %% 7 == 0 { "abc" } else { $n }
output:
  fallback:
    - parquet:
        path: '%s/good-${! timestamp_unix_nano() }.parquet'
        max_age: 50ms
%s
    - file:
        path: '%s/rejected.ndjson'
        codec: lines
      processors:
        - mapping: 'root = {"id": this.product_id, "error": @fallback_error}'
`, dir, indent(salesColumns, "        "), dir))
	good, _ := filepath.Glob(filepath.Join(dir, "good-*.parquet"))
	var ids []int64
	for _, g := range good {
		for _, r := range readParquet(t, g).rows {
			ids = append(ids, r["product_id"].(int64))
		}
	}
	slices.Sort(ids)
	if want := []int64{1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20}; !slices.Equal(ids, want) {
		t.Errorf("rows written: %v, want %v", ids, want)
	}
	rej, err := os.ReadFile(filepath.Join(dir, "rejected.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(rej)), "\n")
	if len(lines) != 2 {
		t.Fatalf("rejected: %q, want 2 lines", rej)
	}
	for _, l := range lines {
		if !strings.Contains(l, `column \"quantity\": value \"abc\" is not an int64`) {
			t.Errorf("rejected line %s does not give the error", l)
		}
	}
}

// idsIn gives how often each id occurs over the files.
func idsIn(t testing.TB, files []string) map[int64]int {
	t.Helper()
	seen := map[int64]int{}
	for _, f := range files {
		for _, r := range readParquet(t, f).rows {
			seen[r["id"].(int64)]++
		}
	}
	return seen
}

func checkOnce(t *testing.T, seen map[int64]int, n int) {
	t.Helper()
	for id := int64(1); id <= int64(n); id++ {
		if seen[id] != 1 {
			t.Errorf("id %d written %d times", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct ids, want %d", len(seen), n)
	}
}

// TestRotationByRows: max_rows splits the rows over files, a batch across
// two when it must, each row in exactly one file.
func TestRotationByRows(t *testing.T) {
	dir := t.TempDir()
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 1000, interval: "", mapping: 'root.id = counter()'}
output:
  parquet:
    path: '%s/r-${! timestamp_unix_nano() }-${! uuid_v4() }.parquet'
    max_rows: 300
    max_age: 1s
    batching: {count: 70, period: 1s}
`, dir))
	files := finalFiles(t, dir)
	var sizes []int
	for _, f := range files {
		sizes = append(sizes, len(readParquet(t, f).rows))
	}
	slices.Sort(sizes)
	if want := []int{100, 300, 300, 300}; !slices.Equal(sizes, want) {
		t.Errorf("rows per file %v, want %v", sizes, want)
	}
	checkOnce(t, idsIn(t, files), 1000)
}

// TestRotationByBytes: max_bytes finishes a file once the writer's size
// estimate reaches it.
func TestRotationByBytes(t *testing.T) {
	dir := t.TempDir()
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 3000, interval: "", mapping: 'root = {"id": counter(), "pad": uuid_v4() + uuid_v4()}'}
output:
  parquet:
    path: '%s/b-${! timestamp_unix_nano() }-${! uuid_v4() }.parquet'
    max_bytes: 40000
    max_age: 1s
    batching: {count: 100, period: 1s}
`, dir))
	files := finalFiles(t, dir)
	t.Logf("%d files", len(files))
	// 3000 rows of some 90 bytes each: 7 files if the estimate were exact.
	if len(files) < 4 || len(files) > 15 {
		t.Errorf("%d files, want about 7", len(files))
	}
	checkOnce(t, idsIn(t, files), 3000)
}

// TestRotationByAge: a slow input, far from filling a file, still has its
// rows published, while the stream runs, by max_age.
func TestRotationByAge(t *testing.T) {
	dir := t.TempDir()
	var sawFileEarly atomic.Bool
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ms, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
			if len(ms) > 0 {
				sawFileEarly.Store(true)
				return
			}
		}
	}()
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 30, interval: 30ms, mapping: 'root.id = counter()'}
output:
  parquet:
    path: '%s/a-${! timestamp_unix_nano() }.parquet'
    max_age: 150ms
`, dir))
	close(done)
	files := finalFiles(t, dir)
	if len(files) < 3 {
		t.Errorf("%d files from 900ms of input with max_age 150ms, want several", len(files))
	}
	if !sawFileEarly.Load() {
		t.Error("no file was finished while the stream ran")
	}
	checkOnce(t, idsIn(t, files), 30)
}

// TestRowGroups: a file has a row group per row_group_rows rows.
func TestRowGroups(t *testing.T) {
	cases := []struct{ rows, perGroup, groups int }{
		{1000, 100, 10},
		{1000, 256, 4},
		{1000, 1000, 1},
		{1000, 65536, 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d_by_%d", c.rows, c.perGroup), func(t *testing.T) {
			dir := t.TempDir()
			runStream(t, fmt.Sprintf(`
input:
  generate: {count: %d, batch_size: %d, interval: "", mapping: 'root = {"id": counter(), "name": "n" + uuid_v4()}'}
output:
  parquet:
    path: '%s/g.parquet'
    row_group_rows: %d
    max_age: 100ms
`, c.rows, c.rows, dir, c.perGroup))
			got := readParquet(t, filepath.Join(dir, "g.parquet"))
			if got.rowGroups != c.groups {
				t.Errorf("%d row groups, want %d", got.rowGroups, c.groups)
			}
			if len(got.rows) != c.rows {
				t.Errorf("%d rows, want %d", len(got.rows), c.rows)
			}
		})
	}
}

// TestCompression: each codec is used for the column chunks, and the
// file reads back.
func TestCompression(t *testing.T) {
	cases := []struct{ name, codec string }{
		{"snappy", "SNAPPY"}, {"zstd", "ZSTD"}, {"gzip", "GZIP"}, {"none", "UNCOMPRESSED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/c.parquet'\ncompression: %s\nmax_in_flight: 1\n%s", dir, c.name, salesColumns))
			if err := o.WriteBatch(context.Background(), batchOf(jsonLines(t, sales(500))...)); err != nil {
				t.Fatal(err)
			}
			got := readParquet(t, filepath.Join(dir, "c.parquet"))
			if len(got.rows) != 500 {
				t.Errorf("%d rows, want 500", len(got.rows))
			}
			for _, col := range got.meta.RowGroups[0].Columns {
				if s := col.MetaData.Codec.String(); s != c.codec {
					t.Errorf("column %v: codec %s, want %s", col.MetaData.PathInSchema, s, c.codec)
				}
			}
		})
	}
}

// TestNoPartialFileVisible: while a stream writes many small files, every
// file under a final name opens as a complete Parquet file, and no .tmp
// is left at the end.
func TestNoPartialFileVisible(t *testing.T) {
	dir := t.TempDir()
	stop := make(chan struct{})
	var checked atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ms, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
			for _, m := range ms {
				fh, err := os.Open(m)
				if err != nil {
					bad.Store(fmt.Sprintf("open %s: %v", m, err))
					continue
				}
				st, _ := fh.Stat()
				pf, err := parquet.OpenFile(fh, st.Size())
				if err == nil && pf.NumRows() != 50 {
					err = fmt.Errorf("%d rows, want 50", pf.NumRows())
				}
				if err != nil {
					bad.Store(fmt.Sprintf("%s: %v", m, err))
				}
				fh.Close()
				checked.Add(1)
			}
		}
	})
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 2000, interval: "", mapping: 'root = {"id": counter(), "pad": uuid_v4() + uuid_v4()}'}
output:
  parquet:
    path: '%s/p-${! timestamp_unix_nano() }-${! uuid_v4() }.parquet'
    max_rows: 50
    max_age: 5s
    batching: {count: 25, period: 100ms}
`, dir))
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Error(b)
	}
	if checked.Load() == 0 {
		t.Error("the watcher checked no file")
	}
	files := finalFiles(t, dir)
	if len(files) != 40 {
		t.Errorf("%d files, want 40", len(files))
	}
	checkOnce(t, idsIn(t, files), 2000)
}

// TestFinishOrder: the finish step renames the .tmp only once the footer
// is written, the file synced and closed, then syncs the directory; when
// a step fails nothing is renamed and the waiting batch gets the error.
func TestFinishOrder(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name      string
		failAt    string // the step that fails
		wantFinal bool   // whether the final name exists afterwards
		wantErr   string
	}{
		{"ok", "", true, ""},
		{"fsync fails", "sync", false, "fsync"},
		{"rename fails", "rename", false, "rename"},
		{"directory fsync fails", "syncdir", true, "fsync directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/sub/f.parquet'\nmax_in_flight: 1\n", dir))
			final := filepath.Join(dir, "sub", "f.parquet")
			tmp := final + ".tmp"
			var steps []string
			var synced *os.File
			o.syncFile = func(f *os.File) error {
				steps = append(steps, "sync")
				synced = f
				if f.Name() != tmp {
					t.Errorf("synced %s, want %s", f.Name(), tmp)
				}
				// The footer is written before the sync.
				if pf := openParquet(t, tmp); pf == nil || pf.NumRows() != 2 {
					t.Error("the .tmp is not a complete file when synced")
				}
				if c.failAt == "sync" {
					return boom
				}
				return f.Sync()
			}
			o.rename = func(from, to string) error {
				steps = append(steps, "rename")
				if from != tmp || to != final {
					t.Errorf("rename %s to %s, want %s to %s", from, to, tmp, final)
				}
				if _, err := synced.Stat(); !errors.Is(err, os.ErrClosed) {
					t.Errorf("the file is still open at the rename: %v", err)
				}
				if _, err := os.Stat(final); err == nil {
					t.Error("the final name exists before the rename")
				}
				if c.failAt == "rename" {
					return boom
				}
				return os.Rename(from, to)
			}
			o.syncDir = func(d string) error {
				if d != filepath.Join(dir, "sub") {
					// The new directory's parent, when it is created.
					steps = append(steps, "syncparent")
					return atomicfile.SyncDir(d)
				}
				steps = append(steps, "syncdir")
				if _, err := os.Stat(final); err != nil {
					t.Errorf("directory synced before the rename: %v", err)
				}
				if c.failAt == "syncdir" {
					return boom
				}
				return atomicfile.SyncDir(d)
			}
			err := o.WriteBatch(context.Background(), batchOf(`{"a":1}`, `{"a":2}`))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, boom)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
			want := []string{"syncparent", "sync", "rename", "syncdir"}
			for i, s := range want[1:] {
				if s == c.failAt {
					want = want[:i+2]
				}
			}
			if !slices.Equal(steps, want) {
				t.Errorf("steps %v, want %v", steps, want)
			}
			if _, err := os.Stat(final); (err == nil) != c.wantFinal {
				t.Errorf("final file exists: %v, want %v", err == nil, c.wantFinal)
			}
			if _, err := os.Stat(tmp); err == nil {
				t.Error("the .tmp is left behind")
			}
		})
	}
}

func openParquet(t *testing.T, path string) *parquet.File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return nil
	}
	pf, err := parquet.OpenFile(strings.NewReader(string(b)), int64(len(b)))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	return pf
}

// checkedOutput wraps the output to check, as each WriteBatch returns
// success, that the batch's rows are in a file under its final name.
type checkedOutput struct {
	*output
	dir    string
	mu     sync.Mutex
	acked  int
	faults []string
}

func (c *checkedOutput) WriteBatch(ctx context.Context, b service.MessageBatch) error {
	if err := c.output.WriteBatch(ctx, b); err != nil {
		return err
	}
	// Only finished files can be read: a .tmp has no footer.
	ms, _ := filepath.Glob(filepath.Join(c.dir, "*.parquet"))
	seen := map[int64]bool{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		pf, err := readFile(m)
		if err != nil {
			c.faults = append(c.faults, err.Error())
		}
		for _, r := range pf.rows {
			seen[r["id"].(int64)] = true
		}
	}
	for _, m := range b {
		s, _ := m.AsBytes()
		var v struct{ ID int64 }
		_ = json.Unmarshal(s, &v)
		if !seen[v.ID] {
			c.faults = append(c.faults, fmt.Sprintf("id %d acknowledged before it was in a finished file", v.ID))
		}
		c.acked++
	}
	return nil
}

// TestAckAfterFinish: a batch is acknowledged only once the file holding
// its rows exists under its final name.
func TestAckAfterFinish(t *testing.T) {
	dir := t.TempDir()
	var checked *checkedOutput
	register := func(env *service.Environment) error {
		return env.RegisterBatchOutput("parquet_checked", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			o, pol, n, err := newOutput(conf, res)
			if err != nil {
				return nil, pol, 0, err
			}
			checked = &checkedOutput{output: o, dir: dir}
			return checked, pol, n, nil
		})
	}
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 600, interval: "", mapping: 'root.id = counter()'}
output:
  parquet_checked:
    path: '%s/k-${! timestamp_unix_nano() }-${! uuid_v4() }.parquet'
    max_rows: 130
    max_age: 300ms
    max_in_flight: 8
    batching: {count: 20, period: 100ms}
`, dir), register)
	if checked.acked != 600 {
		t.Errorf("%d messages acknowledged, want 600", checked.acked)
	}
	for _, f := range checked.faults {
		t.Error(f)
	}
	checkOnce(t, idsIn(t, finalFiles(t, dir)), 600)
}

// TestWaitEndsEarly: a batch waiting for its file (long max_age) is
// acknowledged when the output closes or its context ends, because the
// file is then finished at once rather than abandoned.
func TestWaitEndsEarly(t *testing.T) {
	cases := []struct {
		name string
		end  func(o *output, cancel context.CancelFunc)
	}{
		{"close", func(o *output, _ context.CancelFunc) { _ = o.Close(context.Background()) }},
		{"context", func(_ *output, cancel context.CancelFunc) { cancel() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/w.parquet'\nmax_age: 1h\n", dir))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := make(chan error, 1)
			go func() { res <- o.WriteBatch(ctx, batchOf(`{"id":1}`)) }()
			select {
			case err := <-res:
				t.Fatalf("returned %v before its file was finished", err)
			case <-time.After(100 * time.Millisecond):
			}
			c.end(o, cancel)
			select {
			case err := <-res:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still waiting")
			}
			if n := len(readParquet(t, filepath.Join(dir, "w.parquet")).rows); n != 1 {
				t.Errorf("%d rows, want 1", n)
			}
		})
	}
}

// TestNamesNotReused: a file never replaces a finished file, nor takes the
// name of a .tmp left by a crash, which stays as it was. With overwrite a
// file replaces one that was there before the output started, but still
// neither a crash's .tmp nor a file the output wrote itself.
func TestNamesNotReused(t *testing.T) {
	cases := []struct {
		name      string
		leave     string // a file there before the output starts
		overwrite bool
		wantErr   string // "": the new file replaces it
	}{
		{"finished file", "f.parquet", false, "f.parquet already exists"},
		{"crash leftover", "f.parquet.tmp", false, "f.parquet.tmp exists, left by a crash"},
		{"finished file, overwrite", "f.parquet", true, ""},
		{"crash leftover, overwrite", "f.parquet.tmp", true, "f.parquet.tmp exists, left by a crash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			left := filepath.Join(dir, c.leave)
			if err := os.WriteFile(left, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			o := testOutput(t, fmt.Sprintf("path: '%s/f.parquet'\nmax_in_flight: 1\noverwrite: %v\n", dir, c.overwrite))
			err := o.WriteBatch(context.Background(), batchOf(`{"id":1}`))
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if n := len(readParquet(t, left).rows); n != 1 {
					t.Errorf("%d rows in the new file, want 1", n)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				if b, _ := os.ReadFile(left); string(b) != "old" {
					t.Errorf("%s changed to %q", c.leave, b)
				}
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("files %v, want only %s", ents, c.leave)
			}
		})
	}
	for _, overwrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("second file of the same name, overwrite %v", overwrite), func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/f.parquet'\nmax_in_flight: 1\noverwrite: %v\n", dir, overwrite))
			if err := o.WriteBatch(context.Background(), batchOf(`{"id":1}`)); err != nil {
				t.Fatal(err)
			}
			err := o.WriteBatch(context.Background(), batchOf(`{"id":2}`))
			if err == nil || !strings.Contains(err.Error(), "f.parquet") {
				t.Fatalf("error %v, want one saying the name is taken", err)
			}
			if n := len(readParquet(t, filepath.Join(dir, "f.parquet")).rows); n != 1 {
				t.Errorf("%d rows in the first file, want 1", n)
			}
		})
	}
}

// TestStaleTmp: when the output connects, the .tmp files of its path
// that a dead writer left (a Parquet file's start, or empty, and nobody
// holding their lock) are removed; a live writer's (locked), a file that
// is not Parquet, and files of other names stay as they were, and no
// leftover is ever published. Then a stream writes its own files beside
// them.
func TestStaleTmp(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: leftovers are kept")
	}
	dir := t.TempDir()
	files := []struct {
		name, content string
		locked        bool
		removed       bool
	}{
		{name: "s-dead.parquet.tmp", content: "PAR1 and some row groups", removed: true},
		{name: "s-dead-empty.parquet.tmp", removed: true}, // killed before its first page
		{name: "s-live.parquet.tmp", content: "PAR1 being written", locked: true},
		{name: "s-live-empty.parquet.tmp", locked: true},
		{name: "s-0.parquet.tmp", content: "not a Parquet file"},
		{name: "t-1.parquet.tmp", content: "PAR1 of another path"},
		{name: "s-2.csv.tmp", content: "PAR1 of another suffix"},
		{name: "s-3.parquet", content: "PAR1 published"},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if f.locked {
			lock := lockTmp(path)
			if lock == nil {
				t.Fatalf("could not lock %s", path)
			}
			t.Cleanup(func() { lock.Close() })
		}
	}
	runStream(t, fmt.Sprintf(`
input:
  generate: {count: 10, interval: "", mapping: 'root.id = counter()'}
output:
  parquet:
    path: '%s/s-${! counter() }.parquet'
    max_age: 50ms
`, dir))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		switch {
		case f.removed && err == nil:
			t.Errorf("%s was left", f.name)
		case !f.removed && (err != nil || string(b) != f.content):
			t.Errorf("%s: %q, %v; want it as it was", f.name, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s-0.parquet")); err == nil {
		t.Error("a leftover was renamed")
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "s-*.parquet"))
	ms = slices.DeleteFunc(ms, func(m string) bool { return strings.HasSuffix(m, "s-3.parquet") })
	checkOnce(t, idsIn(t, ms), 10)
}

// TestLockTmpWaitsForASweeper: a writer's new .tmp whose lock a sweeper
// holds for a moment (it is looking at the file) is locked once the
// sweeper lets go, not left unlocked.
func TestLockTmpWaitsForASweeper(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	path := filepath.Join(t.TempDir(), "s-1.parquet.tmp")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sweeper, err := atomicfile.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, func() { sweeper.Close() })
	lock := lockTmp(path)
	if lock == nil {
		t.Fatal("the writer took no lock")
	}
	defer lock.Close()
	if _, err := atomicfile.Lock(path); !errors.Is(err, atomicfile.ErrHeld) {
		t.Errorf("the writer's lock is not held: %v", err)
	}
}

// TestTmpPattern: which names a path's .tmp files have, and the paths
// whose leftovers cannot be told from other files.
func TestTmpPattern(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
		yes  []string
		no   []string
	}{
		{path: "out/sales-${! timestamp_unix_nano() }.parquet", ok: true,
			yes: []string{"sales-1.parquet.tmp", "sales-x-y.parquet.tmp"},
			no:  []string{"sales-.parquet.tmp", "sales-1.parquet", "sales-1.parquet.tmp.x", "other-1.parquet.tmp"}},
		{path: "out/fixed.parquet", ok: true, yes: []string{"fixed.parquet.tmp"}, no: []string{"fixed-1.parquet.tmp", "fixed.parquet"}},
		{path: "${! counter() }.parquet", ok: true, yes: []string{"7.parquet.tmp"}, no: []string{"7.csv.tmp"}},
		{path: "out/part-${! counter() }", ok: true, yes: []string{"part-7.tmp"}, no: []string{"7.tmp"}},
		{path: "out/dt=${! now() }/part.parquet", ok: false},
		{path: "out/${! meta(\"name\") }", ok: false},
	} {
		p, ok := patternOf(tc.path)
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.path, ok, tc.ok)
			continue
		}
		if ok && p.dir != filepath.Dir(strings.SplitN(tc.path, "${!", 2)[0]+"x") {
			t.Errorf("%s: directory %q", tc.path, p.dir)
		}
		for _, n := range tc.yes {
			if !p.matches(n) {
				t.Errorf("%s: %s not taken for a .tmp of the path", tc.path, n)
			}
		}
		for _, n := range tc.no {
			if p.matches(n) {
				t.Errorf("%s: %s taken for a .tmp of the path", tc.path, n)
			}
		}
	}
}

// TestConfigErrors: a config the output cannot honour fails at start.
func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"column twice", "columns: [{name: a, type: int64}, {name: a, type: string}]", `column "a": name used twice`},
		{"empty name", "columns: [{name: '', type: int64}]", "empty name"},
		{"zero max_rows", "max_rows: 0", "max_rows: must be positive"},
		{"negative row groups", "row_group_rows: -1", "row_group_rows: must be positive"},
		{"zero max_bytes", "max_bytes: 0", "max_bytes: must be positive"},
		{"zero max_age", "max_age: 0s", "max_age: must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf, err := ConfigSpec().ParseYAML("path: x.parquet\n"+c.yaml, service.NewEnvironment())
			if err == nil {
				_, _, _, err = newOutput(conf, service.MockResources())
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestConversions: the accepted spellings of each type.
func TestConversions(t *testing.T) {
	day := func(y int, m time.Month, d int) int64 { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400 }
	us := func(tm time.Time) int64 { return tm.UnixMicro() }
	cases := []struct {
		typ, in string
		want    any // int64 for int64, timestamp and date; float64; bool; string; nil for an error
	}{
		{typeInt64, `42`, int64(42)},
		{typeInt64, `"42"`, int64(42)},
		{typeInt64, `3.0`, int64(3)},
		{typeInt64, `1e3`, int64(1000)},
		{typeInt64, `9223372036854775807`, int64(math.MaxInt64)},
		{typeInt64, `9223372036854775808`, nil},
		{typeInt64, `"abc"`, nil},
		{typeInt64, `true`, nil},
		{typeDouble, `2.5`, 2.5},
		{typeDouble, `"2.5"`, 2.5},
		{typeDouble, `7`, 7.0},
		{typeDouble, `"x"`, nil},
		{typeBool, `true`, true},
		{typeBool, `"false"`, false},
		{typeBool, `1`, nil},
		{typeString, `"héllo"`, "héllo"},
		{typeString, `12.50`, "12.50"},
		{typeString, `{"a": 1}`, `{"a": 1}`},
		{typeTimestamp, `"2024-03-04T05:06:07Z"`, us(time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC))},
		{typeTimestamp, `"2024-03-04T05:06:07.25-01:00"`, us(time.Date(2024, 3, 4, 6, 6, 7, 250e6, time.UTC))},
		{typeTimestamp, `"2024-03-04 05:06:07"`, us(time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC))},
		{typeTimestamp, `"2024-03-04 05:06:07.5"`, us(time.Date(2024, 3, 4, 5, 6, 7, 5e8, time.UTC))},
		{typeTimestamp, `"2024-03-04T05:06:07"`, us(time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC))},
		{typeTimestamp, `"2024-03-04"`, us(time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC))},
		{typeTimestamp, `1709528767`, us(time.Unix(1709528767, 0))},
		{typeTimestamp, `"1709528767"`, us(time.Unix(1709528767, 0))},
		{typeTimestamp, `1709528767.000001`, us(time.Unix(1709528767, 1000))},
		{typeTimestamp, `-1`, int64(-1e6)},
		{typeTimestamp, `"March 4"`, nil},
		{typeTimestamp, `1e300`, nil},
		{typeDate, `"2024-03-04"`, day(2024, 3, 4)},
		{typeDate, `"1969-12-31"`, int64(-1)},
		{typeDate, `"2024-03-04T23:30:00-05:00"`, day(2024, 3, 4)},
		{typeDate, `"2024-02-30"`, nil},
		{typeDate, `20240304`, nil},
	}
	for _, c := range cases {
		t.Run(c.typ+" "+c.in, func(t *testing.T) {
			s, err := newSchema([]column{{name: "v", typ: c.typ}}, false)
			if err != nil {
				t.Fatal(err)
			}
			row := make(parquet.Row, 1)
			err = s.row([]byte(`{"v":`+c.in+`}`), row, make([]gjson.Result, 1))
			if c.want == nil {
				if err == nil {
					t.Errorf("accepted as %v", row[0])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got any
			switch v := row[0]; v.Kind() {
			case parquet.Int32:
				got = int64(v.Int32())
			case parquet.Int64:
				got = v.Int64()
			case parquet.Double:
				got = v.Double()
			case parquet.Boolean:
				got = v.Boolean()
			case parquet.ByteArray:
				got = string(v.ByteArray())
			}
			if got != c.want {
				t.Errorf("got %v (%T), want %v (%T)", got, got, c.want, c.want)
			}
		})
	}
}

// BenchmarkParquetWrite writes files of 2^20 rows of the sales shape, the
// batches in flight at once as Benthos would write them: as JSON messages
// (snappy, zstd), and as the same rows in frames of a batch each, typed as
// csv_file types them, with its metadata columns (frames/snappy,
// frames/zstd), or all in one frame, as a file read whole arrives
// (frame-file/snappy; frame-file-typed/snappy with columns that take the
// frame's types as they are).
func BenchmarkParquetWrite(b *testing.B) {
	const batchRows, batches = 8192, 128
	rows := sales(batchRows * batches)
	for i := range rows {
		rows[i].ProductID = 1000 + i%997
		rows[i].CustomerID = i % 50021
		rows[i].SoldAt = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC3339)
	}
	lines := jsonLines(b, rows)
	msgs := make([]service.MessageBatch, batches)
	frames := make([]service.MessageBatch, batches)
	for i := range msgs {
		msgs[i] = batchOf(lines[i*batchRows : (i+1)*batchRows]...)
		frames[i] = service.MessageBatch{service.NewMessage(salesFrame(b, rows[i*batchRows:(i+1)*batchRows], lines[i*batchRows:(i+1)*batchRows]))}
	}
	// The frames hold the same rows: unframed, they are the JSON messages.
	first, _ := frames[0][0].AsBytes()
	if got := rowsAsJSON(b, first); !slices.Equal(got, lines[:batchRows]) {
		b.Fatalf("a frame's rows as JSON differ from the messages: %s, want %s", got[0], lines[0])
	}
	whole := []service.MessageBatch{{service.NewMessage(salesFrame(b, rows, lines))}}
	cases := []struct {
		name, codec string
		batches     []service.MessageBatch
	}{
		{"snappy", "snappy", msgs}, {"zstd", "zstd", msgs},
		{"frames/snappy", "snappy", frames}, {"frames/zstd", "zstd", frames},
		// The whole file as one frame (csv_file's batch_size: 0): with the
		// sales columns, whose dates are parsed and may fail, and with
		// columns that take the frame's types as they are (typed).
		{"frame-file/snappy", "snappy", whole},
		{"frame-file-typed/snappy", "snappy", whole},
	}
	for _, c := range cases {
		codec := c.codec
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			columns := salesColumns
			if strings.Contains(c.name, "typed") {
				columns = typedColumns
			}
			conf, err := ConfigSpec().ParseYAML(fmt.Sprintf("path: '%s/b-${! counter() }.parquet'\ncompression: %s\nmax_rows: %d\nmax_in_flight: %d\nmax_age: 1m\n%s",
				dir, codec, batchRows*batches, batches, columns), service.NewEnvironment())
			if err != nil {
				b.Fatal(err)
			}
			o, _, _, err := newOutput(conf, service.MockResources())
			if err != nil {
				b.Fatal(err)
			}
			if err := o.Connect(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer o.Close(context.Background())
			files := 0
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, batches)
				for _, m := range c.batches {
					wg.Go(func() { errs <- o.WriteBatch(context.Background(), m) })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				files++
			}
			b.ReportMetric(float64(files*batchRows*batches)/b.Elapsed().Seconds(), "rows/s")
			ms, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
			var size int64
			for _, m := range ms {
				st, _ := os.Stat(m)
				size += st.Size()
			}
			if len(ms) != files {
				b.Fatalf("%d files, want %d", len(ms), files)
			}
			b.ReportMetric(float64(size)/float64(files*batchRows*batches), "file-bytes/row")
		})
	}
}

// salesFrame is the rows as csv_file frames them: dates and timestamps as
// text, the metadata columns beside; lines are the rows' CSV stand-in.
func salesFrame(b testing.TB, rows []sale, lines []string) []byte {
	w := frame.NewWriter()
	date, product, qty := w.Add("date", abi.TypeString, false), w.Add("product_id", abi.TypeInt, false), w.Add("quantity", abi.TypeInt, false)
	price, customer, total := w.Add("price", abi.TypeFloat, false), w.Add("customer_id", abi.TypeInt, false), w.Add("total_amount", abi.TypeFloat, false)
	soldAt := w.Add("sold_at", abi.TypeString, false)
	file, line, raw := w.Add("csv_file", abi.TypeString, true), w.Add("csv_line", abi.TypeInt, true), w.Add("csv_raw", abi.TypeString, true)
	for i, r := range rows {
		date.String([]byte(r.Date))
		product.Int(int64(r.ProductID))
		qty.Int(int64(r.Quantity))
		price.Float(r.Price)
		customer.Int(int64(r.CustomerID))
		total.Float(r.Total)
		soldAt.String([]byte(r.SoldAt.(string)))
		file.String([]byte("sales.csv"))
		line.Int(int64(i + 2))
		raw.String([]byte(lines[i]))
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// TestISODay: the fast date path agrees with time.Parse on every day of
// four centuries around the epoch, and leaves what it cannot read to it.
func TestISODay(t *testing.T) {
	for day := time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC); day.Year() < 2200; day = day.AddDate(0, 0, 1) {
		got, ok := isoDay(day.Format("2006-01-02"))
		if want := int32(day.Unix() / 86400); !ok || got != want {
			t.Fatalf("%s: %d %v, want %d", day.Format("2006-01-02"), got, ok, want)
		}
	}
	if got, ok := isoDay("0000-02-29"); !ok || got != int32(time.Date(0, 2, 29, 0, 0, 0, 0, time.UTC).Unix()/86400) {
		t.Errorf("0000-02-29: %d %v", got, ok)
	}
	for _, s := range []string{"2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "2024-1-01", "20240101", "2024-01-01T00:00:00Z", "２０２4-01-01", "2024-01-0x"} {
		if _, ok := isoDay(s); ok {
			t.Errorf("%q read as a date", s)
		}
	}
}
