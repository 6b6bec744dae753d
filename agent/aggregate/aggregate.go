// Package aggregate provides the `aggregate` processor: group-by summaries
// of a batch (sum, mean, count, count distinct, min, max, day span), so the
// seed's daily and customer summaries are config, not code.
//
// It summarises one batch. A file becomes one batch with csv_file's
// `batch_size: 0` (a `memory` buffer would too, but its acknowledgements
// do not reach the input, and it drops a batch an output refuses at the
// input's end); a stream is summarised per window with a `system_window`
// buffer. It is a native processor rather
// than a Wasm plugin because it runs no user code, only config, so there is
// nothing to sandbox, and because it turns N messages into one per group,
// which the plugin ABI (each message kept, replaced or dropped) would only
// express by replacing one message per group and dropping the rest.
package aggregate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/internal/enumlint"
	"github.com/sluice-dev/sluice/internal/fsum"
	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/jsonstr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// Ops are the aggregations a field may use.
func Ops() []string {
	return []string{"sum", "mean", "median", "count", "count_distinct", "min", "max", "day_span", "first", "last"}
}

// ConfigSpec is the processor's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping").
		Summary("Replaces a batch with one summary message per group: sums, means, medians, counts, distinct counts, minimums, maximums and day spans of fields.").
		Description(`
Each summary is a JSON object holding the group's `+"`group_by`"+` values and one field per entry of `+"`fields`"+`, in that order; groups come out sorted by their values (numbers numerically, strings as text), as pandas' groupby does. A summary carries the metadata that every message it counts has with the same value: over a `+"`system_window`"+` buffer, the window's `+"`window_end_timestamp`"+`, so each summary says which window it is of; over a file, its `+"`csv_file`"+`. Metadata whose values differ between them (a row's `+"`csv_line`"+`, a Kafka offset) is not carried. A message that is already errored, lacks a group_by field, or has a value an op cannot use (a string to sum) is not counted: it passes through after the summaries, errored with the reason, so a `+"`switch`"+` output can route it with its original bytes.

A frame (`+"`csv_file`"+` with `+"`frames: true`"+`) counts as its rows: each summarised as the message it stands for, its rejected rows passed through as messages with their reasons, as `+"`unframe`"+` would give them.

It summarises the batch it is given. To summarise a whole file, read it with `+"`csv_file`"+`'s `+"`batch_size: 0`"+` (each file one batch); for windows of a stream, a `+"`system_window`"+` buffer. A `+"`memory`"+` buffer with a batch policy larger than the input also makes one batch of it, but acknowledges the input as soon as it holds the rows, so a batch job cannot tell whether its outputs wrote them.

Ops: `+"`sum`, `mean` (compensated sums, as SQLite's `sum()` and `avg()` and the `sqlite` output's `summaries`: ten values of 0.1 sum to 1, not 0.9999999999999999), `median` (pandas' median: the middle value, or the mean of the two middle ones), `count` (messages in the group; no path), `count_distinct`, `min`, `max` (numbers, or strings such as ISO dates), `day_span` (whole days between the earliest and latest time or date, like pandas' `(max - min).days`), `first`, `last`"+`. Missing or null values are skipped by every op but `+"`count`"+`.`).
		Fields(
			service.NewStringListField("group_by").Description("Fields (paths) whose values form a group; each appears in the summary under its last path element.").Example([]string{"date"}).Example([]string{"customer_id"}),
			service.NewObjectListField("fields",
				service.NewStringField("as").Description("Name of the summary field."),
				enumlint.Field("op", Ops()...).Description("The aggregation."),
				service.NewStringField("path").Description("The field it reads; not for `count`.").Default(""),
				service.NewIntField("round").Description("Decimal places to round a numeric result to (the seed rounds to 2); -1 keeps it as is.").Default(-1),
			).Description("The summary's fields."),
			service.NewBoolField("annotate").Description("Keep every message, in its place, and add its group's summary fields to it (a field of the same name is replaced), instead of replacing the batch with one summary per group: pandas' `groupby(...).transform(...)`, or a SQL window over the group, for a feature such as each user's median session beside each session. An empty `group_by` makes the whole batch one group. A frame stays a frame, with a column per summary field (counts and day spans int, sums, means and medians float, min, max, first and last the type of the column they read); its rows not counted are rejected in it with the reason. Messages not counted pass through in their places, errored with the reason.").Default(false),
		).
		LintRule(enumlint.Rule(enumlint.Enum{Path: "fields[].op", Options: Ops()}))
}

