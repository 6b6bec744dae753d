package sqliteout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

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

// testBatch is the bodies of a batch's messages: JSON rows and frames.
type testBatch [][]byte

// asJSON is the batch with each frame replaced by its accepted rows as
// JSON messages, which is what loading the frame must be the same as.
func (b testBatch) asJSON(t testing.TB) testBatch {
	t.Helper()
	var out testBatch
	for _, body := range b {
		if !frame.Is(body) {
			out = append(out, body)
			continue
		}
		f, err := frame.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < f.Rows; r++ {
			if !f.Rejected(r) {
				out = append(out, f.AppendRowJSON(nil, r))
			}
		}
	}
	return out
}

func (b testBatch) messages() service.MessageBatch {
	batch := make(service.MessageBatch, len(b))
	for i, body := range b {
		batch[i] = service.NewMessage(body)
	}
	return batch
}

// loadBothWays writes the batches through an output configured as conf,
// and the same batches as JSON messages through another, each on its own
// database (with existing run in it first), in either transaction mode.
// Unless both fail the same batches and end with the same table (columns,
// values and storage classes, in rowid order, or the key's for a WITHOUT
// ROWID table), t fails. It returns the frames' side's batch errors.
func loadBothWays(t *testing.T, conf map[string]any, existing string, batches []testBatch) []error {
	t.Helper()
	dir := t.TempDir()
	var dumps [2][]string
	var errs [2][]error
	for side, name := range []string{"frames", "json"} {
		path := filepath.Join(dir, name+".db")
		if existing != "" {
			if _, err := openDB(t, path).Exec(existing); err != nil {
				t.Fatal(err)
			}
		}
		c := map[string]any{"path": path, "synchronous": "normal"}
		for k, v := range conf {
			c[k] = v
		}
		o := connected(t, c)
		ctx := context.Background()
		run := &runscope.Run{}
		for _, b := range batches {
			if side == 1 {
				b = b.asJSON(t)
			}
			msgs := b.messages()
			if c["transaction"] == "run" {
				run.Emitted()
				msgs = inRun(run, msgs)
			}
			err := o.WriteBatch(ctx, msgs)
			run.Acked(nil)
			errs[side] = append(errs[side], err)
		}
		run.Ended()
		if err := o.Close(ctx); err != nil {
			t.Fatal(err)
		}
		db := openDB(t, path)
		cols := literals(t, db, "SELECT name || ' ' || type || ' pk' || pk || ' notnull' || \"notnull\" FROM pragma_table_info('t') ORDER BY cid")
		dumps[side] = append(dumps[side], cols...)
		var sel []string
		order := "rowid"
		if c["without_rowid"] != true {
			sel = append(sel, "rowid")
		} else {
			order = quoteAll(keyOf(c))
		}
		for _, col := range cols {
			n := quote(strings.Fields(col)[0])
			sel = append(sel, "quote("+n+")", "typeof("+n+")")
		}
		if len(cols) > 0 {
			dumps[side] = append(dumps[side], literals(t, db, "SELECT "+strings.Join(sel, ", ")+" FROM t ORDER BY "+order)...)
		}
	}
	for i := range batches {
		if (errs[0][i] == nil) != (errs[1][i] == nil) {
			t.Errorf("batch %d: as frames %v, as JSON %v", i, errs[0][i], errs[1][i])
		}
	}
	if got, want := strings.Join(dumps[0], "\n"), strings.Join(dumps[1], "\n"); got != want {
		t.Errorf("the table loaded from frames\n%s\nis not the one loaded from JSON\n%s", got, want)
	}
	return errs[0]
}

