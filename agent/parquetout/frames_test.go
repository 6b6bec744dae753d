package parquetout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// fcol is a column of a test frame: its values by row, as frame.Values
// (a local type, so its literals may be positional).
type fcol struct {
	Name string
	Type abi.Type
	Meta bool
	Rows []any
}

// buildFrame encodes a frame of cols, rejecting the rows rejected gives a
// reason for.
func buildFrame(t testing.TB, cols []fcol, rejected map[int]string) []byte {
	t.Helper()
	vs := make([]frame.Values, len(cols))
	for i, c := range cols {
		vs[i] = frame.Values(c)
	}
	b, err := frame.FromValues(vs, rejected)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rowsAsJSON is what `unframe` makes of the frame's accepted rows: the JSON
// messages the frame must write as.
func rowsAsJSON(t testing.TB, body []byte) []string {
	t.Helper()
	f, err := frame.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := 0; i < f.Rows; i++ {
		if !f.Rejected(i) {
			out = append(out, string(f.AppendRowJSON(nil, i)))
		}
	}
	return out
}

// writeOne writes one batch to a new output and returns the file.
func writeOne(t *testing.T, conf string, batch service.MessageBatch) parquetFile {
	t.Helper()
	dir := t.TempDir()
	o := testOutput(t, fmt.Sprintf("path: '%s/x.parquet'\nmax_in_flight: 1\n%s", dir, conf))
	if err := o.WriteBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return readParquet(t, filepath.Join(dir, "x.parquet"))
}

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestFrameRowsAsJSON: a frame writes the file its accepted rows give sent
// as JSON messages, for declared columns of every type (from every frame
// type that converts to it) and for an inferred schema, skipping rejected
// rows and metadata columns; alone or among JSON messages in a batch.
func TestFrameRowsAsJSON(t *testing.T) {
	// The sales shape as csv_file frames it, with what a frame adds: a
	// rejected row, metadata columns, a field no column names, nulls.
	salesFrame := []fcol{
		{"date", abi.TypeString, false, []any{"2024-01-15", "2024-01-16", "bad", "2024-02-29", "2024-03-01T23:30:00-05:00"}},
		{"product_id", abi.TypeInt, false, []any{int64(7), int64(8), nil, int64(1) << 60, int64(-3)}},
		{"quantity", abi.TypeInt, false, []any{int64(2), nil, int64(1), int64(0), int64(5)}},
		{"price", abi.TypeFloat, false, []any{2.5, 3.0, 1.0, 1e21, -0.125}},
		{"customer_id", abi.TypeString, false, []any{"42", " 43 ", "x", "1e3", nil}},
		{"total_amount", abi.TypeInt, false, []any{int64(5), int64(1) << 53, int64(1)<<53 + 1, nil, int64(-7)}},
		{"sold_at", abi.TypeTime, false, []any{day("2024-01-15T10:20:30.123456789Z"), nil, day("2024-01-15T00:00:00Z"), day("1969-12-31T23:59:59.9999995Z"), day("2262-04-11T23:47:16Z")}},
		{"note", abi.TypeString, false, []any{"extra", "fields", "are", "ignored", "\xffbad utf-8"}},
		{"csv_file", abi.TypeString, true, []any{"a.csv", "a.csv", "a.csv", "a.csv", "a.csv"}},
		{"csv_line", abi.TypeInt, true, []any{int64(2), int64(3), int64(4), int64(5), int64(6)}},
	}
	salesReject := map[int]string{2: "date: not a date"}
	// One column of each type from each frame type it converts from.
	every := []fcol{
		{"s_str", abi.TypeString, false, []any{"héllo \"quoted\"\n", "", "\xff\xfeinvalid", nil}},
		{"s_int", abi.TypeInt, false, []any{int64(-12), int64(math.MaxInt64), nil, int64(0)}},
		{"s_float", abi.TypeFloat, false, []any{2.5, 3.0, 1e-7, 1e21}},
		{"s_bool", abi.TypeBool, false, []any{true, false, nil, true}},
		{"s_time", abi.TypeTime, false, []any{day("2024-01-15T10:20:30.5Z"), day("1969-07-20T20:17:40Z"), nil, day("2024-01-15T00:00:00Z")}},
		{"i_int", abi.TypeInt, false, []any{int64(math.MinInt64), int64(1) << 53, int64(-1), nil}},
		{"i_float", abi.TypeFloat, false, []any{3.0, math.Copysign(0, -1), 1e18, float64(1 << 60)}},
		{"i_str", abi.TypeString, false, []any{"42", " -7 ", "3.0", "1e3"}},
		{"d_int", abi.TypeInt, false, []any{int64(1)<<53 + 1, int64(math.MaxInt64), int64(-5), nil}},
		{"d_float", abi.TypeFloat, false, []any{0.1, math.Copysign(0, -1), 1.7976931348623157e308, 5e-324}},
		{"d_str", abi.TypeString, false, []any{"2.5", " 1e3 ", "-0", "7"}},
		{"b_bool", abi.TypeBool, false, []any{true, false, nil, false}},
		{"b_str", abi.TypeString, false, []any{"true", " false", "1", "T"}},
		{"ts_time", abi.TypeTime, false, []any{day("2024-01-15T10:20:30.123456789Z"), day("1969-12-31T23:59:59.9999995Z"), day("1677-09-21T00:12:44Z"), nil}},
		{"ts_int", abi.TypeInt, false, []any{int64(1704190830), int64(-1), int64(0), int64(9223372036854)}},
		{"ts_float", abi.TypeFloat, false, []any{1704190830.5, 1704190830.000001, -0.5, 9.2e12}},
		{"ts_str", abi.TypeString, false, []any{"2024-01-02T10:20:30.123456+02:00", "2024-01-02 10:20:30", "2024-01-02", "1704190830"}},
		{"date_str", abi.TypeString, false, []any{"2024-01-15", "1969-12-31", "2024-03-04T23:30:00-05:00", nil}},
		{"date_time", abi.TypeTime, false, []any{day("2024-01-15T23:59:59.999Z"), day("1969-12-31T23:59:59.999999999Z"), day("1970-01-01T00:00:00Z"), day("1900-03-01T12:00:00Z")}},
		{"csv_raw", abi.TypeString, true, []any{"r1", "r2", "r3", "r4"}},
	}
	everyColumns := `columns:
  - {name: s_str, type: string}
  - {name: s_int, type: string}
  - {name: s_float, type: string}
  - {name: s_bool, type: string}
  - {name: s_time, type: string}
  - {name: i_int, type: int64}
  - {name: i_float, type: int64}
  - {name: i_str, type: int64, optional: false}
  - {name: d_int, type: double}
  - {name: d_float, type: double}
  - {name: d_str, type: double}
  - {name: b_bool, type: bool}
  - {name: b_str, type: bool}
  - {name: ts_time, type: timestamp}
  - {name: ts_int, type: timestamp}
  - {name: ts_float, type: timestamp}
  - {name: ts_str, type: timestamp}
  - {name: date_str, type: date}
  - {name: date_time, type: date}
  - {name: absent, type: double}
  - {name: csv_raw, type: string}
`
	cases := []struct {
		name    string
		columns string // "" infers the schema
		cols    []fcol
		reject  map[int]string
		rows    int
		// JSON messages around the frame in its batch.
		before, after []string
	}{
		{name: "sales columns", columns: salesColumns, cols: salesFrame, reject: salesReject, rows: 4},
		{name: "every type", columns: everyColumns, cols: every, rows: 4},
		{name: "inferred", cols: salesFrame, reject: salesReject, rows: 4},
		// The first accepted row decides: row 0, rejected, is not read, and
		// row 1's 3.0 and null read as JSON reads them (int64, string).
		{name: "inferred after a rejected row", cols: []fcol{
			{"a", abi.TypeFloat, false, []any{1.5, 3.0, 4.0, -5.0}},
			{"b", abi.TypeInt, false, []any{int64(1), nil, int64(2), int64(3)}},
			{"c", abi.TypeString, false, []any{"w", "x", "y", "z"}},
			{"csv_line", abi.TypeInt, true, []any{int64(2), int64(3), int64(4), int64(5)}},
		}, reject: map[int]string{0: "no"}, rows: 3},
		{name: "inferred, every type", cols: every, rows: 4},
		{
			name: "paths into values, escaped, twice",
			columns: `columns:
  - {name: channel, type: string, path: meta.channel}
  - {name: odd, type: int64, path: 'odd\.name'}
  - {name: id, type: int64}
  - {name: id_again, type: string, path: id}
  - {name: first_of_two, type: string, path: dup}
  - {name: joined, type: string, path: '{id,dup}'}
`,
			cols: []fcol{
				{"meta", abi.TypeString, false, []any{`{"channel":"web"}`, nil}},
				{"odd.name", abi.TypeInt, false, []any{int64(1), int64(2)}},
				{"id", abi.TypeInt, false, []any{int64(10), int64(11)}},
				{"dup", abi.TypeString, false, []any{"first", "first"}},
				{"dup", abi.TypeString, false, []any{"second", "second"}},
				{"id", abi.TypeString, true, []any{"meta, not a field", "meta"}},
			},
			rows: 2,
		},
		{
			name: "mixed with JSON messages", columns: salesColumns, cols: salesFrame, reject: salesReject, rows: 6,
			before: []string{`{"date":"2024-05-01","product_id":1,"quantity":"3"}`},
			after:  []string{`{"date":"2024-05-02","product_id":2,"sold_at":1704190830,"meta":{"channel":"web"}}`},
		},
		{
			name: "inferred from the JSON message before", cols: salesFrame[:8], reject: salesReject, rows: 5,
			before: []string{`{"date":"2024-05-01","product_id":1,"quantity":null,"price":2.5,"customer_id":"9","total_amount":1.5,"sold_at":"x","note":"n"}`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := buildFrame(t, c.cols, c.reject)
			lines := rowsAsJSON(t, body)
			framed := append(append(batchOf(c.before...), service.NewMessage(body)), batchOf(c.after...)...)
			asJSON := batchOf(slices.Concat(c.before, lines, c.after)...)
			got := writeOne(t, c.columns, framed)
			want := writeOne(t, c.columns, asJSON)
			if s, w := schemaOf(got.schema), schemaOf(want.schema); !slices.Equal(s, w) {
				t.Errorf("schema:\n%s\nwant, as JSON:\n%s", strings.Join(s, "\n"), strings.Join(w, "\n"))
			}
			for _, f := range got.schema.Fields() {
				if n := f.Name(); n == "csv_file" || n == "csv_line" {
					t.Errorf("metadata column %s written", n)
				}
			}
			if len(got.rows) != c.rows || len(want.rows) != c.rows {
				t.Fatalf("%d rows from the frame, %d as JSON, want %d", len(got.rows), len(want.rows), c.rows)
			}
			for i := range want.rows {
				if g, w := fmt.Sprint(got.rows[i]), fmt.Sprint(want.rows[i]); g != w {
					t.Errorf("row %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

// frameValues are the values TestFrameConversionsMatchJSON puts through
// every column type, from every frame type: edges of each conversion.
var frameValues = []any{
	nil,
	int64(0), int64(-1), int64(42), int64(1)<<53 + 1, int64(math.MaxInt64), int64(math.MinInt64),
	int64(9223372036854), int64(9223372036855), int64(-9223372036855),
	0.0, math.Copysign(0, -1), 2.5, 3.0, -2.75, 1e21, 1e-7, 1.5e300, float64(1 << 60), float64(1<<53) + 2,
	9.2e12, 9.3e12, 1704190830.5, 1704190830.000001, 5e-324, math.NaN(), math.Inf(1), math.Inf(-1),
	true, false,
	"", " 42 ", "abc", "3.0", "1e3", "2.5", "true", " false", "T", "2024-01-15", "2024-02-30",
	"2024-01-15T10:20:30+02:00", "2024-01-15 10:20:30.5", "2024-01-15T10:20:30", "1704190830", "-1.5",
	"02/01/2024", "héllo", "bad\xffutf-8", "line\nbreak \"quoted\" \\", "\u2028\x01", "9223372036854775808",
	time.Unix(0, 0).UTC(), time.Date(2024, 1, 15, 10, 20, 30, 123456789, time.UTC),
	time.Unix(0, -1).UTC(), time.Unix(0, -1500).UTC(), time.Unix(-86400, 0).UTC(),
	time.Unix(0, math.MinInt64).UTC(), time.Unix(0, math.MaxInt64).UTC(),
}

func frameType(v any) abi.Type {
	switch v.(type) {
	case int64:
		return abi.TypeInt
	case float64:
		return abi.TypeFloat
	case bool:
		return abi.TypeBool
	case time.Time:
		return abi.TypeTime
	}
	return abi.TypeString
}

// sameValue compares two row values, levels and all; doubles by their
// bits, so that -0 is not 0.
func sameValue(a, b parquet.Value) bool {
	if !parquet.DeepEqual(a, b) {
		return false
	}
	return a.Kind() != parquet.Double || a.IsNull() || math.Float64bits(a.Double()) == math.Float64bits(b.Double())
}

// TestFrameConversionsMatchJSON: each value of each frame type converts
// into each column type, optional or not, to the value its JSON converts
// to, or fails where its JSON fails, with the JSON path's error.
func TestFrameConversionsMatchJSON(t *testing.T) {
	for _, typ := range columnTypes() {
		for _, optional := range []bool{true, false} {
			for _, ft := range []abi.Type{abi.TypeInt, abi.TypeFloat, abi.TypeBool, abi.TypeString, abi.TypeTime} {
				for _, v := range frameValues {
					if v != nil && frameType(v) != ft {
						continue
					}
					name := fmt.Sprintf("%s optional=%v from %s %#v", typ, optional, ft, v)
					s, err := newSchema([]column{{name: "v", typ: typ, optional: optional}}, false)
					if err != nil {
						t.Fatal(err)
					}
					body := buildFrame(t, []fcol{
						{"m", abi.TypeString, true, []any{"meta"}},
						{"v", ft, false, []any{v}},
					}, nil)
					f, err := frame.Decode(body)
					if err != nil {
						t.Fatal(err)
					}
					vals := make([]parquet.Value, 1)
					n, ferr := s.frameRows(f, vals, new(scratch))
					row := make(parquet.Row, 1)
					jerr := s.row(f.AppendRowJSON(nil, 0), row, make([]gjson.Result, 1))
					switch {
					case jerr != nil && ferr == nil:
						t.Errorf("%s: frame gives %v, JSON fails: %v", name, vals[0], jerr)
					case jerr == nil && ferr != nil:
						t.Errorf("%s: frame fails: %v, JSON gives %v", name, ferr, row[0])
					case jerr != nil && !strings.Contains(ferr.Error(), jerr.Error()):
						t.Errorf("%s: frame error %q does not hold the JSON error %q", name, ferr, jerr)
					case jerr == nil && (n != 1 || !sameValue(vals[0], row[0])):
						t.Errorf("%s: frame gives %d rows, %#v; JSON %#v", name, n, vals[0], row[0])
					}
				}
			}
		}
	}
}

// TestFrameRotationByRows: max_rows counts a frame's accepted rows, a file
// ending partway through a frame, and a new file's path is evaluated on
// the frame whose row opens it; so in run mode too.
func TestFrameRotationByRows(t *testing.T) {
	const frames, size = 15, 70 // every 10th row rejected: 63 rows a frame
	for _, mode := range []string{txBatch, txRun} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/r-${! meta(\"frame\") }-${! counter() }.parquet'\ntransaction: %s\nmax_rows: 300\nmax_in_flight: 1\nmax_age: 1h\n", dir, mode))
			var batch service.MessageBatch
			for fi := range frames {
				ids := make([]any, size)
				reject := map[int]string{}
				for r := range ids {
					ids[r] = int64(fi*size + r + 1)
					if r%10 == 0 {
						reject[r] = "rejected"
					}
				}
				m := service.NewMessage(buildFrame(t, []fcol{{"id", abi.TypeInt, false, ids}}, reject))
				m.MetaSetMut("frame", fi)
				batch = append(batch, m)
			}
			r := &runscope.Run{}
			if mode == txRun {
				batch = inRun(r, batch)
				r.Emitted()
			}
			if err := o.WriteBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			if mode == txRun {
				r.Acked(nil)
				r.Ended()
				if err := o.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			files := finalFiles(t, dir)
			var got []string
			seen := map[int64]int{}
			for _, f := range files {
				rows := readParquet(t, f).rows
				got = append(got, fmt.Sprintf("%s:%d", strings.SplitN(filepath.Base(f), "-", 3)[1], len(rows)))
				for _, row := range rows {
					seen[row["id"].(int64)]++
				}
			}
			slices.Sort(got)
			// Accepted rows 0, 300, 600 and 900 open the files: they are in
			// frames 0, 4, 9 and 14.
			if want := []string{"0:300", "14:45", "4:300", "9:300"}; !slices.Equal(got, want) {
				t.Errorf("files (frame:rows) %v, want %v", got, want)
			}
			for id := int64(1); id <= frames*size; id++ {
				want := 1
				if (id-1)%size%10 == 0 {
					want = 0 // rejected
				}
				if seen[id] != want {
					t.Errorf("id %d written %d times, want %d", id, seen[id], want)
				}
			}
		})
	}
}

// TestFrameConversionErrors: a frame with an accepted row that cannot be
// converted fails whole, with an error naming the message, the row in the
// frame and the column; the other messages of its batch are written.
func TestFrameConversionErrors(t *testing.T) {
	good := `{"date":"2024-01-02","product_id":7}`
	base := func(bad fcol) []fcol {
		cols := []fcol{
			{"date", abi.TypeString, false, []any{"2024-01-02", "2024-01-02", "2024-01-02", "2024-01-02"}},
			{"product_id", abi.TypeInt, false, []any{int64(1), int64(2), int64(3), int64(4)}},
		}
		for c := range cols {
			if cols[c].Name == bad.Name {
				cols[c] = bad
				return cols
			}
		}
		return append(cols, bad)
	}
	cases := []struct {
		name     string
		columns  string // "" infers from a first batch of good
		bad      fcol
		reject   map[int]string
		want     []string
		wantRows int // written by the batch: the JSON messages'
	}{
		// Rejected rows are not converted: row 3's value would fail too.
		{"int64 from letters", salesColumns, fcol{"quantity", abi.TypeString, false, []any{"1", "abc", "x", "y"}}, map[int]string{3: "rejected upstream"},
			[]string{"message 1", "frame row 1", `column "quantity"`, `value "abc"`, "not an int64", "2 of the frame's 3 accepted rows fail"}, 2},
		{"int64 from a fraction", salesColumns, fcol{"quantity", abi.TypeFloat, false, []any{1.0, 2.5, 3.0, 4.0}}, nil,
			[]string{"message 1", "frame row 1", `column "quantity"`, "value 2.5", "not an int64"}, 2},
		{"required null", salesColumns, fcol{"product_id", abi.TypeInt, false, []any{int64(1), int64(2), nil, int64(4)}}, nil,
			[]string{"message 1", "frame row 2", `column "product_id"`, "no value", "not optional"}, 2},
		{"required missing", salesColumns, fcol{"date", abi.TypeString, true, []any{"m", "m", "m", "m"}}, nil,
			[]string{"message 1", "frame row 0", `column "date"`, "no value"}, 2},
		{"bad date", salesColumns, fcol{"date", abi.TypeString, false, []any{"2024-01-02", "2024-01-02", "2024-01-02", "02/01/2024"}}, nil,
			[]string{"message 1", "frame row 3", `column "date"`, `value "02/01/2024"`, "not a date"}, 2},
		{"date from an int", salesColumns, fcol{"date", abi.TypeInt, false, []any{int64(20240102), int64(1), int64(2), int64(3)}}, nil,
			[]string{"message 1", "frame row 0", `column "date"`, "value 20240102", "not a date", "4 of the frame's 4 accepted rows fail"}, 2},
		{"bool as a double", salesColumns, fcol{"price", abi.TypeBool, false, []any{nil, true, nil, nil}}, nil,
			[]string{"message 1", "frame row 1", `column "price"`, "value true", "not a double"}, 2},
		{"NaN in a field no column names", salesColumns, fcol{"score", abi.TypeFloat, false, []any{1.0, 2.0, 3.0, math.NaN()}}, nil,
			[]string{"message 1", "frame row 3", "not valid JSON", `field "score"`}, 2},
		{"field not in the inferred schema", "", fcol{"extra", abi.TypeBool, false, []any{nil, nil, nil, nil}}, nil,
			[]string{"message 1", "frame row 0", `field "extra" is not in the schema`}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/x-${! counter() }.parquet'\nmax_in_flight: 1\n%s", dir, c.columns))
			if c.columns == "" {
				if err := o.WriteBatch(context.Background(), batchOf(good)); err != nil {
					t.Fatal(err)
				}
			}
			body := buildFrame(t, base(c.bad), c.reject)
			err := o.WriteBatch(context.Background(), append(batchOf(good), service.NewMessage(body), service.NewMessage([]byte(good))))
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
			rows := 0
			for _, f := range finalFiles(t, dir) {
				rows += len(readParquet(t, f).rows)
			}
			if c.columns == "" {
				rows-- // the first batch's
			}
			if rows != c.wantRows {
				t.Errorf("%d rows written, want %d, none of the frame's", rows, c.wantRows)
			}
		})
	}
}

// TestMalformedFrame: a body with the frame magic that does not decode
// fails its message alone.
func TestMalformedFrame(t *testing.T) {
	dir := t.TempDir()
	o := testOutput(t, fmt.Sprintf("path: '%s/x.parquet'\nmax_in_flight: 1\n", dir))
	err := o.WriteBatch(context.Background(), service.MessageBatch{
		service.NewMessage([]byte(frame.Magic + "\x01")),
		service.NewMessage([]byte(`{"id":1}`)),
	})
	var berr *service.BatchError
	if !errors.As(err, &berr) || berr.IndexedErrors() != 1 || !strings.Contains(err.Error(), "message 0: malformed frame") {
		t.Fatalf("error %v, want message 0 failed as a malformed frame", err)
	}
	if got := readParquet(t, filepath.Join(dir, "x.parquet")); len(got.rows) != 1 {
		t.Errorf("%d rows, want 1", len(got.rows))
	}
}

// countingMetrics is a metrics exporter that sums each counter by name.
type countingMetrics struct {
	mu     sync.Mutex
	counts map[string]int64
}

type countingCounter struct {
	m    *countingMetrics
	name string
}

func (c countingCounter) Incr(n int64) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.counts[c.name] += n
}

func (c countingCounter) IncrFloat64(f float64) { c.Incr(int64(f)) }

type noTimer struct{}

func (noTimer) Timing(int64) {}

type noGauge struct{}

func (noGauge) Set(int64)          {}
func (noGauge) SetFloat64(float64) {}

func (m *countingMetrics) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	return func(...string) service.MetricsExporterCounter { return countingCounter{m, name} }
}

func (m *countingMetrics) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return noTimer{} }
}

func (m *countingMetrics) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return noGauge{} }
}

