// Package csvinput provides the `csv_file` input: CSV files read row by
// row into JSON objects with the columns a batch job requires checked and
// typed, each row carrying its file and line, and a row that does not
// convert rejected with its original bytes and the reason.
//
// Benthos' csv scanner emits every value as a string and numbers rows, not
// lines; the seed's sales ETL checks required columns and converts types
// before anything else, and its rejects need the line a person can find in
// the file.
package csvinput

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/itchyny/timefmt-go"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/internal/enumlint"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/civil"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// Types are the column types a row's values are converted to.
func Types() []string { return []string{"string", "int", "float", "bool", "date", "timestamp"} }

// ConfigSpec is the input's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Local").
		Summary("Reads CSV files with a header row into one JSON object per row, with the required columns checked and values typed; rows that do not convert are rejected with their bytes, line and reason.").
		Description(`
Each row becomes a JSON object in the header's column order; an empty cell is null. Columns listed in `+"`columns`"+` are converted to their type; other columns stay strings. A row whose value does not convert (a price of "abc") is emitted with its original CSV text as the body, errored with the reason, so a `+"`switch`"+` on `+"`errored()`"+` can write it to a rejects file. A file whose header lacks a required column is rejected as a whole the same way (its header line, and why), and the input goes on to the next file.

Files compressed with gzip, zstd or bzip2 are read as the CSV they hold, recognised by their first bytes whatever their names (as pandas' read_csv reads a .gz); xz and zip files, and directories, fail the run naming the path rather than being read as rows of garbage.

Files are read as the rows are handed on, holding only a window from the row being read (a few hundred KiB), so memory does not grow with the file. A file that cannot be read to its end (an I/O error) fails the run with the file and the last line read, and the input ends there: it does not end as if the file ended there, and it is not retried within the run (the schedule's retries are). A file that changed between being opened and its end (its size or modification time: a file still being written, or rewritten in place) fails the run the same way, since what was read may be part of it; write input files elsewhere and rename them into place, which the reader does not count as a change (it reads the file it opened).

### Metadata

- csv_file: the file the row came from, its absolute path (`+"`builtin:`"+` files as named)
- csv_line: the line the row starts on, from 1 (the header is line 1)
- csv_raw: the row's original text, for rejects further down the pipeline

### Metrics

- read_latency_ns: the time each batch took to read and parse, so a scheduled run's outcome can show the extract step's time

### A run

The input ends when it has read its files. Outputs with `+"`transaction: run`"+` (sqlite, parquet) publish what they received only once the input has ended and every row it read was acknowledged: a run stopped partway (a timeout, a shutdown) leaves them as they were. Paths that match no file, and a file that cannot be opened or read, fail the run at once with the reason, instead of the input reconnecting until the run's timeout: the run publishes nothing (no empty rejects file either), its outcome is a failure naming the path, and the schedule's `+"`retries`"+` try it again after their back-off. Several csv_file inputs in one stream (a `+"`broker`"+`) make one run, complete when each has ended.`).
		Fields(
			service.NewStringListField("paths").Description("Files or glob patterns, read in order, each file once however many patterns match it; `builtin:NAME` reads a file embedded in the agent (e.g. `builtin:sample/sales.csv`).").Example([]string{"data/sales_*.csv"}),
			service.NewObjectListField("columns",
				service.NewStringField("name").Description("Column name, as in the header."),
				enumlint.Field("type", Types()...).Description("`int` and `float` are JSON numbers (`int` also takes a fraction of zeros, `10.0`, as pandas writes an integer column that had a missing value); `bool` accepts true/false/1/0; `date` must be YYYY-MM-DD (or match `format`) and becomes that string; `timestamp` accepts RFC 3339, `2006-01-02 15:04:05`, `2006-01-02 15:04` or a date (or what `format` says), and becomes RFC 3339 in UTC.").Default("string"),
				service.NewStringField("format").Description("For `date` and `timestamp`: the cells' layout as a strftime format (`%d/%m/%Y`, `%m/%d/%Y %H:%M`, `%d.%m.%Y %H:%M:%S %z`), as pandas' `to_datetime(format=...)` and Bloblang's `ts_strptime` take it, for exports not written in ISO 8601. A date becomes YYYY-MM-DD, a timestamp RFC 3339 in UTC (a time without a zone is taken as UTC). Empty: the ISO forms above.").Default("").Example("%d/%m/%Y"),
				service.NewBoolField("required").Description("Whether the header must have the column.").Default(true),
			).Description("Columns to check and convert.").Default([]any{}),
			service.NewStringField("delimiter").Description("Field delimiter, one character.").Default(","),
			service.NewStringField("decimal").Description("The decimal separator of `float` cells: `.`, or `,` as in exports from a European locale (`3,50`, with `delimiter: \";\"`), as pandas' `read_csv(decimal=...)`.").Default(".").Advanced(),
			service.NewStringField("thousands").Description("A thousands separator to ignore in `int` and `float` cells (`1.234,50` with `decimal: \",\"` and `thousands: .`), as pandas' `read_csv(thousands=...)`: one of `,` `.` `'` `_` or a space, other than the decimal separator and the delimiter. Empty: none.").Default("").Advanced(),
			service.NewIntField("batch_size").Description("Most rows per batch the input hands on. Rows are read as batches because handing Benthos one message at a time costs more than reading the row; the outputs' `batching` regroups them as the pipeline needs. 0: each file's rows as one batch (one frame), for steps that need a whole file at once (a median, a forward fill). Prefer it to a `memory` buffer gathering the rows: the buffer acknowledges the input as soon as it holds a batch, so the run cannot see whether its outputs wrote it, and Benthos' buffer drops a batch an output refuses at the end of the input.").Default(1024).Advanced(),
			service.NewStringField("file_field").Description("If set, each row also gets a field of this name holding the file it came from (as csv_file: its absolute path, so that one file has one name however `paths` spells it and whichever directory the agent runs in: `in/a.csv`, `./in/a.csv` and `/srv/in/a.csv` are one file, and an output keyed on it, such as sqlite's upsert and replace_by, finds the rows an earlier run wrote for it), so a step or output that reads only the row sees it without a mapping. A header with a column of this name is rejected.").Default("").Example("source_file").Advanced(),
			service.NewBoolField("frames").Description("Hand on each batch as one frame (the agent's columnar batch: typed columns, a reason per rejected row, csv_file, csv_line and csv_raw as metadata columns) instead of one JSON message per row. A frame holds the rows of one file. The wasm processor, `distinct`, and the sqlite and parquet outputs read frames directly, without a JSON parse per row per step; `unframe` turns a frame back into one message per row for any other component. Rows, values and rejects are the same either way, but for a timestamp a frame cannot hold (before 1677-09-21 or after 2262-04-11: a frame's timestamp column is nanoseconds, which a plugin's time field or a Parquet timestamp takes as they are), which is rejected; and for a file with a header and no rows, which gives no message as rows but one frame of no rows that still names its file (`file_field`, csv_file): an output replacing a file's rows (sqlite's `replace_by`) then empties them, and a Parquet output in `transaction: run` writes a file of no rows.").Default(false).Advanced(),
			service.NewStringField("line_field").Description("If set, each row also gets a field of this name holding its line number (as csv_line), e.g. for an upsert key that makes a re-run replace its rows. A header with a column of this name is rejected.").Default("").Example("line").Advanced(),
		).
		LintRule(enumlint.Rule(enumlint.Enum{Path: "columns[].type", Options: Types()}))
}

