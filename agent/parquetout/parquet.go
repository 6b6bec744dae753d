// Package parquetout provides the `parquet` output: it writes JSON messages
// as rows of Parquet files, so that batch jobs (the seed's Airflow DAG loads
// hourly batches into Parquet) read columnar files rather than JSON lines.
// A file appears under its name only once it is complete, and a batch is
// acknowledged only once the file holding its rows has appeared; or, with
// transaction: run, a bounded input's whole run appears at once, when it
// completed, or not at all.
package parquetout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/uncompressed"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/internal/atomicfile"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/internal/enumlint"
)

const (
	fPath         = "path"
	fColumns      = "columns"
	fColName      = "name"
	fColType      = "type"
	fColPath      = "path"
	fColOptional  = "optional"
	fRowGroupRows = "row_group_rows"
	fCompression  = "compression"
	fMaxRows      = "max_rows"
	fMaxBytes     = "max_bytes"
	fMaxAge       = "max_age"
	fBatching     = "batching"
	fTransaction  = "transaction"
	fOverwrite    = "overwrite"
)

// The values of transaction.
const (
	txBatch = "batch"
	txRun   = "run"
)

// ConfigSpec is the output's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Local").
		Summary("Writes JSON messages, and the rows of frames, as rows of Parquet files; a file appears under its name only when complete, and a batch is acknowledged only once the file holding its rows has appeared. With `transaction: run` the files of a bounded input's run appear together when the run completed, or none does.").
		Description(`
Each message must be a JSON object, which becomes one row, or a frame (`+"`csv_file`"+` with `+"`frames: true`"+`), whose accepted rows each become one; see Frames below. The counter `+"`output_rows_sent`"+` counts the rows written and acknowledged; with `+"`transaction: run`"+`, the rows of a run when it is published (a run that fails counts none).

### Files

A file is written as `+"`<path>.tmp`"+` in the directory of its final name. When it is finished its footer is written, it is fsynced, renamed to `+"`<path>`"+` and the directory is fsynced, so a reader of `+"`<path>`"+` never sees half a file. A file is finished when it holds `+"`max_rows`"+` rows, when its size reaches about `+"`max_bytes`"+`, when it has been open for `+"`max_age`"+` (by a timer, even if no message comes), when every in-flight batch is waiting for it (see below), and when the output closes. Its name is `+"`path`"+` evaluated on its first message; a name that exists already or is being written fails the batch, so `+"`path`"+` must give each file a new name (or, for names that repeat across runs, set `+"`overwrite`"+`: a file there before the output started is then replaced).

### Acknowledgement

With the default `+"`transaction: batch`"+`, a batch is acknowledged only once the file holding its rows is finished: until then the rows are in a `+"`.tmp`"+` file that a crash would throw away. So a batch waits for its file, and since at most `+"`max_in_flight`"+` batches are written at once, a file holds at most `+"`max_in_flight`"+` batches. Once every in-flight batch is waiting for the open file no new row can reach it, so it is finished at once. Use `+"`batching`"+` to make large files: with `+"`count: 10000`"+` and the default `+"`max_in_flight`"+` of 64 a file can hold 640,000 rows. When fewer batches arrive than would fill a file, for instance from a slow input, `+"`max_age`"+` bounds how long a batch waits, which is what guarantees progress.

If finishing a file fails, every batch in it fails and Benthos retries them into a new file. A message that cannot be converted fails alone, with an error naming its index in the batch, the column and the value, and the batch's other rows are written; a `+"`fallback`"+` output can take the failed ones. Delivery is at least once: a batch is written again when retried after its rows reached a file that was published regardless, which happens when its rows were split over two files and the second could not be opened, or when a file was renamed but its directory could not be fsynced.

### Transaction: run

A batch job's output should appear whole or not at all: a reader must not take the files of a run that was stopped halfway for its result. With `+"`transaction: run`"+` the whole run of a bounded input (one that reports the end of its run, such as `+"`csv_file`"+`) is one transaction, however many batches and files it spans, while memory stays bounded since rows go to disk as they come:

- Rows go to `+"`.tmp`"+` files as in batch mode, and files rotate by `+"`max_rows`"+` and `+"`max_bytes`"+`, but a full file is only finished (footer, fsync) and keeps its `+"`.tmp`"+` name. `+"`max_age`"+` does not apply: no batch waits for a file, and no file appears before the run ends.
- A run with no rows publishes no file, except a run whose only input was a frame of no rows (csv_file's `+"`frames`"+` over a file with a header and no rows) when `+"`columns`"+` gives the schema (there are no rows to infer one from): it publishes one file of no rows with the schema's columns, named by the path on that frame, as pandas' `+"`to_parquet`"+` writes an empty DataFrame.
- A batch is acknowledged as soon as its rows are in a `+"`.tmp`"+` file. Durability is the run's: a run that does not complete is run again from its input.
- When the output closes (Benthos closes it once every batch has been acknowledged), if the input reports that the run read its input to the end and every batch was delivered, the open file is finished and every file of the run is renamed to its final name, in name order, each followed by an fsync of its directory; the output logs what it published (the file, or how many files from which to which, and the rows). Otherwise (the run was stopped partway by a timeout or a shutdown, a batch failed, or a file of the run could not be written) the run's `+"`.tmp`"+` files are removed, with a warning naming them and the reason, and no file of the run appears.

Every message must come from such an input, and from one run: one output instance serves one run. A message with no run, or of another run than the earlier batches, fails its batch with an error naming this field, and the run is then not published. So does a failure to write or finish one of the run's files, since the file may hold rows already acknowledged; later batches of the run then fail at once. A final name must still be new when the output closes, or nothing of the run is published. A message that cannot be converted still fails alone, its batch's other rows written: unless a `+"`fallback`"+` output takes it, the failure reaches the input and the run is not published.

Publishing is a rename per file, not one atomic step: a crash while publishing leaves the files renamed so far (a prefix in name order) under their final names and the rest as `+"`.tmp`"+` leftovers, and running the job again writes those rows again.

### Frames

A frame is one message holding many rows as typed columns. Its accepted rows are converted from the columns, with no JSON in between, and are written as each would be if sent as the JSON message `+"`unframe`"+` makes of it: the same conversions, the same schema inferred (from the values of the first accepted row), the same failures. Its rejected rows and its metadata columns (`+"`csv_file`"+`, `+"`csv_line`"+`, `+"`csv_raw`"+`) are never written. A frame is still one message: `+"`path`"+` is evaluated on it, a file may end partway through it (`+"`max_rows`"+` counts rows, `+"`batching`"+` counts messages), and it is acknowledged or failed whole, so if one of its accepted rows cannot be converted none of them is written, and the error names the first such row, by its index in the frame, and its column.

### Leftovers of a crash

A `+"`.tmp`"+` file left by a crash is never renamed, since its batches were never acknowledged and will be delivered again. It is removed, with a log line naming it, when an output of the same `+"`path`"+` next connects (the next run of a batch job, the restarted agent): each `+"`.tmp`"+` holds a lock (flock) for as long as its writer owns it, so one whose lock nobody holds, that starts as a Parquet file does (or is empty: a writer killed before its first page), is a dead writer's. Only the directory of the path's fixed part is looked in, for names made of the fixed parts around the interpolations: a `+"`path`"+` with an interpolation in its directory part, or with no fixed name part, gets no clean-up, nor does a system without flock (Windows); delete such leftovers at leisure. A new file whose `+"`.tmp`"+` name is taken by a live writer's (a run of a fixed name, with `+"`overwrite`"+`, overlapping another) fails, naming it, and is retried.

### Schema

With `+"`columns`"+`, each column takes its value from a [gjson path](https://github.com/tidwall/gjson/blob/master/SYNTAX.md) into the message; a missing or null value is a null, or an error if the column is not optional. Fields of the message that no column names are ignored. Conversions:

- `+"`string`"+`: a string as it is, any other value as its JSON text.
- `+"`int64`"+`: an integer, or a string holding one (a number with no fraction such as `+"`3.0`"+` also counts).
- `+"`double`"+`: a number, or a string holding one.
- `+"`bool`"+`: `+"`true`"+`/`+"`false`"+`, or a string such as `+"`\"true\"`"+`.
- `+"`timestamp`"+`: stored as INT64 TIMESTAMP(MICROS, UTC). RFC 3339, `+"`2006-01-02 15:04:05`"+` (fractional seconds allowed), `+"`2006-01-02T15:04:05`"+`, `+"`2006-01-02`"+` (times with no zone are UTC), or epoch seconds as a number or string (fractions allowed).
- `+"`date`"+`: stored as DATE. `+"`2006-01-02`"+`, or RFC 3339, of which the calendar date as written is kept.

Without `+"`columns`"+` the schema is inferred once, from the rows of the first batch the output writes (up to 100,000 of them; not per file, so that every file has the same schema): one optional column per top-level field, in the order the fields first appear; a field's type is that of its values, nulls aside: strings give `+"`string`"+`, numbers `+"`int64`"+` if every one is integral and `+"`double`"+` otherwise, booleans `+"`bool`"+`, objects and arrays a `+"`string`"+` holding their JSON, and a field only ever null a `+"`string`"+`. So a first row with a missing value, or a whole number where later rows have fractions, does not decide a column's type (as pandas reads a column). A later message with a field not in that schema fails with an error naming the field; list the columns to accept it.

A large batch (a whole file read as one frame, with `+"`csv_file`"+`'s `+"`batch_size: 0`"+`) of frames whose columns the schema takes as they are (an int column as `+"`int64`"+`, a timestamp as `+"`timestamp`"+`, any as `+"`string`"+`; columns optional) is converted and written 65,536 rows at a time, so the output holds a segment's values rather than the file's (a million rows of seven columns were 170 MB). A batch whose rows may fail to convert (dates parsed from text, JSON messages) is converted whole, so that a message with a row that cannot be written writes none; past about four million values it is checked whole first and then converted again a segment at a time, which costs about a third more time.`).
		Fields(
			service.NewInterpolatedStringField(fPath).Description("The name of each new file, evaluated on its first message. Directories are created as needed.").
				Example(`out/sales-${! timestamp_unix_nano() }.parquet`).
				Example(`out/${! meta("run_id") }-${! count("parquet_files") }.parquet`),
			service.NewObjectListField(fColumns,
				service.NewStringField(fColName).Description("Column name."),
				enumlint.Field(fColType, columnTypes()...).Description("Column type."),
				service.NewStringField(fColPath).Description("gjson path of the value in the message; the column's name by default.").Default(""),
				service.NewBoolField(fColOptional).Description("Whether the column may hold nulls; when false a missing value fails the message.").Default(true),
			).Description("The file's columns, in order. Without them (or with an empty list) the schema is inferred from the first message.").Optional().
				Example([]any{
					map[string]any{"name": "date", "type": "date"},
					map[string]any{"name": "product_id", "type": "string", "optional": false},
					map[string]any{"name": "quantity", "type": "int64"},
					map[string]any{"name": "price", "type": "double"},
					map[string]any{"name": "customer", "type": "string", "path": "customer.id"},
				}),
			service.NewIntField(fRowGroupRows).Description("Rows per row group.").Default(65536).Advanced(),
			enumlint.Field(fCompression, compressions()...).Description("Compression of the column chunks.").Default("snappy"),
			service.NewIntField(fMaxRows).Description("A file is finished once it holds this many rows.").Default(1000000),
			service.NewIntField(fMaxBytes).Description("A file is finished once its size reaches about this many bytes (estimated by the writer, before compression of the open row group).").Default(128<<20),
			service.NewDurationField(fMaxAge).Description("A file is finished once it has been open this long, even if no message comes; this bounds how long a batch waits for its acknowledgement.").Default("10s"),
			enumlint.Field(fTransaction, txBatch, txRun).Description("`batch`: each file appears once finished, and a batch is acknowledged once the file holding its rows has appeared. `run`: the files of a bounded input's whole run (`csv_file`) appear together when the output closes, and only if the run read its input to the end and every batch was delivered; a run stopped partway leaves no file. A batch is then acknowledged once its rows are in a `.tmp` file. See Transaction: run above. A batch that cannot be written for a reason other than its rows (a full disk) fails the run at once with that error, rather than being retried until the run's timeout; the run's later batches are then dropped with it.").Default(txBatch),
			service.NewBoolField(fOverwrite).Description("Whether a new file may replace a file of the same name already there (one this output did not write: two files of one output never share a name). The replacement is the rename that makes the new file appear, so a reader sees the old file or the new one, never neither. For jobs whose names repeat across runs, as the seed's DAG writes `processed_<source>_<YYYYmmdd_HHMM>.parquet`: a re-run within the minute replaces that minute's files, as the DAG's `to_parquet` does. Without it such a name fails the batch (in run mode, the run).").Default(false),
			service.NewOutputMaxInFlightField().Default(64),
			service.NewBatchPolicyField(fBatching),
		).
		LintRule(enumlint.Rule(
			enumlint.Enum{Path: fColumns + "[]." + fColType, Options: columnTypes()},
			enumlint.Enum{Path: fCompression, Options: compressions()},
			enumlint.Enum{Path: fTransaction, Options: []string{txBatch, txRun}},
		))
}

