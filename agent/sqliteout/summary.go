package sqliteout

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ncruces/go-sqlite3"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/internal/enumlint"
	"github.com/sluice-dev/sluice/internal/fsum"
)

// Summaries are declared group-by tables recomputed from the output's
// table at the end of each run, in the run's transaction. They give what
// the same GROUP BY in `after_run` gives, value for value (SQLite's own
// compensated sum, its round() and julianday() are used), but from one
// scan of the table with hash tables in Go: SQLite has no hash
// aggregation, so each GROUP BY sorts the whole table, and a
// count(DISTINCT) builds a B-tree per group. On the sales ETL's 1M rows
// the two summaries take 3.2 s as SQL and 0.76 s here (BenchmarkSummaries,
// docs/BENCHMARKS.md).

const (
	fSummaries      = "summaries"
	fSummaryTable   = "table"
	fSummaryGroupBy = "group_by"
	fSummaryFields  = "fields"
	fSummaryAs      = "as"
	fSummaryOp      = "op"
	fSummaryColumn  = "column"
	fSummaryRound   = "round"
)

// summaryOps are the aggregations a summary field may use.
func summaryOps() []string {
	return []string{"sum", "mean", "count", "count_distinct", "min", "max", "day_span"}
}

func summariesField() *service.ConfigField {
	return service.NewObjectListField(fSummaries,
		service.NewStringField(fSummaryTable).Description("The summary table; created if missing, with the group_by columns as its primary key. Its rows are replaced at the end of every run. Rows whose group_by column is NULL make one group, keyed NULL, as SQL's GROUP BY does; for that, a lone INTEGER group_by column is declared INT in the summary table (an INTEGER PRIMARY KEY would be SQLite's rowid, which cannot be NULL)."),
		service.NewStringListField(fSummaryGroupBy).Description("Columns of the output's table whose values form a group."),
		service.NewObjectListField(fSummaryFields,
			service.NewStringField(fSummaryAs).Description("The summary column's name."),
			enumlint.Field(fSummaryOp, summaryOps()...).Description("The aggregation."),
			service.NewStringField(fSummaryColumn).Description("The column of the output's table it reads; not for `count`.").Default(""),
			service.NewIntField(fSummaryRound).Description("Decimal places to round the result to with SQLite's round() (`sum`, `mean`, `min`, `max`); -1 keeps it as is.").Default(-1),
		).Description("The summary's columns after the group_by columns, in order."),
	).Description(`With ` + "`transaction: run`" + `: tables of group-by summaries over every row of the output's table (this run's and earlier runs'), recomputed at the end of each run inside its transaction, before ` + "`after_run`" + `, so the table and its summaries change together. Each is what ` + "`SELECT group_by..., op(column)... FROM table GROUP BY group_by...`" + ` gives, value for value: ` + "`sum`" + ` and ` + "`mean`" + ` are SQLite's ` + "`sum()`" + ` and ` + "`avg()`" + ` (NULLs skipped, an all-integer sum stays an integer, otherwise a compensated sum), ` + "`count`" + ` counts rows (` + "`count(*)`" + `), ` + "`count_distinct`" + ` is ` + "`count(DISTINCT column)`" + `, ` + "`min`" + `/` + "`max`" + ` order as SQLite does (numbers, then text, then blobs), and ` + "`day_span`" + ` is ` + "`CAST(julianday(max(column)) - julianday(min(column)) AS INTEGER)`" + `, whole days between the earliest and latest date. They are computed in one scan of the table with hash tables, about four times faster than the same GROUP BYs (docs/BENCHMARKS.md) in ` + "`after_run`" + `, which sort the table once each.`).
		Default([]any{}).
		Example([]any{map[string]any{
			"table":    "daily_summary",
			"group_by": []any{"date"},
			"fields": []any{
				map[string]any{"as": "daily_revenue", "op": "sum", "column": "total_amount", "round": 2},
				map[string]any{"as": "daily_customers", "op": "count_distinct", "column": "customer_id"},
			},
		}})
}

// summary is one summary table.
type summary struct {
	table   string
	groupBy []string
	fields  []summaryField
}

type summaryField struct {
	as, op, column string
	round          int
}