// Files resolves `builtin:` paths to embedded files.
type Files func(name string) ([]byte, bool)

// Register adds the `csv_file` input to env.
func Register(env *service.Environment, builtin Files) error {
	return env.RegisterBatchInput("csv_file", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchInput, error) {
		in, err := newInput(conf, builtin)
		if err != nil {
			return nil, configerr.Wrap(err)
		}
		// One run for the stream, whatever its inputs (a broker of files),
		// so its outputs and the supervisor see one answer.
		in.run = runscope.ForStream(res)
		in.run.Join()
		in.readTime = res.Metrics().NewTimer("read_latency_ns")
		in.rowsRead = res.Metrics().NewCounter("input_rows_received")
		return service.AutoRetryNacksBatched(in), nil
	})
}

type column struct {
	name     string
	typ      string
	format   string // strftime layout of a date or timestamp; "" for ISO
	required bool
}

type input struct {
	paths     []string
	columns   []column
	delim     rune
	numbers   numberFormat
	builtin   Files
	batchSize int
	// readTime times each batch's reading and parsing, so a run's outcome
	// can say how long extracting took beside the other steps.
	readTime *service.MetricTimer
	// run is this stream's run of the input, on every message's context,
	// so outputs that publish a whole run at once know whether it ended.
	run *runscope.Run
	// fileField and lineField, if set, name fields added to each row.
	fileField, lineField string
	// frames hands each batch on as one frame (agent/frame).
	frames bool
	// rowsRead counts rows, which a frame holds many of, so a run's
	// outcome can say how many rows it read.
	rowsRead *service.MetricCounter

	mu    sync.Mutex
	files []string // resolved at Connect
	cur   *fileReader
	ended bool // the input has told its run it is done
}

