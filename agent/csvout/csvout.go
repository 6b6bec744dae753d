// Package csvout is the `csv_file` output: messages as rows of a CSV file
// with a header, each column an interpolation (a field, a metadata value,
// the error), so rejected rows can go to a spreadsheet-friendly file with
// their line and reason. With `transaction: run` the file of a batch job's
// run replaces the previous one only when the run completes.
package csvout

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/internal/atomicfile"
	"github.com/sluice-dev/sluice/internal/configerr"
)

const (
	fPath        = "path"
	fColumns     = "columns"
	fColName     = "name"
	fColValue    = "value"
	fHeader      = "header"
	fDelimiter   = "delimiter"
	fTransaction = "transaction"
)

// ConfigSpec is the output's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Local").
		Summary("Writes messages as rows of a CSV file with a header, each column an interpolation of the message.").
		Description(`
Each message becomes one row; each column's `+"`value`"+` is evaluated on the message, so a column can hold a field (`+"`${! this.price }`"+`), metadata (`+"`${! @csv_line }`"+`), the message's error (`+"`${! error() }`"+`) or its bytes (`+"`${! content() }`"+`). Values are quoted as CSV needs (RFC 4180), so a value with commas, quotes or newlines reads back intact.

### Transactions

`+"`batch`"+` (the default) appends each batch to `+"`path`"+`, fsynced before the batch is acknowledged, writing the header first when the file is new or empty.

`+"`run`"+` writes the whole run of a bounded input (`+"`csv_file`"+` input) to `+"`<path>.tmp`"+` and, when the output closes, replaces `+"`path`"+` with it only if the run read its input to the end and every message was delivered (fsync, rename, directory fsync); otherwise the .tmp file is removed and `+"`path`"+` is left as it was. The .tmp file (and `+"`path`"+`'s directory, if missing) is created by the run's first row, so a run that fails before one changes nothing at all. Each completed run therefore leaves exactly its own rows, and a header-only file when it had none: the rejects file of a batch job, replaced by each run. The .tmp file holds a lock (flock) while its run writes it: a .tmp left by a run that died is replaced (or removed by a run that fails), while a run that finds another's .tmp still being written (another agent, or a run started by cron while the last one writes) fails, naming it, and leaves it alone; its retry comes after the other run.

The counter `+"`output_rows_sent`"+` counts the rows written (`+"`batch`"+`) or published (`+"`run`"+`, when the run's file is: a run that fails counts none); a scheduled run's outcome reads it for `+"`rows_rejected`"+`.`).
		Fields(
			service.NewStringField(fPath).Description("The CSV file; its directory is created if missing.").Example("out/rejects.csv"),
			service.NewObjectListField(fColumns,
				service.NewStringField(fColName).Description("The column's name, in the header."),
				service.NewInterpolatedStringField(fColValue).Description("The column's value for a message."),
			).Description("The columns, in order.").
				Example([]any{
					map[string]any{"name": "line", "value": `${! @csv_line }`},
					map[string]any{"name": "reason", "value": `${! error() }`},
				}),
			service.NewBoolField(fHeader).Description("Whether to write the header row.").Default(true),
			service.NewStringField(fDelimiter).Description("Field delimiter, one character.").Default(","),
			service.NewStringEnumField(fTransaction, "batch", "run").Description("`batch`: append each batch; `run`: replace the file with the run's rows when a completed run closes the output (see above). A batch that cannot be written for a reason other than its rows (a full disk) fails the run at once with that error, rather than being retried until the run's timeout; the run's later batches are then dropped with it.").Default("batch"),
		)
}

// Register adds the `csv_file` output to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchOutput("csv_file", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		o, err := newOutput(conf, res)
		return o, service.BatchPolicy{}, 1, configerr.Wrap(err)
	})
}

type column struct {
	name  string
	value *service.InterpolatedString
}