func parseSummaries(conf *service.ParsedConfig, table string) ([]summary, error) {
	objs, err := conf.FieldObjectList(fSummaries)
	if err != nil {
		return nil, err
	}
	var out []summary
	tables := map[string]bool{strings.ToLower(table): true}
	for i, c := range objs {
		var s summary
		if s.table, err = c.FieldString(fSummaryTable); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", fSummaries, i, err)
		}
		where := fmt.Sprintf("%s[%d] (%s)", fSummaries, i, s.table)
		switch {
		case !isIdent(s.table):
			return nil, fmt.Errorf("%s: table %q is not an identifier (letters, digits and _, not starting with a digit)", where, s.table)
		case tables[strings.ToLower(s.table)]:
			return nil, fmt.Errorf("%s: table %q is the output's table or another summary's", where, s.table)
		}
		tables[strings.ToLower(s.table)] = true
		if s.groupBy, err = c.FieldStringList(fSummaryGroupBy); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(s.groupBy) == 0 {
			return nil, fmt.Errorf("%s: %s needs at least one column", where, fSummaryGroupBy)
		}
		names := map[string]bool{}
		for _, g := range s.groupBy {
			if !isIdent(g) {
				return nil, fmt.Errorf("%s: %s column %q is not an identifier", where, fSummaryGroupBy, g)
			}
			if names[strings.ToLower(g)] {
				return nil, fmt.Errorf("%s: %s lists %q twice", where, fSummaryGroupBy, g)
			}
			names[strings.ToLower(g)] = true
		}
		list, err := c.FieldObjectList(fSummaryFields)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("%s: %s: at least one is required", where, fSummaryFields)
		}
		for j, fc := range list {
			var f summaryField
			if f.as, err = fc.FieldString(fSummaryAs); err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", where, fSummaryFields, j, err)
			}
			if f.op, err = fc.FieldString(fSummaryOp); err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", where, fSummaryFields, j, err)
			}
			if f.column, err = fc.FieldString(fSummaryColumn); err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", where, fSummaryFields, j, err)
			}
			if f.round, err = fc.FieldInt(fSummaryRound); err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", where, fSummaryFields, j, err)
			}
			fw := fmt.Sprintf("%s: %s[%d] (%s)", where, fSummaryFields, j, f.as)
			switch {
			case !isIdent(f.as):
				return nil, fmt.Errorf("%s: as %q is not an identifier", fw, f.as)
			case names[strings.ToLower(f.as)]:
				return nil, fmt.Errorf("%s: %q names two columns of the summary", fw, f.as)
			case !slices.Contains(summaryOps(), f.op):
				return nil, fmt.Errorf("%s: op %q is not one of %s", fw, f.op, strings.Join(summaryOps(), ", "))
			case f.op == "count" && f.column != "":
				return nil, fmt.Errorf("%s: count counts rows and takes no column", fw)
			case f.op != "count" && !isIdent(f.column):
				return nil, fmt.Errorf("%s: %s needs a column (an identifier), got %q", fw, f.op, f.column)
			case f.round < -1 || f.round > 15:
				return nil, fmt.Errorf("%s: round %d is outside -1..15", fw, f.round)
			case f.round >= 0 && !slices.Contains([]string{"sum", "mean", "min", "max"}, f.op):
				return nil, fmt.Errorf("%s: round applies to sum, mean, min and max, not %s", fw, f.op)
			}
			names[strings.ToLower(f.as)] = true
			s.fields = append(s.fields, f)
		}
		out = append(out, s)
	}
	return out, nil
}

// columns are the columns of the output's table the summary reads.
func (s *summary) columns() []string {
	cols := slices.Clone(s.groupBy)
	for _, f := range s.fields {
		if f.column != "" {
			cols = append(cols, f.column)
		}
	}
	return cols
}

// check tells which columns the summary reads that the table lacks.
func (s *summary) check(cols []column) error {
	for _, c := range s.columns() {
		if columnIndex(cols, c) < 0 {
			return fmt.Errorf("%s (%s): the table has no column %q (it has %s)", fSummaries, s.table, c, columnNames(cols))
		}
	}
	return nil
}