func newInput(conf *service.ParsedConfig, builtin Files) (*input, error) {
	in := &input{builtin: builtin, run: &runscope.Run{}}
	var err error
	if in.paths, err = conf.FieldStringList("paths"); err != nil {
		return nil, err
	}
	if len(in.paths) == 0 {
		return nil, errors.New("paths: at least one file is required")
	}
	list, err := conf.FieldObjectList("columns")
	if err != nil {
		return nil, err
	}
	for i, c := range list {
		var col column
		if col.name, err = c.FieldString("name"); err != nil {
			return nil, fmt.Errorf("columns[%d]: %w", i, err)
		}
		if col.typ, err = c.FieldString("type"); err != nil {
			return nil, fmt.Errorf("columns[%d]: %w", i, err)
		}
		if !slices.Contains(Types(), col.typ) {
			return nil, fmt.Errorf("columns[%d] (%s): type %q is not one of %s", i, col.name, col.typ, strings.Join(Types(), ", "))
		}
		if col.required, err = c.FieldBool("required"); err != nil {
			return nil, fmt.Errorf("columns[%d]: %w", i, err)
		}
		if col.format, err = c.FieldString("format"); err != nil {
			return nil, fmt.Errorf("columns[%d]: %w", i, err)
		}
		if col.format != "" && col.typ != "date" && col.typ != "timestamp" {
			return nil, fmt.Errorf("columns[%d] (%s): format applies to date and timestamp columns, not %s", i, col.name, col.typ)
		}
		if col.format != "" && !strings.Contains(col.format, "%") {
			return nil, fmt.Errorf("columns[%d] (%s): format %q has no %%-directive: a strftime format such as %%d/%%m/%%Y", i, col.name, col.format)
		}
		in.columns = append(in.columns, col)
	}
	d, err := conf.FieldString("delimiter")
	if err != nil {
		return nil, err
	}
	if r := []rune(d); len(r) != 1 || r[0] == '"' || r[0] == '\n' {
		return nil, fmt.Errorf("delimiter: %q is not one character other than a quote or newline", d)
	}
	in.delim = []rune(d)[0]
	if in.numbers, err = parseNumberFormat(conf, in.delim); err != nil {
		return nil, err
	}
	if in.batchSize, err = conf.FieldInt("batch_size"); err != nil {
		return nil, err
	}
	if in.batchSize < 0 {
		return nil, fmt.Errorf("batch_size: %d is negative", in.batchSize)
	}
	if in.fileField, err = conf.FieldString("file_field"); err != nil {
		return nil, err
	}
	if in.lineField, err = conf.FieldString("line_field"); err != nil {
		return nil, err
	}
	if in.frames, err = conf.FieldBool("frames"); err != nil {
		return nil, err
	}
	if in.fileField != "" && in.fileField == in.lineField {
		return nil, fmt.Errorf("file_field and line_field are both %q", in.fileField)
	}
	return in, nil
}

// Connect finds the files. A batch input cannot wait for its files to
// appear or to become readable: a run that cannot open or read them has
// failed, and ends at once (the pipeline's schedule retries it, with
// back-off), instead of Benthos reconnecting until the run's timeout.
// Connect and ReadBatch record such an error on the run
// (runscope.Run.Fail), which keeps the outputs from publishing and the
// supervisor from calling the run a success, and end the input.
func (in *input) Connect(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.resolve(); err != nil {
		return in.fail(err)
	}
	return nil
}

// fail ends the input with err as its run's failure.
func (in *input) fail(err error) error {
	in.run.Fail(err)
	in.end()
	return service.ErrEndOfInput
}

// end records, once, that this input is done.
func (in *input) end() {
	if !in.ended {
		in.ended = true
		in.run.Ended()
	}
}

// resolve finds the files the paths name, once.
func (in *input) resolve() error {
	if in.files != nil {
		return nil
	}
	var files []string
	for _, p := range in.paths {
		if strings.HasPrefix(p, "builtin:") {
			files = append(files, p)
			continue
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return fmt.Errorf("csv_file: paths: %q: %w", p, err)
		}
		if len(matches) == 0 {
			return fmt.Errorf("csv_file: paths: %q matches no file", p)
		}
		// A file's name is its rows' file_field and csv_file metadata,
		// which outputs key rows on (sales_data's upsert and replace_by):
		// absolute, so that one file has one name however the path is
		// spelt (in/a.csv, ./in/a.csv, /srv/in/a.csv) and whichever
		// directory the agent runs in. As written, a job run by hand with
		// a relative path and by cron with an absolute one kept every row
		// twice, under two keys, and replace_by replaced neither.
		for _, m := range matches {
			abs, err := filepath.Abs(m)
			if err != nil {
				return fmt.Errorf("csv_file: paths: %q: %w", p, err)
			}
			files = append(files, abs)
		}
	}
	// A file two patterns match is read once: read twice, its every row
	// would come back as a duplicate of itself.
	seen := make(map[string]bool, len(files))
	in.files = slices.DeleteFunc(files, func(f string) bool {
		if seen[f] {
			return true
		}
		seen[f] = true
		return false
	})
	return nil
}

// ReadBatch returns the next rows, up to batch_size of them: handing
// Benthos one message at a time costs more than reading the row.
func (in *input) ReadBatch(context.Context) (service.MessageBatch, service.AckFunc, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.readTime != nil {
		defer func(start time.Time) { in.readTime.Timing(time.Since(start).Nanoseconds()) }(time.Now())
	}
	if in.ended {
		return nil, nil, service.ErrEndOfInput
	}
	if in.run.Failed() != nil {
		// An output (or another input of the run) failed it: the rest of
		// the files would be read for nothing.
		in.end()
		return nil, nil, service.ErrEndOfInput
	}
	var (
		batch service.MessageBatch
		ack   service.AckFunc
		err   error
	)
	if in.frames {
		batch, ack, err = in.readFrame()
	} else {
		batch, ack, err = in.readRows()
	}
	if err != nil && !errors.Is(err, service.ErrEndOfInput) {
		return nil, nil, in.fail(err)
	}
	return batch, ack, err
}

