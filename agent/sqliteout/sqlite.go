// Package sqliteout provides the `sqlite` output: it loads JSON messages
// and frames of rows (agent/frame) as rows of a table in an SQLite file,
// one transaction per batch, so that a
// batch job (the seed's sales ETL) ends in a database an analyst can query
// with the sqlite3 CLI or pandas, even while the agent is still writing.
// With a key the load is an upsert, so running it again does not duplicate
// rows.
package sqliteout

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	// The driver is SQLite translated to Go: no cgo, so no C toolchain at
	// build time.
	"github.com/ncruces/go-sqlite3"
	sqlite3driver "github.com/ncruces/go-sqlite3/driver"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/runscope"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/internal/enumlint"
)

const (
	fPath           = "path"
	fTable          = "table"
	fColumns        = "columns"
	fColName        = "name"
	fColType        = "type"
	fColPath        = "path"
	fKey            = "key"
	fCreateTable    = "create_table"
	fWithoutRowid   = "without_rowid"
	fInitStatements = "init_statements"
	fSynchronous    = "synchronous"
	fBatching       = "batching"
	fTransaction    = "transaction"
	fAfterRun       = "after_run"
	fReplaceBy      = "replace_by"

	driverName = "sqlite3"

	// busyTimeoutMS is how long a write waits for another writer (a person
	// running UPDATE in the sqlite3 CLI) before failing. Readers never make
	// it wait: the database is in WAL mode.
	busyTimeoutMS = 10000
)