// createSQL creates the summary table, typed after the columns it reads.
func (s *summary) createSQL(cols []column) string {
	typeOf := func(name string) colType {
		if i := columnIndex(cols, name); i >= 0 {
			return cols[i].typ
		}
		return typeAny
	}
	var defs []string
	def := func(name string, t colType) {
		if t == typeAny {
			defs = append(defs, quote(name))
			return
		}
		defs = append(defs, quote(name)+" "+string(t))
	}
	for _, g := range s.groupBy {
		t := typeOf(g)
		if t == typeInteger && len(s.groupBy) == 1 {
			// A lone INTEGER PRIMARY KEY is SQLite's rowid: it cannot hold
			// the NULL group (rows without the column's value, one group in
			// SQL's GROUP BY), and SQLite would give that group the next
			// free number, another group's key. INT has the same affinity
			// and makes an ordinary key.
			defs = append(defs, quote(g)+" INT")
			continue
		}
		def(g, t)
	}
	for _, f := range s.fields {
		switch f.op {
		case "sum":
			// What sum() gives: an integer from integers, a real from
			// reals, and from a column of no declared type either, which
			// a typed column would convert.
			switch ct := typeOf(f.column); ct {
			case typeInteger, typeBoolean:
				def(f.as, typeInteger)
			case typeReal:
				def(f.as, typeReal)
			default:
				def(f.as, typeAny)
			}
		case "mean":
			def(f.as, typeReal)
		case "count", "count_distinct", "day_span":
			def(f.as, typeInteger)
		case "min", "max":
			def(f.as, typeOf(f.column))
		}
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY (%s))", quote(s.table), strings.Join(defs, ", "), quoteAll(s.groupBy))
}

// insertSQL inserts one group's row; SQLite itself rounds and counts days,
// so the values are the ones the SQL aggregate would give.
func (s *summary) insertSQL() string {
	names := slices.Clone(s.groupBy)
	exprs := slices.Repeat([]string{"?"}, len(s.groupBy))
	for _, f := range s.fields {
		names = append(names, f.as)
		switch {
		case f.op == "day_span":
			exprs = append(exprs, "CAST(julianday(?) - julianday(?) AS INTEGER)")
		case f.round >= 0:
			exprs = append(exprs, fmt.Sprintf("round(?, %d)", f.round))
		default:
			exprs = append(exprs, "?")
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", quote(s.table), quoteAll(names), strings.Join(exprs, ", "))
}

// createSummaries creates the summary tables that do not exist.
func createSummaries(c *sqlite3.Conn, sums []summary, cols []column) error {
	for i := range sums {
		s := &sums[i]
		if err := s.check(cols); err != nil {
			return err
		}
		if err := c.Exec(s.createSQL(cols)); err != nil {
			return fmt.Errorf("%s (%s): creating the table: %w", fSummaries, s.table, err)
		}
	}
	return nil
}

// computeSummaries replaces the rows of every summary table with the
// summaries of the output's table, read in one scan, in the open
// transaction.
func (o *output) computeSummaries(c *sqlite3.Conn) error {
	if len(o.summaries) == 0 || o.schema == nil {
		return nil
	}
	table, cols, sums := o.table, o.schema.cols, o.summaries
	if err := createSummaries(c, sums, cols); err != nil {
		return err
	}
	scan, aggs := newAggregations(sums)
	q := fmt.Sprintf("SELECT %s FROM %s", quoteAll(scan), quote(table))
	stmt, _, err := c.Prepare(q)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", fSummaries, q, err)
	}
	defer stmt.Close()
	if err := scanInto(stmt, len(scan), aggs); err != nil {
		return fmt.Errorf("%s: reading table %q: %w", fSummaries, table, err)
	}
	return writeSummaries(c, aggs)
}

// newAggregations makes one aggregation per summary, and the columns they
// read between them, each once: a row handed to them holds those columns
// in that order.
func newAggregations(sums []summary) (scan []string, aggs []*aggregation) {
	aggs = make([]*aggregation, len(sums))
	for i := range sums {
		aggs[i] = newAggregation(&sums[i], func(name string) int {
			for j, n := range scan {
				if strings.EqualFold(n, name) {
					return j
				}
			}
			scan = append(scan, name)
			return len(scan) - 1
		})
	}
	return scan, aggs
}

// writeSummaries replaces each summary table's rows with its
// aggregation's groups.
func writeSummaries(c *sqlite3.Conn, aggs []*aggregation) error {
	for _, a := range aggs {
		if err := a.write(c); err != nil {
			return fmt.Errorf("%s (%s): %w", fSummaries, a.s.table, err)
		}
	}
	return nil
}

// scanChunk is a run of rows, handed to every aggregation.
type scanChunk struct {
	vals []val // rows × width
	rows int
	// arena holds the rows' text, which SQLite's memory does not keep
	// past the next step.
	arena []byte
	// pending counts the aggregations yet to add the chunk.
	pending atomic.Int32
}

// keep returns v with its text or blob copied into the chunk's arena, so
// that it outlives what it was read from (SQLite's memory past the next
// step, a batch's messages).
func (ck *scanChunk) keep(v val) val {
	if v.kind == valText || v.kind == valBlob {
		// An arena that grows leaves earlier rows' text in the old
		// array, which their strings keep alive.
		at := len(ck.arena)
		ck.arena = append(ck.arena, v.s...)
		b := ck.arena[at:]
		v.s = unsafe.String(unsafe.SliceData(b), len(b))
	}
	return v
}

// scanChunkRows is the rows per chunk: large enough that handing one over
// costs nothing per row, small enough to stay in cache.
const scanChunkRows = 4096

// feed hands chunks of rows to aggregations, each on a goroutine of its
// own, so on two cores the summaries take about as long as the slowest
// aggregation (or the reading) instead of the sum of them all.
type feed struct {
	width int
	free  chan *scanChunk
	chans []chan *scanChunk
	wg    sync.WaitGroup
}

func newFeed(width int, aggs []*aggregation) *feed {
	f := &feed{width: width, free: make(chan *scanChunk, 2+2*len(aggs)), chans: make([]chan *scanChunk, len(aggs))}
	for i, a := range aggs {
		ch := make(chan *scanChunk, 2)
		f.chans[i] = ch
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for ck := range ch {
				for r := 0; r < ck.rows; r++ {
					a.add(ck.vals[r*width : (r+1)*width : (r+1)*width])
				}
				if ck.pending.Add(-1) == 0 {
					select {
					case f.free <- ck:
					default:
					}
				}
			}
		}()
	}
	return f
}