// readRows reads a batch of rows as one message each.
func (in *input) readRows() (service.MessageBatch, service.AckFunc, error) {
	batch := make(service.MessageBatch, 0, min(in.maxRows(), 1024))
	for len(batch) < in.maxRows() {
		cur, err := in.file()
		if err != nil {
			if len(batch) > 0 {
				break // the rows read so far first; the error next time
			}
			return nil, nil, err
		}
		if cur == nil {
			break
		}
		msg, ok := cur.next()
		if !ok {
			if cur.err != nil {
				// The run cannot complete: its rows so far are not handed on.
				return nil, nil, cur.err
			}
			in.cur = nil
			if in.batchSize == 0 && len(batch) > 0 {
				break // a file per batch
			}
			continue
		}
		batch = append(batch, msg)
	}
	return in.emit(batch, len(batch))
}

// maxRows is the most rows a batch holds: batch_size, or for 0 a whole
// file's.
func (in *input) maxRows() int {
	if in.batchSize == 0 {
		return math.MaxInt
	}
	return in.batchSize
}

// file is the file being read, the next one opened if it is done, or nil
// when none is left.
func (in *input) file() (*fileReader, error) {
	if in.cur == nil && len(in.files) > 0 {
		cur, err := in.open(in.files[0])
		if err != nil {
			return nil, err
		}
		in.files = in.files[1:]
		in.cur = cur
	}
	return in.cur, nil
}

// emit hands on a batch holding rows rows, or ends the input if it is
// empty.
func (in *input) emit(batch service.MessageBatch, rows int) (service.MessageBatch, service.AckFunc, error) {
	if len(batch) == 0 {
		in.end()
		return nil, nil, service.ErrEndOfInput
	}
	for i, m := range batch {
		// On the message's own context: a frame's records the room
		// after it for its steps' patches (frame.NewMessage).
		batch[i] = m.WithContext(runscope.With(m.Context(), in.run))
	}
	if in.rowsRead != nil {
		in.rowsRead.Incr(int64(rows))
	}
	in.run.Emitted()
	// Nothing else to acknowledge: a failed run reads its files again.
	return batch, func(_ context.Context, err error) error {
		in.run.Acked(err)
		return nil
	}, nil
}

// source opens name for reading: a file, or one embedded in the agent.
func (in *input) source(name string) (io.Reader, io.Closer, os.FileInfo, error) {
	if n, ok := strings.CutPrefix(name, "builtin:"); ok {
		if in.builtin != nil {
			if b, ok := in.builtin(n); ok {
				return bytes.NewReader(b), nil, nil, nil
			}
		}
		return nil, nil, nil, fmt.Errorf("csv_file: no embedded file %q", n)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("csv_file: %w", err)
	}
	opened, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, nil, fmt.Errorf("csv_file: %w", err)
	}
	if opened.IsDir() {
		_ = f.Close()
		return nil, nil, nil, fmt.Errorf("csv_file: %s is a directory: name its files (%s)", name, filepath.Join(name, "*.csv"))
	}
	rd, dec, err := decompressed(name, f)
	if err != nil {
		_ = f.Close()
		return nil, nil, nil, err
	}
	if dec == nil {
		return rd, f, opened, nil
	}
	return rd, closerFunc(func() {
		_ = dec.Close()
		_ = f.Close()
	}), opened, nil
}

func (in *input) Close(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur != nil {
		in.cur.finish()
	}
	return nil
}

// fileReader walks one file's rows, reading the file as it goes: it keeps
// only the bytes from the row being read on (win), which is enough for a
// row's original text, so memory does not grow with the file.
type fileReader struct {
	in   *input
	name string
	src  io.Closer // the open file; nil for an embedded one
	// opened is the file's size and time when it was opened (nil for an
	// embedded one), to tell at its end whether it changed meanwhile.
	opened  os.FileInfo
	win     *window
	head    []byte // the file's first line, the text of a header's reject
	err     error  // why the file could not be read to its end
	lines   int    // the line of the last record read
	r       *records
	header  []string
	types   []string // per header column; "" keeps the string
	formats []string // per header column: a date or timestamp column's format
	// short is, per header column, the type of a number column read
	// first by shortInt or shortFloat (abi.TypeInt, abi.TypeFloat), or 0:
	// decided once for the file, not per cell.
	short []abi.Type
	// keys are each column's `"name":`, and suffix the file and line
	// fields' names and the file's, written once per file, not per row.
	keys   [][]byte
	suffix []byte
	off    int64 // byte offset where the next row starts
	done   bool
	// headerErr, if set, is emitted once, as the file's reject.
	headerErr error
	// cells is the current row's converted cells.
	cells []cell
	// fc builds the file's frames, in frames mode.
	fc *frameCols
	// framed says the file has given a frame, so a frame of no rows at its
	// end is not needed to say the file was read.
	framed bool
	// timestamps says a column is typed timestamp: only then may a row
	// hold a time a frame cannot (frameTimes).
	timestamps bool
}

func (in *input) open(name string) (*fileReader, error) {
	rd, src, opened, err := in.source(name)
	if err != nil {
		return nil, err
	}
	r := in.openReader(name, rd, src)
	r.opened = opened
	return r, nil
}