func keyOf(conf map[string]any) []string {
	var key []string
	if k, ok := conf["key"].([]any); ok {
		for _, s := range k {
			key = append(key, s.(string))
		}
	}
	return key
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestFramesLoadAsJSON: a frame's accepted rows make the table their JSON
// messages make: its types, nulls, a rejected row (skipped, bad values and
// all), metadata columns (never loaded), a field the table lacks and a
// column the frame lacks, alone and mixed with JSON messages in a batch,
// upserted on a key; with declared columns (read by field name, and at
// paths) and with a table inferred from the first batch; in either
// transaction mode.
func TestFramesLoadAsJSON(t *testing.T) {
	first := buildFrame(t, []fcol{
		{"csv_line", abi.TypeInt, true, []any{2, 3, 4, 5, 6}},
		{"id", abi.TypeInt, false, []any{1, 2, 3, 4, 5}},
		{"name", abi.TypeString, false, []any{"widget", nil, "gadget", `say "hi"\`, "bad \xff byte, ü and \x00"}},
		{"qty", abi.TypeInt, false, []any{3, nil, nil, -7, int64(math.MaxInt64)}},
		{"price", abi.TypeFloat, false, []any{19.99, 20.0, math.NaN(), 1e-7, math.Copysign(0, -1)}},
		{"ok", abi.TypeBool, false, []any{true, false, nil, true, false}},
		{"at", abi.TypeTime, false, []any{at("2024-03-01T10:30:00.25Z"), nil, nil, at("1969-12-31T23:59:59Z"), at("2262-04-11T23:47:16.854775807Z")}},
		{"csv_raw", abi.TypeString, true, []any{"1,widget", "2,", "3,gadget,x", "4", "5"}},
	}, map[int]string{2: "qty: x is not an integer"})
	// The same fields in another order, name missing: it upserts ids 1
	// and 2 and adds 6 and 7.
	second := buildFrame(t, []fcol{
		{"price", abi.TypeFloat, false, []any{1.5, nil, 2.25, 1e21}},
		{"id", abi.TypeInt, false, []any{2, 1, 6, 7}},
		{"at", abi.TypeTime, false, []any{at("2025-01-02T03:04:05Z"), at("2025-01-02T03:04:05.000000001Z"), nil, at("1970-01-01T00:00:00Z")}},
		{"ok", abi.TypeBool, false, []any{nil, true, false, true}},
		{"qty", abi.TypeInt, false, []any{10, 11, 12, 0}},
		{"csv_file", abi.TypeString, true, []any{"b.csv", "b.csv", "b.csv", "b.csv"}},
	}, nil)
	// A field the table does not have: ignored by declared columns.
	extra := buildFrame(t, []fcol{
		{"id", abi.TypeInt, false, []any{9, 10}},
		{"colour", abi.TypeString, false, []any{"red", nil}},
		{"price", abi.TypeFloat, false, []any{0.1, 0.2}},
	}, nil)
	rejectedOnly := buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{nil}}}, map[int]string{0: "no id"})
	mixed := []testBatch{
		{rejectedOnly},
		{[]byte(`{"id":8,"name":"json","qty":1,"price":2.5,"ok":true,"at":"2024-05-06T07:08:09Z"}`), first, []byte(`{"id":1,"qty":2}`)},
		{second, []byte(`{"price":3,"id":4}`)},
	}
	declared := []any{
		map[string]any{"name": "id", "type": "INTEGER"},
		map[string]any{"name": "name", "type": "TEXT"},
		map[string]any{"name": "qty", "type": "INTEGER"},
		map[string]any{"name": "price", "type": "REAL"},
		map[string]any{"name": "ok", "type": "BOOLEAN"},
		map[string]any{"name": "at", "type": "TIMESTAMP"},
		map[string]any{"name": "note", "type": "TEXT"}, // in no frame
	}
	// Columns at paths: each field into other types, one path gjson
	// interprets, one field read twice (so no one pass by field name), one
	// the name of a metadata column.
	paths := []any{
		map[string]any{"name": "id", "type": "INTEGER"},
		map[string]any{"name": "name_blob", "type": "BLOB", "path": "name"},
		map[string]any{"name": "qty_real", "type": "REAL", "path": "qty"},
		map[string]any{"name": "qty_text", "type": "TEXT", "path": "qty"},
		map[string]any{"name": "price_text", "type": "TEXT", "path": "price"},
		map[string]any{"name": "ok_text", "type": "TEXT", "path": "ok"},
		map[string]any{"name": "ok_bool", "type": "BOOLEAN", "path": "@this.ok"},
		map[string]any{"name": "at_text", "type": "TEXT", "path": "at"},
		map[string]any{"name": "at_ts", "type": "TIMESTAMP", "path": "at"},
		map[string]any{"name": "line", "type": "INTEGER", "path": "csv_line"}, // metadata: no field
	}
	for _, tc := range []struct {
		name    string
		conf    map[string]any
		batches []testBatch
		// wantErr: the batches that fail (both ways).
		wantErr []int
	}{
		{"declared", map[string]any{"columns": declared, "key": []any{"id"}}, append(mixed, testBatch{extra}), nil},
		{"declared, without rowid", map[string]any{"columns": declared, "key": []any{"id"}, "without_rowid": true}, mixed, nil},
		{"declared, no key", map[string]any{"columns": declared}, mixed, nil},
		{"paths", map[string]any{"columns": paths, "key": []any{"id"}}, mixed, nil},
		// Inferred from the first batch with a row: note and colour are
		// no columns, so the batch with colour fails (as its JSON does).
		{"inferred", map[string]any{"key": []any{"id"}}, append(mixed[1:], testBatch{extra}), []int{2}},
		{"inferred, frame first", map[string]any{"key": []any{"id"}}, []testBatch{{rejectedOnly, first, second}, {[]byte(`{"id":8,"price":1}`)}}, nil},
	} {
		for _, mode := range []string{"batch", "run"} {
			if mode == "run" && len(tc.wantErr) > 0 {
				continue // a failed batch rolls back the run
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				conf := map[string]any{"table": "t", "transaction": mode}
				for k, v := range tc.conf {
					conf[k] = v
				}
				errs := loadBothWays(t, conf, "", tc.batches)
				for i, err := range errs {
					if want := contains(tc.wantErr, i); (err != nil) != want {
						t.Errorf("batch %d: error %v, want one: %v", i, err, want)
					}
				}
			})
		}
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestFrameInference: a table inferred from a batch of frames has the
// columns and types the same rows as JSON messages give it, quirks
// included (a float column whose values are all whole is INTEGER, as
// round prices in JSON are).
func TestFrameInference(t *testing.T) {
	f := func(cols ...fcol) []byte { return buildFrame(t, cols, nil) }
	for _, tc := range []struct {
		name  string
		batch testBatch
	}{
		{"every type", testBatch{f(fcol{"i", abi.TypeInt, false, []any{1}}, fcol{"x", abi.TypeFloat, false, []any{1.5}},
			fcol{"b", abi.TypeBool, false, []any{true}}, fcol{"s", abi.TypeString, false, []any{"s"}}, fcol{"at", abi.TypeTime, false, []any{at("2024-01-01T00:00:00Z")}},
			fcol{"m", abi.TypeInt, true, []any{1}})}},
		{"whole floats", testBatch{f(fcol{"x", abi.TypeFloat, false, []any{1.0, 2.0, nil}})}},
		{"a fraction later", testBatch{f(fcol{"x", abi.TypeFloat, false, []any{1.0, 2.5}})}},
		{"a huge whole float", testBatch{f(fcol{"x", abi.TypeFloat, false, []any{1e20}}, fcol{"y", abi.TypeFloat, false, []any{1e21}})}},
		{"null throughout", testBatch{f(fcol{"x", abi.TypeInt, false, []any{nil, nil}}, fcol{"y", abi.TypeInt, false, []any{1, 2}})}},
		{"widened by a later message", testBatch{f(fcol{"x", abi.TypeInt, false, []any{1}}), []byte(`{"x":2.5}`), f(fcol{"x", abi.TypeString, false, []any{"s"}})}},
		{"first non-null decides", testBatch{f(fcol{"x", abi.TypeString, false, []any{nil}}), f(fcol{"x", abi.TypeBool, false, []any{nil, true}}), []byte(`{"x":1}`)}},
		{"a NaN row does not widen", testBatch{f(fcol{"x", abi.TypeInt, false, []any{1, 2}}, fcol{"y", abi.TypeFloat, false, []any{0.0, math.Inf(1)}})}},
		{"after a frame of rejected rows", testBatch{buildFrame(t, []fcol{{"z", abi.TypeInt, false, []any{1}}}, map[int]string{0: "no"}), []byte(`{"x":1}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loadBothWays(t, map[string]any{"table": "t"}, "", []testBatch{tc.batch})
		})
	}
}

// TestFrameCells: every frame column type into every declared type (and
// an existing column of a type the output does not know), for values
// that convert and values that do not: each stores what its JSON stores,
// with the same storage class, or fails where its JSON fails, naming the
// column and the frame row.
func TestFrameCells(t *testing.T) {
	values := map[abi.Type][]any{
		abi.TypeInt: {0, 1, -1, 2, 42, int64(math.MaxInt64), int64(math.MinInt64), 1709289000, 253402300800, -62167219201},
		abi.TypeFloat: {0.0, math.Copysign(0, -1), 1.0, 0.5, 19.99, 3.0, 1e-7, 1e20, 1e21, float64(1 << 53), float64(1<<53 + 2), float64(1 << 62), 9.3e18, 1e19,
			-1.5, 1709289000.5, 123456789.123, 5e-324, math.MaxFloat64, math.NaN(), math.Inf(-1)},
		abi.TypeBool:   {true, false},
		abi.TypeString: {"", "abc", "42", " 42", "3.0", "19.99", "1e3", "0x1p-2", "1_000", "inf", "NaN", "true", "F", "0", "2024-03-01T12:30:00+02:00", "2024-03-01", "2024-03-01 10:30:00.5", "1709289000", "bad \xff\xfe", "\x00\u2028\"\\", "héllo"},
		abi.TypeTime:   {at("1970-01-01T00:00:00Z"), at("2024-03-01T10:30:00.25Z"), at("1969-12-31T23:59:59.999999999Z"), time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64)},
	}
	for _, typ := range append(typeNames(), "") {
		name, conf, existing := typ, map[string]any{"table": "t", "key": []any{"id"}}, ""
		if typ == "" {
			// A column the output leaves to SQLite: no declared type.
			name, existing = "untyped", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)"
		} else {
			conf["columns"] = []any{map[string]any{"name": "id", "type": "INTEGER"}, map[string]any{"name": "v", "type": typ}}
		}
		t.Run(name, func(t *testing.T) {
			var batches []testBatch
			id := 0
			for ft := abi.TypeInt; ft <= abi.TypeTime; ft++ {
				for _, v := range append(values[ft], nil) {
					id++
					batches = append(batches, testBatch{buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{id}}, {"v", ft, false, []any{v}}}, nil)})
				}
			}
			for i, err := range loadBothWays(t, conf, existing, batches) {
				if err != nil && (!strings.Contains(err.Error(), `column "v"`) || !strings.Contains(err.Error(), "message 0: frame row 0")) {
					t.Errorf("batch %d: error %q does not name the column and the row", i, err)
				}
			}
		})
	}
}