// ConfigSpec is the output's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Local").
		Summary("Writes JSON messages (or frames of rows) as rows of an SQLite table; each batch is one transaction, and with a key rows are upserted, so loading the same data again does not duplicate it.").
		Description(`
Each message must be a JSON object and becomes one row of `+"`table`"+` in the database file `+"`path`"+` (created, with its directory, if missing), or a frame, whose rows become rows (see Frames).

### Schema

With `+"`columns`"+`, each column takes its value from a [gjson path](https://github.com/tidwall/gjson/blob/master/SYNTAX.md) into the message (the column's name by default); fields of the message that no column names are ignored, and a missing or null value is NULL. Conversions, where a value that does not convert fails its message:

- `+"`TEXT`"+`: a string as it is, any other value as its JSON text.
- `+"`INTEGER`"+`: an integer, or a string holding one (a number with no fraction such as `+"`3.0`"+` also counts).
- `+"`REAL`"+`: a number, or a string holding one.
- `+"`BOOLEAN`"+`: stored as INTEGER 1 or 0; `+"`true`"+`/`+"`false`"+`, the numbers 1 and 0, or a string such as `+"`\"true\"`"+` or `+"`\"0\"`"+`.
- `+"`TIMESTAMP`"+`: stored as TEXT in RFC 3339, UTC (fractional seconds only when the value has them). RFC 3339, `+"`2006-01-02 15:04:05`"+` (fractional seconds allowed), `+"`2006-01-02T15:04:05`"+`, `+"`2006-01-02`"+` (times with no zone are UTC), or epoch seconds as a number or string.
- `+"`BLOB`"+`: a string's bytes, any other value as its JSON text.

Without `+"`columns`"+`, an existing table's columns are used (its declared types map to the ones above, and a column of another declared type, such as DATE or NUMERIC, takes values as JSON gives them, leaving conversion to SQLite); if there is no table, its columns are inferred from the first message written: one per top-level field, in the message's order. A column's type comes from that field's values in the first batch: strings give TEXT, numbers INTEGER if every one is written as an integer and REAL otherwise, booleans BOOLEAN, objects and arrays TEXT holding their JSON, and a field that is null throughout TEXT. Either way a message's top-level field that is not a column fails the message, naming the field. Inference sees one batch: if every price in it is round the column is INTEGER, and a later batch's `+"`19.99`"+` fails, so list the columns when the first batch may not be typical.

Table and column names are identifiers (letters, digits and `+"`_`"+`, not starting with a digit).

### Keys and upserts

With `+"`key`"+` the table gets PRIMARY KEY(key...) (its columns NOT NULL) and every row is an upsert: a row whose key exists replaces the existing row's other columns. A message with no value for a key column fails. An existing table must have a primary key or unique index on exactly the key's columns, or the output does not connect. Without a key rows are plain inserts, so loading the same data twice gives every row twice.

### Batches and failures

Each batch is written in one transaction: all its rows or none. A message that cannot be written (not a JSON object, a value that does not convert, no value for a key column, a row SQLite rejects) fails the batch with an error naming the message's index in the batch (and for a frame the row in it), the column and the value; nothing of the batch is written. Every message of the batch is reported failed, the bad ones with their reason and the others with the index of a bad one, so that a `+"`fallback`"+` output receives the whole batch with each message's `+"`fallback_error`"+`. Without a `+"`fallback`"+` the input is told of the failure and most inputs retry the batch, which fails again: reject bad rows before the output (the `+"`csv_file`"+` input does) or add a `+"`fallback`"+`.

### Frames

A frame (from `+"`csv_file`"+` with `+"`frames: true`"+`, or a columns-mode `+"`wasm`"+` step) is one message holding many rows as typed columns. Its accepted rows are loaded, each exactly as the same row sent as a JSON message would be (the same conversions, the same inferred columns and types, the same failures), but converted straight from the columns, which is what makes a frame fast: there is no JSON to write and parse again. Its rejected rows are skipped (route them to a rejects output with `+"`unframe`"+`), and its metadata columns (`+"`csv_file`"+`, `+"`csv_line`"+`, `+"`csv_raw`"+`) are not fields. A frame's time values are RFC 3339 strings to the conversions, as in JSON. A frame that cannot be written fails as one message, its error naming the row of the frame. A batch may mix frames and JSON messages.

### Metrics

`+"`output_rows_sent`"+` counts the rows written, a JSON message as one and a frame as its accepted rows, where Benthos' `+"`output_sent`"+` counts messages. With `+"`transaction: run`"+` the run's rows count when it commits, so a run rolled back counts none (where `+"`output_sent`"+` counted its batches as they were acknowledged into the run's transaction); a run's outcome (`+"`rows_out`"+`) reads this counter.

### Readers

The database is in WAL mode, so the sqlite3 CLI, pandas or any SQLite reader can query the table while the output writes; a reader sees whole batches only. A reader should keep a busy timeout (Python's sqlite3 has 5 seconds by default): opening the WAL can meet a lock for a moment, never for the length of a batch.

### Throughput

SQLite has one writer, so `+"`max_in_flight`"+` above 1 gains nothing; use `+"`batching`"+` for throughput, since a transaction costs one or two fsyncs however many rows it holds. Give the policy a `+"`period`"+` as well as a `+"`count`"+` when the input is finite (a file): such an input waits for its last messages to be acknowledged before it ends, and a partial batch is only written when its period passes.`).
		Fields(
			service.NewStringField(fPath).Description("The database file. It and its directory are created if missing.").Example("data/sales.db"),
			service.NewStringField(fTable).Description("The table to write to.").Example("sales"),
			service.NewObjectListField(fColumns,
				service.NewStringField(fColName).Description("Column name."),
				enumlint.Field(fColType, typeNames()...).Description("Column type."),
				service.NewStringField(fColPath).Description("gjson path of the value in the message; the column's name by default.").Default(""),
			).Description("The table's columns, in order. Without them (or with an empty list) an existing table's columns are used, or else they are inferred from the first message.").
				Default([]any{}).
				Example([]any{
					map[string]any{"name": "date", "type": "TEXT"},
					map[string]any{"name": "product_id", "type": "INTEGER"},
					map[string]any{"name": "quantity", "type": "INTEGER"},
					map[string]any{"name": "price", "type": "REAL"},
					map[string]any{"name": "customer_id", "type": "INTEGER"},
					map[string]any{"name": "total_amount", "type": "REAL"},
				}),
			service.NewStringListField(fKey).Description("The columns of the primary key; with a key every write is an upsert.").Default([]any{}).Example([]any{"date", "product_id", "customer_id"}),
			service.NewBoolField(fCreateTable).Description("Whether to create the table if it does not exist; when false a missing table fails the connection.").Default(true),
			service.NewBoolField(fWithoutRowid).Description("Create the table `WITHOUT ROWID` (needs `key`): the rows are stored in the primary key's B-tree instead of a rowid table plus a separate index on the key, so an upsert updates one B-tree, not two. Measured about 1.15× faster for the sales ETL's 1M-row load (docs/BENCHMARKS.md); best for tables whose rows are small and always found by key. Applies only when the output creates the table.").Default(false).Advanced(),
			service.NewStringListField(fInitStatements).Description("SQL statements run in order each time the output connects, once the table exists, such as indexes and views; they run on every start, so write them to be repeatable (`IF NOT EXISTS`). With `transaction: run` they are checked at connection and run in the run's transaction, with the table's creation.").Default([]any{}).
				Example([]any{"CREATE INDEX IF NOT EXISTS sales_by_customer ON sales(customer_id)"}),
			enumlint.Field(fTransaction, "batch", "run").Description("`batch`: each batch is a transaction, committed before it is acknowledged. `run`: the whole run of a bounded input (`csv_file`) is one transaction, committed when the output closes and only if the run read its input to the end and every row was delivered; a run stopped partway (a timeout, a shutdown, a kill) leaves the database as it was. Nothing is written outside that transaction: the table, its summary tables and the `init_statements` are created in it, and a database file that does not exist yet is created by the run's first row (the configuration is checked at connection on an in-memory database), so a first run that fails leaves no table, and, if it fails before its first row, no file. A run that completes with no rows still creates the (empty) tables and runs `after_run`. A batch is then acknowledged once it is in the transaction, and a failed batch is rolled back alone (a savepoint per batch). See `after_run`. A batch that cannot be written for a reason other than its rows (a full disk), or a connection that fails (a table without a configured column), fails the run at once with that error, rather than being retried until the run's timeout; the run's later batches are then dropped with it.").Default("batch"),
			service.NewStringListField(fReplaceBy).Description("With `transaction: run` and `columns`: columns whose values name a part of the table that each run replaces whole, such as the source file of `csv_file`'s `file_field`. The first time a run meets a value (on any row of a frame, rejected rows included), the table's rows with that value are deleted, in the run's transaction, before its rows are written; so a file read again leaves exactly its current rows in the table: a row removed from the file, or now rejected, is gone, not left behind as an upsert would leave it. Values the run does not meet (a file not read this time) keep their rows. Make them the leading columns of `key` so that the delete uses its index. The committed run's log line says how many rows were replaced. The delete costs time on a re-run: the sales ETL over the same 1M rows again took 1.3-1.4× as long as with the upsert alone (docs/BENCHMARKS.md); a first run, into an empty table, pays nothing.").Default([]any{}).Example([]any{"source_file"}),
			summariesField(),
			service.NewStringListField(fAfterRun).Description("With `transaction: run`: SQL statements run in order inside the run's transaction just before it commits (after the `summaries`), such as summaries recomputed from the loaded rows, so the table and its summaries change together or not at all. A failing statement rolls the whole run back.").Default([]any{}).
				Example([]any{"DELETE FROM daily_summary", "INSERT INTO daily_summary SELECT date, round(sum(total_amount), 2), sum(quantity) FROM sales_data GROUP BY date"}),
			enumlint.Field(fSynchronous, "full", "normal").Description("SQLite's `synchronous` setting. `full` fsyncs every transaction, so an acknowledged batch survives a power loss; `normal` may lose the last transactions on a power loss (never on a crash of the agent alone) and writes faster.").Default("full").Advanced(),
			service.NewOutputMaxInFlightField().Default(1),
			service.NewBatchPolicyField(fBatching),
		).
		LintRule(enumlint.Rule(
			enumlint.Enum{Path: fColumns + "[]." + fColType, Options: typeNames()},
			enumlint.Enum{Path: fTransaction, Options: []string{"batch", "run"}},
			enumlint.Enum{Path: fSummaries + "[]." + fSummaryFields + "[]." + fSummaryOp, Options: summaryOps()},
			enumlint.Enum{Path: fSynchronous, Options: []string{"full", "normal"}},
		))
}