// openReader reads the header of the file name, read from rd and closed
// through src (if not nil) once it is read.
func (in *input) openReader(name string, rd io.Reader, src io.Closer) *fileReader {
	win := &window{r: rd}
	win.skipBOM()
	f := &fileReader{in: in, name: name, src: src, win: win}
	f.r = newRecords(f.win, in.delim)
	header, _, err := f.r.Read()
	f.off = f.r.Offset()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the file is empty: no header row")
		}
		f.headerErr = fmt.Errorf("header: %w", err)
		f.headerFailed()
		return f
	}
	// The record is the reader's until its next read.
	f.header = make([]string, len(header))
	for i, h := range header {
		f.header[i] = strings.Clone(h)
	}
	f.cells = make([]cell, len(header))
	f.types = make([]string, len(header))
	f.short = make([]abi.Type, len(header))
	f.formats = make([]string, len(header))
	for _, h := range header {
		f.keys = append(f.keys, append(jsonstr.Append(nil, h), ':'))
	}
	if in.fileField != "" {
		f.suffix = append(jsonstr.Append(append(f.suffix, ','), in.fileField), ':')
		f.suffix = jsonstr.Append(f.suffix, name)
	}
	var missing []string
	// With a decimal comma or a thousands separator, a number cell is
	// never read by shortInt or shortFloat.
	plain := in.numbers == numberFormat{decimal: '.'}
	for _, c := range in.columns {
		i := slices.Index(header, c.name)
		if i < 0 {
			if c.required {
				missing = append(missing, c.name)
			}
			continue
		}
		f.types[i] = c.typ
		f.timestamps = f.timestamps || c.typ == "timestamp"
		if plain {
			switch c.typ {
			case "int":
				f.short[i] = abi.TypeInt
			case "float":
				f.short[i] = abi.TypeFloat
			}
		}
		f.formats[i] = c.format
	}
	if len(missing) > 0 {
		f.headerErr = fmt.Errorf("missing required columns: %s (the header has %s)", strings.Join(missing, ", "), strings.Join(header, ", "))
	}
	for _, added := range []string{in.fileField, in.lineField} {
		if added != "" && slices.Contains(header, added) {
			f.headerErr = fmt.Errorf("the header has a column %q, the name file_field or line_field gives the field the input adds", added)
		}
	}
	if f.headerErr != nil {
		f.headerFailed()
	}
	return f
}

// headerFailed keeps the file's first line, the text of the header's
// reject, and closes the file: none of its rows is read.
func (f *fileReader) headerFailed() {
	line := f.win.span(0, f.win.base+int64(len(f.win.buf))) // after a BOM
	if end := bytes.IndexByte(line, '\n'); end >= 0 {
		line = line[:end]
	}
	f.head = bytes.Clone(bytes.TrimRight(line, "\r"))
	f.finish()
}

// finish closes the file, once.
func (f *fileReader) finish() {
	if f.src != nil {
		_ = f.src.Close() // read only: nothing to lose
		f.src = nil
	}
}

// next returns the file's next row, or false at its end.
func (f *fileReader) next() (*service.Message, bool) {
	if f.done {
		return nil, false
	}
	if f.headerErr != nil {
		f.done = true
		return f.reject(1, f.head, f.headerErr), true
	}
	rec, line, raw, err, ok := f.record()
	if !ok {
		return nil, false
	}
	if err != nil {
		return f.reject(line, raw, err), true
	}
	doc, err := f.convert(rec, line)
	if err != nil {
		return f.reject(line, raw, err), true
	}
	msg := service.NewMessage(doc)
	f.meta(msg, line, raw)
	return msg, true
}

// record reads the file's next record: its cells, the line it starts on
// and its original text; false at the end of the file. A record that does
// not parse comes with the error.
func (f *fileReader) record() (rec []string, line int, raw []byte, err error, ok bool) {
	start := f.off
	// The last record's text has been copied by now.
	f.win.drop(start)
	rec, line, err = f.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			f.done = true
			f.err = f.changed()
			f.finish()
			return nil, 0, nil, nil, false
		}
		if _, isParse := errors.AsType[*csv.ParseError](err); !isParse {
			// Not the row's fault: the file could not be read. The run
			// fails rather than end early, as if the file ended here.
			f.done, f.err = true, fmt.Errorf("csv_file: read %s after line %d: %w", f.name, f.lines, err)
			f.finish()
			return nil, 0, nil, nil, false
		}
	}
	f.off = f.r.Offset()
	f.lines = line
	// Blank lines before the record are skipped by the reader but are in
	// the span; a reject's raw text is the record alone.
	raw = trimNewlines(f.win.span(start, f.off))
	return rec, line, raw, err, true
}