func (m *countingMetrics) Close(context.Context) error { return nil }

// batchesInput hands on the batches it is given, then ends.
type batchesInput struct{ batches []service.MessageBatch }

func (in *batchesInput) Connect(context.Context) error { return nil }

func (in *batchesInput) ReadBatch(context.Context) (service.MessageBatch, service.AckFunc, error) {
	if len(in.batches) == 0 {
		return nil, nil, service.ErrEndOfInput
	}
	b := in.batches[0]
	in.batches = in.batches[1:]
	return b, func(context.Context, error) error { return nil }, nil
}

func (in *batchesInput) Close(context.Context) error { return nil }

// TestRowsSentMetric: output_rows_sent counts the rows written, a frame's
// accepted rows and one per JSON message, not those of a failed message.
func TestRowsSentMetric(t *testing.T) {
	dir := t.TempDir()
	ids := func(from, n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = int64(from + i)
		}
		return out
	}
	frameOf := func(from, n int, reject map[int]string) *service.Message {
		return service.NewMessage(buildFrame(t, []fcol{{"id", abi.TypeInt, false, ids(from, n)}, {"csv_line", abi.TypeInt, true, ids(2, n)}}, reject))
	}
	in := &batchesInput{batches: []service.MessageBatch{
		{frameOf(1, 100, map[int]string{5: "no", 6: "no"}), service.NewMessage([]byte(`{"id":1000}`))}, // 98 + 1
		{service.NewMessage([]byte(`{"id":"not an int"}`)), frameOf(200, 10, nil)},                     // 10, a failure
		{frameOf(300, 3, map[int]string{0: "no", 1: "no", 2: "no"})},                                   // none
	}}
	m := &countingMetrics{counts: map[string]int64{}}
	runStream(t, fmt.Sprintf(`
input:
  batches: {}
output:
  fallback:
    - parquet:
        path: '%s/m-${! counter() }.parquet'
        max_age: 50ms
        columns: [{name: id, type: int64}]
    - drop: {}
metrics:
  counting: {}
`, dir), func(env *service.Environment) error {
		return env.RegisterBatchInput("batches", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Resources) (service.BatchInput, error) {
			return in, nil
		})
	}, func(env *service.Environment) error {
		return env.RegisterMetricsExporter("counting", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) {
			return m, nil
		})
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if got := m.counts["output_rows_sent"]; got != 109 {
		t.Errorf("output_rows_sent %d, want 109 (counts: %v)", got, m.counts)
	}
	rows := 0
	for _, f := range finalFiles(t, dir) {
		rows += len(readParquet(t, f).rows)
	}
	if rows != 109 {
		t.Errorf("%d rows in the files, want 109", rows)
	}
}