// Register adds the `sqlite` output to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchOutput("sqlite", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		o, pol, maxInFlight, err := newOutput(conf, res)
		if err != nil {
			return nil, pol, 0, configerr.Wrap(err)
		}
		return o, pol, maxInFlight, nil
	})
}

type output struct {
	log         *service.Logger
	res         *service.Resources // to find the stream's run when no batch came
	path        string
	dsn         string
	table       string
	cols        []column // as configured; nil when the table decides or the first message does
	key         []string
	createTable bool
	// withoutRowid creates the table WITHOUT ROWID.
	withoutRowid bool
	init         []string
	runMode      bool     // transaction: run
	afterRun     []string // run mode: SQL before the commit
	summaries    []summary
	// replaceBy are the indexes in cols of the replace_by columns.
	replaceBy []int
	// rowsSent counts rows written (a frame's accepted rows each), where
	// Benthos' output_sent counts messages, a frame as one.
	rowsSent *service.MetricCounter

	// mu serialises writes: SQLite has one writer, and the schema may be
	// settled by the first batch.
	mu        sync.Mutex
	connected bool
	// db is nil while connected in run mode to a file that did not exist:
	// the run's first write opens it (see Connect).
	db *sql.DB
	// conn is db's one connection, held from Connect to Close: rows are
	// written through the driver's own API on it (see raw).
	conn   *sql.Conn
	schema *schema // nil until known
	// ins is the insert statement prepared on conn, or nil.
	ins *sqlite3.Stmt
	// srcs and vals hold a batch's messages and converted values, their
	// memory kept for the next batch.
	srcs []source
	vals []val

	// In run mode: whether the run's transaction is open, the run it
	// belongs to, and the rows in it.
	inRun   bool
	run     *runscope.Run
	runRows int
	// live aggregates the run's summaries as its rows are written, when
	// it can (livesummary.go); liveOff says why not.
	live    *liveSummaries
	liveOff string
	// replaced are the replace_by values this run has replaced (tuples
	// as replaceKey encodes them), replacedRows the rows it deleted.
	replaced     map[string]bool
	replacedRows int
	// summarisedBy says how the last run's summaries were made:
	// summariesFromRows, or by a scan and why.
	summarisedBy string
}