// compressions are the codecs a file's column chunks may use.
func compressions() []string { return []string{"snappy", "zstd", "gzip", "none"} }

// Register adds the `parquet` output to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchOutput("parquet", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		o, pol, maxInFlight, err := newOutput(conf, res)
		if err != nil {
			return nil, pol, 0, configerr.Wrap(err)
		}
		return o, pol, maxInFlight, nil
	})
}

func codec(name string) compress.Codec {
	switch name {
	case "snappy":
		return &snappy.Codec{}
	case "zstd":
		return &zstd.Codec{}
	case "gzip":
		return &gzip.Codec{}
	case "none":
		return &uncompressed.Codec{}
	}
	return nil
}

type output struct {
	// maxBatchValues is maxBatchValues (tests lower it).
	maxBatchValues int
	path           *service.InterpolatedString
	rowGroupRows   int64
	codec          compress.Codec
	maxRows        int64
	maxBytes       int64
	maxAge         time.Duration
	maxInFlight    int
	runMode        bool // transaction: run
	overwrite      bool
	log            *service.Logger

	// The finish step's file system calls, replaced in tests to see that a
	// file is renamed only once it is closed and synced.
	syncFile func(*os.File) error
	rename   func(oldpath, newpath string) error
	syncDir  func(dir string) error
	// rawPath is the path as configured, its interpolations unevaluated:
	// the pattern of the .tmp files a dead writer may have left.
	rawPath string

	mu        sync.Mutex
	connected bool
	schema    *schema // configured, or inferred from the first message
	cur       *file   // the file rows go to; nil until the next row
	// Final names of the files open or being finished, which a new file
	// must not take: its rename would replace one of them.
	names map[string]bool
	// With overwrite, the final names of the files this output finished,
	// which a later file must not replace (batch mode; a run's files keep
	// their names in names until it ends).
	published map[string]bool
	timers    sync.WaitGroup // finishes started by max_age

	// In run mode: the run this output serves, set by its first batch;
	// every file of the run in the order opened, finished or not, until
	// Close publishes or removes them; and, once something on this side
	// lost or may have doubled rows of the run, why it cannot be
	// published.
	run      *runscope.Run
	runFiles []*file
	runFault error

	// scratch recycles the batches' row values and working memory: at a
	// million rows a second they are most of the garbage.
	scratch sync.Pool

	// rowsSent counts the rows written, which a frame holds many of, so
	// that a run's outcome can say how many rows it loaded where Benthos's
	// own metrics count messages. Nil when built without resources.
	rowsSent *service.MetricCounter
}