type output struct {
	log     *service.Logger
	path    string
	cols    []column
	header  bool
	delim   rune
	runMode bool
	// res is the stream's, for its run when no batch brought one.
	res *service.Resources

	mu        sync.Mutex
	connected bool
	// lock holds path.tmp's lock while this run owns it (run mode;
	// nil where flock is missing).
	lock *os.File
	// f is the open file: path (batch mode) or path.tmp (run mode, opened
	// by the run's first write, so that a run that fails before it leaves
	// nothing behind, not even the directory).
	f    *os.File
	run  *runscope.Run
	rows int
	// rowsSent counts the rows written (batch mode) or published (run
	// mode, at Close), so a run's outcome counts no row of a run that
	// was not published.
	rowsSent *service.MetricCounter
}

func newOutput(conf *service.ParsedConfig, res *service.Resources) (*output, error) {
	o := &output{log: res.Logger(), res: res, rowsSent: res.Metrics().NewCounter("output_rows_sent")}
	o.rowsSent.Incr(0) // shown at 0 from the start, for a run that publishes none
	var err error
	if o.path, err = conf.FieldString(fPath); err != nil {
		return nil, err
	}
	if o.path == "" {
		return nil, fmt.Errorf("%s: empty", fPath)
	}
	objs, err := conf.FieldObjectList(fColumns)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: at least one column is required", fColumns)
	}
	for i, c := range objs {
		var col column
		if col.name, err = c.FieldString(fColName); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", fColumns, i, err)
		}
		if col.value, err = c.FieldInterpolatedString(fColValue); err != nil {
			return nil, fmt.Errorf("%s[%d] (%s): %w", fColumns, i, col.name, err)
		}
		o.cols = append(o.cols, col)
	}
	if o.header, err = conf.FieldBool(fHeader); err != nil {
		return nil, err
	}
	d, err := conf.FieldString(fDelimiter)
	if err != nil {
		return nil, err
	}
	if r := []rune(d); len(r) != 1 || r[0] == '"' || r[0] == '\n' || r[0] == '\r' {
		return nil, fmt.Errorf("%s: %q is not one character other than a quote or newline", fDelimiter, d)
	}
	o.delim = []rune(d)[0]
	mode, err := conf.FieldString(fTransaction)
	if err != nil {
		return nil, err
	}
	if mode != "batch" && mode != "run" {
		return nil, fmt.Errorf("%s: %q is neither batch nor run", fTransaction, mode)
	}
	o.runMode = mode == "run"
	return o, nil
}

func (o *output) tmp() string { return o.path + ".tmp" }

// Connect opens the file in batch mode. In run mode the run's first
// write does (open), and a .tmp left by a crashed run is replaced then:
// its run never completed, so nothing in it was published.
func (o *output) Connect(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.connected {
		return nil
	}
	if !o.runMode {
		if err := o.open(); err != nil {
			return err
		}
	}
	o.connected = true
	return nil
}

