package sqliteout

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// fileFrame is a frame of rows of one source file, as csv_file with
// file_field and line_field makes them: amounts by line, and the lines
// rejected (with their values, as a later step rejects).
func fileFrame(t *testing.T, file string, amounts map[int]float64, rejected ...int) service.MessageBatch {
	t.Helper()
	lines := make([]int, 0, len(amounts))
	for l := range amounts {
		lines = append(lines, l)
	}
	slices.Sort(lines)
	var files, ls, as []any
	why := map[int]string{}
	for i, l := range lines {
		files, ls, as = append(files, file), append(ls, int64(l)), append(as, amounts[l])
		if slices.Contains(rejected, l) {
			why[i] = "rejected"
		}
	}
	return batchOf(string(buildFrame(t, []fcol{
		{"source_file", abi.TypeString, false, files},
		{"line", abi.TypeInt, false, ls},
		{"amount", abi.TypeFloat, false, as},
	}, why)))
}

// fileRowsConf is a run-mode sqlite output at path of fileFrame's rows,
// keyed on (source_file, line), each file replacing its rows.
func fileRowsConf(path string) map[string]any {
	return map[string]any{
		"path": path, "table": "sales", "transaction": "run", "synchronous": "normal",
		"key": []any{"source_file", "line"},
		"columns": []any{
			map[string]any{"name": "source_file", "type": "TEXT"},
			map[string]any{"name": "line", "type": "INTEGER"},
			map[string]any{"name": "amount", "type": "REAL"},
		},
		"replace_by": []any{"source_file"},
	}
}

// TestReplaceBy: with replace_by: [source_file] a run leaves in the table
// exactly the current rows of each file it reads, whatever earlier runs
// loaded from it, and the rows of files it does not read as they were; a
// run that fails replaces nothing. Without it, the upsert leaves the rows
// a file no longer has (the control that shows the test can fail).
func TestReplaceBy(t *testing.T) {
	conf := func(path string, replace bool) map[string]any {
		c := fileRowsConf(path)
		c["summaries"] = []any{map[string]any{
			"table": "by_file", "group_by": []any{"source_file"},
			"fields": []any{map[string]any{"as": "total", "op": "sum", "column": "amount"}},
		}}
		if !replace {
			delete(c, "replace_by")
		}
		return c
	}
	first := func(t *testing.T) []service.MessageBatch {
		return []service.MessageBatch{
			fileFrame(t, "a.csv", map[int]float64{2: 1, 3: 2, 4: 3, 5: 4, 6: 5}),
			fileFrame(t, "b.csv", map[int]float64{2: 10, 3: 20}),
			fileFrame(t, "c.csv", map[int]float64{2: 100, 3: 200}),
		}
	}
	// a.csv shortened, line 3 now rejected, line 4 changed; every row of
	// c.csv now rejected; b.csv not read.
	second := func(t *testing.T) []service.MessageBatch {
		return []service.MessageBatch{
			fileFrame(t, "a.csv", map[int]float64{2: 1, 3: 2, 4: 30}, 3),
			fileFrame(t, "c.csv", map[int]float64{2: 100, 3: 200}, 2, 3),
		}
	}
	dump := func(t *testing.T, path string) string {
		db := openDB(t, path)
		return strings.Join(literals(t, db, "SELECT source_file, line, amount FROM sales ORDER BY source_file, line"), " ") +
			" || " + strings.Join(literals(t, db, "SELECT source_file, total FROM by_file ORDER BY source_file"), " ")
	}
	for _, tc := range []struct {
		name    string
		replace bool
		want    string
	}{
		{"replace_by", true, "a.csv | 2 | 1 a.csv | 4 | 30 b.csv | 2 | 10 b.csv | 3 | 20 || a.csv | 31 b.csv | 30"},
		{"upsert alone", false, "a.csv | 2 | 1 a.csv | 3 | 2 a.csv | 4 | 30 a.csv | 5 | 4 a.csv | 6 | 5 b.csv | 2 | 10 b.csv | 3 | 20 c.csv | 2 | 100 c.csv | 3 | 200 || a.csv | 42 b.csv | 30 c.csv | 300"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sales.db")
			if err := runOnce(t, conf(path, tc.replace), first(t)...); err != nil {
				t.Fatal(err)
			}
			o, err := runOutput(t, conf(path, tc.replace), second(t)...)
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(t, path); got != tc.want {
				t.Errorf("after the second run:\n got %s\nwant %s", got, tc.want)
			}
			if tc.replace && (o.replacedRows != 7 || len(o.replaced) != 2) {
				t.Errorf("the run replaced %d rows of %d files; want 7 of 2", o.replacedRows, len(o.replaced))
			}
			// A third run that does not complete replaces nothing.
			o = connected(t, conf(path, tc.replace))
			r := &runscope.Run{}
			r.Emitted()
			if err := o.WriteBatch(context.Background(), inRun(r, fileFrame(t, "a.csv", map[int]float64{2: 7}))); err != nil {
				t.Fatal(err)
			}
			r.Acked(nil)
			if err := o.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := dump(t, path); got != tc.want {
				t.Errorf("after a run that did not complete:\n got %s\nwant it unchanged: %s", got, tc.want)
			}
		})
	}
}