func newBareOutput(log *service.Logger) *output {
	return &output{
		maxBatchValues: maxBatchValues,
		log:            log,
		syncFile:       (*os.File).Sync,
		rename:         os.Rename,
		syncDir:        atomicfile.SyncDir,
		names:          map[string]bool{},
		published:      map[string]bool{},
		scratch:        sync.Pool{New: func() any { return new(scratch) }},
	}
}

func newOutput(conf *service.ParsedConfig, res *service.Resources) (*output, service.BatchPolicy, int, error) {
	var pol service.BatchPolicy
	o := newBareOutput(res.Logger())
	o.rowsSent = res.Metrics().NewCounter("output_rows_sent")
	o.rowsSent.Incr(0) // shown at 0 from the start, for a run that publishes none
	var err error
	if o.path, err = conf.FieldInterpolatedString(fPath); err != nil {
		return nil, pol, 0, err
	}
	if o.rawPath, err = conf.FieldString(fPath); err != nil {
		return nil, pol, 0, err
	}
	if conf.Contains(fColumns) {
		cols, err := parseColumns(conf)
		if err != nil {
			return nil, pol, 0, err
		}
		// An empty list is as good as none: the schema is inferred.
		if len(cols) > 0 {
			if o.schema, err = newSchema(cols, false); err != nil {
				return nil, pol, 0, fmt.Errorf("%s: %w", fColumns, err)
			}
		}
	}
	ints := []struct {
		name string
		dst  *int64
	}{{fRowGroupRows, &o.rowGroupRows}, {fMaxRows, &o.maxRows}, {fMaxBytes, &o.maxBytes}}
	for _, f := range ints {
		n, err := conf.FieldInt(f.name)
		if err != nil {
			return nil, pol, 0, err
		}
		if n <= 0 {
			return nil, pol, 0, fmt.Errorf("%s: must be positive, got %d", f.name, n)
		}
		*f.dst = int64(n)
	}
	comp, err := conf.FieldString(fCompression)
	if err != nil {
		return nil, pol, 0, err
	}
	if o.codec = codec(comp); o.codec == nil {
		return nil, pol, 0, fmt.Errorf("%s: unknown codec %q", fCompression, comp)
	}
	if o.maxAge, err = conf.FieldDuration(fMaxAge); err != nil {
		return nil, pol, 0, err
	}
	if o.maxAge <= 0 {
		return nil, pol, 0, fmt.Errorf("%s: must be positive, got %s", fMaxAge, o.maxAge)
	}
	tx, err := conf.FieldString(fTransaction)
	if err != nil {
		return nil, pol, 0, err
	}
	switch tx {
	case txBatch:
	case txRun:
		o.runMode = true
	default:
		return nil, pol, 0, fmt.Errorf("%s: unknown value %q", fTransaction, tx)
	}
	if o.overwrite, err = conf.FieldBool(fOverwrite); err != nil {
		return nil, pol, 0, err
	}
	if o.maxInFlight, err = conf.FieldMaxInFlight(); err != nil {
		return nil, pol, 0, err
	}
	if pol, err = conf.FieldBatchPolicy(fBatching); err != nil {
		return nil, pol, 0, err
	}
	return o, pol, o.maxInFlight, nil
}