func newOutput(conf *service.ParsedConfig, res *service.Resources) (*output, service.BatchPolicy, int, error) {
	var pol service.BatchPolicy
	o := &output{log: res.Logger(), res: res, rowsSent: res.Metrics().NewCounter("output_rows_sent")}
	// Shown at 0 from the start: a run's outcome then reads rows_out
	// from it even when the run committed none.
	o.rowsSent.Incr(0)
	var err error
	if o.path, err = conf.FieldString(fPath); err != nil {
		return nil, pol, 0, err
	}
	if o.path == "" {
		return nil, pol, 0, fmt.Errorf("%s: empty", fPath)
	}
	if o.table, err = conf.FieldString(fTable); err != nil {
		return nil, pol, 0, err
	}
	if !isIdent(o.table) {
		return nil, pol, 0, fmt.Errorf("%s: %q is not an identifier (letters, digits and _, not starting with a digit)", fTable, o.table)
	}
	if o.cols, err = parseColumns(conf); err != nil {
		return nil, pol, 0, fmt.Errorf("%s: %w", fColumns, err)
	}
	if o.key, err = conf.FieldStringList(fKey); err != nil {
		return nil, pol, 0, err
	}
	if err := checkKey(o.key, o.cols); err != nil {
		return nil, pol, 0, fmt.Errorf("%s: %w", fKey, err)
	}
	if o.createTable, err = conf.FieldBool(fCreateTable); err != nil {
		return nil, pol, 0, err
	}
	if o.withoutRowid, err = conf.FieldBool(fWithoutRowid); err != nil {
		return nil, pol, 0, err
	}
	if o.withoutRowid && len(o.key) == 0 {
		return nil, pol, 0, fmt.Errorf("%s needs %s: a WITHOUT ROWID table is stored by its primary key", fWithoutRowid, fKey)
	}
	if o.init, err = conf.FieldStringList(fInitStatements); err != nil {
		return nil, pol, 0, err
	}
	mode, err := conf.FieldString(fTransaction)
	if err != nil {
		return nil, pol, 0, err
	}
	if mode != "batch" && mode != "run" {
		return nil, pol, 0, fmt.Errorf("%s: %q is neither batch nor run", fTransaction, mode)
	}
	o.runMode = mode == "run"
	if o.afterRun, err = conf.FieldStringList(fAfterRun); err != nil {
		return nil, pol, 0, err
	}
	if len(o.afterRun) > 0 && !o.runMode {
		return nil, pol, 0, fmt.Errorf("%s needs %s: run (with a transaction per batch there is no end of a run to run it at)", fAfterRun, fTransaction)
	}
	if o.replaceBy, err = parseReplaceBy(conf, o.cols, o.runMode); err != nil {
		return nil, pol, 0, fmt.Errorf("%s: %w", fReplaceBy, err)
	}
	if o.summaries, err = parseSummaries(conf, o.table); err != nil {
		return nil, pol, 0, err
	}
	if len(o.summaries) > 0 && !o.runMode {
		return nil, pol, 0, fmt.Errorf("%s needs %s: run (they are recomputed from the whole table at the end of each run)", fSummaries, fTransaction)
	}
	for i := range o.summaries {
		if o.cols != nil {
			if err := o.summaries[i].check(o.cols); err != nil {
				return nil, pol, 0, err
			}
		}
	}
	synchronous, err := conf.FieldString(fSynchronous)
	if err != nil {
		return nil, pol, 0, err
	}
	if synchronous != "full" && synchronous != "normal" {
		return nil, pol, 0, fmt.Errorf("%s: %q is neither full nor normal", fSynchronous, synchronous)
	}
	if o.dsn, err = dsn(o.path, synchronous); err != nil {
		return nil, pol, 0, fmt.Errorf("%s: %w", fPath, err)
	}
	maxInFlight, err := conf.FieldMaxInFlight()
	if err != nil {
		return nil, pol, 0, err
	}
	if pol, err = conf.FieldBatchPolicy(fBatching); err != nil {
		return nil, pol, 0, err
	}
	return o, pol, maxInFlight, nil
}

func parseColumns(conf *service.ParsedConfig) ([]column, error) {
	objs, err := conf.FieldObjectList(fColumns)
	if err != nil {
		return nil, err
	}
	var cols []column
	seen := map[string]bool{}
	for i, c := range objs {
		name, err := c.FieldString(fColName)
		if err != nil {
			return nil, fmt.Errorf("column %d: %w", i, err)
		}
		if !isIdent(name) {
			return nil, fmt.Errorf("column %d: name %q is not an identifier (letters, digits and _, not starting with a digit)", i, name)
		}
		// SQLite's names are case-insensitive: "Price" and "price" are one column.
		if seen[strings.ToLower(name)] {
			return nil, fmt.Errorf("column %d: %q is listed twice", i, name)
		}
		seen[strings.ToLower(name)] = true
		typ, err := c.FieldString(fColType)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", name, err)
		}
		// The spec's enum is only enforced by the linter, which a config
		// parsed without it skips.
		if !slices.Contains(typeNames(), typ) {
			return nil, fmt.Errorf("column %q: type %q is not one of %s", name, typ, strings.Join(typeNames(), ", "))
		}
		path, err := c.FieldString(fColPath)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", name, err)
		}
		if path == "" {
			path = name
		}
		cols = append(cols, column{name: name, typ: colType(typ), path: path})
	}
	return cols, nil
}

// checkKey checks the key against the configured columns; when the columns
// come from the table or the first message it is checked once they are known.
func checkKey(key []string, cols []column) error {
	seen := map[string]bool{}
	for _, k := range key {
		if seen[strings.ToLower(k)] {
			return fmt.Errorf("%q is listed twice", k)
		}
		seen[strings.ToLower(k)] = true
		if cols == nil {
			if !isIdent(k) {
				return fmt.Errorf("%q is not an identifier", k)
			}
			continue
		}
		if columnIndex(cols, k) < 0 {
			return fmt.Errorf("%q is not one of the columns", k)
		}
	}
	return nil
}

// dsn is the driver's URI for path: pragmas set on every connection, and
// IMMEDIATE transactions so that a write never has to upgrade a read lock
// (which fails with SQLITE_BUSY instead of waiting).
func dsn(path, synchronous string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	q := url.Values{}
	// Order matters to the driver: busy_timeout first, so that setting the
	// journal mode waits for a busy database too.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	q.Add("_pragma", "journal_mode(wal)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String(), nil
}

func (o *output) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.connected {
		return nil
	}
	err := o.connect(ctx)
	if err != nil && o.runMode && ctx.Err() == nil {
		// A run cannot complete without its output, and Benthos would
		// only try to connect again until the run's timeout, which would
		// then hide why (a table without a configured column, say). The
		// run fails now with the reason, and the output counts as
		// connected only to drop the failed run's batches (Abandoned), so
		// that the stream ends.
		runscope.ForStream(o.res).Fail(err)
		o.log.Errorf("%v; the run fails", err)
		o.connected = true
		return nil
	}
	return err
}