// chunk returns an empty chunk, a used one if any came back.
func (f *feed) chunk() *scanChunk {
	select {
	case ck := <-f.free:
		ck.rows, ck.arena = 0, ck.arena[:0]
		return ck
	default:
		return &scanChunk{vals: make([]val, scanChunkRows*f.width)}
	}
}

// send hands ck to every aggregation; the caller must not touch it again.
func (f *feed) send(ck *scanChunk) {
	ck.pending.Store(int32(len(f.chans)))
	for _, ch := range f.chans {
		ch <- ck
	}
}

// close waits until every aggregation has added every chunk sent.
func (f *feed) close() {
	for _, ch := range f.chans {
		close(ch)
	}
	f.wg.Wait()
}

// scanInto steps stmt (width columns) and adds every row to each of aggs.
func scanInto(stmt *sqlite3.Stmt, width int, aggs []*aggregation) error {
	f := newFeed(width, aggs)
	ck := f.chunk()
	for stmt.Step() {
		row := ck.vals[ck.rows*width : (ck.rows+1)*width]
		for j := range row {
			row[j] = ck.keep(columnVal(stmt, j))
		}
		if ck.rows++; ck.rows == scanChunkRows {
			f.send(ck)
			ck = f.chunk()
		}
	}
	if ck.rows > 0 {
		f.send(ck)
	}
	f.close()
	return stmt.Err()
}

// columnVal is a result column as a val. Text and blobs point into
// SQLite's memory, valid until the next step: whatever is kept is cloned.
func columnVal(stmt *sqlite3.Stmt, j int) val {
	switch stmt.ColumnType(j) {
	case sqlite3.INTEGER:
		return intVal(stmt.ColumnInt64(j))
	case sqlite3.FLOAT:
		return realVal(stmt.ColumnFloat(j))
	case sqlite3.TEXT:
		b := stmt.ColumnRawText(j)
		return val{s: unsafe.String(unsafe.SliceData(b), len(b)), kind: valText}
	case sqlite3.BLOB:
		b := stmt.ColumnRawBlob(j)
		return val{s: unsafe.String(unsafe.SliceData(b), len(b)), kind: valBlob}
	}
	return val{}
}