// Register adds the `aggregate` processor to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchProcessor("aggregate", ConfigSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchProcessor, error) {
		p, err := New(conf)
		if err != nil {
			return nil, configerr.Wrap(err)
		}
		return p, nil
	})
}

type field struct {
	as, op, path string
	round        int
}

// Processor is a parsed `aggregate` processor.
type Processor struct {
	groupBy  []string
	names    []string // the summary name of each group_by path
	fields   []field
	annotate bool
	// as holds the summary fields' names: fields of these names in a
	// message are replaced by annotate.
	as map[string]bool
	// raw holds the paths whose values' JSON text is used (group keys,
	// distinct counts, min, max, first, last), not only their values.
	raw map[string]bool
}

// New parses the processor's config.
func New(conf *service.ParsedConfig) (*Processor, error) {
	p := &Processor{as: map[string]bool{}, raw: map[string]bool{}}
	var err error
	if p.groupBy, err = conf.FieldStringList("group_by"); err != nil {
		return nil, err
	}
	for i, g := range p.groupBy {
		if g == "" {
			return nil, fmt.Errorf("group_by[%d]: empty path", i)
		}
		p.names = append(p.names, g[strings.LastIndexByte(g, '.')+1:])
		p.raw[g] = true
	}
	if p.annotate, err = conf.FieldBool("annotate"); err != nil {
		return nil, err
	}
	list, err := conf.FieldObjectList("fields")
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("fields: at least one summary field is required")
	}
	seen := map[string]bool{}
	for _, n := range p.names {
		seen[n] = true
	}
	for i, c := range list {
		var f field
		if f.as, err = c.FieldString("as"); err != nil {
			return nil, fmt.Errorf("fields[%d]: %w", i, err)
		}
		if f.op, err = c.FieldString("op"); err != nil {
			return nil, fmt.Errorf("fields[%d]: %w", i, err)
		}
		if f.path, err = c.FieldString("path"); err != nil {
			return nil, fmt.Errorf("fields[%d]: %w", i, err)
		}
		if f.round, err = c.FieldInt("round"); err != nil {
			return nil, fmt.Errorf("fields[%d]: %w", i, err)
		}
		switch {
		case !slices.Contains(Ops(), f.op):
			return nil, fmt.Errorf("fields[%d]: op %q is not one of %s", i, f.op, strings.Join(Ops(), ", "))
		case f.as == "":
			return nil, fmt.Errorf("fields[%d]: as is empty", i)
		case seen[f.as]:
			return nil, fmt.Errorf("fields[%d]: %q names two summary fields", i, f.as)
		case f.op == "count" && f.path != "":
			return nil, fmt.Errorf("fields[%d] (%s): count counts messages and takes no path", i, f.as)
		case f.op != "count" && f.path == "":
			return nil, fmt.Errorf("fields[%d] (%s): %s needs a path", i, f.as, f.op)
		case f.round < -1 || f.round > 15:
			return nil, fmt.Errorf("fields[%d] (%s): round %d is outside -1..15", i, f.as, f.round)
		}
		seen[f.as] = true
		switch f.op {
		case "count_distinct", "min", "max", "first", "last":
			p.raw[f.path] = true
		}
		p.fields = append(p.fields, f)
		p.as[f.as] = true
	}
	return p, nil
}

// acc accumulates one field of one group.
type acc struct {
	n        int
	sum      fsum.Sum // compensated, as SQLite's sum()
	distinct map[string]struct{}
	min, max gjson.Result
	minT     time.Time
	maxT     time.Time
	first    gjson.Result
	last     gjson.Result
	vals     []float64 // for median
}