func parseColumns(conf *service.ParsedConfig) ([]column, error) {
	list, err := conf.FieldObjectList(fColumns)
	if err != nil {
		return nil, err
	}
	cols := make([]column, len(list))
	for i, c := range list {
		if cols[i].name, err = c.FieldString(fColName); err != nil {
			return nil, err
		}
		if cols[i].typ, err = c.FieldString(fColType); err != nil {
			return nil, err
		}
		if cols[i].path, err = c.FieldString(fColPath); err != nil {
			return nil, err
		}
		if cols[i].optional, err = c.FieldBool(fColOptional); err != nil {
			return nil, err
		}
	}
	return cols, nil
}

func (o *output) Connect(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sweepStale()
	o.connected = true
	return nil
}

// failure is one message that cannot be a row.
type failure struct {
	index int
	err   error
}

func (o *output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	if len(batch) == 0 || (o.runMode && runscope.Abandoned(batch)) {
		return nil
	}
	if o.runMode {
		if err := o.joinRun(batch); err != nil {
			return err
		}
	}
	fr, failed := decodeFrames(batch)
	sch, noSchema, err := o.schemaFor(batch, fr)
	if err != nil {
		return err
	}
	failed = append(failed, noSchema...)
	var rows []parquet.Row
	var msgs []int
	var files, finish []*file
	written := 0
	sc := o.scratch.Get().(*scratch)
	segment, checked := false, false
	if sch != nil {
		segment, checked = o.segmented(sch, batch, fr, sc)
	}
	switch {
	case sch != nil && segment:
		var bad []failure
		bad, written, files, finish, err = o.writeSegments(sch, batch, fr, sc, checked)
		failed = append(failed, bad...)
		rows, msgs = sc.rows, sc.msgs
	case sch != nil:
		var bad []failure
		rows, msgs, bad = convert(sch, batch, fr, sc)
		failed = append(failed, bad...)
		if len(rows) > 0 {
			files, finish, err = o.append(batch, rows, msgs)
		}
		written = len(rows)
	}
	if err == nil && sch != nil && o.runMode && written == 0 {
		err = o.openForEmpty(batch, fr)
	}
	// The writer has copied the values: the buffer can serve the next batch
	// while this one waits, without holding on to its strings.
	sc.rows, sc.msgs = rows, msgs
	sc.reset()
	o.scratch.Put(sc)
	// Other batches wait for these files too, so they are finished whatever
	// became of this one.
	for _, f := range finish {
		o.finish(f)
		// In run mode no batch waits for the file: the one that filled it
		// reports its failure, which has spoiled the run.
		if o.runMode && err == nil && f.err != nil {
			err = f.err
		}
	}
	if err != nil {
		if o.runMode {
			// Not the rows' fault (a file that cannot be written): the run
			// cannot be published, and retrying the batch will not mend it.
			runscope.FailFrom(ctx, batch, fmt.Errorf("parquet output: %w", err))
		}
		return err
	}
	// In run mode the rows are acknowledged once in the .tmp files: the
	// run, not the batch, is made durable, at Close.
	if !o.runMode {
		if err := o.wait(ctx, files); err != nil {
			return err
		}
	}
	// The rows are written and acknowledged, whatever failed beside them;
	// in run mode they count when the run is published (publishRun).
	if o.rowsSent != nil && written > 0 && !o.runMode {
		o.rowsSent.Incr(int64(written))
	}
	if len(failed) == 0 {
		return nil
	}
	// Decoding, inferring and converting each found some: the batch error
	// leads with the first message's.
	slices.SortStableFunc(failed, func(a, b failure) int { return a.index - b.index })
	head := fmt.Errorf("%d of %d messages rejected, the first: %w", len(failed), len(batch), failed[0].err)
	if len(failed) == 1 {
		head = failed[0].err
	}
	berr := service.NewBatchError(batch, head)
	for _, f := range failed {
		berr.Failed(f.index, f.err)
	}
	return berr
}