func (o *output) connect(ctx context.Context) error {
	if o.runMode {
		// A run that fails must leave no trace, and a database file
		// created at connection would be one (with its directory), so a
		// file that does not exist yet waits for the run's first row; the
		// configuration is checked now, on an empty database in memory.
		if _, err := os.Stat(o.path); errors.Is(err, fs.ErrNotExist) {
			if err := o.checkInMemory(ctx); err != nil {
				return fmt.Errorf("sqlite output: %s: %w", o.path, err)
			}
			o.connected = true
			return nil
		}
	}
	if err := o.open(ctx); err != nil {
		return fmt.Errorf("sqlite output: %w", err)
	}
	o.connected = true
	return nil
}

// open opens the database file, creating it if needed, and sets it up,
// unless it is open already; its errors name the file, for the caller to
// say what it was doing.
func (o *output) open(ctx context.Context) error {
	if o.db != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(o.path), 0o755); err != nil {
		return fmt.Errorf("directory of %s: %w", o.path, err)
	}
	db, err := sql.Open(driverName, o.dsn)
	if err != nil {
		return fmt.Errorf("opening %s: %w", o.path, err)
	}
	// One connection: SQLite has one writer, and a second connection of
	// ours could only wait for the first.
	db.SetMaxOpenConns(1)
	// Switching a new file to WAL needs the file to itself, and SQLite
	// answers "database is locked" at once rather than waiting: several
	// outputs sharing one new file (a run's table and its summaries) race
	// for it at connect. Retried here, briefly, rather than logged as a
	// failed connection for Benthos to retry.
	err = o.setUpFile(ctx, db)
	for wait := 10 * time.Millisecond; err != nil && isLocked(err) && wait < 5*time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		err = o.setUpFile(ctx, db)
	}
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("%s: %w", o.path, err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("%s: %w", o.path, err)
	}
	o.db, o.conn = db, conn
	return nil
}

// setUpFile checks that db is in WAL mode and sets it up; in run mode, in
// a transaction rolled back afterwards, since only the run's transaction
// may change the file.
func (o *output) setUpFile(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not wal, so readers would block writes (is the file on a network file system?)", mode)
	}
	if !o.runMode {
		return o.setUp(ctx, db)
	}
	return o.rehearse(ctx, db)
}

// checkInMemory sets the output up on an empty database in memory, as it
// would a new file: a misconfiguration (a bad init statement, a summary of
// a column the table lacks) is found at connection without a file.
func (o *output) checkInMemory(ctx context.Context) error {
	db, err := sql.Open(driverName, ":memory:")
	if err != nil {
		return err
	}
	defer db.Close()
	return o.rehearse(ctx, db)
}

// rehearse runs setUp in a transaction it rolls back.
func (o *output) rehearse(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return o.setUp(ctx, tx)
}

// raw runs f on the output's connection through the driver's own API:
// binding and stepping a prepared statement there costs about 60% of the
// same insert through database/sql (BenchmarkBulkLoad), and the load is
// what bounds a batch job. ctx interrupts what f runs.
func (o *output) raw(ctx context.Context, f func(c *sqlite3.Conn) error) error {
	return o.conn.Raw(func(dc any) error {
		c := dc.(sqlite3driver.Conn).Raw()
		old := c.SetInterrupt(ctx)
		defer c.SetInterrupt(old)
		return diskFull(f(c), o.path, freeSpace)
	})
}

// insertStmt is the insert of s, prepared on c once.
func (o *output) insertStmt(c *sqlite3.Conn, s *schema) (*sqlite3.Stmt, error) {
	if o.ins != nil {
		return o.ins, nil
	}
	stmt, _, err := c.Prepare(s.insert)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", s.insert, err)
	}
	o.ins = stmt
	return stmt, nil
}

// rolledBack forgets the insert statement: the rollback may have removed
// the table it was prepared against (created by the batch that failed).
func (o *output) rolledBack() {
	if o.ins != nil {
		_ = o.ins.Close()
		o.ins = nil
	}
}

func isLocked(err error) bool {
	return errors.Is(err, sqlite3.BUSY) || strings.Contains(err.Error(), "database is locked")
}

// dbtx is a database or a transaction.
type dbtx interface {
	execer
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// setUp checks the database and the table, creates the table if it can,
// and runs the init statements, so that a misconfiguration is found at
// connection, not at the first batch.
func (o *output) setUp(ctx context.Context, db dbtx) error {
	existing, err := tableColumns(ctx, db, o.table)
	if err != nil {
		return fmt.Errorf("reading the columns of table %q: %w", o.table, err)
	}
	if existing == nil && !o.createTable {
		return fmt.Errorf("table %q does not exist and %s is false", o.table, fCreateTable)
	}
	cols := o.cols
	switch {
	case cols != nil && existing == nil:
		if _, err := db.ExecContext(ctx, createSQL(o.table, cols, o.key, o.withoutRowid)); err != nil {
			return fmt.Errorf("creating table %q: %w", o.table, err)
		}
	case cols != nil:
		for _, c := range cols {
			if columnIndex(existing, c.name) < 0 {
				return fmt.Errorf("table %q has no column %q (it has %s); alter the table or the columns", o.table, c.name, columnNames(existing))
			}
		}
	case existing != nil:
		cols = existing
		if err := checkKey(o.key, cols); err != nil {
			return fmt.Errorf("%s of table %q: %w", fKey, o.table, err)
		}
	default:
		// The first message will tell.
		return nil
	}
	s := newSchema(o.table, cols, o.key, o.cols == nil)
	if err := runInit(ctx, db, o.init); err != nil {
		return err
	}
	// Created now, so a reader finds them before the first run ends
	// (in run mode, rehearsed: see beginRun).
	for i := range o.summaries {
		if err := o.summaries[i].check(cols); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, o.summaries[i].createSQL(cols)); err != nil {
			return fmt.Errorf("%s (%s): creating the table: %w", fSummaries, o.summaries[i].table, err)
		}
	}
	// Preparing checks the statement against the table, in particular that
	// an existing table has a unique index an upsert's key can use.
	stmt, err := db.PrepareContext(ctx, s.insert)
	if err != nil && len(o.key) > 0 {
		return fmt.Errorf("preparing the upsert into table %q (is the %s %s its primary key or a unique index?): %s: %w", o.table, fKey, quoteAll(o.key), s.insert, err)
	}
	if err != nil {
		return fmt.Errorf("preparing the insert into table %q: %s: %w", o.table, s.insert, err)
	}
	_ = stmt.Close()
	o.schema = s
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func runInit(ctx context.Context, db execer, stmts []string) error {
	for i, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s[%d] (%s): %w", fInitStatements, i, s, err)
		}
	}
	return nil
}