// TestFrameErrors: a frame that cannot be written fails its batch as its
// JSON rows would, the error naming the message, the frame row and what
// is wrong; every message of the batch is failed and nothing written.
func TestFrameErrors(t *testing.T) {
	cols := []any{
		map[string]any{"name": "id", "type": "INTEGER"},
		map[string]any{"name": "qty", "type": "INTEGER"},
		map[string]any{"name": "price", "type": "REAL"},
	}
	good := `{"id":100,"qty":1,"price":1}`
	malformed := append([]byte(frame.Magic), 1, 0, 0, 0)
	for _, tc := range []struct {
		name    string
		columns bool // declared; otherwise the table's, by field
		frame   []byte
		wantErr []string
	}{
		{"conversion", true, buildFrame(t, []fcol{
			{"id", abi.TypeInt, false, []any{1, 2, 3}},
			{"qty", abi.TypeString, false, []any{"1", "x", "abc"}},
		}, map[int]string{1: "rejected"}), []string{"message 1: frame row 2", `column "qty" (INTEGER)`, `value "abc" is not an integer`}},
		{"fraction for integer", true, buildFrame(t, []fcol{
			{"id", abi.TypeInt, false, []any{1}},
			{"qty", abi.TypeFloat, false, []any{2.5}},
		}, nil), []string{"message 1: frame row 0", `column "qty" (INTEGER)`, "2.5"}},
		{"key null", true, buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{1, nil}}}, nil),
			[]string{"message 1: frame row 1", `column "id" is part of the key`, "null"}},
		{"key missing", true, buildFrame(t, []fcol{{"qty", abi.TypeInt, false, []any{1}}, {"id", abi.TypeInt, true, []any{1}}}, nil),
			[]string{"message 1: frame row 0", `column "id" is part of the key`, "missing"}},
		{"NaN", true, buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{1}}, {"price", abi.TypeFloat, false, []any{math.NaN()}}}, nil),
			[]string{"message 1: frame row 0", `column "price"`, "not a JSON object"}},
		{"unknown field", false, buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{1}}, {"colour", abi.TypeString, false, []any{"red"}}}, nil),
			[]string{"message 1: frame row 0", `field "colour" is not a column`}},
		{"rejected by SQLite", true, buildFrame(t, []fcol{{"id", abi.TypeInt, false, []any{1, 2, 3, 4}}, {"qty", abi.TypeInt, false, []any{1, 2, 3, -1}}}, map[int]string{0: "no"}),
			[]string{"message 1: frame row 3", "negative quantity"}},
		{"malformed", true, malformed, []string{"message 1", "malformed frame"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.db")
			conf := map[string]any{
				"path": path, "table": "t", "key": []any{"id"}, "columns": cols,
				"init_statements": []any{`CREATE TRIGGER IF NOT EXISTS t_qty BEFORE INSERT ON t WHEN NEW.qty < 0 BEGIN SELECT RAISE(ABORT, 'negative quantity'); END`},
			}
			o := connected(t, conf)
			if !tc.columns {
				_ = o.Close(context.Background())
				delete(conf, "columns")
				o = connected(t, conf)
			}
			batch := testBatch{[]byte(good), tc.frame, []byte(`{"id":101}`)}
			err := o.WriteBatch(context.Background(), batch.messages())
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
			if n := count(t, openDB(t, path), "t"); n != 0 {
				t.Errorf("%d rows written, want none", n)
			}
			if tc.name != "malformed" {
				if err := o.WriteBatch(context.Background(), batch.asJSON(t).messages()); err == nil {
					t.Error("the frame's rows as JSON messages were written")
				}
			}
		})
	}
}