// aggregation accumulates one summary's groups during the scan.
type aggregation struct {
	s         *summary
	keyCol    []int // scan index of each group_by column
	valCol    []int // scan index of each field's column, -1 for count
	kinds     []opKind
	groups    map[string]*sumGroup
	intGroups map[int64]*sumGroup // with one group_by column, its integers past dense
	// textGroups are a lone group_by column's text values' groups (a
	// date), keyed by the text itself rather than an encoded key.
	textGroups map[string]*sumGroup
	// dense holds the groups of a lone group_by column's small
	// non-negative integers (ids, the usual group: a customer) by the
	// integer, their accs only: an index instead of a map lookup, which on
	// the sales ETL's 5000 customers missed the cache on every row.
	dense [][]acc
	order []*sumGroup
	// A group's accs, and the state apart of its count_distinct and range
	// fields, are cut from slabs, so that a group's are together.
	accSlab      []acc
	distinctSlab []distinctAcc
	rangeSlab    []rangeAcc
	// budgets bound each count_distinct field's bitmaps.
	budgets []bitBudget
	// key is scratch for encoding a group's or a distinct value's identity.
	key []byte
}

type sumGroup struct {
	key  []val // cloned
	accs []acc
}

// acc is one field of one group. Sums follow SQLite's sumStep: exact in
// an int64 while every value is an integer, then a Kahan-Babuska-Neumaier
// compensated sum (func.c), so the results match its sum() and avg().
// What count_distinct and the range ops keep is apart, in d and r: a
// group's accs are read on every row, and at 56 bytes each rather than
// 152 the customer summary's take a third of the cache lines.
type acc struct {
	n        int64 // values (not NULL) seen; rows, for count
	iSum     int64
	rSum     fsum.Sum
	approx   bool // a non-integer value, or an overflow, was summed
	overflow bool // the integer sum overflowed while only integers were summed
	d        *distinctAcc
	r        *rangeAcc
}

// distinctAcc is a count_distinct field's set of one group.
type distinctAcc struct {
	ints   intSet
	others map[string]struct{}
	// The set's first 512 bits (ids up to 511: the sales ETL's products),
	// beside it rather than an allocation of their own elsewhere.
	inline [8]uint64
}

// rangeAcc is a min, max or day_span field's bounds in one group.
type rangeAcc struct {
	min, max val
	// A short text bound's bytes, beside it: compared on nearly every row,
	// a string of its own elsewhere in the heap was a cache miss each time.
	minText, maxText [16]byte
}

// keepBound returns v to be kept as a bound, its text in buf when it fits.
// buf is in a rangeAcc, which never moves (the slab's arrays are not
// reallocated), so the string stays valid; it changes only when the
// bound does, which keepBound then returns anew.
func keepBound(v val, buf *[16]byte) val {
	if v.kind != valText && v.kind != valBlob {
		return v
	}
	if len(v.s) > len(buf) || len(v.s) == 0 {
		return cloneVal(v)
	}
	n := copy(buf[:], v.s)
	v.s = unsafe.String(&buf[0], n)
	return v
}

func newAggregation(s *summary, index func(string) int) *aggregation {
	a := &aggregation{s: s, groups: map[string]*sumGroup{}, intGroups: map[int64]*sumGroup{}, textGroups: map[string]*sumGroup{}, budgets: make([]bitBudget, len(s.fields))}
	for _, g := range s.groupBy {
		a.keyCol = append(a.keyCol, index(g))
	}
	for _, f := range s.fields {
		var k opKind
		switch f.op {
		case "count":
			a.valCol = append(a.valCol, -1)
			a.kinds = append(a.kinds, opCount)
			continue
		case "sum", "mean":
			k = opSum
		case "count_distinct":
			k = opDistinct
		default:
			k = opRange
		}
		a.valCol = append(a.valCol, index(f.column))
		a.kinds = append(a.kinds, k)
	}
	return a
}

// opKind is what an op accumulates, decided once rather than by comparing
// op names for every row.
type opKind uint8

const (
	opCount    opKind = iota // rows
	opSum                    // sum, mean
	opDistinct               // count_distinct
	opRange                  // min, max, day_span
)