// tableColumns reads a table's columns, or nil if there is no such table.
func tableColumns(ctx context.Context, db dbtx, table string) ([]column, error) {
	rows, err := db.QueryContext(ctx, "SELECT name, type FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var name, decl string
		if err := rows.Scan(&name, &decl); err != nil {
			return nil, err
		}
		cols = append(cols, column{name: name, typ: declaredType(decl), path: name})
	}
	return cols, rows.Err()
}

func (o *output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return service.ErrNotConnected
	}
	if len(batch) == 0 || (o.runMode && runscope.Abandoned(batch)) {
		return nil
	}
	srcs, total := readSources(batch, o.srcs)
	o.srcs = srcs
	defer clear(srcs) // so as not to keep the batch alive
	s := o.schema
	if s == nil {
		first := firstRow(srcs)
		if first < 0 {
			return nil // only rejected rows: nothing to write, nor to infer the table from
		}
		var err error
		if s, err = o.infer(srcs, first); err != nil {
			return o.batchError(batch, map[int]error{first: fmt.Errorf("message %d: %w", first, err)})
		}
	}
	n := len(s.cols)
	// One buffer for every batch's values: a batch of frames holds
	// thousands of rows, and a new buffer each time is garbage the size of
	// the batch for the collector to scan and free. Cleared afterwards so
	// that it does not keep the batch's bodies alive.
	if cap(o.vals) < total*n {
		o.vals = make([]val, total*n)
	}
	rows := o.vals[:total*n]
	defer clear(rows)
	bad := map[int]error{}
	// Text that frames' values need and their bodies do not hold; it must
	// outlive the write, as the bodies do.
	var a arena
	for i := range srcs {
		src := &srcs[i]
		err := src.err
		switch {
		case err != nil:
		case src.frame != nil:
			err = s.frameRows(src.frame, rows[src.start*n:(src.start+src.rows)*n], &a)
		default:
			err = s.row(src.body, rows[src.start*n:(src.start+1)*n])
		}
		if err != nil {
			bad[i] = fmt.Errorf("message %d: %w", i, err)
		}
	}
	if len(bad) > 0 {
		return o.batchError(batch, bad)
	}
	var parts []part
	if len(o.replaceBy) > 0 {
		var at int
		var err error
		if parts, at, err = o.batchParts(s, srcs, rows); err != nil {
			return o.batchError(batch, map[int]error{at: err})
		}
	}
	if total == 0 && len(parts) == 0 {
		return nil // frames of rejected rows only
	}
	write := o.write
	if o.runMode {
		write = func(ctx context.Context, s *schema, rows []val) error { return o.writeRun(ctx, batch, s, rows, parts) }
	}
	if err := write(ctx, s, rows); err != nil {
		var rowErr *rowError
		if errors.As(err, &rowErr) {
			i, at := where(srcs, rowErr.index)
			return o.batchError(batch, map[int]error{i: fmt.Errorf("%s: %w", at, rowErr.err)})
		}
		err = fmt.Errorf("sqlite output: writing %d rows to table %q in %s: %w", total, o.table, o.path, err)
		if o.runMode {
			runscope.FailFrom(ctx, batch, err)
		}
		return err
	}
	// Counted once committed: per batch, or in run mode when the run is
	// (endRun), so a run rolled back has sent no row.
	if !o.runMode {
		o.rowsSent.Incr(int64(total))
	}
	if o.schema == nil {
		o.log.Infof("sqlite output: created table %q in %s with columns %s, inferred from the first batch", o.table, o.path, columnNames(s.cols))
		o.schema = s
	}
	return nil
}

// rowError is a row SQLite rejected; index is the row's among the batch's
// rows, which WriteBatch turns into its message (and row of a frame).
type rowError struct {
	index int
	err   error
}

func (e *rowError) Error() string { return fmt.Sprintf("row %d: %v", e.index, e.err) }
func (e *rowError) Unwrap() error { return e.err }