type group struct {
	key  []gjson.Result
	accs []acc
	// shared is the metadata every counted message of the group has,
	// key and value alike, which its summary carries: a system_window's
	// window_end_timestamp says which window the summary is of, a
	// csv_file batch's csv_file which file. Keys whose values differ
	// between the messages (a row's line, a message's offset) are not
	// the summary's. Nil until the group's first message.
	shared map[string]string
	// The frame whose rows the group last counted, and how many of the
	// shared keys are that frame's per-row metadata columns: the other
	// keys are the same for all of a frame's rows, so once none of these
	// is left a row of the same frame has nothing to narrow.
	lastFrame *frame.Frame
	rowKeys   int
}

// share narrows the group's shared metadata to what one more member has:
// walk lists the member's metadata, has tells whether it has key k with
// value v.
func (g *group) share(walk func(fn func(k, v string)), has func(k, v string) bool) {
	if g.shared == nil {
		g.shared = map[string]string{}
		walk(func(k, v string) { g.shared[k] = v })
		return
	}
	for k, v := range g.shared {
		if !has(k, v) {
			delete(g.shared, k)
		}
	}
}

// shareMessage is share for a message's metadata.
func (g *group) shareMessage(msg *service.Message) {
	g.share(func(fn func(k, v string)) {
		_ = msg.MetaWalk(func(k, v string) error { fn(k, v); return nil })
	}, func(k, v string) bool {
		w, ok := msg.MetaGet(k)
		return ok && w == v
	})
}

// shareFrameRow is share for row i of f, whose message is msg: the
// message's metadata, and the row's metadata columns over it, as
// f.RowMessage gives them. text is scratch space.
func (g *group) shareFrameRow(msg *service.Message, f *frame.Frame, i int, metaCols []*frame.Column, text *[]byte) {
	if g.lastFrame == f && g.rowKeys == 0 {
		return // the usual row: nothing of its own is shared any more
	}
	g.narrowFrameRow(msg, f, i, metaCols, text)
}

// narrowFrameRow is shareFrameRow for a row that may narrow the shared
// metadata: kept apart so that the usual row's check is inlined.
func (g *group) narrowFrameRow(msg *service.Message, f *frame.Frame, i int, metaCols []*frame.Column, text *[]byte) {
	rowValue := func(c *frame.Column, v string) bool {
		if c.Null(i) {
			w, ok := msg.MetaGet(c.Name)
			return ok && w == v
		}
		*text = c.AppendText((*text)[:0], i)
		return string(*text) == v
	}
	if g.lastFrame == f {
		// Another row of the same frame: only its own metadata columns
		// can differ from the rows before.
		for _, c := range metaCols {
			if g.rowKeys == 0 {
				return
			}
			if v, ok := g.shared[c.Name]; ok && !c.Const && !rowValue(c, v) {
				delete(g.shared, c.Name)
				g.rowKeys--
			}
		}
		return
	}
	g.share(func(fn func(k, v string)) {
		_ = msg.MetaWalk(func(k, v string) error {
			if c := metaCol(metaCols, k); c == nil || c.Null(i) {
				fn(k, v)
			}
			return nil
		})
		for _, c := range metaCols {
			if !c.Null(i) {
				fn(c.Name, string(c.AppendText(nil, i)))
			}
		}
	}, func(k, v string) bool {
		if c := metaCol(metaCols, k); c != nil {
			return rowValue(c, v)
		}
		w, ok := msg.MetaGet(k)
		return ok && w == v
	})
	g.lastFrame, g.rowKeys = f, 0
	for _, c := range metaCols {
		if _, ok := g.shared[c.Name]; ok && !c.Const {
			g.rowKeys++
		}
	}
}

// metaCol is the metadata column named k, or nil.
func metaCol(cols []*frame.Column, k string) *frame.Column {
	for _, c := range cols {
		if c.Name == k {
			return c
		}
	}
	return nil
}

// metaColumns are f's metadata columns.
func metaColumns(f *frame.Frame) []*frame.Column {
	var cols []*frame.Column
	for c := range f.Cols {
		if f.Cols[c].Meta {
			cols = append(cols, &f.Cols[c])
		}
	}
	return cols
}