func (a *aggregation) add(row []val) {
	accs := a.group(row)
	for i, k := range a.kinds {
		ac := &accs[i]
		if k == opCount {
			ac.n++
			continue
		}
		v := row[a.valCol[i]]
		if v.kind == valNull {
			continue
		}
		ac.n++
		switch k {
		case opSum:
			ac.sum(v)
		case opDistinct:
			ac.d.add(v, &a.budgets[i], &a.key)
		case opRange:
			x := ac.r
			if ac.n == 1 || compareVals(v, x.min) < 0 {
				x.min = keepBound(v, &x.minText)
			}
			if ac.n == 1 || compareVals(v, x.max) > 0 {
				x.max = keepBound(v, &x.maxText)
			}
		}
	}
}

// group finds or makes the row's group, and gives its accs.
func (a *aggregation) group(row []val) []acc {
	// One integer column, the usual group (a customer): keyed by the
	// integer itself, which costs a third of encoding a key.
	if len(a.keyCol) == 1 {
		v := row[a.keyCol[0]]
		if v.kind == valText {
			g := a.textGroups[v.s]
			if g == nil {
				g = a.newGroup(row)
				a.textGroups[g.key[0].s] = g
			}
			return g.accs
		}
		if i, ok := sqlInt(v); ok {
			if i >= 0 && (i < int64(len(a.dense)) || a.growDense(i)) {
				accs := a.dense[i]
				if accs == nil {
					accs = a.newGroup(row).accs
					a.dense[i] = accs
				}
				return accs
			}
			g := a.intGroups[i]
			if g == nil {
				g = a.newGroup(row)
				a.intGroups[i] = g
			}
			return g.accs
		}
	}
	a.key = a.key[:0]
	for _, j := range a.keyCol {
		a.key = appendGroupKey(a.key, row[j])
	}
	g := a.groups[string(a.key)]
	if g == nil {
		g = a.newGroup(row)
		a.groups[string(a.key)] = g
	}
	return g.accs
}

// growDense makes dense reach i, if that keeps it within 4 slots (of 24
// bytes) a group, plus 4096, so that sparse integers go to the map
// instead; it reports whether it did. The
// groups of the map that dense now reaches move into it, so that no
// integer has a group in both.
func (a *aggregation) growDense(i int64) bool {
	budget := 4*int64(len(a.order)+1) + 4096
	n := max(2*int64(len(a.dense)), i+1, 64)
	if n > budget {
		if i+1 > budget {
			return false
		}
		n = i + 1
	}
	old := len(a.dense)
	a.dense = slices.Grow(a.dense, int(n)-old)[:n]
	for k, g := range a.intGroups {
		if k >= int64(old) && k < n {
			a.dense[k] = g.accs
			delete(a.intGroups, k)
		}
	}
	return true
}

// cut takes the next element of a slab, starting a new array when it is
// full: the old one is not moved, so what was cut from it stays put.
func cut[T any](slab *[]T) *T {
	if len(*slab) == cap(*slab) {
		*slab = make([]T, 0, 256)
	}
	*slab = (*slab)[:len(*slab)+1]
	return &(*slab)[len(*slab)-1]
}

func (a *aggregation) newGroup(row []val) *sumGroup {
	nf := len(a.kinds)
	if cap(a.accSlab)-len(a.accSlab) < nf {
		a.accSlab = make([]acc, 0, 256*nf)
	}
	at := len(a.accSlab)
	a.accSlab = a.accSlab[:at+nf]
	g := &sumGroup{accs: a.accSlab[at : at+nf : at+nf]}
	for i, k := range a.kinds {
		switch k {
		case opDistinct:
			d := cut(&a.distinctSlab)
			d.ints.bits = d.inline[:0]
			g.accs[i].d = d
		case opRange:
			g.accs[i].r = cut(&a.rangeSlab)
		}
	}
	for _, j := range a.keyCol {
		g.key = append(g.key, cloneVal(row[j]))
	}
	a.order = append(a.order, g)
	return g
}

// sqlInt is an integer, or a whole real, which SQL groups and counts as the
// same value as the integer.
func sqlInt(v val) (int64, bool) {
	switch v.kind {
	case valInt:
		return int64(v.n), true
	case valReal:
		return wholeReal(math.Float64frombits(v.n))
	}
	return 0, false
}