// TestReplaceByJSONRows: rows that travel as JSON messages replace their
// parts as a frame's do (from the rows written: an errored message never
// reaches the output).
func TestReplaceByJSONRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sales.db")
	conf := map[string]any{
		"path": path, "table": "sales", "transaction": "run", "key": []any{"source_file", "line"},
		"columns": []any{
			map[string]any{"name": "source_file", "type": "TEXT"},
			map[string]any{"name": "line", "type": "INTEGER"},
		},
		"replace_by": []any{"source_file"},
	}
	if err := runOnce(t, conf, batchOf(`{"source_file":"a.csv","line":2}`, `{"source_file":"a.csv","line":3}`, `{"source_file":"b.csv","line":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := runOnce(t, conf, batchOf(`{"source_file":"a.csv","line":2}`), batchOf(`{"source_file":"a.csv","line":4}`)); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(literals(t, openDB(t, path), "SELECT source_file, line FROM sales ORDER BY source_file, line"), " ")
	if want := "a.csv | 2 a.csv | 4 b.csv | 2"; got != want {
		t.Errorf("after the second run: %s, want %s (a.csv's line 3 gone, b.csv's row kept)", got, want)
	}
}

// TestReplaceByBatchRetried: a batch that deleted its file's rows and then
// failed (a row its insert refused) is rolled back, deletes included; the
// batch sent again must delete them again, or the file's old rows would
// stay.
func TestReplaceByBatchRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sales.db")
	conf := fileRowsConf(path)
	conf["init_statements"] = []any{"CREATE TRIGGER IF NOT EXISTS no_negative BEFORE INSERT ON sales WHEN NEW.amount < 0 BEGIN SELECT RAISE(ABORT, 'negative amount'); END"}
	if err := runOnce(t, conf, fileFrame(t, "a.csv", map[int]float64{2: 1, 3: 2})); err != nil {
		t.Fatal(err)
	}
	o := connected(t, conf)
	ctx := context.Background()
	r := &runscope.Run{}
	r.Emitted()
	if err := o.WriteBatch(ctx, inRun(r, fileFrame(t, "a.csv", map[int]float64{2: 5, 3: -1}))); err == nil || !strings.Contains(err.Error(), "negative amount") {
		t.Fatalf("the batch with a refused row: %v, want the trigger's error", err)
	}
	// Sent again, corrected (as a retry or a fallback would): line 3 gone.
	if err := o.WriteBatch(ctx, inRun(r, fileFrame(t, "a.csv", map[int]float64{2: 5}))); err != nil {
		t.Fatal(err)
	}
	r.Acked(nil)
	r.Ended()
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(literals(t, openDB(t, path), "SELECT source_file, line, amount FROM sales ORDER BY line"), " ")
	if want := "a.csv | 2 | 5"; got != want {
		t.Errorf("after the run: %s, want %s (the first run's line 3 deleted by the batch sent again)", got, want)
	}
}

// TestReplaceByConfig: replace_by needs the run transaction and the
// columns it names, and says so.
func TestReplaceByConfig(t *testing.T) {
	cols := []any{map[string]any{"name": "source_file", "type": "TEXT"}, map[string]any{"name": "line", "type": "INTEGER"}}
	for _, tc := range []struct {
		name string
		conf map[string]any
		want string
	}{
		{"batch transactions", map[string]any{"columns": cols, "replace_by": []any{"source_file"}}, "replace_by: needs transaction: run"},
		{"no columns", map[string]any{"transaction": "run", "replace_by": []any{"source_file"}}, "replace_by: needs columns"},
		{"not a column", map[string]any{"transaction": "run", "columns": cols, "replace_by": []any{"file"}}, `replace_by: "file" is not one of the columns`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := map[string]any{"path": filepath.Join(t.TempDir(), "x.db"), "table": "t"}
			for k, v := range tc.conf {
				c[k] = v
			}
			_, err := newTestOutput(t, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
}