// schemaFor gives the configured schema, or the one inferred from the first
// message (a frame: its first accepted row) that allows it. With no schema
// yet and none to infer, every message with a row has failed.
func (o *output) schemaFor(batch service.MessageBatch, fr framed) (*schema, []failure, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return nil, nil, service.ErrNotConnected
	}
	if o.schema != nil {
		return o.schema, nil, nil
	}
	var failed []failure
	var in inference
	var buf []byte
	for i, msg := range batch {
		if in.rows >= maxInferRows {
			break
		}
		if f := fr.at(i); f != nil {
			for r := 0; r < f.Rows && in.rows < maxInferRows; r++ {
				if f.Rejected(r) {
					continue
				}
				buf = f.AppendRowJSON(buf[:0], r)
				if err := in.add(buf); err != nil {
					failed = append(failed, failure{i, fmt.Errorf("message %d: frame row %d: no schema can be inferred from it: %w", i, r, err)})
					break
				}
			}
			continue
		}
		raw, err := msg.AsBytes()
		if err == nil {
			err = in.add(raw)
		}
		if err != nil {
			failed = append(failed, failure{i, fmt.Errorf("message %d: no schema can be inferred from it: %w", i, err)})
		}
	}
	if in.rows == 0 {
		return nil, failed, nil
	}
	s, err := in.schema()
	if err != nil {
		// Every row was {}: each fails alike.
		for i := range batch {
			failed = append(failed, failure{i, fmt.Errorf("message %d: no schema can be inferred from it: %w", i, err)})
		}
		return nil, failed, nil
	}
	o.schema = s
	o.log.Infof("parquet output: schema inferred from the first %d rows: %s", in.rows, s.describe())
	// A message that could not be read is failed below, on conversion.
	return s, nil, nil
}