// appendGroupKey appends v's identity as a group: SQL groups 1 and 1.0
// together, so a whole real is keyed as the integer.
func appendGroupKey(b []byte, v val) []byte {
	if i, ok := sqlInt(v); ok {
		v = intVal(i)
	}
	b = append(b, byte(v.kind))
	switch v.kind {
	case valInt, valReal:
		b = binary.LittleEndian.AppendUint64(b, v.n)
	case valText, valBlob:
		b = binary.AppendUvarint(b, uint64(len(v.s)))
		b = append(b, v.s...)
	}
	return b
}

func wholeReal(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

func cloneVal(v val) val {
	v.s = strings.Clone(v.s)
	return v
}

// sum is SQLite's sumStep for one value.
func (a *acc) sum(v val) {
	isInt, i := numeric(v)
	switch {
	case isInt && !a.approx:
		s := a.iSum + i
		if (s > a.iSum) == (i > 0) {
			a.iSum = s
			return
		}
		a.overflow = true
		a.startApprox()
		a.stepInt(i)
	case isInt:
		a.stepInt(i)
	default:
		if !a.approx {
			a.startApprox()
		}
		a.overflow = false
		a.step(realOf(v))
	}
}

// numeric is a value as sqlite3_value_numeric_type sees it: an integer, or
// else something summed as a real.
func numeric(v val) (bool, int64) {
	switch v.kind {
	case valInt:
		return true, int64(v.n)
	case valText:
		if i, err := strconv.ParseInt(strings.TrimSpace(v.s), 10, 64); err == nil {
			return true, i
		}
	}
	return false, 0
}

// realOf is a value as sqlite3_value_double gives it; text that is no
// number is 0.
func realOf(v val) float64 {
	switch v.kind {
	case valReal:
		return math.Float64frombits(v.n)
	case valInt:
		return float64(int64(v.n))
	case valText, valBlob:
		f, _ := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
		return f
	}
	return 0
}

// splitInt parts an integer of 2^52 or more into a multiple of 16384 and
// the rest, each exact as a real, as SQLite's KBN steps do.
func splitInt(i int64) (big, small float64, split bool) {
	if i <= -4503599627370496 || i >= 4503599627370496 {
		rest := i % 16384
		return float64(i - rest), float64(rest), true
	}
	return float64(i), 0, false
}

func (a *acc) startApprox() {
	a.approx = true
	big, small, _ := splitInt(a.iSum)
	a.rSum = fsum.New(big, small)
}

func (a *acc) stepInt(i int64) {
	big, small, split := splitInt(i)
	a.step(big)
	if split {
		a.step(small)
	}
}

func (a *acc) step(r float64) { a.rSum.Add(r) }

func (a *acc) real() float64 {
	if !a.approx {
		return float64(a.iSum)
	}
	return a.rSum.Value()
}

// add adds v to the group's set of distinct values. Integers, the
// common case, get a set of their own.
func (a *distinctAcc) add(v val, b *bitBudget, scratch *[]byte) {
	if i, ok := sqlInt(v); ok {
		a.ints.add(i, b)
		return
	}
	if a.others == nil {
		a.others = map[string]struct{}{}
	}
	*scratch = appendGroupKey((*scratch)[:0], v)
	if _, ok := a.others[string(*scratch)]; !ok {
		a.others[string(*scratch)] = struct{}{}
	}
}

// intSet is a set of integers: a bitmap while they are non-negative and
// dense enough (ids, the usual case: on the sales ETL five times faster
// than a map, whose lookups missed the cache), else a map.
type intSet struct {
	bits []uint64
	n    int // members while a bitmap
	m    map[int64]struct{}
}

// bitBudget bounds the bitmaps of one field across all its groups: at
// most 4 words (32 bytes) per member, plus 64 KiB, so that many groups
// with a few large values each fall back to maps instead of holding
// mostly empty bitmaps.
type bitBudget struct {
	words, members int
}

func (s *intSet) add(i int64, b *bitBudget) {
	if s.m == nil && i >= 0 {
		w := i >> 6
		if grow := w + 1 - int64(len(s.bits)); grow > 0 && int64(b.words)+grow <= 4*int64(b.members+1)+8192 {
			s.bits = slices.Grow(s.bits, int(grow))[:w+1]
			b.words += int(grow)
		}
		if w < int64(len(s.bits)) {
			if s.bits[w]&(1<<(i&63)) == 0 {
				s.bits[w] |= 1 << (i & 63)
				s.n++
				b.members++
			}
			return
		}
	}
	if s.m == nil {
		s.m = make(map[int64]struct{}, s.n+1)
		for w, word := range s.bits {
			for ; word != 0; word &= word - 1 {
				s.m[int64(w)<<6|int64(bits.TrailingZeros64(word))] = struct{}{}
			}
		}
		b.words -= len(s.bits)
		b.members -= s.n
		s.bits = nil
	}
	s.m[i] = struct{}{}
}

func (s *intSet) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return s.n
}