// open creates the file's directory and opens the file (batch mode) or a
// new .tmp (run mode), writing the header into an empty file.
func (o *output) open() error {
	if err := os.MkdirAll(filepath.Dir(o.path), 0o755); err != nil {
		return fmt.Errorf("csv_file output: directory of %s: %w", o.path, err)
	}
	name, flags := o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND
	if o.runMode {
		name, flags = o.tmp(), os.O_WRONLY|os.O_CREATE
	}
	f, err := os.OpenFile(name, flags, 0o644)
	if err != nil {
		return fmt.Errorf("csv_file output: %w", err)
	}
	if o.runMode {
		// A .tmp there is a crashed run's, replaced, or a run's that is
		// still writing (another agent, or an overlapping run started
		// by cron), which must be left alone: the lock tells them apart.
		lock, err := atomicfile.Lock(name)
		if err == nil {
			err = f.Truncate(0)
		}
		if err != nil {
			_ = f.Close()
			if lock != nil {
				lock.Close()
			}
			if errors.Is(err, atomicfile.ErrHeld) {
				return fmt.Errorf("csv_file output: %s is being written by another run of this output (another agent or pipeline writing %s): %w", name, o.path, err)
			}
			return fmt.Errorf("csv_file output: %w", err)
		}
		o.lock = lock
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 && o.header {
		err = o.writeRows(f, [][]string{o.names()})
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("csv_file output: header of %s: %w", name, err)
	}
	o.f = f
	return nil
}

// removeTmp removes the run mode's .tmp if it is this run's, or a dead
// run's (nobody holds its lock).
func (o *output) removeTmp() error {
	if o.lock == nil {
		lock, err := atomicfile.Lock(o.tmp())
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case errors.Is(err, atomicfile.ErrHeld):
			o.log.Warnf("csv_file output: %s is another run's, still being written: left to it", o.tmp())
			return nil
		case err != nil:
			return err
		}
		o.lock = lock
	}
	defer o.unlock()
	if err := os.Remove(o.tmp()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// unlock gives up the run's .tmp once it is published or removed.
func (o *output) unlock() {
	if o.lock != nil {
		o.lock.Close()
		o.lock = nil
	}
}

func (o *output) names() []string {
	out := make([]string, len(o.cols))
	for i, c := range o.cols {
		out[i] = c.name
	}
	return out
}

func (o *output) writeRows(f *os.File, rows [][]string) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Comma = o.delim
	if err := w.WriteAll(rows); err != nil {
		return err
	}
	_, err := f.Write(buf.Bytes())
	return err
}

func (o *output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	rows := make([][]string, len(batch))
	for i, m := range batch {
		row := make([]string, len(o.cols))
		for j, c := range o.cols {
			v, err := c.value.TryString(m)
			if err != nil {
				return fmt.Errorf("csv_file output: message %d, column %s: %w", i, c.name, err)
			}
			row[j] = v
		}
		rows[i] = row
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return service.ErrNotConnected
	}
	if len(batch) == 0 || (o.runMode && runscope.Abandoned(batch)) {
		return nil // no file is opened for it
	}
	if o.runMode {
		run, ok := runscope.From(batch[0].Context())
		if !ok {
			return fmt.Errorf("csv_file output: %s: run needs a bounded input that reports the end of its run, such as the csv_file input; this message has none", fTransaction)
		}
		if o.run != nil && o.run != run {
			return fmt.Errorf("csv_file output: %s: run: this batch belongs to another run than the earlier ones", fTransaction)
		}
		o.run = run
		if o.f == nil {
			if err := o.open(); err != nil {
				runscope.FailFrom(ctx, batch, err)
				return err
			}
		}
	}
	if err := o.writeRows(o.f, rows); err != nil {
		err = fmt.Errorf("csv_file output: write %s: %w", o.f.Name(), err)
		if o.runMode {
			runscope.FailFrom(ctx, batch, err)
		}
		return err
	}
	o.rows += len(rows)
	if o.runMode {
		return nil // made durable, or thrown away, with the run at Close
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("csv_file output: fsync %s: %w", o.path, err)
	}
	o.rowsSent.Incr(int64(len(rows)))
	return nil
}

// Close publishes or discards a run; in batch mode it closes the file.
func (o *output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return nil
	}
	o.connected = false
	if !o.runMode {
		f := o.f
		o.f = nil
		return f.Close()
	}
	// A run that wrote nothing here can still be complete: its file then
	// holds the header alone, saying this run had no such rows. When no
	// batch came, the run is the stream's (its bounded input's), if it
	// has one: an input that failed before reading a row must not leave
	// an empty file that says the run had no rejects.
	run := o.run
	if run == nil {
		run, _ = runscope.Lookup(o.res)
	}
	if run != nil && !run.Complete() {
		var err error
		if o.f != nil {
			err = o.f.Close()
			o.f = nil
		}
		// This run's .tmp, or one a crashed run left: never published.
		// Another run's, still being written, is left to it.
		err = errors.Join(err, o.removeTmp())
		o.log.Warnf("csv_file output: the run did not complete (%v): its %d rows were discarded; %s is as it was", run.Incomplete(), o.rows, o.path)
		return err
	}
	if o.f == nil {
		if err := o.open(); err != nil {
			return err
		}
	}
	f := o.f
	o.f = nil
	defer o.unlock()
	if err := atomicfile.Publish(f, o.tmp(), o.path); err != nil {
		err = fmt.Errorf("csv_file output: %w", err)
		if run != nil {
			run.Fail(err) // complete, but not published: not a success
		}
		return err
	}
	o.rowsSent.Incr(int64(o.rows))
	o.log.Infof("csv_file output: published %s, %d rows", o.path, o.rows)
	return nil
}
