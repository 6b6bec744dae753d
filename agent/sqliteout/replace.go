package sqliteout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ncruces/go-sqlite3"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
)

// replace_by: a run replaces the parts of the table it reads again. An
// upsert on (source_file, line) makes a re-run of the same file change
// nothing, but a file read again after rows were removed from it, or
// became bad, would leave their old versions in the table (and in the
// summaries made from it). The seed drops and recreates its table every
// run; replace_by does the same for each part a run reads, in the run's
// transaction, and leaves the parts it does not read alone.

// parseReplaceBy reads replace_by as indexes into cols.
func parseReplaceBy(conf *service.ParsedConfig, cols []column, runMode bool) ([]int, error) {
	names, err := conf.FieldStringList(fReplaceBy)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	switch {
	case !runMode:
		return nil, fmt.Errorf("needs %s: run (with a transaction per batch, readers would see a part deleted before its rows are back)", fTransaction)
	case cols == nil:
		return nil, fmt.Errorf("needs %s: the columns it names must be known before the run's first row", fColumns)
	}
	if err := checkKey(names, cols); err != nil {
		return nil, err
	}
	idx := make([]int, len(names))
	for i, name := range names {
		idx[i] = columnIndex(cols, name)
	}
	return idx, nil
}

// replaceKey encodes one row's replace_by values as a map key; false if
// one of them is NULL, which names no part.
func replaceKey(dst []byte, vals []val) ([]byte, bool) {
	for _, v := range vals {
		if v.kind == valNull {
			return dst, false
		}
		dst = append(dst, byte(v.kind))
		dst = binary.AppendUvarint(dst, v.n)
		dst = binary.AppendUvarint(dst, uint64(len(v.s)))
		dst = append(dst, v.s...)
	}
	return dst, true
}

// part is one replace_by tuple met in a batch.
type part struct {
	key  string
	vals []val
}

// batchParts lists the replace_by tuples of the batch's rows, each once, in
// the order met: every row of a frame, its rejected rows included (a file
// whose rows are all rejected now still replaces its old ones), read from
// the frame's column of the same name; and otherwise the rows converted
// for writing. An error comes with the index of the message at fault.
func (o *output) batchParts(s *schema, srcs []source, rows []val) ([]part, int, error) {
	n := len(s.cols)
	var parts []part
	seen := map[string]bool{}
	var key []byte
	last := ""
	cur := make([]val, len(o.replaceBy))
	// add records cur's tuple unless it is the last one met (a frame's
	// rows mostly share their part, a file's: one map lookup per run of
	// equal values, not per row) or was met before.
	add := func() {
		var ok bool
		if key, ok = replaceKey(key[:0], cur); !ok || string(key) == last {
			return
		}
		last = string(key)
		if seen[last] {
			return
		}
		seen[last] = true
		// The values alias the batch, which outlives the parts (used by
		// this WriteBatch alone).
		parts = append(parts, part{key: last, vals: slices.Clone(cur)})
	}
	var a arena
	fcs := make([]*frame.Column, len(o.replaceBy))
	for i := range srcs {
		src := &srcs[i]
		if src.err != nil {
			continue
		}
		if f := src.frame; f != nil && o.frameColumns(s, f, fcs) {
			rowsToRead := f.Rows
			if !slices.ContainsFunc(fcs, func(fc *frame.Column) bool { return !fc.Const }) {
				// One value for all of the frame's rows (csv_file's
				// file_field): one row says it, even in a frame of no
				// rows (a file that has none now), whose rows are
				// replaced by none.
				rowsToRead = 1
			}
			for r := 0; r < rowsToRead; r++ {
				for j, fc := range fcs {
					v, ok := cellVal(&s.cols[o.replaceBy[j]], fc, r, &a)
					if !ok {
						c := &s.cols[o.replaceBy[j]]
						return nil, i, fmt.Errorf("message %d: frame row %d: %s column %q: %s does not convert to %s", i, r, fReplaceBy, c.name, fc.AppendJSON(nil, r), c.typ)
					}
					cur[j] = v
				}
				add()
			}
			continue
		}
		// A JSON message, or a frame whose columns are read at paths:
		// its rows as converted for writing.
		for r := src.start; r < src.start+src.rows && (r+1)*n <= len(rows); r++ {
			for j, ci := range o.replaceBy {
				cur[j] = rows[r*n+ci]
			}
			add()
		}
	}
	return parts, 0, nil
}

// frameColumns points fcs at f's field columns of the replace_by columns'
// names, and reports whether f has them all.
func (o *output) frameColumns(s *schema, f *frame.Frame, fcs []*frame.Column) bool {
	for j, ci := range o.replaceBy {
		fcs[j] = f.Field(s.cols[ci].path)
		if fcs[j] == nil {
			return false
		}
	}
	return true
}

// replaceIn deletes, in the run's open transaction, the rows of each part
// the run had not met yet, and records it as met. It returns how to forget
// those records, for a batch whose savepoint is then rolled back (the
// batch fails later, inserting): its retry must delete them again. On its
// own error it has forgotten them already.
func (o *output) replaceIn(c *sqlite3.Conn, s *schema, parts []part) (undo func(), err error) {
	var added []string
	deleted := 0
	undo = func() {
		for _, k := range added {
			delete(o.replaced, k)
		}
		o.replacedRows -= deleted
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	var stmt *sqlite3.Stmt
	defer func() {
		if stmt != nil {
			err = errors.Join(err, stmt.Close())
		}
	}()
	for _, p := range parts {
		if o.replaced[p.key] {
			continue
		}
		if stmt == nil {
			where := make([]string, len(o.replaceBy))
			for j, ci := range o.replaceBy {
				where[j] = quote(s.cols[ci].name) + " = ?"
			}
			q := "DELETE FROM " + quote(o.table) + " WHERE " + strings.Join(where, " AND ")
			if stmt, _, err = c.Prepare(q); err != nil {
				return nil, fmt.Errorf("%s: preparing %s: %w", fReplaceBy, q, err)
			}
		}
		if err := bindRow(stmt, p.vals); err != nil {
			return nil, fmt.Errorf("%s: %w", fReplaceBy, err)
		}
		if err := stmt.Exec(); err != nil {
			return nil, fmt.Errorf("%s: deleting the rows the run replaces: %w", fReplaceBy, err)
		}
		n := int(c.Changes())
		o.replacedRows += n
		deleted += n
		o.replaced[p.key] = true
		added = append(added, p.key)
	}
	return undo, nil
}

// replaceNames names the replace_by columns for the log.
func (o *output) replaceNames() string {
	names := make([]string, len(o.replaceBy))
	for j, ci := range o.replaceBy {
		names[j] = o.cols[ci].name
	}
	return strings.Join(names, ", ")
}
