// Command validate is the builtin `validate` plugin: it checks every record
// of a stream against a Great Expectations suite (the processor's config,
// see README.md) and fails, flags or drops the records that break it.
//
// It is also the SDK example of a plugin whose fields depend on its
// config: OnConfig parses the suite and declares one value field per
// column the suite names, so the host parses just those, natively, and
// hands them over as (kind, text) without ever failing a record for a wrong
// type; the suite reports that instead. Only a suite with uniqueness
// expectations declares state, which the host then loads per key.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o validate.wasm .
package main

import (
	"github.com/sluice-dev/sluice/plugins/builtin/lib/expect"
	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	suite     *expect.Suite
	validator *expect.Validator
	columns   []sdk.InValue
	body      sdk.InValue // the whole record, when the suite checks its keys
	memory    sdk.State   // per-key memory, when the suite checks uniqueness

	// Reused from batch to batch, so a steady stream allocates nothing
	// but the reasons and metadata of failing records.
	rows     []expect.Row
	cols     []expect.Column // the batch's columns, as the host sent them
	seg      []expect.Column // a window's part of them
	keys     [][]byte
	keyBytes []byte // keys are copied: ObjectKeys may reuse its buffer
	text     []byte
	outcome  expect.Outcome
)

func init() {
	sdk.OnConfig(configure)
	sdk.HandleBatch(handle)
}

func configure(c sdk.Config) error {
	var err error
	if suite, err = expect.Parse(c.Raw()); err != nil {
		return sdk.InvalidConfig(err)
	}
	for i, name := range suite.Columns() {
		// Ask for no more than the column's expectations read: a
		// not-null check needs no text, a range check a number's value
		// rather than its text.
		var opts []sdk.FieldOption
		switch suite.Form(i) {
		case expect.FormKinds:
			opts = append(opts, sdk.KindsOnly)
		case expect.FormNumbers:
			opts = append(opts, sdk.BinaryNumbers)
		}
		columns = append(columns, sdk.ReadValue(name, opts...))
	}
	if suite.NeedsKeys() {
		body = sdk.ReadValue(sdk.Body)
	}
	if suite.Stateful() {
		// Declared here, not in a package var: a suite without uniqueness
		// keeps no state, and its step needs no key. The plugin cannot see
		// the step's key, so it says which one it needs in case the host
		// refuses an unkeyed step.
		memory = sdk.UseState()
		sdk.Log(sdk.LevelInfo, suite.KeyRule())
	}
	if suite.Windowed() {
		// A window counts across calls, in this instance's memory.
		sdk.Sequential()
	}
	validator = suite.NewValidator()
	validator.Begin()
	return nil
}

func handle(b *sdk.Batch) error {
	readRows(b)
	// Every row's verdict: one entry for the batch, and one per row that
	// fails (finish), instead of one per row.
	b.SetMetaAll("sluice_valid", "true")
	if suite.Windowed() {
		handleWindowed(b)
		return nil
	}
	validator.Begin()
	// Every expectation over the whole batch first, then each record in
	// order: uniqueness needs its key's state as the records before it
	// left it.
	validator.EvaluateColumns(cols, rows)
	lastKept, lastFailed := -1, -1
	if validator.PassedAll() {
		lastKept = len(rows) - 1
	} else {
		// The rows that broke nothing are skipped a run at a time; the
		// others are finished one by one.
		for i := 0; i < len(rows); i++ {
			if next := validator.PassClean(i); next > i {
				lastKept = next - 1
				if i = next; i == len(rows) {
					break
				}
			}
			switch finish(b, i, i) {
			case expect.Keep:
				lastKept = i
			case expect.Fail:
				lastFailed = i
			}
		}
	}
	r := validator.Report()
	emit(r)
	if suite.Reports() {
		// The report rides on the last record that goes on normally, or
		// else on the last failed one (which keeps its metadata too).
		text = r.AppendJSON(text[:0])
		carrier := lastKept
		if carrier < 0 {
			carrier = lastFailed
		}
		if carrier < 0 {
			sdk.Log(sdk.LevelWarn, "every record of the batch was dropped; its quality report: "+string(text))
		} else {
			b.SetMeta(carrier, "sluice_quality_report", string(text))
		}
	}
	return nil
}

