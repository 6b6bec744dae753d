package sqliteout

import (
	"fmt"
	"math"

	"github.com/ncruces/go-sqlite3"
)

// Summaries as the run loads. The scan of the table for the summaries
// runs after the last row, when nothing else is left to run beside it, so
// it adds its whole time to the run (0.4-0.6 s of the sales ETL's 1M
// rows). When the run's transaction finds the table empty, though, the
// rows it inserts are the table at its end, unless an upsert met an
// earlier row of the same run: the summaries can then be aggregated from
// the rows as they are written, on goroutines beside the inserts, and the
// end of the run only checks that the table holds as many rows as were
// written. Anything that could make the table differ from the rows
// written (a count that does not match, init statements, which may add
// triggers, a value SQLite would store as another type) falls back to the
// scan, so the summaries are the same either way, value for value: a
// rowid table returns its rows in insertion order, the order they are
// aggregated in here.
type liveSummaries struct {
	aggs  []*aggregation
	names []string  // the aggregated columns
	cols  []int     // the table column of each
	types []colType // and its type
	feed  *feed
	ck    *scanChunk
	off   string // why the live summaries were given up; "" while they stand
}

// summariesFromRows is how a run's summaries were made when the live
// aggregation stood (the output's summarisedBy).
const summariesFromRows = "the rows as they were written"

// startLive begins live summaries for the run whose transaction c has
// just begun, or says why they cannot be kept for this run.
func (o *output) startLive(c *sqlite3.Conn, s *schema) (*liveSummaries, string) {
	switch {
	case len(o.summaries) == 0:
		return nil, "no summaries"
	case o.withoutRowid:
		return nil, "a WITHOUT ROWID table is scanned in key order, not in the order its rows were written"
	case len(o.init) > 0:
		return nil, "init_statements may change what the table holds"
	}
	empty, err := tableEmpty(c, o.table)
	if err != nil {
		return nil, err.Error()
	}
	if !empty {
		return nil, "the table was not empty when the run began"
	}
	scan, aggs := newAggregations(o.summaries)
	l := &liveSummaries{aggs: aggs, names: scan}
	for _, name := range scan {
		i := columnIndex(s.cols, name)
		if i < 0 {
			return nil, fmt.Sprintf("column %q is not in the table", name)
		}
		switch t := s.cols[i].typ; t {
		case typeText, typeInteger, typeReal:
			l.cols, l.types = append(l.cols, i), append(l.types, t)
		default:
			return nil, fmt.Sprintf("column %q is %s: SQLite's affinity decides what it stores", name, t)
		}
	}
	l.feed = newFeed(len(l.cols), aggs)
	l.ck = l.feed.chunk()
	return l, ""
}

// tableEmpty tells whether table has no rows (or does not exist yet).
func tableEmpty(c *sqlite3.Conn, table string) (bool, error) {
	exists, err := queryInt(c, "SELECT count(*) FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE", table)
	if err != nil || exists == 0 {
		return true, err
	}
	triggers, err := queryInt(c, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE", table)
	if err != nil {
		return false, err
	}
	if triggers > 0 {
		return false, fmt.Errorf("table %q has triggers, which may change what it holds", table)
	}
	has, err := queryInt(c, "SELECT EXISTS (SELECT 1 FROM "+quote(table)+")")
	return has == 0, err
}

// queryInt runs a query whose result is one integer, args bound as text.
func queryInt(c *sqlite3.Conn, q string, args ...string) (int64, error) {
	stmt, _, err := c.Prepare(q)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	defer stmt.Close()
	for i, a := range args {
		if err := stmt.BindText(i+1, a); err != nil {
			return 0, fmt.Errorf("%s: %w", q, err)
		}
	}
	if !stmt.Step() {
		if err := stmt.Err(); err != nil {
			return 0, fmt.Errorf("%s: %w", q, err)
		}
		return 0, fmt.Errorf("%s: no row", q)
	}
	return stmt.ColumnInt64(0), nil
}

// add hands the rows just inserted (n values each, in table column order)
// to the aggregations. Their text is copied: the values point into the
// batch's messages, which are not the output's to keep.
func (l *liveSummaries) add(rows []val, n int) {
	if l.off != "" {
		return
	}
	w := len(l.cols)
	for r := 0; r*n < len(rows); r++ {
		row := rows[r*n : (r+1)*n]
		ck := l.ck
		dst := ck.vals[ck.rows*w : (ck.rows+1)*w]
		for j, tc := range l.cols {
			v, ok := stored(row[tc], l.types[j])
			if !ok {
				l.stop(fmt.Sprintf("a value of column %q is not one SQLite stores as given", l.names[j]))
				return
			}
			dst[j] = ck.keep(v)
		}
		if ck.rows++; ck.rows == scanChunkRows {
			l.feed.send(ck)
			l.ck = l.feed.chunk()
		}
	}
}

// stored is v as a column of type t stores it, and false if SQLite would
// store it otherwise than the scan reads it back (an integer in a TEXT
// column becomes text, a whole real in an INTEGER column an integer): the
// scan decides those.
func stored(v val, t colType) (val, bool) {
	switch {
	case v.kind == valNull:
		return v, true
	case t == typeText:
		return v, v.kind == valText
	case t == typeInteger:
		return v, v.kind == valInt
	case t == typeReal && v.kind == valInt:
		return realVal(float64(int64(v.n))), true
	case t == typeReal && v.kind == valReal:
		return v, !math.IsNaN(math.Float64frombits(v.n)) // SQLite stores NaN as NULL
	}
	return v, false
}

// stop gives the live summaries up for this run: the scan will make them.
func (l *liveSummaries) stop(why string) {
	if l.off == "" {
		l.off = why
	}
	l.close()
}

// close waits for the aggregations to finish what they were given.
func (l *liveSummaries) close() {
	if l.feed == nil {
		return
	}
	if l.ck.rows > 0 && l.off == "" {
		l.feed.send(l.ck)
	}
	l.feed.close()
	l.feed, l.ck = nil, nil
}

// finish writes the summaries from the run's rows if the table holds
// exactly them, and reports whether it did; if not, why not.
func (l *liveSummaries) finish(c *sqlite3.Conn, o *output) (bool, string, error) {
	table, written := o.table, o.runRows
	l.close()
	if l.off != "" {
		return false, l.off, nil
	}
	if o.schema == nil {
		return false, "no rows were written", nil
	}
	n, err := queryInt(c, "SELECT count(*) FROM "+quote(table))
	if err != nil {
		return false, "", err
	}
	if n != int64(written) {
		return false, fmt.Sprintf("the table holds %d rows, the run wrote %d: an upsert met a row of the same run", n, written), nil
	}
	if err := createSummaries(c, o.summaries, o.schema.cols); err != nil {
		return false, "", err
	}
	return true, "", writeSummaries(c, l.aggs)
}
