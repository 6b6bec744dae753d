package csvinput

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// readAll runs the input over its files and renders each message as
// "line: body" or "line: body ! reason". It reads them again with
// `frames: true` and fails the test unless the frames' rows, unframed, are
// the same messages with the same metadata.
func readAll(t *testing.T, yaml string, builtin Files) []string {
	t.Helper()
	rows, rowsMeta := readMode(t, yaml, builtin)
	_, framesMeta := readMode(t, yaml+"\nframes: true\nbatch_size: 2\n", builtin)
	if strings.Join(rowsMeta, "\n") != strings.Join(framesMeta, "\n") {
		t.Errorf("frames differ from rows:\nrows:\n%s\nframes:\n%s", strings.Join(rowsMeta, "\n"), strings.Join(framesMeta, "\n"))
	}
	return rows
}

// readMode reads the input; it returns each message rendered, and again
// with its metadata.
func readMode(t *testing.T, yaml string, builtin Files) (out, withMeta []string) {
	t.Helper()
	in := connectedInput(t, yaml, builtin)
	ctx := context.Background()
	for {
		batch, _, err := in.ReadBatch(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return out, withMeta
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range unframeAll(t, batch) {
			line, _ := msg.MetaGet("csv_line")
			body, _ := msg.AsBytes()
			s := line + ": " + string(body)
			if err := msg.GetError(); err != nil {
				s += " ! " + err.Error()
			}
			out = append(out, s)
			file, _ := msg.MetaGet("csv_file")
			raw, _ := msg.MetaGet("csv_raw")
			withMeta = append(withMeta, fmt.Sprintf("%s [file %s, raw %q]", s, file, raw))
		}
	}
}

// connectedInput is the input yaml configures, connected.
func connectedInput(t *testing.T, yaml string, builtin Files) *input {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInput(conf, builtin)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in
}

// readBatches reads in to its end.
func readBatches(t *testing.T, in *input) []service.MessageBatch {
	t.Helper()
	var out []service.MessageBatch
	for {
		batch, _, err := in.ReadBatch(context.Background())
		if errors.Is(err, service.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, batch)
	}
}

// unframeAll expands frames into their rows' messages.
func unframeAll(t *testing.T, batch service.MessageBatch) service.MessageBatch {
	t.Helper()
	var out service.MessageBatch
	for _, msg := range batch {
		body, _ := msg.AsBytes()
		if !frame.Is(body) {
			out = append(out, msg)
			continue
		}
		f, err := frame.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < f.Rows; i++ {
			out = append(out, f.RowMessage(msg, i))
		}
	}
	return out
}

func TestMissingRequiredColumn(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	b := filepath.Join(dir, "b.csv")
	// A spreadsheet's BOM is not part of the header's text.
	if err := os.WriteFile(a, []byte("\xef\xbb\xbfdate,qty\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("date,quantity\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+filepath.Join(dir, "*.csv")+"]\ncolumns: [{name: date, type: date}, {name: quantity, type: int}, {name: note, required: false}]\n", nil)
	want := []string{
		"1: date,qty ! " + a + " line 1: missing required columns: quantity (the header has date, qty)",
		`2: {"date":"2024-01-01","quantity":1}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuiltinFile(t *testing.T) {
	files := func(name string) ([]byte, bool) {
		if name == "sample/x.csv" {
			return []byte("a\n1\n"), true
		}
		return nil, false
	}
	if got := readAll(t, "paths: [builtin:sample/x.csv]\ncolumns: [{name: a, type: int}]\n", files); len(got) != 1 || got[0] != `2: {"a":1}` {
		t.Errorf("got %q", got)
	}
}

// TestFileAndLineFields: file_field and line_field put where a row came
// from into the row itself; a header that already has such a column is
// rejected rather than producing a JSON object with the key twice.
func TestFileAndLineFields(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	b := filepath.Join(dir, "b.csv")
	if err := os.WriteFile(a, []byte("date,quantity\n2024-01-01,1\n\n2024-01-02,x\n2024-01-03,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("date,line\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+filepath.Join(dir, "*.csv")+"]\ncolumns: [{name: quantity, type: int, required: false}]\nfile_field: source_file\nline_field: line\n", nil)
	want := []string{
		`2: {"date":"2024-01-01","quantity":1,"source_file":"` + a + `","line":2}`,
		"4: 2024-01-02,x ! " + a + ` line 4: column quantity: "x" is not an integer`,
		`5: {"date":"2024-01-03","quantity":3,"source_file":"` + a + `","line":5}`,
		"1: date,line ! " + b + ` line 1: the header has a column "line", the name file_field or line_field gives the field the input adds`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBatchSizes: rows come out the same, in order, whatever the batch
// size, batches spanning the end of one file and the start of the next.
func TestBatchSizes(t *testing.T) {
	dir := t.TempDir()
	for i, body := range []string{"a,b\n1,2\n3,4\n5\n", "a,b\n6,7\n", "a,b\n8,9\n10,11\n"} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.csv", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "paths: [" + filepath.Join(dir, "*.csv") + "]\ncolumns: [{name: a, type: int}]\n"
	want := readAll(t, base, nil)
	if len(want) != 6 {
		t.Fatalf("%d rows, want 6:\n%s", len(want), strings.Join(want, "\n"))
	}
	for _, n := range []int{1, 2, 3, 5, 0} {
		if got := readAll(t, base+fmt.Sprintf("batch_size: %d\n", n), nil); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("batch_size %d:\n%s\nwant\n%s", n, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// 0: a batch is one file, all of its rows (the first file's bad row
	// among them), as rows and as a frame.
	for _, mode := range []string{"", "frames: true\n"} {
		var sizes []string
		for _, batch := range readBatches(t, connectedInput(t, base+"batch_size: 0\n"+mode, nil)) {
			sizes = append(sizes, fmt.Sprint(len(batch), "/", len(unframeAll(t, batch))))
		}
		want := "3/3 1/1 2/2"
		if mode != "" {
			want = "1/3 1/1 1/2"
		}
		if got := strings.Join(sizes, " "); got != want {
			t.Errorf("batch_size 0 %q: batches of (messages/rows) %s, want %s", mode, got, want)
		}
	}
}

// TestHeaderOnlyFile: a file with a header and no rows is, in frames
// mode, one frame of no rows that still names its file (its constant
// columns), so outputs can tell the file was read and has no rows now; a
// file with rows gets no such frame at its end, whatever its batches; in
// rows mode the empty file gives nothing.
func TestHeaderOnlyFile(t *testing.T) {
	dir := t.TempDir()
	empty, full := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	for path, body := range map[string]string{empty: "a,b\n", full: "a,b\n1,2\n3,4\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "paths: [" + filepath.Join(dir, "*.csv") + "]\ncolumns: [{name: a, type: int}]\nfile_field: src\n"
	for _, tc := range []struct {
		conf string
		want string // per batch: rows, and the file its constant column names
	}{
		{"frames: true\nbatch_size: 0\n", "0 a.csv a.csv | 2 b.csv b.csv"},
		{"frames: true\nbatch_size: 2\n", "0 a.csv a.csv | 2 b.csv b.csv"},
		{"frames: true\nbatch_size: 1\n", "0 a.csv a.csv | 1 b.csv b.csv | 1 b.csv b.csv"},
		{"batch_size: 0\n", "2 rows"},
	} {
		var got []string
		for _, batch := range readBatches(t, connectedInput(t, base+tc.conf, nil)) {
			body, _ := batch[0].AsBytes()
			if !frame.Is(body) {
				got = append(got, fmt.Sprint(len(batch), " rows"))
				continue
			}
			f, err := frame.Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprint(f.Rows, " ", filepath.Base(string(f.Field("src").Bytes(0))), " ", filepath.Base(string(f.Col("csv_file").Bytes(0)))))
		}
		if g := strings.Join(got, " | "); g != tc.want {
			t.Errorf("%q: batches %s, want %s", tc.conf, g, tc.want)
		}
	}
}

// TestRowsAreJSON: every row becomes a JSON object that reads back with
// the cells' text, whatever the text holds: quotes, backslashes, control
// characters, non-ASCII, bytes that are not UTF-8 (read as U+FFFD, as a
// JSON reader would), and headers that need escaping.
func TestRowsAreJSON(t *testing.T) {
	cells := []string{"plain", `say "hi"`, `C:\path`, "bell\x07tab\t", "héllo ✓", "bad\xffbyte", "line\nbreak", "\u2028"}
	var csv strings.Builder
	csv.WriteString("\"we\"\"ird\",note\n")
	for _, c := range cells {
		fmt.Fprintf(&csv, "x,\"%s\"\n", strings.ReplaceAll(c, `"`, `""`))
	}
	path := filepath.Join(t.TempDir(), "a.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+path+"]\ncolumns: [{name: note}]\n", nil)
	if len(got) != len(cells) {
		t.Fatalf("%d rows, want %d: %q", len(got), len(cells), got)
	}
	for i, row := range got {
		body := row[strings.Index(row, ": ")+2:]
		var v map[string]string
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Errorf("row %d (%q): not JSON: %v: %s", i, cells[i], err, body)
			continue
		}
		if want := strings.ToValidUTF8(cells[i], "\uFFFD"); v["note"] != want || v[`we"ird`] != "x" {
			t.Errorf("row %d: %q, want note %q and we\"ird x", i, v, want)
		}
	}
}

// BenchmarkRead: the sales ETL's extract step alone, the csv_file input
// over 100k rows of gen_sales.py's shape with its columns typed, in
// batches of 8192, or as one.
//
//	go test -run '^$' -bench Read -count 6 ./agent/csvinput/
func BenchmarkRead(b *testing.B) {
	var csv strings.Builder
	csv.WriteString("date,product_id,quantity,price,customer_id\n")
	const rows = 100_000
	for i := range rows {
		fmt.Fprintf(&csv, "2025-%02d-%02d,%d,%d,%d.%02d,%d\n", 1+i%3, 1+i%28, 1+i%500, 1+i%5, 1+i%999, i%100, 1+i%5000)
	}
	path := filepath.Join(b.TempDir(), "sales.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	// Rows (one JSON message each), frames (one message per batch) and
	// the file as one frame (batch_size: 0, as ml_dag reads) side by side.
	for _, mode := range []string{"rows", "frames", "frames-file"} {
		b.Run(mode, func(b *testing.B) {
			batch := 8192
			if mode == "frames-file" {
				batch = 0
			}
			conf, err := ConfigSpec().ParseYAML(fmt.Sprintf("paths: [%s]\nbatch_size: %d\nfile_field: source_file\nline_field: line\n", path, batch)+
				"columns: [{name: date, type: date}, {name: product_id, type: int}, {name: quantity, type: int}, {name: price, type: float}, {name: customer_id, type: int}]\n"+
				fmt.Sprintf("frames: %v\n", mode != "rows"), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				in, err := newInput(conf, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := in.Connect(ctx); err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					batch, _, err := in.ReadBatch(ctx)
					if errors.Is(err, service.ErrEndOfInput) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					for _, msg := range batch {
						body, _ := msg.AsBytes()
						if !frame.Is(body) {
							n++
							continue
						}
						f, err := frame.Decode(body)
						if err != nil {
							b.Fatal(err)
						}
						n += f.Rows
					}
				}
				if n != rows {
					b.Fatalf("%d rows, want %d", n, rows)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}

// TestLargeFileKeepsRowText: a file many times the reader's window, with a
// BOM, CRLF rows and quoted cells spanning lines, read as rows and as
// frames: every bad row's reject carries its line and exactly its original
// text, however far into the file, and the good rows are all there.
func TestLargeFileKeepsRowText(t *testing.T) {
	var b strings.Builder
	b.WriteString("\xef\xbb\xbfid,note,quantity\n")
	var wantRejects []string
	line, good := 2, 0
	for i := range 40000 {
		var row string
		switch {
		case i%997 == 5:
			row = fmt.Sprintf("%d,\"two\nlines %d\",x", i, i) // bad quantity, a cell over two lines
		case i%1009 == 7:
			row = fmt.Sprintf("%d,short", i) // too few cells
		default:
			row = fmt.Sprintf("%d,note %d with some text to make the row longer,%d", i, i, i%50)
		}
		if row[len(row)-1] == 'x' || strings.HasSuffix(row, "short") {
			wantRejects = append(wantRejects, fmt.Sprintf("%d %q", line, row))
		} else {
			good++
		}
		b.WriteString(row)
		if i%3 == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteString("\n")
		}
		line += strings.Count(row, "\n") + 1
	}
	path := filepath.Join(t.TempDir(), "big.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "paths: [" + path + "]\ncolumns: [{name: quantity, type: int}]\n"
	for _, mode := range []string{"", "frames: true\nbatch_size: 4096\n"} {
		_, withMeta := readMode(t, yaml+mode, nil)
		var gotRejects []string
		rows := 0
		for _, m := range withMeta {
			if !strings.Contains(m, " ! ") {
				rows++
				continue
			}
			ln, _, _ := strings.Cut(m, ":")
			raw := m[strings.LastIndex(m, "raw ")+4 : len(m)-1]
			gotRejects = append(gotRejects, ln+" "+raw)
		}
		if rows != good {
			t.Errorf("%q: %d good rows, want %d", mode, rows, good)
		}
		if strings.Join(gotRejects, "\n") != strings.Join(wantRejects, "\n") {
			t.Errorf("%q: rejects (line and raw text) differ:\ngot  %d: %.300s\nwant %d: %.300s", mode, len(gotRejects), strings.Join(gotRejects, "\n"), len(wantRejects), strings.Join(wantRejects, "\n"))
		}
	}
}

// TestMemoryDoesNotGrowWithTheFile: reading a file keeps no more of it
// than a window from the row being read, a small part of a large file.
func TestMemoryDoesNotGrowWithTheFile(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b\n")
	for i := range 100000 {
		fmt.Fprintf(&b, "%d,row %d of a file of some megabytes\n", i, i)
	}
	conf, err := ConfigSpec().ParseYAML("paths: [x.csv]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInput(conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := in.openReader("x.csv", strings.NewReader(b.String()), nil)
	held, rows := 0, 0
	for {
		_, _, _, err, ok := f.record()
		if !ok {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows++
		held = max(held, cap(f.win.buf))
	}
	if rows != 100000 {
		t.Fatalf("%d rows, want 100000", rows)
	}
	if held > 512<<10 {
		t.Errorf("held up to %d bytes of a %d-byte file, want at most 512 KiB", held, b.Len())
	}
}

// TestReadErrorFailsTheRun: a file that cannot be read to its end fails
// the run, naming the file and the last line read, and ends the input
// there, rather than ending as if the file ended there (which would
// publish a run missing rows) or being retried until the run times out.
func TestReadErrorFailsTheRun(t *testing.T) {
	errDisk := errors.New("input/output error")
	body := "a,b\n1,2\n3,4\n5,6\n"
	for _, mode := range []string{"", "frames: true\n"} {
		conf, err := ConfigSpec().ParseYAML("paths: [disk.csv]\n"+mode, nil)
		if err != nil {
			t.Fatal(err)
		}
		in, err := newInput(conf, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Cut inside the third row: the reader must not take "3,4\n5" as rows.
		rd := io.MultiReader(strings.NewReader(body[:13]), iotest.ErrReader(errDisk))
		in.files = []string{}
		in.cur = in.openReader("disk.csv", rd, nil)
		for range 2 {
			batch, _, err := in.ReadBatch(context.Background())
			if len(batch) != 0 || !errors.Is(err, service.ErrEndOfInput) {
				t.Errorf("%q: got %d messages, error %v; want the input ended", mode, len(batch), err)
			}
		}
		why := in.run.Incomplete()
		if !errors.Is(why, errDisk) || !strings.Contains(why.Error(), "disk.csv after line 3") || in.run.Complete() {
			t.Errorf("%q: the run is complete: %v, for the reason %v; want it failed with %v naming disk.csv after line 3", mode, in.run.Complete(), why, errDisk)
		}
	}
}

// TestMissingFileFailsTheRun: paths that match no file, or a file that
// cannot be opened, end the input at once with the run failed and saying
// why, instead of Benthos reconnecting until the run's timeout.
func TestMissingFileFailsTheRun(t *testing.T) {
	dir := t.TempDir()
	gone := filepath.Join(dir, "gone.csv")
	for _, tc := range []struct {
		name, paths, want string
		connectFails      bool
	}{
		{"no match", filepath.Join(dir, "nope-*.csv"), "matches no file", true},
		{"removed after connect", gone, "gone.csv", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(gone, []byte("a\n1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			conf, err := ConfigSpec().ParseYAML(fmt.Sprintf("paths: [%q]\n", tc.paths), nil)
			if err != nil {
				t.Fatal(err)
			}
			in, err := newInput(conf, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = in.Connect(context.Background())
			if tc.connectFails != (err != nil) {
				t.Fatalf("Connect: %v", err)
			}
			if err == nil {
				if err := os.Remove(gone); err != nil {
					t.Fatal(err)
				}
				_, _, err = in.ReadBatch(context.Background())
			}
			if !errors.Is(err, service.ErrEndOfInput) {
				t.Errorf("got %v, want the input ended", err)
			}
			if why := in.run.Incomplete(); why == nil || !strings.Contains(why.Error(), tc.want) || !strings.HasPrefix(why.Error(), "csv_file: ") {
				t.Errorf("the run's failure: %v, want csv_file: ... %s", why, tc.want)
			}
		})
	}
}

// TestFileChangedWhileReadFailsTheRun: a file that grows, shrinks or is
// rewritten between being opened and its end was read in part (a file
// still being written), so the run fails, naming it, rather than publish
// that part as the whole; a file replaced by a rename is not changed for
// the reader, which reads the one it opened, whole.
func TestFileChangedWhileReadFailsTheRun(t *testing.T) {
	var body strings.Builder
	body.WriteString("a,b\n")
	for i := range 200 {
		fmt.Fprintf(&body, "%d,%d\n", i, i*i)
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		fails  bool
	}{
		{"unchanged", func(*testing.T, string) {}, false},
		{"appended to", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("200,40000\n201,40401\n"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"rewritten in place, same size", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copy(b[len(b)-4:], "99\n\n")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			// Whatever the file system's clock granularity.
			later := time.Now().Add(time.Minute)
			if err := os.Chtimes(path, later, later); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replaced by a rename", func(t *testing.T, path string) {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte("a,b\n9,9\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		for _, mode := range []string{"rows", "frames"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "sales.csv")
				if err := os.WriteFile(path, []byte(body.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				in := connectedInput(t, fmt.Sprintf("paths: [%q]\nbatch_size: 50\nframes: %v\n", path, mode == "frames"), nil)
				ctx := context.Background()
				rows := 0
				for batches := 0; ; batches++ {
					if batches == 1 {
						tc.change(t, path)
					}
					batch, ack, err := in.ReadBatch(ctx)
					if errors.Is(err, service.ErrEndOfInput) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range batch {
						body, _ := m.AsBytes()
						if f, err := frame.Decode(body); err == nil {
							rows += f.Rows
						} else {
							rows++
						}
					}
					_ = ack(ctx, nil)
				}
				why := in.run.Incomplete()
				if !tc.fails {
					if why != nil || rows != 200 {
						t.Errorf("read %d rows, the run's failure %v; want all 200 and none", rows, why)
					}
					return
				}
				if why == nil || !strings.Contains(why.Error(), "csv_file: "+path+" changed while it was read") {
					t.Errorf("the run's failure: %v; want it to say %s changed while it was read", why, path)
				}
			})
		}
	}
}

// TestFileMatchedTwiceIsReadOnce: two patterns naming the same file read
// it once, in the place of its first match.
func TestFileMatchedTwiceIsReadOnce(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a.csv": "n\n1\n2\n", "b.csv": "n\n3\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	paths := fmt.Sprintf("[%q, %q, %q]", filepath.Join(dir, "b.csv"), filepath.Join(dir, "*.csv"), filepath.Join(dir, ".", "a.csv"))
	got, _ := readMode(t, "paths: "+paths+"\ncolumns: [{name: n, type: int}]\n", nil)
	if want := `2: {"n":3} 2: {"n":1} 3: {"n":2}`; strings.Join(got, " ") != want {
		t.Errorf("rows %s, want %s (b.csv, then a.csv, each once)", strings.Join(got, " "), want)
	}
}

// TestFileNameIsAbsolute: the name a file's rows carry (file_field, the
// csv_file metadata) is its absolute path however the path to it was
// written and wherever the agent runs, so that a job run by hand with
// in/a.csv and by cron with /srv/in/a.csv upserts the same rows rather
// than loading them twice under two names; and a file two paths name is
// read once.
func TestFileNameIsAbsolute(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.csv"), []byte("n\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "sub"))
	want := fmt.Sprintf(`2: {"n":1,"f":%q}`, filepath.Join(dir, "a.csv"))
	for _, paths := range []string{
		fmt.Sprintf("[%q]", dir+"/./a.csv"), fmt.Sprintf("[%q]", dir+"//a.csv"),
		fmt.Sprintf("[%q]", dir+"/sub/../a.csv"), fmt.Sprintf("[%q]", dir+"/./*.csv"),
		"[../a.csv]", "[./../a.csv]", "['../*.csv']",
		fmt.Sprintf("[../a.csv, %q]", filepath.Join(dir, "a.csv")),
	} {
		got, _ := readMode(t, fmt.Sprintf("paths: %s\ncolumns: [{name: n, type: int}]\nfile_field: f\n", paths), nil)
		if strings.Join(got, " ") != want {
			t.Errorf("paths %s: rows %s, want %s", paths, strings.Join(got, " "), want)
		}
	}
}

// TestCompressedFiles: gzip, zstd and bzip2 files read as the CSV they
// hold, whatever their names, with the same rows, lines and row text as
// the plain file; xz, zip and a directory fail the run naming the file;
// a gzip file cut short fails it as a read error.
func TestCompressedFiles(t *testing.T) {
	dir := t.TempDir()
	plain := "a,b\n1,x\n2,\"y, z\"\nbad,w\n3,v\n"
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(plain))
	_ = zw.Close()
	zst, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	bz2, err := os.ReadFile("testdata/rows.csv.bz2") // Go writes no bzip2
	if err != nil {
		t.Fatal(err)
	}
	conf := func(path string) string {
		return fmt.Sprintf("paths: [%q]\ncolumns: [{name: a, type: int}]\n", path)
	}
	want := readAll(t, conf(write("plain.csv", []byte(plain))), nil)
	if len(want) != 4 {
		t.Fatalf("plain file: %d rows, want 4: %q", len(want), want)
	}
	for name, body := range map[string][]byte{
		"rows.csv.gz":  gz.Bytes(),
		"rows.csv.zst": zst.EncodeAll([]byte(plain), nil),
		"rows.csv.bz2": bz2,
		"gzip-no-ext":  gz.Bytes(),
	} {
		path := write(name, body)
		got := strings.ReplaceAll(strings.Join(readAll(t, conf(path), nil), "\n"), path, filepath.Join(dir, "plain.csv"))
		if got != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", name, got, strings.Join(want, "\n"))
		}
	}

	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"xz", write("rows.csv.xz", []byte("\xfd7zXZ\x00\x00\x04")), "rows.csv.xz is xz-compressed, which is not read"},
		{"zip", write("rows.zip", []byte("PK\x03\x04\x14\x00")), "rows.zip is a zip archive, which is not read"},
		{"directory", filepath.Join(dir, "sub"), "sub is a directory: name its files"},
		{"gzip cut short", write("cut.csv.gz", gz.Bytes()[:gz.Len()-12]), "cut.csv.gz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := connectedInput(t, conf(tc.path), nil)
			readBatches(t, in)
			if why := in.run.Incomplete(); why == nil || !strings.Contains(why.Error(), tc.want) {
				t.Errorf("the run's failure: %v, want one saying %q", why, tc.want)
			}
		})
	}
}

// TestDateFormats: a date or timestamp column with a strftime format reads
// exports not written in ISO 8601 (day first, month first, dotted, month
// names, zones), padded or not, into the ISO forms; a day the month does
// not have, and a cell in another layout, are rejected saying so; a format
// on another type, or without a directive, is a config error.
func TestDateFormats(t *testing.T) {
	for _, tc := range []struct{ typ, format, cell, want string }{
		{"date", "%d/%m/%Y", "15/01/2024", "2024-01-15"},
		{"date", "%d/%m/%Y", "5/1/2024", "2024-01-05"},
		{"date", "%m/%d/%Y", "01/15/2024", "2024-01-15"},
		{"date", "%d.%m.%Y", " 29.02.2024 ", "2024-02-29"},
		{"date", "%d %b %Y", "5 jan 2024", "2024-01-05"},
		{"date", "%d/%m/%Y", "31/02/2024", `! "31/02/2024" is not a valid date in the format "%d/%m/%Y"`},
		{"date", "%d.%m.%Y", "29.02.2023", "! is not a valid date"},
		{"date", "%d/%m/%Y", "2024-01-15", `! "2024-01-15" does not match the format "%d/%m/%Y"`},
		{"timestamp", "%d/%m/%Y %H:%M", "15/01/2024 14:05", "2024-01-15T14:05:00Z"},
		{"timestamp", "%d.%m.%Y %H:%M:%S %z", "15.01.2024 14:05:06 +0100", "2024-01-15T13:05:06Z"},
		{"timestamp", "%Y-%m-%dT%H:%M:%S.%f", "2024-01-15T10:00:00.123", "2024-01-15T10:00:00.123Z"},
		{"timestamp", "%m/%d/%Y %I:%M %p", "01/15/2024 2:05 PM", "2024-01-15T14:05:00Z"},
	} {
		var c cell
		err := convertCell(&c, tc.typ, tc.format, numberFormat{decimal: '.'}, tc.cell)
		got := strings.Trim(string(appendCell(nil, &c)), `"`)
		if err != nil {
			got = "! " + err.Error()
		}
		if want, isErr := strings.CutPrefix(tc.want, "! "); isErr && !strings.Contains(got, want) || !isErr && got != tc.want {
			t.Errorf("%s %q %q: %s, want %s", tc.typ, tc.format, tc.cell, got, tc.want)
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "eu.csv")
	if err := os.WriteFile(path, []byte("day,at\n15/01/2024,15/01/2024 14:05\n31/02/2024,01/02/2024 00:00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, fmt.Sprintf("paths: [%q]\ncolumns:\n  - {name: day, type: date, format: '%%d/%%m/%%Y'}\n  - {name: at, type: timestamp, format: '%%d/%%m/%%Y %%H:%%M'}\n", path), nil)
	want := []string{
		`2: {"day":"2024-01-15","at":"2024-01-15T14:05:00Z"}`,
		`3: 31/02/2024,01/02/2024 00:00 ! ` + path + ` line 3: column day: "31/02/2024" is not a valid date in the format "%d/%m/%Y"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct{ col, want string }{
		{"{name: n, type: int, format: '%d'}", "format applies to date and timestamp columns, not int"},
		{"{name: d, type: date, format: 'dd/mm/yyyy'}", `format "dd/mm/yyyy" has no %-directive`},
	} {
		wantConfigError(t, fmt.Sprintf("paths: [%q]\ncolumns: [%s]\n", path, tc.col), tc.want)
	}
}

// wantConfigError fails the test unless the input yaml configures is
// refused with an error saying want.
func wantConfigError(t *testing.T, yaml, want string) {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newInput(conf, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want an error saying %q", yaml, err, want)
	}
}

// TestNumberFormats: an export from a European locale (semicolons,
// decimal commas, points between thousands) reads as the same numbers as
// the plain one; a cell written the other way is rejected; separators
// that clash are config errors.
func TestNumberFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cols := "columns: [{name: qty, type: int}, {name: price, type: float}]\n"
	plain := readAll(t, fmt.Sprintf("paths: [%q]\n%s", write("plain.csv", "qty,price\n1234,3.5\n2,1234567.25\n"), cols), nil)
	eu := write("eu.csv", "qty;price\n1.234;3,5\n2;1.234.567,25\n3;4.5\n")
	got := readAll(t, fmt.Sprintf("paths: [%q]\ndelimiter: ';'\ndecimal: ','\nthousands: '.'\n%s", eu, cols), nil)
	want := append(slices.Clone(plain), `4: 3;4.5 ! `+eu+` line 4: column price: "4.5" is not a number`)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, tc := range []struct{ conf, want string }{
		{"decimal: ';'", `decimal: ";" is not . or ,`},
		{"decimal: ','", `decimal: "," is also the delimiter`},
		{"thousands: 'x'", `thousands: "x" is not one of`},
		{"thousands: '.'", `thousands: "." is also the decimal separator`},
		{"delimiter: ';'\nthousands: ';'", `thousands: ";" is not one of`},
	} {
		wantConfigError(t, fmt.Sprintf("paths: [%q]\n%s\n", eu, tc.conf), tc.want)
	}
}

// TestParseTimestamp: the quick path reads what time.Parse reads with
// convertCell's layouts, to the same instant, and leaves everything else
// to it: shapes it does not take, days and hours out of range, a leap
// second, fractions and zones where a layout has none.
func TestParseTimestamp(t *testing.T) {
	layouts := []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"}
	slow := func(s string) (time.Time, bool) {
		for _, l := range layouts {
			if tm, err := time.Parse(l, s); err == nil {
				return tm, true
			}
		}
		return time.Time{}, false
	}
	cells := []string{
		"2025-01-01", "2024-02-29", "2023-02-29", "2025-13-01", "2025-00-10", "2025-04-31", "0001-01-01", "9999-12-31",
		"2025-01-01 00:00:00", "2025-01-01 23:59:59", "2025-01-01 24:00:00", "2025-01-01 12:60:00", "2025-01-01 12:00:60",
		"2025-01-01T10:00:00", "2025-01-01T10:00:00Z", "2025-01-01T10:00:00.5Z", "2025-01-01T10:00:00.123456789Z",
		"2025-01-01T10:00:00.1234567891Z", "2025-01-01T10:00:00+05:30", "2025-01-01T10:00:00-08:00", "2025-01-01T10:00:00+24:00",
		"2025-01-01 10:00:00Z", "2025-01-01 10:00:00.5", "2025-01-01T10:00:00.5", "2025-01-01t10:00:00z", "2025-1-01",
		"2025-01-01 10:00", "2025-01-01T10:00:00.Z", "2025-01-01T10:00:00+0530", " 2025-01-01", "2025/01/01", "+2025-01-01",
		"1500-06-01T00:00:00Z", "2262-04-12T00:00:00Z",
	}
	quick := 0
	for _, c := range cells {
		got, ok := parseTimestamp(c)
		want, wantOK := slow(c)
		if !ok {
			continue // left to time.Parse
		}
		quick++
		if !wantOK || !got.Equal(want) {
			t.Errorf("%q: quick path %v, time.Parse %v (%v)", c, got, want, wantOK)
		}
	}
	if quick < 12 {
		t.Errorf("the quick path read %d of the cells, want the common shapes", quick)
	}
}

// TestIntColumns: an int column takes an integer, or one written with a
// fraction of zeros, as pandas writes an integer column that had a missing
// value; any other fraction, an exponent or a number too large is not an
// integer.
func TestIntColumns(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"10", 10, true}, {" -3 ", -3, true}, {"+4", 4, true},
		{"10.0", 10, true}, {"-3.00", -3, true}, {"0.0", 0, true}, {"9223372036854775807.0", math.MaxInt64, true},
		{"10.5", 0, false}, {"10.", 0, false}, {".0", 0, false}, {"-.0", 0, false}, {"1e3", 0, false},
		{"1.0.0", 0, false}, {"9223372036854775808.0", 0, false}, {"x.0", 0, false}, {"", 0, false},
	} {
		var c cell
		err := convertCell(&c, "int", "", numberFormat{decimal: '.'}, tc.in)
		if ok := err == nil; ok != tc.ok || (ok && (c.t != abi.TypeInt || c.i != tc.want)) {
			t.Errorf("%q: %+v, %v; want %d, ok %v", tc.in, c, err, tc.want, tc.ok)
		}
	}
}

// TestTimestampColumns: a timestamp column reads each shape the input
// takes into the same RFC 3339 UTC value, as rows and as frames, where it
// is a time column (so a plugin's time field or a Parquet timestamp takes
// it as it is); a time a frame cannot hold is rejected there, naming the
// column, and still read as a row.
func TestTimestampColumns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ts.csv")
	body := "id,at\n1,2025-01-02 03:04:05\n2,2025-01-02T03:04:05+01:00\n3,2025-01-02T03:04:05.25Z\n4,2025-01-02\n5,2025-01-02 03:04:05.5\n6,\n7,2025-02-30 00:00:00\n8,1500-01-01\n9,2025-01-02 03:04\n10,2025-01-02T03:04\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("paths: [%q]\ncolumns:\n  - {name: id, type: int}\n  - {name: at, type: timestamp}\n", path)
	rows, _ := readMode(t, conf, nil)
	frames, _ := readMode(t, conf+"frames: true\n", nil)
	want := []string{
		`2: {"id":1,"at":"2025-01-02T03:04:05Z"}`,
		`3: {"id":2,"at":"2025-01-02T02:04:05Z"}`,
		`4: {"id":3,"at":"2025-01-02T03:04:05.25Z"}`,
		`5: {"id":4,"at":"2025-01-02T00:00:00Z"}`,
		`6: {"id":5,"at":"2025-01-02T03:04:05.5Z"}`,
		`7: {"id":6,"at":null}`,
		`8: 7,2025-02-30 00:00:00 ! ` + path + ` line 8: column at: "2025-02-30 00:00:00" is not a timestamp (RFC 3339, 2006-01-02 15:04:05, 2006-01-02 15:04 or a date)`,
	}
	// Minutes without seconds, as pandas reads them.
	tail := []string{`10: {"id":9,"at":"2025-01-02T03:04:00Z"}`, `11: {"id":10,"at":"2025-01-02T03:04:00Z"}`}
	check := func(mode string, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", mode, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	check("rows", rows, append(append(want, `9: {"id":8,"at":"1500-01-01T00:00:00Z"}`), tail...))
	check("frames", frames, append(append(want, `9: 8,1500-01-01 ! `+path+` line 9: column at: "1500-01-01" is outside the times a frame holds (1677-09-21 to 2262-04-11); read it with frames: false`), tail...))

	batch, _, err := connectedInput(t, conf+"frames: true\n", nil).ReadBatch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := batch[0].AsBytes()
	f, err := frame.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if col := f.Field("at"); col == nil || col.Type != abi.TypeTime {
		t.Errorf("the frame's at column: %+v, want a time column", col)
	}
}