// pending is a closed window's report still looking for a record to ride
// on: the window's closing record was dropped, so it goes on the next one
// that is not, in this batch or a later one.
var pending string

// handleWindowed runs the batch window by window: the rows of the current
// window are evaluated together, and when the window closes its report
// goes on the record that closed it (a time window: the first record of
// the next one; a count window: its last record), or the first record
// after that which is not dropped.
func handleWindowed(b *sdk.Batch) {
	for start := 0; start < len(rows); {
		n, closes := validator.WindowSegment(segment(start, len(rows)), len(rows)-start)
		validator.EvaluateColumns(segment(start, start+n), rows[start:start+n])
		last := expect.Drop
		for j := 0; j < n; j++ {
			i := start + j
			last = finish(b, i, j)
			if pending != "" && last != expect.Drop {
				b.SetMeta(i, "sluice_quality_report", pending)
				pending = ""
			}
		}
		start += n
		if !closes {
			continue
		}
		r := validator.Report()
		emit(r)
		text = r.AppendJSON(text[:0])
		report := string(text)
		validator.Begin()
		if suite.Window.Count > 0 && n > 0 && last != expect.Drop {
			b.SetMeta(start-1, "sluice_quality_report", report)
			continue
		}
		if pending != "" {
			// Two windows closed with no record to carry the first.
			sdk.Log(sdk.LevelWarn, "no record left to carry a window's quality report: "+pending)
		}
		pending = report
	}
}

// finish completes record i, row j of the last Evaluate: its state,
// metadata and outcome.
func finish(b *sdk.Batch, i, j int) expect.Action {
	if validator.Passed(j) {
		return expect.Keep // sluice_valid=true, from SetMetaAll
	}
	if suite.Stateful() {
		rows[i].Key, rows[i].State, rows[i].Replayed = memory.Key(b, i), memory.Get(b, i), b.Replayed(i)
	}
	out := &outcome
	validator.Finish(j, &rows[i], out)
	if out.SetState {
		memory.Set(b, i, out.State)
	}
	if !out.Valid {
		b.SetMeta(i, "sluice_valid", "false")
	}
	if out.Violations > 0 {
		text = validator.AppendViolations(text[:0])
		b.SetMeta(i, "sluice_validation", string(text))
	}
	switch out.Action {
	case expect.Fail:
		text = validator.AppendReason(text[:0])
		b.Fail(i, string(text))
	case expect.Drop:
		b.Drop(i)
	}
	return out.Action
}

func emit(r *expect.Report) {
	emitMetrics(r.Suite, r.Rows, r.ValidRows, r.Statistics.Evaluated, r.Statistics.Successful)
}

// readRows takes the batch's columns as the host sent them, and makes one
// Row per record for what is not in them: the record's keys, which are
// copied, and (set by finish) its key's state.
func readRows(b *sdk.Batch) {
	n := b.Len()
	rows, cols = resize(rows, n), resize(cols, len(columns))
	keys, keyBytes = keys[:0], keyBytes[:0]
	for c, h := range columns {
		kinds, offs, data := h.Column(b).Raw()
		cols[c] = expect.Column{Kinds: kinds, Offs: offs, Data: data}
	}
	if !suite.NeedsKeys() {
		return
	}
	for i := range rows {
		start := len(keys)
		_, raw := body.Get(b, i)
		err := sdk.ObjectKeys(raw, func(k []byte) {
			keyBytes = append(keyBytes, k...)
			keys = append(keys, keyBytes[len(keyBytes)-len(k):])
		})
		// keys may have moved while growing; the rows before keep
		// slices of its earlier array, which stay as they were.
		rows[i].Keys, rows[i].NotObject = keys[start:len(keys):len(keys)], err != nil
	}
}

// segment is rows lo to hi of the batch's columns.
func segment(lo, hi int) []expect.Column {
	seg = resize(seg, len(cols))
	for c := range cols {
		seg[c] = cols[c].Slice(lo, hi)
	}
	return seg
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func main() {}