// write writes rows in one transaction, creating the table first if the
// first message decided its columns, so that the table and its first rows
// appear together or not at all.
func (o *output) write(ctx context.Context, s *schema, rows []val) error {
	return o.raw(ctx, func(c *sqlite3.Conn) (err error) {
		// IMMEDIATE: take the write lock now (waiting out busy_timeout)
		// rather than fail to upgrade a read lock midway.
		if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("beginning a transaction: %w", err)
		}
		defer func() {
			if err != nil {
				_ = c.Exec("ROLLBACK")
				o.rolledBack()
			}
		}()
		if err := o.insertIn(c, s, rows); err != nil {
			return err
		}
		if err := c.Exec("COMMIT"); err != nil {
			return fmt.Errorf("committing: %w", err)
		}
		return nil
	})
}

// insertIn writes rows in the open transaction, creating the table first
// if the first message decided its columns.
func (o *output) insertIn(c *sqlite3.Conn, s *schema, rows []val) error {
	if err := o.createIn(c, s, false); err != nil {
		return err
	}
	stmt, err := o.insertStmt(c, s)
	if err != nil {
		return err
	}
	return insertRows(stmt, rows, len(s.cols))
}

// createIn creates the table in the open transaction, and runs the init
// statements after it: when the first message decided its columns, or
// always (a run's transaction, see beginRun).
func (o *output) createIn(c *sqlite3.Conn, s *schema, always bool) error {
	if o.schema != nil && !always {
		return nil
	}
	if err := c.Exec(createSQL(o.table, s.cols, o.key, o.withoutRowid)); err != nil {
		return fmt.Errorf("creating table %q: %w", o.table, err)
	}
	for i, q := range o.init {
		if err := c.Exec(q); err != nil {
			return fmt.Errorf("%s[%d] (%s): %w", fInitStatements, i, q, err)
		}
	}
	return nil
}

// insertRows executes stmt for each row of rows, n values each.
func insertRows(stmt *sqlite3.Stmt, rows []val, n int) error {
	for i := 0; i*n < len(rows); i++ {
		err := bindRow(stmt, rows[i*n:(i+1)*n])
		if err == nil {
			err = stmt.Exec()
		}
		if err != nil {
			if rowsFault(err) {
				return &rowError{index: i, err: err}
			}
			return fmt.Errorf("row %d of the batch: %w", i, err)
		}
	}
	return nil
}

// bindRow binds every parameter of stmt, so that nothing of the row before
// is left bound.
func bindRow(stmt *sqlite3.Stmt, row []val) error {
	for j, v := range row {
		var err error
		switch v.kind {
		case valNull:
			err = stmt.BindNull(j + 1)
		case valText:
			err = stmt.BindText(j+1, v.s)
		case valBlob:
			err = stmt.BindBlob(j+1, []byte(v.s))
		case valInt:
			err = stmt.BindInt64(j+1, int64(v.n))
		case valReal:
			err = stmt.BindFloat(j+1, math.Float64frombits(v.n))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeRun adds rows to the run's transaction, beginning it with the
// run's first batch. A savepoint makes the batch all or nothing within
// the run, as a transaction does in batch mode.
func (o *output) writeRun(ctx context.Context, batch service.MessageBatch, s *schema, rows []val, parts []part) (err error) {
	run, ok := runscope.From(batch[0].Context())
	if !ok {
		return fmt.Errorf("%s: run needs a bounded input that reports the end of its run, such as csv_file; this message has none", fTransaction)
	}
	if o.run != nil && run != o.run {
		return fmt.Errorf("%s: run: this batch belongs to another run than the earlier ones", fTransaction)
	}
	if err := o.open(ctx); err != nil {
		return err
	}
	return o.raw(ctx, func(c *sqlite3.Conn) (err error) {
		if !o.inRun {
			if err := o.beginRun(c); err != nil {
				return err
			}
			o.run = run
			o.live, o.liveOff = o.startLive(c, s)
		}
		if err := c.Exec("SAVEPOINT sluice_batch"); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		defer func() {
			if err != nil {
				_ = c.Exec("ROLLBACK TO sluice_batch")
				o.rolledBack()
			}
			_ = c.Exec("RELEASE sluice_batch")
		}()
		undo, err := o.replaceIn(c, s, parts)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				undo() // rolled back with the savepoint: a retry deletes again
			}
		}()
		if err := o.insertIn(c, s, rows); err != nil {
			return err
		}
		if o.live != nil {
			o.live.add(rows, len(s.cols))
		}
		o.runRows += len(rows) / len(s.cols)
		return nil
	})
}

// beginRun opens the run's transaction, which outlives the call (until
// Close), and creates in it what setUp only rehearsed: the table, when
// its columns are known before the first row, and the init statements.
// The summary tables are created at the end of the run, with their rows.
func (o *output) beginRun(c *sqlite3.Conn) error {
	if err := c.Exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("beginning the run's transaction: %w", err)
	}
	if o.schema != nil { // else insertIn creates the table from the first row
		if err := o.createIn(c, o.schema, true); err != nil {
			_ = c.Exec("ROLLBACK")
			return err
		}
	}
	o.inRun = true
	o.replaced, o.replacedRows = map[string]bool{}, 0
	return nil
}