// captured is a metrics exporter that keeps counters' totals by name.
type captured struct {
	mu     sync.Mutex
	counts map[string]int64
}

type capturedCounter struct {
	c    *captured
	name string
}

func (c capturedCounter) Incr(n int64) {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	c.c.counts[c.name] += n
}

type noMetric struct{}

func (noMetric) Timing(int64) {}
func (noMetric) Set(int64)    {}

func (c *captured) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	return func(...string) service.MetricsExporterCounter { return capturedCounter{c, name} }
}

func (c *captured) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return noMetric{} }
}

func (c *captured) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return noMetric{} }
}

func (c *captured) Close(context.Context) error { return nil }

func (c *captured) count(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

// TestRowsSentMetric: output_rows_sent counts the rows written, a JSON
// message one and a frame its accepted rows, and not those of a batch
// that failed; in run mode the run's rows count when it commits, and a
// run that does not complete counts none (a failed run's outcome reads
// rows_out from this counter).
func TestRowsSentMetric(t *testing.T) {
	frameOf := func(ids ...any) []byte {
		return buildFrame(t, []fcol{{"id", abi.TypeInt, false, ids}, {"line", abi.TypeInt, true, ids}}, map[int]string{0: "rejected"})
	}
	for _, tc := range []struct {
		mode     string
		complete bool
		want     int64
	}{{"batch", false, 6}, {"run", true, 6}, {"run", false, 0}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s/complete=%v", mode, tc.complete), func(t *testing.T) {
			metrics := &captured{counts: map[string]int64{}}
			env := service.NewEnvironment()
			if err := Register(env); err != nil {
				t.Fatal(err)
			}
			if err := env.RegisterMetricsExporter("captured", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) {
				return metrics, nil
			}); err != nil {
				t.Fatal(err)
			}
			sb := env.NewStreamBuilder()
			if err := sb.SetLoggerYAML("level: none"); err != nil {
				t.Fatal(err)
			}
			if err := sb.SetMetricsYAML("captured: {}"); err != nil {
				t.Fatal(err)
			}
			produce, err := sb.AddBatchProducerFunc()
			if err != nil {
				t.Fatal(err)
			}
			if err := sb.AddOutputYAML(fmt.Sprintf(`sqlite: {path: %q, table: t, columns: [{name: id, type: INTEGER}], transaction: %s}`,
				filepath.Join(t.TempDir(), "t.db"), mode)); err != nil {
				t.Fatal(err)
			}
			stream, err := sb.Build()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- stream.Run(ctx) }()
			run := &runscope.Run{}
			send := func(b testBatch) error {
				msgs := b.messages()
				if mode == "run" {
					run.Emitted()
					msgs = inRun(run, msgs)
				}
				return produce(ctx, msgs)
			}
			// 3 accepted frame rows and 2 JSON messages, then 1 more.
			if err := send(testBatch{frameOf(1, 2, 3, 4), []byte(`{"id":5}`), []byte(`{"id":6}`)}); err != nil {
				t.Fatal(err)
			}
			if err := send(testBatch{[]byte(`{"id":7}`)}); err != nil {
				t.Fatal(err)
			}
			if mode == "batch" {
				if err := send(testBatch{frameOf(8, 9), []byte(`{"id":"x"}`)}); err == nil {
					t.Fatal("a batch with a bad row was written")
				}
			}
			if mode == "run" {
				if got := metrics.count("output_rows_sent"); got != 0 {
					t.Errorf("output_rows_sent is %d before the run committed, want 0", got)
				}
				run.Acked(nil)
				run.Acked(nil)
				if tc.complete {
					run.Ended()
				}
			}
			if err := stream.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			<-done
			if got := metrics.count("output_rows_sent"); got != tc.want {
				t.Errorf("output_rows_sent is %d, want %d", got, tc.want)
			}
		})
	}
}