// ProcessBatch implements service.BatchProcessor.
func (p *Processor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	groups := map[string]*group{}
	var idKey []byte
	// count adds one row to its group, or says why it cannot be counted.
	// get reads a path of the row: its values must outlive the row, as
	// the group keeps its key's.
	count := func(get func(path string) gjson.Result) (*group, error) {
		key, vals, err := p.read(get, idKey[:0])
		idKey = key
		if err != nil {
			return nil, err
		}
		g, ok := groups[string(key)]
		if !ok {
			g = &group{accs: make([]acc, len(p.fields))}
			for _, path := range p.groupBy {
				g.key = append(g.key, get(path))
			}
			groups[string(key)] = g
		}
		for i, f := range p.fields {
			g.accs[i].add(f.op, vals[i])
		}
		return g, nil
	}
	// The messages (a frame: rows) that go on, in order: with annotate
	// every one, with its group if it was counted; else those not counted,
	// errored with the reason.
	var rows []counted
	// take counts doc, the body of msg, or row i of frame f (made into a
	// message only if it goes on: a summary keeps no counted row).
	var text []byte // scratch for shareFrameRow
	take := func(msg *service.Message, f *frame.Frame, i int, doc []byte, metaCols []*frame.Column) {
		var g *group
		var err error
		if f != nil {
			g, err = count(p.frameRow(f, i))
		} else {
			g, err = count(func(path string) gjson.Result { return jsonfield.Get(doc, path) })
		}
		if err == nil && !p.annotate {
			if f != nil {
				g.shareFrameRow(msg, f, i, metaCols, &text)
			} else {
				g.shareMessage(msg)
			}
			return
		}
		if f != nil {
			msg = f.RowMessage(msg, i)
		}
		if err != nil {
			msg.SetError(fmt.Errorf("aggregate: %w", err))
		}
		rows = append(rows, counted{msg: msg, doc: doc, g: g})
	}
	for _, msg := range batch {
		if msg.GetError() != nil {
			rows = append(rows, counted{msg: msg})
			continue
		}
		doc, err := msg.AsBytes()
		if err != nil {
			msg.SetError(fmt.Errorf("aggregate: %w", err))
			rows = append(rows, counted{msg: msg})
			continue
		}
		if !frame.Is(doc) {
			take(msg, nil, 0, doc, nil)
			continue
		}
		// A frame's rows count as the messages they stand for: its
		// rejected rows, and rows that cannot be counted, pass through
		// as such messages, with their reasons.
		f, err := frame.Decode(doc)
		if err != nil {
			msg.SetError(fmt.Errorf("aggregate: %w", err))
			rows = append(rows, counted{msg: msg})
			continue
		}
		if p.annotate {
			// The frame stays a frame: its rows' groups' summaries become
			// columns of it, and a row that cannot be counted is rejected
			// in it with the reason.
			groups := make([]*group, f.Rows)
			for i := range f.Rows {
				if f.Rejected(i) {
					continue
				}
				g, err := count(p.frameRow(f, i))
				if err != nil {
					f.Reject(i, "aggregate: "+err.Error())
					continue
				}
				groups[i] = g
			}
			rows = append(rows, counted{msg: msg, f: f, groups: groups})
			continue
		}
		metaCols := metaColumns(f)
		for i := range f.Rows {
			if _, bad := f.Reason(i); bad {
				rows = append(rows, counted{msg: f.RowMessage(msg, i)})
				continue
			}
			take(msg, f, i, nil, metaCols)
		}
	}
	if p.annotate {
		fields := map[*group][]byte{}
		out := make(service.MessageBatch, 0, len(rows))
		for _, r := range rows {
			if r.f != nil {
				if err := p.annotateFrame(r.f, r.groups); err != nil {
					// Rejected in the frame, as a frame's rows go on.
					for i := range r.f.Rows {
						r.f.Reject(i, "aggregate: "+err.Error())
					}
				}
				r.msg.SetBytes(r.f.Append(nil, nil))
				out = append(out, r.msg)
				continue
			}
			if r.g != nil {
				frag, ok := fields[r.g]
				if !ok {
					frag = p.renderFields(nil, r.g)
					fields[r.g] = frag
				}
				if err := p.annotateRow(r, frag); err != nil {
					r.msg.SetError(fmt.Errorf("aggregate: %w", err))
				}
			}
			out = append(out, r.msg)
		}
		return []service.MessageBatch{out}, nil
	}
	ordered := make([]*group, 0, len(groups))
	for _, g := range groups {
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *group) int { return compareKeys(a.key, b.key) })
	out := make(service.MessageBatch, 0, len(ordered)+len(rows))
	for _, g := range ordered {
		m := service.NewMessage(p.render(g))
		for k, v := range g.shared {
			m.MetaSetMut(k, v)
		}
		out = append(out, m)
	}
	for _, r := range rows {
		out = append(out, r.msg)
	}
	return []service.MessageBatch{out}, nil
}