// TestFrameSegments: a batch of more values than are converted at once (a
// whole file's frame) is written a segment at a time with every row once,
// files ending between segments; a frame with one row that cannot be
// written, in its last segment, still writes none of its rows and is
// failed naming that row; in run mode too.
func TestFrameSegments(t *testing.T) {
	const big = 2*segmentRows + 100
	frameOf := func(from int64, q []any) *service.Message {
		ids := make([]any, big)
		reject := map[int]string{}
		for r := range ids {
			ids[r] = from + int64(r)
			if r%1000 == 7 {
				reject[r] = "rejected upstream"
			}
		}
		typ := abi.TypeInt
		if _, ok := q[0].(string); ok {
			typ = abi.TypeString
		}
		return service.NewMessage(buildFrame(t, []fcol{{"id", abi.TypeInt, false, ids}, {"q", typ, false, q}}, reject))
	}
	good, bad := make([]any, big), make([]any, big)
	for r := range good {
		good[r], bad[r] = int64(r%50), fmt.Sprint(r%50)
	}
	bad[big-3] = "abc"
	for _, mode := range []string{txBatch, txRun} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			o := testOutput(t, fmt.Sprintf("path: '%s/s-${! counter() }.parquet'\ntransaction: %s\nmax_rows: 50000\nmax_in_flight: 1\nmax_age: 1h\ncolumns:\n  - {name: id, type: int64}\n  - {name: q, type: int64}\n", dir, mode))
			// As a batch of more values than it converts at once, whatever
			// its rows' types: the bad frame's conversion may fail.
			o.maxBatchValues = segmentRows
			batch := service.MessageBatch{service.NewMessage([]byte(`{"id":-1,"q":1}`)), frameOf(1, good)}
			if mode == txBatch {
				batch = append(batch, frameOf(10_000_000, bad))
			}
			batch = append(batch, service.NewMessage([]byte(`{"id":-2,"q":2}`)))
			r := &runscope.Run{}
			if mode == txRun {
				batch = inRun(r, batch)
				r.Emitted()
			}
			err := o.WriteBatch(context.Background(), batch)
			if mode == txBatch {
				var berr *service.BatchError
				if !errors.As(err, &berr) || berr.IndexedErrors() != 1 {
					t.Fatalf("error %v, want the bad frame's alone", err)
				}
				for _, w := range []string{"message 2", fmt.Sprintf("frame row %d", big-3), `value "abc"`, fmt.Sprintf("1 of the frame's %d accepted rows fail", big-big/1000-1)} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				r.Acked(nil)
				r.Ended()
				if err := o.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[int64]int{}
			files := finalFiles(t, dir)
			for _, f := range files {
				for _, row := range readParquet(t, f).rows {
					seen[row["id"].(int64)]++
					if id, q := row["id"].(int64), row["q"].(int64); id > 0 && q != (id-1)%50 {
						t.Fatalf("id %d: q %d, want %d", id, q, (id-1)%50)
					}
				}
			}
			if len(files) < 3 {
				t.Errorf("%d files, want the rows spread over three (max_rows 50000)", len(files))
			}
			want := map[int64]int{-1: 1, -2: 1}
			for r := range big {
				if r%1000 != 7 {
					want[int64(r+1)] = 1
				}
			}
			if len(seen) != len(want) {
				t.Errorf("%d distinct ids written, want %d (none of the bad frame's)", len(seen), len(want))
			}
			for id, n := range want {
				if seen[id] != n {
					t.Fatalf("id %d written %d times, want %d", id, seen[id], n)
				}
			}
		})
	}
}