// compareVals orders values as SQLite does: numbers, then text, then blobs,
// text and blobs by their bytes.
func compareVals(x, y val) int {
	rank := func(v val) int {
		switch v.kind {
		case valInt, valReal:
			return 1
		case valText:
			return 2
		case valBlob:
			return 3
		}
		return 0
	}
	if c := cmp.Compare(rank(x), rank(y)); c != 0 {
		return c
	}
	switch x.kind {
	case valInt, valReal:
		if x.kind == valInt && y.kind == valInt {
			return cmp.Compare(int64(x.n), int64(y.n))
		}
		return cmp.Compare(realOf(x), realOf(y))
	}
	return strings.Compare(x.s, y.s)
}

// write replaces the summary table's rows with the groups.
func (a *aggregation) write(c *sqlite3.Conn) error {
	if err := c.Exec("DELETE FROM " + quote(a.s.table)); err != nil {
		return fmt.Errorf("emptying the table: %w", err)
	}
	q := a.s.insertSQL()
	stmt, _, err := c.Prepare(q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer stmt.Close()
	var args []val
	for _, g := range a.order {
		if len(g.key) == 1 && g.key[0].kind == valNull {
			if err := canHoldNull(c, a.s.table, a.s.groupBy[0]); err != nil {
				return err
			}
		}
		args = append(args[:0], g.key...)
		for i, f := range a.s.fields {
			ac := &g.accs[i]
			switch f.op {
			case "count":
				args = append(args, intVal(ac.n))
			case "count_distinct":
				args = append(args, intVal(int64(ac.d.ints.len()+len(ac.d.others))))
			case "sum":
				switch {
				case ac.n == 0:
					args = append(args, val{})
				case ac.approx && ac.overflow:
					return fmt.Errorf("%s: sum of %q: integer overflow", f.as, f.column)
				case ac.approx:
					args = append(args, realVal(ac.real()))
				default:
					args = append(args, intVal(ac.iSum))
				}
			case "mean":
				if ac.n == 0 {
					args = append(args, val{})
				} else {
					args = append(args, realVal(ac.real()/float64(ac.n)))
				}
			case "min":
				args = append(args, ac.r.min)
			case "max":
				args = append(args, ac.r.max)
			case "day_span":
				args = append(args, ac.r.max, ac.r.min)
			}
		}
		if err := bindRow(stmt, args); err != nil {
			return err
		}
		if err := stmt.Exec(); err != nil {
			return fmt.Errorf("writing group %s: %w", groupText(g.key), err)
		}
	}
	return nil
}

// canHoldNull fails if the summary table's key column is its rowid (a
// lone INTEGER PRIMARY KEY), as agents before this check made the key of an
// INTEGER group_by column: SQLite would number the NULL group itself,
// with the next free key.
func canHoldNull(c *sqlite3.Conn, table, column string) error {
	alias, err := queryInt(c, `SELECT (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1
		AND EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE pk = 1 AND upper(type) = 'INTEGER' AND name = ?2 COLLATE NOCASE)`, table, column)
	if err != nil {
		return err
	}
	if alias != 0 {
		return fmt.Errorf("rows whose %q is NULL make a group of their own, and the table's key %q is an INTEGER PRIMARY KEY, SQLite's rowid, which cannot hold NULL; drop the table (its rows are rebuilt every run) and the output creates it with a key that can", column, column)
	}
	return nil
}

func groupText(key []val) string {
	parts := make([]string, len(key))
	for i, v := range key {
		switch v.kind {
		case valNull:
			parts[i] = "NULL"
		case valInt:
			parts[i] = strconv.FormatInt(int64(v.n), 10)
		case valReal:
			parts[i] = strconv.FormatFloat(math.Float64frombits(v.n), 'g', -1, 64)
		default:
			parts[i] = strconv.Quote(v.s)
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