// endRun commits the run's transaction if the run completed, after the
// after_run statements, and rolls it back otherwise. A run that completed
// without giving this output a row is committed too (its tables, empty or
// as they were, its summaries and after_run), as a file output publishes
// a run of no rows.
func (o *output) endRun(ctx context.Context) error {
	if !o.inRun {
		run, ok := runscope.Lookup(o.res)
		if !ok || !run.Complete() {
			return nil
		}
		o.run = run
		ctx := context.WithoutCancel(ctx)
		if err := o.open(ctx); err != nil {
			err = fmt.Errorf("sqlite output: publishing a run of no rows: %w", err)
			run.Fail(err)
			return err
		}
		if err := o.raw(ctx, o.beginRun); err != nil {
			err = fmt.Errorf("sqlite output: %s: %w", o.path, err)
			run.Fail(err)
			return err
		}
	}
	o.inRun = false
	// A shutdown must not interrupt the commit of a run that completed.
	live := o.live
	o.live = nil
	err := o.raw(context.WithoutCancel(ctx), func(c *sqlite3.Conn) error {
		if !o.run.Complete() {
			if live != nil {
				live.close()
			}
			o.log.Warnf("sqlite output: the run did not complete (%v): rolled back its %d rows; table %q in %s is as it was", o.run.Incomplete(), o.runRows, o.table, o.path)
			return c.Exec("ROLLBACK")
		}
		start := time.Now()
		summarised, why := false, o.liveOff
		if live != nil {
			var err error
			if summarised, why, err = live.finish(c, o); err != nil {
				_ = c.Exec("ROLLBACK")
				return fmt.Errorf("sqlite output: %s: %w; the run's %d rows were rolled back", fSummaries, err, o.runRows)
			}
		}
		o.summarisedBy = summariesFromRows
		if !summarised {
			o.summarisedBy = "a scan of the table (" + why + ")"
			if err := o.computeSummaries(c); err != nil {
				_ = c.Exec("ROLLBACK")
				return fmt.Errorf("sqlite output: %w; the run's %d rows were rolled back", err, o.runRows)
			}
		}
		summariesDone := time.Now()
		for i, q := range o.afterRun {
			if err := c.Exec(q); err != nil {
				_ = c.Exec("ROLLBACK")
				return fmt.Errorf("sqlite output: %s[%d] (%s): %w; the run's %d rows were rolled back", fAfterRun, i, q, err, o.runRows)
			}
		}
		afterRun := time.Now()
		if err := c.Exec("COMMIT"); err != nil {
			_ = c.Exec("ROLLBACK")
			return fmt.Errorf("sqlite output: committing the run's %d rows into table %q in %s: %w", o.runRows, o.table, o.path, err)
		}
		o.rowsSent.Incr(int64(o.runRows))
		// Split, because these run after the last row, alone, and so add
		// to the run's time in full.
		how := ""
		if len(o.summaries) > 0 {
			how = "; summaries from " + o.summarisedBy
		}
		if len(o.replaceBy) > 0 {
			how += fmt.Sprintf("; %s replaced %d earlier rows of the %d values of %s it read", fReplaceBy, o.replacedRows, len(o.replaced), o.replaceNames())
		}
		o.log.Infof("sqlite output: committed the run: %d rows into table %q in %s (summaries, after_run and commit took %s: %s, %s, %s%s)", o.runRows, o.table, o.path,
			time.Since(start).Round(time.Millisecond), summariesDone.Sub(start).Round(time.Millisecond), afterRun.Sub(summariesDone).Round(time.Millisecond), time.Since(afterRun).Round(time.Millisecond), how)
		return nil
	})
	if err != nil && o.run.Complete() {
		// The input delivered everything, but the run is not in the
		// database (its summaries, after_run or commit failed): the run
		// fails, so the supervisor does not report a success.
		o.run.Fail(err)
	}
	return err
}

// rowsFault tells an error that the row caused (a constraint, a trigger's
// RAISE, a value too big) from one that any row would have met (a full
// disk, a cancelled context), which must not send the row to a fallback as
// if it were bad.
func rowsFault(err error) bool {
	var code sqlite3.ErrorCode
	if !errors.As(err, &code) {
		return false
	}
	switch code {
	case sqlite3.CONSTRAINT, sqlite3.MISMATCH, sqlite3.TOOBIG, sqlite3.RANGE:
		return true
	}
	return false
}

// batchError fails every message of the batch: the transaction is all or
// nothing, so the messages that were fine were not written either, and
// Benthos must not count them as delivered.
func (o *output) batchError(batch service.MessageBatch, bad map[int]error) error {
	first := -1
	for i := range bad {
		if first < 0 || i < first {
			first = i
		}
	}
	headline := fmt.Errorf("sqlite output: table %q in %s: %w; nothing of the batch of %d was written", o.table, o.path, bad[first], len(batch))
	if len(bad) > 1 {
		headline = fmt.Errorf("%w (%d messages failed)", headline, len(bad))
	}
	berr := service.NewBatchError(batch, headline)
	for i := range batch {
		if err, ok := bad[i]; ok {
			berr.Failed(i, err)
		} else {
			berr.Failed(i, fmt.Errorf("message %d: not written, since message %d of its batch failed and a batch is written in one transaction", i, first))
		}
	}
	return berr
}

func (o *output) Close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return nil
	}
	o.connected = false
	// Benthos closes an output after the input's batches were all
	// acknowledged or abandoned, so the run's outcome is known here.
	var runErr error
	if o.runMode {
		runErr = o.endRun(ctx)
	}
	if o.db == nil {
		return runErr
	}
	if o.ins != nil {
		_ = o.raw(ctx, func(*sqlite3.Conn) error { return o.ins.Close() })
		o.ins = nil
	}
	err := errors.Join(o.conn.Close(), o.db.Close())
	o.db, o.conn = nil, nil
	if err != nil {
		err = fmt.Errorf("sqlite output: closing %s: %w", o.path, err)
	}
	return errors.Join(runErr, err)
}