// TestInfallibleFramesConvert: a frame the schema calls infallible (so its
// big batches are converted once, not checked first) converts every row,
// for every column type and frame type, extremes and nulls included; and
// a non-finite float or a non-optional column is not called infallible.
func TestInfallibleFramesConvert(t *testing.T) {
	samples := map[abi.Type][]any{
		abi.TypeInt:    {nil, int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64)},
		abi.TypeFloat:  {nil, 0.5, -1e300, 1e-300, 3.0, math.MaxFloat64},
		abi.TypeBool:   {nil, true, false, true, false},
		abi.TypeString: {nil, "x", "", "2024-01-02", "\xff", "1e400"},
		abi.TypeTime:   {nil, time.Unix(0, 0), time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64), time.Unix(0, 1)},
	}
	called := 0
	for _, typ := range columnTypes() {
		for ft, rows := range samples {
			for _, optional := range []bool{true, false} {
				o := testOutput(t, fmt.Sprintf("path: '%s/x.parquet'\ncolumns: [{name: v, type: %s, optional: %v}]\n", t.TempDir(), typ, optional))
				f, err := frame.Decode(buildFrame(t, []fcol{{"v", ft, false, rows}}, nil))
				if err != nil {
					t.Fatal(err)
				}
				sc := new(scratch)
				if !o.schema.infallible(f, sc) {
					if optional && (typ == typeInt64 && ft == abi.TypeInt || typ == typeTimestamp && ft == abi.TypeTime) {
						t.Errorf("%s from %s: not called infallible", typ, ft)
					}
					continue
				}
				called++
				if !optional {
					t.Errorf("%s from %s, not optional: called infallible with a null row", typ, ft)
				}
				idx := acceptedRows(f, nil)
				fc := o.schema.convertRows(f, idx, make([]parquet.Value, len(idx)), sc)
				if fc.failing > 0 {
					t.Errorf("%s from %s: called infallible, but row %d fails: %v", typ, ft, idx[fc.first], fc.err)
				}
			}
		}
	}
	if called < 8 {
		t.Errorf("%d pairings called infallible, want the direct ones", called)
	}
	o := testOutput(t, fmt.Sprintf("path: '%s/x.parquet'\ncolumns: [{name: v, type: double}]\n", t.TempDir()))
	f, err := frame.Decode(buildFrame(t, []fcol{{"v", abi.TypeFloat, false, []any{1.0, math.NaN()}}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.schema.infallible(f, new(scratch)) {
		t.Error("a NaN called infallible")
	}
}