// trimNewlines is bytes.Trim(b, "\r\n") without building the cutset's
// table each row.
func trimNewlines(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// changed says, at the end of the file, why the run must not take what
// was read as the file if it changed since it was opened (nil if not): a
// file still being written, or rewritten in place, was read in part, and
// the run would publish that part as if it were the whole. A file
// replaced by a rename is not a change here: the open file is the one
// that was there, read whole.
func (f *fileReader) changed() error {
	file, ok := f.src.(*os.File)
	if !ok || f.opened == nil {
		return nil
	}
	now, err := file.Stat()
	if err != nil {
		return fmt.Errorf("csv_file: %s at its end: %w", f.name, err)
	}
	if now.Size() == f.opened.Size() && now.ModTime().Equal(f.opened.ModTime()) {
		return nil
	}
	return fmt.Errorf("csv_file: %s changed while it was read (%d bytes, modified %s, when opened; %d bytes, modified %s, at its end): what was read may be part of a file still being written, so the run fails; its retry reads the file again",
		f.name, f.opened.Size(), f.opened.ModTime().UTC().Format(time.RFC3339Nano), now.Size(), now.ModTime().UTC().Format(time.RFC3339Nano))
}

// window is what the CSV reader has read of a file, from the start of
// the record being read on: a record's original text, without holding the
// whole file. It is the reader's buffer too: the file is read into it and
// handed on from there, one copy.
type window struct {
	r   io.Reader
	buf []byte // bytes read from r; buf[pos:] not handed on yet
	pos int
	// base is the offset, in the stream handed on, of buf[0] (-3 while a
	// skipped BOM is in buf).
	base int64
	err  error // r's error, returned once buf is handed on
}

func (w *window) Read(p []byte) (int, error) {
	for w.pos == len(w.buf) {
		if w.err != nil {
			return 0, w.err
		}
		w.fill()
	}
	n := copy(p, w.buf[w.pos:])
	w.pos += n
	return n, nil
}

// lineEnd is the offset just after the line starting at from (after its
// \n, or at the end of the file), reading more of the file as it needs;
// err is a read error other than io.EOF.
func (w *window) lineEnd(from int64) (int64, error) {
	at := from // scanned up to here
	for {
		if i := bytes.IndexByte(w.buf[at-w.base:], '\n'); i >= 0 {
			return at + int64(i) + 1, nil
		}
		at = w.base + int64(len(w.buf))
		if w.err != nil {
			if w.err == io.EOF {
				return at, nil
			}
			return at, w.err
		}
		w.fill()
	}
}

// fill reads the next bytes of r after buf, growing it if it is nearly
// full.
func (w *window) fill() {
	const chunk = 64 << 10
	if cap(w.buf)-len(w.buf) < chunk/2 {
		b := make([]byte, len(w.buf), max(2*cap(w.buf), len(w.buf)+chunk))
		copy(b, w.buf)
		w.buf = b
	}
	n, err := w.r.Read(w.buf[len(w.buf):cap(w.buf)])
	w.buf, w.err = w.buf[:len(w.buf)+n], err
}

// skipBOM leaves out a byte order mark at the start of the file, as
// spreadsheet exports write.
func (w *window) skipBOM() {
	for len(w.buf) < 3 && w.err == nil {
		w.fill()
	}
	if bytes.HasPrefix(w.buf, []byte("\xef\xbb\xbf")) {
		w.pos, w.base = 3, -3
	}
}

// span is the stream's bytes from offset from to offset to, which must
// not have been dropped.
func (w *window) span(from, to int64) []byte {
	return w.buf[from-w.base : to-w.base]
}

// drop forgets the bytes before offset off. They are moved out only once
// they are most of the buffer, so each byte is moved about once.
func (w *window) drop(off int64) {
	k := int(off - w.base)
	if k < 64<<10 || k < len(w.buf)/2 {
		return
	}
	n := copy(w.buf, w.buf[k:])
	w.buf, w.pos, w.base = w.buf[:n], w.pos-k, off
}

// rejection is the error a row rejected for err carries, naming where it is.
func (f *fileReader) rejection(line int, err error) error {
	return fmt.Errorf("%s line %d: %w", f.name, line, err)
}

// convertRow checks a record's field count and converts its cells into
// f.cells (an empty cell is left as it was: it is null).
func (f *fileReader) convertRow(rec []string) error {
	if len(rec) != len(f.header) {
		return fmt.Errorf("%d fields, the header has %d", len(rec), len(f.header))
	}
	for i, v := range rec {
		if v == "" {
			continue
		}
		// Most number cells are a few digits: read them here, not through
		// TrimSpace and strconv's checks (a third of the conversion's
		// time); anything else takes convertCell.
		switch f.short[i] {
		case abi.TypeInt:
			if n, ok := shortInt(v); ok {
				f.cells[i].t, f.cells[i].i = abi.TypeInt, n
				continue
			}
		case abi.TypeFloat:
			if x, ok := shortFloat(v); ok {
				f.cells[i].t, f.cells[i].f = abi.TypeFloat, x
				continue
			}
		}
		if err := convertCell(&f.cells[i], f.types[i], f.formats[i], f.in.numbers, v); err != nil {
			return fmt.Errorf("column %s: %w", f.header[i], err)
		}
	}
	return nil
}

func (f *fileReader) meta(msg *service.Message, line int, raw []byte) {
	msg.MetaSetMut("csv_file", f.name)
	msg.MetaSetMut("csv_line", strconv.Itoa(line))
	msg.MetaSetMut("csv_raw", string(raw))
}

func (f *fileReader) reject(line int, raw []byte, err error) *service.Message {
	msg := service.NewMessage(append([]byte(nil), raw...))
	f.meta(msg, line, raw)
	msg.SetError(f.rejection(line, err))
	return msg
}

// convert renders a row as a JSON object in header order.
func (f *fileReader) convert(rec []string, line int) ([]byte, error) {
	if err := f.convertRow(rec); err != nil {
		return nil, err
	}
	// Room for the row: its text, the keys and a little quoting.
	size := len(f.suffix) + 32
	for i, v := range rec {
		size += len(f.keys[i]) + len(v) + 3
	}
	b := append(make([]byte, 0, size), '{')
	for i, v := range rec {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.keys[i]...)
		if v == "" {
			b = append(b, "null"...)
			continue
		}
		b = appendCell(b, &f.cells[i])
	}
	b = append(b, f.suffix...)
	if name := f.in.lineField; name != "" {
		b = append(jsonstr.Append(append(b, ','), name), ':')
		b = strconv.AppendInt(b, int64(line), 10)
	}
	return append(b, '}'), nil
}