// gjsonSyntax holds the characters with a meaning in a gjson path: a path
// without them names one top-level key.
const gjsonSyntax = ".*?#|@\\!=<>%[]{}"

// frameRow reads row i of f as its JSON would be read, straight from the
// frame's columns for a path that names a column (no JSON written and
// parsed per row), from the row's JSON for any other.
func (p *Processor) frameRow(f *frame.Frame, i int) func(string) gjson.Result {
	var doc []byte
	return func(path string) gjson.Result {
		if !strings.ContainsAny(path, gjsonSyntax) {
			return columnValue(f.Field(path), i, p.raw[path])
		}
		if doc == nil {
			doc = f.AppendRowJSON(nil, i)
		}
		return jsonfield.Get(doc, path)
	}
}

// columnValue is row i of col as gjson reads it from the row's JSON; with
// raw false a number's Raw text is left out (sums, means and medians need
// only its value).
func columnValue(col *frame.Column, i int, raw bool) gjson.Result {
	switch {
	case col == nil || col.Absent(i):
		return gjson.Result{}
	case col.Null(i):
		return gjson.Result{Type: gjson.Null, Raw: "null"}
	}
	switch col.Type {
	case abi.TypeInt:
		v := gjson.Result{Type: gjson.Number, Num: float64(col.Int(i))}
		if raw {
			v.Raw = strconv.FormatInt(col.Int(i), 10)
		}
		return v
	case abi.TypeFloat:
		v := gjson.Result{Type: gjson.Number, Num: col.Float(i)}
		if raw {
			v.Raw = string(jsonnum.AppendFloat(nil, col.Float(i)))
		}
		return v
	case abi.TypeBool:
		if col.Bool(i) {
			return gjson.Result{Type: gjson.True, Raw: "true"}
		}
		return gjson.Result{Type: gjson.False, Raw: "false"}
	}
	return gjson.ParseBytes(col.AppendJSON(nil, i))
}

// counted is a message of the batch and the group it was counted in (nil
// if it was not); or, annotating, a frame and the group of each of its
// rows.
type counted struct {
	msg *service.Message
	doc []byte
	g   *group

	f      *frame.Frame
	groups []*group
}

// annotateFrame sets a column in f per summary field holding each row's
// group's value, stored once when every row is in the batch's one group;
// a row not counted keeps the value it had, if any. Counts and day spans
// are int columns, sums, means and medians float ones, and min, max,
// first and last take the type of the frame's column they read.
func (p *Processor) annotateFrame(f *frame.Frame, groups []*group) error {
	values := map[*group]gjson.Result{} // one field's value per group
	var one *group                      // the batch's one group, if every row is in it
	if len(p.groupBy) == 0 && len(groups) > 0 && !slices.Contains(groups, nil) {
		one = groups[0]
	}
	for fi, fd := range p.fields {
		t := abi.TypeFloat
		switch fd.op {
		case "count", "count_distinct", "day_span":
			t = abi.TypeInt
		case "min", "max", "first", "last":
			t = abi.TypeString
			if src := f.Field(fd.path); src != nil {
				t = src.Type
			}
		}
		clear(values)
		value := func(g *group) gjson.Result {
			v, ok := values[g]
			if !ok {
				v = gjson.ParseBytes(p.renderValue(nil, g, fi))
				values[g] = v
			}
			return v
		}
		// A row not counted keeps what it had (a JSON message not counted
		// is left as it was): the column's old value, or no value.
		old := f.Field(fd.as)
		if old != nil && old.Type != t {
			old = nil
		}
		keep := func(b *frame.Builder, i int) {
			if old != nil {
				b.CopyRow(old, i)
			} else {
				b.Absent()
			}
		}
		b := &frame.Builder{Type: t, Const: one != nil}
		rows := groups
		if one != nil {
			rows = groups[:1]
		}
		for i, g := range rows {
			if g == nil {
				keep(b, i)
				continue
			}
			if err := appendSummary(b, value(g)); err != nil {
				return fmt.Errorf("summary field %q: %w", fd.as, err)
			}
		}
		f.Set(b.Column(fd.as, false))
	}
	return nil
}