// segmentRows bounds the rows a batch is converted into at once. A whole
// file's frame (csv_file's batch_size: 0) converted in one piece held a
// value (24 bytes) per cell of the file beside the frame itself: 170 MB
// for a million rows of seven columns, all of it fresh pages to fault in.
const segmentRows = 65536

// maxBatchValues is how many values a batch whose rows may fail to convert
// is converted into at once (about 100 MB of them); past it, it is checked
// whole and then converted again a segment at a time, which takes about
// half as long again.
const maxBatchValues = 1 << 22

// segmented reports whether the batch is written a segment at a time: if
// it has more rows than a segment, and either it is all frames whose
// every row converts, as the schema and their types tell (infallible), so
// that one conversion a segment at a time does, or it is too big to
// convert at once.
func (o *output) segmented(sch *schema, batch service.MessageBatch, fr framed, sc *scratch) (segment, infallible bool) {
	if fr.rows <= segmentRows {
		return false, false
	}
	big := fr.rows*len(sch.cols) > o.maxBatchValues
	for i := range batch {
		// A JSON message may fail: written a segment at a time, it would
		// be converted twice.
		if f := fr.at(i); f == nil || !sch.infallible(f, sc) {
			return big, false
		}
	}
	return true, true
}

// writeSegments converts and writes a batch of more than segmentRows rows
// a segment at a time. Unless the batch is infallible (segmented), every
// message is converted once before any row is written, so that one with a
// row that cannot be written writes none, as when the batch is converted
// whole; then again, segment by segment, to be written. It gives the
// messages that fail, the rows written, and the files as append does.
func (o *output) writeSegments(sch *schema, batch service.MessageBatch, fr framed, sc *scratch, infallible bool) (failed []failure, written int, touched, finish []*file, err error) {
	n := len(sch.cols)
	if len(sc.vals) < segmentRows*n {
		sc.vals = make([]parquet.Value, segmentRows*n)
	}
	vals := sc.vals[:segmentRows*n]
	found := make([]gjson.Result, n)
	bad := make([]bool, len(batch))
	if !infallible {
		for i, msg := range batch {
			if f := fr.at(i); f != nil {
				if sch.infallible(f, sc) {
					continue
				}
				if err := sch.checkFrame(f, vals, sc); err != nil {
					failed, bad[i] = append(failed, failure{i, fmt.Errorf("message %d: %w", i, err)}), true
				}
				continue
			}
			raw, err := msg.AsBytes()
			if err == nil {
				err = sch.row(raw, parquet.Row(vals[:n:n]), found)
			}
			sc.text = sc.text[:0]
			if err != nil {
				failed, bad[i] = append(failed, failure{i, fmt.Errorf("message %d: %w", i, err)}), true
			}
		}
	}
	rows, msgs := sc.rows[:0], sc.msgs[:0]
	flush := func(last bool) error {
		t, fin, err := o.appendRows(batch, rows, msgs, last)
		for _, f := range t {
			if len(touched) == 0 || touched[len(touched)-1] != f {
				touched = append(touched, f)
			}
		}
		finish = append(finish, fin...)
		written += len(rows)
		rows, msgs = rows[:0], msgs[:0]
		sc.text = sc.text[:0]
		return err
	}
	var idx []int
	for i, msg := range batch {
		if bad[i] {
			continue
		}
		f := fr.at(i)
		if f == nil {
			if len(rows) == segmentRows {
				if err := flush(false); err != nil {
					return failed, written, touched, finish, err
				}
			}
			k := len(rows)
			row := parquet.Row(vals[k*n : (k+1)*n : (k+1)*n])
			raw, _ := msg.AsBytes()
			if err := sch.row(raw, row, found); err != nil {
				return failed, written, touched, finish, fmt.Errorf("message %d: %w", i, err)
			}
			rows, msgs = append(rows, row), append(msgs, i)
			continue
		}
		idx = acceptedRows(f, idx[:0])
		for lo := 0; lo < len(idx); lo += segmentRows {
			seg := idx[lo:min(lo+segmentRows, len(idx))]
			if len(rows)+len(seg) > segmentRows {
				if err := flush(false); err != nil {
					return failed, written, touched, finish, err
				}
			}
			k := len(rows)
			if fc := sch.convertRows(f, seg, vals[k*n:], sc); fc.failing > 0 {
				// Converted once already without failing: not the rows.
				return failed, written, touched, finish, fmt.Errorf("message %d: %w", i, frameError(seg[fc.first], fc.err, fc.failing, len(idx)))
			}
			for r := k; r < k+len(seg); r++ {
				rows, msgs = append(rows, parquet.Row(vals[r*n:(r+1)*n:(r+1)*n])), append(msgs, i)
			}
		}
	}
	if len(rows) > 0 {
		err = flush(true)
	}
	sc.rows, sc.msgs = rows, msgs
	return failed, written, touched, finish, err
}