// appendCell appends a converted cell as JSON.
func appendCell(b []byte, c *cell) []byte {
	switch c.t {
	case abi.TypeInt:
		return strconv.AppendInt(b, c.i, 10)
	case abi.TypeFloat:
		return jsonnum.AppendFloat(b, c.f)
	case abi.TypeBool:
		return strconv.AppendBool(b, c.b)
	case abi.TypeTime:
		b = append(b, '"')
		b = c.tm.UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	}
	return jsonstr.Append(b, c.s)
}

// cell is one converted CSV value: a JSON row's value, a frame's column.
type cell struct {
	t  abi.Type
	i  int64
	f  float64
	b  bool
	s  string
	tm time.Time // a timestamp
}

// columnType is the type a column of typ has in a frame: dates stay text,
// as in a JSON row; timestamps are times (nanoseconds), which a frame
// renders as a JSON row has them (RFC 3339 in UTC) and which steps that
// read times (a plugin's time field, a Parquet timestamp) take as they are.
func columnType(typ string) abi.Type {
	switch typ {
	case "int":
		return abi.TypeInt
	case "float":
		return abi.TypeFloat
	case "bool":
		return abi.TypeBool
	case "timestamp":
		return abi.TypeTime
	}
	return abi.TypeString
}

// parseTimestamp reads the shapes CSV exports mostly have, YYYY-MM-DD
// then optionally a space or T, hh:mm:ss, a fraction of up to nine
// digits and Z or ±hh:mm, as time.Parse would with the layouts
// convertCell tries, without its cost (a failed layout's error, a
// formatted copy); anything else it leaves to time.Parse (false).
func parseTimestamp(s string) (time.Time, bool) {
	num := func(s string) (int, bool) {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int(s[i]-'0')
		}
		return n, true
	}
	if len(s) < 10 {
		return time.Time{}, false
	}
	y, mo, d, ok := civil.ParseISO(s[:10])
	if !ok {
		return time.Time{}, false
	}
	if len(s) == 10 {
		return time.Date(int(y), time.Month(mo), int(d), 0, 0, 0, 0, time.UTC), true
	}
	if len(s) < 19 || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	h, ok1 := num(s[11:13])
	mi, ok2 := num(s[14:16])
	sec, ok3 := num(s[17:19])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest, ns := s[19:], 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		frac, _ := num(rest[1:n])
		for k := n; k < 10; k++ {
			frac *= 10
		}
		ns, rest = frac, rest[n:]
	}
	offset := 0
	switch {
	case rest == "":
		// No zone: UTC, as the layouts without one read it. time.Parse
		// also takes a fraction there, which is left to it.
		if ns != 0 {
			return time.Time{}, false
		}
	case s[10] != 'T':
		return time.Time{}, false // a zone after a space: no layout has it
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := num(rest[1:3])
		om, ok2 := num(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(int(y), time.Month(mo), int(d), h, mi, sec, ns, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

// sameFields reports whether a and b hold the same numbers and words in
// the same order, whatever their zero padding, letter case and spacing:
// "5/1/2024" and "05/01/2024" do, "31/02/2024" and "02/03/2024" do not.
func sameFields(a, b string) bool {
	for {
		a, b = strings.TrimLeft(a, " "), strings.TrimLeft(b, " ")
		if a == "" || b == "" {
			return a == b
		}
		na, ra := leadingRun(a)
		nb, rb := leadingRun(b)
		da, db := isDigit(na[0]), isDigit(nb[0])
		switch {
		case da != db:
			return false
		case da:
			x, errx := strconv.ParseUint(na, 10, 64)
			y, erry := strconv.ParseUint(nb, 10, 64)
			if errx != nil || erry != nil || x != y {
				return false
			}
		case !strings.EqualFold(na, nb):
			return false
		}
		a, b = ra, rb
	}
}

// leadingRun splits s after its first run of digits, or of other
// characters but spaces.
func leadingRun(s string) (run, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && s[i] != ' ' && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numberFormat is how numbers are written: the decimal separator, and a
// thousands separator to drop (0: none).
type numberFormat struct{ decimal, thousands byte }

func parseNumberFormat(conf *service.ParsedConfig, delim rune) (numberFormat, error) {
	nf := numberFormat{decimal: '.'}
	dec, err := conf.FieldString("decimal")
	if err != nil {
		return nf, err
	}
	if dec != "." && dec != "," {
		return nf, fmt.Errorf("decimal: %q is not . or ,", dec)
	}
	nf.decimal = dec[0]
	th, err := conf.FieldString("thousands")
	if err != nil {
		return nf, err
	}
	switch {
	case th == "":
	case len(th) != 1 || !strings.Contains(",.'_ ", th):
		return nf, fmt.Errorf("thousands: %q is not one of , . ' _ or a space", th)
	case th[0] == nf.decimal || rune(th[0]) == delim:
		return nf, fmt.Errorf("thousands: %q is also the decimal separator or the delimiter", th)
	default:
		nf.thousands = th[0]
	}
	if rune(nf.decimal) == delim {
		return nf, fmt.Errorf("decimal: %q is also the delimiter", dec)
	}
	return nf, nil
}

// plain rewrites a number cell as Go parses it: without thousands
// separators, with a decimal point; "" if the separators are misplaced.
// Unlike pandas, a separator must start a group of three digits, so 4.5
// read with thousands "." is refused rather than taken as 45.
func (nf numberFormat) plain(s string) string {
	if nf.thousands != 0 && strings.IndexByte(s, nf.thousands) >= 0 {
		whole := s
		if i := strings.IndexByte(s, nf.decimal); i >= 0 {
			whole = s[:i]
		}
		groups := strings.Split(strings.TrimLeft(whole, "+-"), string(nf.thousands))
		if len(groups[0]) == 0 || len(groups[0]) > 3 {
			return ""
		}
		for _, g := range groups[1:] {
			if len(g) != 3 {
				return ""
			}
		}
		s = strings.ReplaceAll(s, string(nf.thousands), "")
	}
	if nf.decimal != '.' {
		if strings.IndexByte(s, '.') >= 0 {
			return "" // a point where none belongs: not a number here
		}
		s = strings.ReplaceAll(s, string(nf.decimal), ".")
	}
	return s
}

// shortInt reads an integer of 1 to 18 digits, signed or not, as
// strconv.ParseInt would; false for anything else (spaces, a fraction,
// more digits), left to parseInt.
func shortInt(s string) (int64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + int64(d)
	}
	if neg {
		n = -n
	}
	return n, true
}

// pow10 are the powers of ten a float64 holds exactly: a table, never
// written.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// shortFloat reads a decimal of at most 15 digits, signed or not, with
// digits on both sides of a point if it has one (a price), as
// strconv.ParseFloat would; false for anything else, left to it. Its
// digits as an integer and the power of ten below them are both exact
// in a float64, and IEEE division rounds correctly, so the quotient is
// the correctly rounded value (Clinger's fast path).
func shortFloat(s string) (float64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	var n uint64
	digits, frac, point := 0, 0, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' && point < 0 && i > 0 && i < len(s)-1 {
			point = i
			continue
		}
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
		digits++
		if point >= 0 {
			frac++
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	x := float64(n) / pow10[frac]
	if neg {
		x = -x
	}
	return x, true
}

// parseInt reads an integer, also one written with a fraction of zeros
// ("10.0"): pandas writes an integer column that had a missing value so
// (its dtype became float64), and reading it back gives the integers.
// Any other fraction is not an integer.
func parseInt(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || frac == "" || strings.Trim(frac, "0") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(whole, 10, 64)
	return n, err == nil && whole != "" && whole != "-" && whole != "+"
}

func convertCell(c *cell, typ, format string, nf numberFormat, v string) error {
	s := strings.TrimSpace(v)
	if (typ == "int" || typ == "float") && (nf.decimal != '.' || nf.thousands != 0) {
		s = nf.plain(s)
	}
	if format != "" {
		t, err := timefmt.Parse(s, format)
		if err != nil {
			return fmt.Errorf("%q does not match the format %q", v, format)
		}
		// The parser rolls a day past the month's end into the next
		// month (31/02 as 02/03): written back, such a time differs.
		if !strings.Contains(format, "%f") && !sameFields(s, timefmt.Format(t, format)) {
			return fmt.Errorf("%q is not a valid %s in the format %q", v, typ, format)
		}
		if typ == "date" {
			c.t, c.s = abi.TypeString, t.Format(time.DateOnly)
			return nil
		}
		c.t, c.tm = abi.TypeTime, t
		return nil
	}
	switch typ {
	case "int":
		n, ok := parseInt(s)
		if !ok {
			return fmt.Errorf("%q is not an integer", v)
		}
		c.t, c.i = abi.TypeInt, n
		return nil
	case "float":
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || x != x || x > 1e308 || x < -1e308 {
			return fmt.Errorf("%q is not a number", v)
		}
		c.t, c.f = abi.TypeFloat, x
		return nil
	case "bool":
		switch strings.ToLower(s) {
		case "true", "1":
			c.t, c.b = abi.TypeBool, true
			return nil
		case "false", "0":
			c.t, c.b = abi.TypeBool, false
			return nil
		}
		return fmt.Errorf("%q is not true, false, 1 or 0", v)
	case "date":
		if _, _, _, ok := civil.ParseISO(s); !ok {
			return fmt.Errorf("%q is not a date (YYYY-MM-DD)", v)
		}
		c.t, c.s = abi.TypeString, s
		return nil
	case "timestamp":
		if t, ok := parseTimestamp(s); ok {
			c.t, c.tm = abi.TypeTime, t
			return nil
		}
		// Minutes without seconds too, as pandas reads them.
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
			if t, err := time.Parse(layout, s); err == nil {
				c.t, c.tm = abi.TypeTime, t
				return nil
			}
		}
		return fmt.Errorf("%q is not a timestamp (RFC 3339, 2006-01-02 15:04:05, 2006-01-02 15:04 or a date)", v)
	}
	c.t, c.s = abi.TypeString, v
	return nil
}