// appendSummary appends a summary value, as rendered in JSON, to a column
// of the builder's type.
func appendSummary(b *frame.Builder, v gjson.Result) error {
	if v.Type == gjson.Null || !v.Exists() {
		b.Null()
		return nil
	}
	switch b.Type {
	case abi.TypeInt:
		b.Int(v.Int())
	case abi.TypeFloat:
		b.Float(v.Float())
	case abi.TypeBool:
		b.Bool(v.Bool())
	case abi.TypeTime:
		t, err := time.Parse(time.RFC3339Nano, v.Str)
		if err != nil {
			return fmt.Errorf("want a time, got %s", short(v.Raw))
		}
		b.Int(t.UnixNano())
	default:
		if v.Type == gjson.String {
			b.Text(v.Str)
		} else {
			b.Text(v.Raw)
		}
	}
	return nil
}

// annotateRow writes r's object with frag, its group's summary fields,
// in place of any fields of the same names.
func (p *Processor) annotateRow(r counted, frag []byte) error {
	obj := gjson.ParseBytes(r.doc)
	if !obj.IsObject() {
		return errors.New("the message is not a JSON object")
	}
	b := make([]byte, 0, len(r.doc)+len(frag)+1)
	b = append(b, '{')
	obj.ForEach(func(k, v gjson.Result) bool {
		if p.as[k.String()] {
			return true
		}
		b = append(b, k.Raw...)
		b = append(b, ':')
		b = append(b, v.Raw...)
		b = append(b, ',')
		return true
	})
	b = append(b, frag...)
	r.msg.SetBytes(append(b, '}'))
	return nil
}

// read returns a message's group identity and the values its fields read,
// or why it cannot be counted.
func (p *Processor) read(get func(string) gjson.Result, key []byte) ([]byte, []gjson.Result, error) {
	for i, path := range p.groupBy {
		v := get(path)
		if !v.Exists() || v.Type == gjson.Null {
			return key, nil, fmt.Errorf("group_by field %q is missing", path)
		}
		if i > 0 {
			key = append(key, 0)
		}
		key = append(key, byte(v.Type))
		key = append(key, v.Raw...)
	}
	vals := make([]gjson.Result, len(p.fields))
	for i, f := range p.fields {
		if f.op == "count" {
			continue
		}
		v := get(f.path)
		vals[i] = v
		if !v.Exists() || v.Type == gjson.Null {
			continue
		}
		switch f.op {
		case "sum", "mean", "median":
			if v.Type != gjson.Number {
				return key, nil, fmt.Errorf("field %q (%s of %s): want a number, got %s", f.path, f.op, f.as, short(v.Raw))
			}
		case "day_span":
			if _, err := parseDay(v); err != nil {
				return key, nil, fmt.Errorf("field %q (day_span of %s): %w", f.path, f.as, err)
			}
		}
	}
	return key, vals, nil
}

func (a *acc) add(op string, v gjson.Result) {
	if op == "count" {
		a.n++
		return
	}
	if !v.Exists() || v.Type == gjson.Null {
		return
	}
	a.n++
	switch op {
	case "sum", "mean":
		a.sum.Add(v.Num)
	case "median":
		a.vals = append(a.vals, v.Num)
	case "count_distinct":
		if a.distinct == nil {
			a.distinct = map[string]struct{}{}
		}
		// The type is part of the value: 1 and "1" are different values.
		a.distinct[string(rune('0'+v.Type))+v.Raw] = struct{}{}
	case "min", "max":
		if a.n == 1 || compareValues(v, a.min) < 0 {
			a.min = v
		}
		if a.n == 1 || compareValues(v, a.max) > 0 {
			a.max = v
		}
	case "day_span":
		t, _ := parseDay(v)
		if a.n == 1 || t.Before(a.minT) {
			a.minT = t
		}
		if a.n == 1 || t.After(a.maxT) {
			a.maxT = t
		}
	case "first":
		if a.n == 1 {
			a.first = v
		}
	case "last":
		a.last = v
	}
}