// convert turns the batch into rows, whose values go in sc, and gives the
// index of each row's message and the messages that cannot be rows. A
// frame gives its accepted rows, or none if one of them cannot be a row.
func convert(sch *schema, batch service.MessageBatch, fr framed, sc *scratch) ([]parquet.Row, []int, []failure) {
	n := len(sch.cols)
	if len(sc.vals) < fr.rows*n {
		sc.vals = make([]parquet.Value, fr.rows*n)
	}
	vals := sc.vals[:fr.rows*n]
	found := make([]gjson.Result, n)
	rows, msgs := sc.rows[:0], sc.msgs[:0]
	var failed []failure
	for i, msg := range batch {
		if f := fr.at(i); f != nil {
			k := len(rows)
			got, err := sch.frameRows(f, vals[k*n:], sc)
			if err != nil {
				failed = append(failed, failure{i, fmt.Errorf("message %d: %w", i, err)})
				continue
			}
			for r := k; r < k+got; r++ {
				rows = append(rows, parquet.Row(vals[r*n:(r+1)*n:(r+1)*n]))
				msgs = append(msgs, i)
			}
			continue
		}
		raw, err := msg.AsBytes()
		if err == nil {
			k := len(rows)
			row := parquet.Row(vals[k*n : (k+1)*n : (k+1)*n])
			if err = sch.row(raw, row, found); err == nil {
				rows = append(rows, row)
				msgs = append(msgs, i)
				continue
			}
		}
		failed = append(failed, failure{i, fmt.Errorf("message %d: %w", i, err)})
	}
	return rows, msgs, failed
}

func (o *output) Close(ctx context.Context) error {
	if o.runMode {
		return o.closeRun(ctx)
	}
	o.mu.Lock()
	o.connected = false
	f := o.cur
	if f != nil {
		o.detach(f)
	}
	o.mu.Unlock()
	var err error
	if f != nil {
		o.finish(f)
		err = f.err
	}
	done := make(chan struct{})
	go func() {
		o.timers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("parquet output: waiting for files being finished: %w", ctx.Err()))
	}
	return err
}

// describe lists the columns for the log.
func (s *schema) describe() string {
	out := make([]byte, 0, 16*len(s.cols))
	for i, c := range s.cols {
		if i > 0 {
			out = append(out, ", "...)
		}
		out = fmt.Appendf(out, "%s %s", c.name, c.typ)
	}
	return string(out)
}