// render writes a group's summary as JSON: group values, then fields.
func (p *Processor) render(g *group) []byte {
	b := []byte{'{'}
	for i, name := range p.names {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.Append(b, name)
		b = append(b, ':')
		b = append(b, g.key[i].Raw...)
	}
	if len(p.names) > 0 {
		b = append(b, ',')
	}
	return append(p.renderFields(b, g), '}')
}

// renderFields appends a group's summary fields, "as":value separated by
// commas.
func (p *Processor) renderFields(b []byte, g *group) []byte {
	for i, f := range p.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.Append(b, f.as)
		b = append(b, ':')
		b = p.renderValue(b, g, i)
	}
	return b
}

// renderValue appends the JSON value of a group's summary field i.
func (p *Processor) renderValue(b []byte, g *group, i int) []byte {
	f := p.fields[i]
	a := &g.accs[i]
	switch f.op {
	case "count":
		b = strconv.AppendInt(b, int64(a.n), 10)
	case "count_distinct":
		b = strconv.AppendInt(b, int64(len(a.distinct)), 10)
	case "sum":
		b = appendNumber(b, a.sum.Value(), f.round)
	case "mean":
		if a.n == 0 {
			b = append(b, "null"...)
		} else {
			b = appendNumber(b, a.sum.Value()/float64(a.n), f.round)
		}
	case "median":
		if a.n == 0 {
			b = append(b, "null"...)
		} else {
			b = appendNumber(b, median(a.vals), f.round)
		}
	case "min", "max", "first", "last":
		v := map[string]gjson.Result{"min": a.min, "max": a.max, "first": a.first, "last": a.last}[f.op]
		switch {
		case a.n == 0:
			b = append(b, "null"...)
		case v.Type == gjson.Number && f.round >= 0:
			b = appendNumber(b, v.Num, f.round)
		default:
			b = append(b, v.Raw...)
		}
	case "day_span":
		if a.n == 0 {
			b = append(b, "null"...)
		} else {
			// Whole days, rounded down, as pandas' Timedelta.days.
			b = strconv.AppendInt(b, int64(math.Floor(a.maxT.Sub(a.minT).Hours()/24)), 10)
		}
	}
	return b
}

// median is pandas' median: the middle value, or the mean of the two
// middle ones. It sorts vals.
func median(vals []float64) float64 {
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 1 {
		return vals[n/2]
	}
	return (vals[n/2-1] + vals[n/2]) / 2
}

func appendNumber(b []byte, v float64, places int) []byte {
	if places >= 0 {
		p := math.Pow(10, float64(places))
		v = math.Round(v*p) / p
	}
	return jsonnum.AppendFloat(b, v)
}

// parseDay reads a date or time: "2006-01-02", RFC 3339, the same without a
// zone (UTC), or epoch seconds.
func parseDay(v gjson.Result) (time.Time, error) {
	switch v.Type {
	case gjson.Number:
		sec, frac := math.Modf(v.Num)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	case gjson.String:
		for _, layout := range []string{"2006-01-02", time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
			if t, err := time.Parse(layout, v.Str); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("want a date or time, got %s", short(v.Raw))
}

func compareKeys(a, b []gjson.Result) int {
	for i := range a {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// compareValues orders numbers numerically, then strings as text, then
// anything else by its JSON text.
func compareValues(a, b gjson.Result) int {
	switch {
	case a.Type == gjson.Number && b.Type == gjson.Number:
		switch {
		case a.Num < b.Num:
			return -1
		case a.Num > b.Num:
			return 1
		}
		return 0
	case a.Type == gjson.String && b.Type == gjson.String:
		return strings.Compare(a.Str, b.Str)
	case a.Type != b.Type:
		if a.Type == gjson.Number {
			return -1
		}
		if b.Type == gjson.Number {
			return 1
		}
	}
	return strings.Compare(a.Raw, b.Raw)
}

func short(raw string) string {
	if len(raw) > 64 {
		return raw[:61] + "..."
	}
	return raw
}

// Close implements service.BatchProcessor.
func (p *Processor) Close(context.Context) error { return nil }
