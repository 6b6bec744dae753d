package sqliteout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// colType is a column's declared type, which decides how a JSON value is
// converted before SQLite sees it.
type colType string

const (
	typeText      colType = "TEXT"
	typeInteger   colType = "INTEGER"
	typeReal      colType = "REAL"
	typeBoolean   colType = "BOOLEAN"
	typeTimestamp colType = "TIMESTAMP"
	typeBlob      colType = "BLOB"
	// typeAny is an existing column of a declared type this output does not
	// know (DATE, NUMERIC, none): values go as JSON gives them and SQLite's
	// type affinity decides, as it would for any other client.
	typeAny colType = ""
)

func typeNames() []string {
	return []string{string(typeText), string(typeInteger), string(typeReal), string(typeBoolean), string(typeTimestamp), string(typeBlob)}
}

// declaredType maps an existing column's declared type to a colType, by
// SQLite's own affinity rules (https://sqlite.org/datatype3.html#determination_of_column_affinity)
// where the name is not one of ours.
func declaredType(decl string) colType {
	d := strings.ToUpper(strings.TrimSpace(decl))
	switch colType(d) {
	case typeText, typeInteger, typeReal, typeBoolean, typeTimestamp, typeBlob:
		return colType(d)
	}
	switch {
	case strings.Contains(d, "INT"):
		return typeInteger
	case strings.Contains(d, "CHAR"), strings.Contains(d, "CLOB"), strings.Contains(d, "TEXT"):
		return typeText
	case strings.Contains(d, "REAL"), strings.Contains(d, "FLOA"), strings.Contains(d, "DOUB"):
		return typeReal
	}
	return typeAny
}

type column struct {
	name string
	typ  colType
	path string
}

func columnIndex(cols []column, name string) int {
	for i, c := range cols {
		if strings.EqualFold(c.name, name) {
			return i
		}
	}
	return -1
}

func columnNames(cols []column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// isIdent reports whether name can be a table or column name without
// surprises: quoting would allow anything, but a name that needs quoting
// is one a person querying the table gets wrong.
func isIdent(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// quote quotes an identifier. Names are checked to be identifiers, except
// an existing table's, which may be anything.
func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

// createSQL creates table; withoutRowid makes the primary key the table's
// own B-tree (it needs a key).
func createSQL(table string, cols []column, key []string, withoutRowid bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", quote(table))
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c.name))
		if c.typ != typeAny {
			b.WriteString(" " + string(c.typ))
		}
		// SQLite lets a PRIMARY KEY column hold NULL unless told otherwise.
		if columnIndex(keyColumns(key), c.name) >= 0 {
			b.WriteString(" NOT NULL")
		}
	}
	if len(key) > 0 {
		fmt.Fprintf(&b, ", PRIMARY KEY (%s)", quoteAll(key))
	}
	b.WriteString(")")
	if withoutRowid {
		b.WriteString(" WITHOUT ROWID")
	}
	return b.String()
}

func keyColumns(key []string) []column {
	cols := make([]column, len(key))
	for i, k := range key {
		cols[i] = column{name: k}
	}
	return cols
}

// schema is what a batch is written with, settled once the columns are known.
type schema struct {
	cols   []column
	keyIdx []int
	insert string
	// byField: the message's top-level fields are the columns (the table's
	// or the first message's), and a field that is no column is an error.
	// Otherwise columns are read at their paths and other fields ignored.
	byField bool
	index   map[string]int // lower-cased column name → index, when byField
	// direct maps each column's path to its index when every path is a
	// plain top-level field name, so a row is read in one pass.
	direct map[string]int
}

// plainPath reports whether gjson reads path as a top-level field name and
// nothing else.
func plainPath(path string) bool {
	return path != "" && !strings.ContainsAny(path, `.*?#|@\!=<>%"[]{}(),:`)
}

func newSchema(table string, cols []column, key []string, byField bool) *schema {
	s := &schema{cols: cols, byField: byField}
	for _, k := range key {
		s.keyIdx = append(s.keyIdx, columnIndex(cols, k))
	}
	if byField {
		s.index = make(map[string]int, len(cols))
		for i, c := range cols {
			s.index[strings.ToLower(c.name)] = i
		}
	} else {
		s.direct = make(map[string]int, len(cols))
		for i, c := range cols {
			if _, dup := s.direct[c.path]; dup || !plainPath(c.path) {
				s.direct = nil // a path gjson would interpret
				break
			}
			s.direct[c.path] = i
		}
	}
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	var set []string
	for i, c := range cols {
		names[i], marks[i] = c.name, "?"
		if columnIndex(keyColumns(key), c.name) < 0 {
			set = append(set, fmt.Sprintf("%s = excluded.%s", quote(c.name), quote(c.name)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES (%s)", quote(table), quoteAll(names), strings.Join(marks, ", "))
	switch {
	case len(key) > 0 && len(set) > 0:
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET %s", quoteAll(key), strings.Join(set, ", "))
	case len(key) > 0:
		// Every column is in the key: the row there already is this one.
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO NOTHING", quoteAll(key))
	}
	s.insert = b.String()
	return s
}

// infer makes the columns from the top-level fields of the batch's first
// row: srcs[first], a JSON message or a frame's first accepted row (frames
// before it with no accepted rows give no row). Their types come from the
// values of the whole batch, not the first row alone: a batch job's
// summary rows arrive as one batch, and its first revenue being a round
// 120 must not make the column INTEGER and fail the 119.99 after it.
// Fields only later rows have are no columns.
func (o *output) infer(srcs []source, first int) (*schema, error) {
	src := srcs[first]
	if src.err != nil {
		return nil, src.err
	}
	var names []string
	if src.frame != nil {
		var err error
		if names, err = frameFields(src.frame); err != nil {
			return nil, err
		}
	} else {
		doc := string(src.body)
		if !isObject(doc) {
			return nil, fmt.Errorf("not a JSON object, so no columns can be inferred from it: %s", show(doc))
		}
		gjson.Parse(doc).ForEach(func(k, _ gjson.Result) bool {
			names = append(names, k.Str)
			return true
		})
	}
	var cols []column
	for _, name := range names {
		if !isIdent(name) {
			return nil, fmt.Errorf("field %q is not an identifier (letters, digits and _, not starting with a digit), so it cannot be a column; list the columns with a path for it", name)
		}
		if i := columnIndex(cols, name); i >= 0 {
			if cols[i].name != name {
				return nil, fmt.Errorf("fields %q and %q would be one column: SQLite's names are case-insensitive", cols[i].name, name)
			}
			continue
		}
		cols = append(cols, column{name: name, typ: typeAny, path: name})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("no fields, so no columns can be inferred from it")
	}
	if err := checkKey(o.key, cols); err != nil {
		return nil, fmt.Errorf("%s: %w (the columns inferred from the message are %s)", fKey, err, columnNames(cols))
	}
	index := make(map[string]int, len(cols))
	for i, c := range cols {
		index[c.name] = i
	}
	for _, src := range srcs {
		switch {
		case src.err != nil:
			continue // it fails on its own when written
		case src.frame != nil:
			widenFrame(cols, index, src.frame)
			continue
		case !isObject(string(src.body)):
			continue
		}
		gjson.ParseBytes(src.body).ForEach(func(k, v gjson.Result) bool {
			if i, ok := index[k.Str]; ok {
				cols[i].typ = widen(cols[i].typ, jsonType(v))
			}
			return true
		})
	}
	for i := range cols {
		if cols[i].typ == typeAny {
			cols[i].typ = typeText // null throughout: there is nothing to go on
		}
	}
	return newSchema(o.table, cols, o.key, true), nil
}

// widen is a column's type once it has seen a value of type vt (typeAny
// for a null): the first non-null value decides, except that a number with
// a fraction makes an INTEGER column REAL.
func widen(t, vt colType) colType {
	switch {
	case vt == typeAny:
		return t
	case t == typeAny:
		return vt
	case t == typeInteger && vt == typeReal:
		return typeReal
	}
	return t
}

// jsonType is what a JSON value says of its column's type: typeAny for a
// null, which says nothing.
func jsonType(v gjson.Result) colType {
	if v.Type == gjson.Null {
		return typeAny
	}
	return inferType(v)
}

func inferType(v gjson.Result) colType {
	switch v.Type {
	case gjson.String:
		return typeText
	case gjson.Number:
		if _, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return typeInteger
		}
		return typeReal
	case gjson.True, gjson.False:
		return typeBoolean
	}
	return typeText
}

func isObject(doc string) bool {
	return strings.HasPrefix(strings.TrimLeft(doc, " \t\r\n"), "{") && gjson.Valid(doc)
}

// valKind is what a val holds.
type valKind uint8

const (
	valNull valKind = iota
	valText
	valBlob
	valInt
	valReal
)

// val is one value of a row, unboxed: converting a batch costs one
// allocation for all its values, not one per value.
type val struct {
	s    string // text, or a blob's bytes
	n    uint64 // an integer, or a real's bits
	kind valKind
}

func textVal(s string) val  { return val{s: s, kind: valText} }
func intVal(n int64) val    { return val{n: uint64(n), kind: valInt} }
func realVal(f float64) val { return val{n: math.Float64bits(f), kind: valReal} }

// boolVal is a boolean as SQLite stores one: INTEGER 1 or 0.
func boolVal(b bool) val {
	if b {
		return intVal(1)
	}
	return intVal(0)
}

// row converts a message to the statement's arguments, in column order,
// into dst (len(s.cols) values).
func (s *schema) row(body []byte, dst []val) error {
	// The message's bytes, not a copy: the text values in dst are
	// substrings of doc, bound (and so copied by SQLite) within the same
	// WriteBatch, while the batch's messages are alive and unchanged.
	doc := unsafe.String(unsafe.SliceData(body), len(body))
	if !isObject(doc) {
		return fmt.Errorf("not a JSON object: %s", show(doc))
	}
	clear(dst)
	switch {
	case s.byField || s.direct != nil:
		// One pass over the fields: reading each column's path on its own
		// would scan the document once per column.
		seen := make([]bool, len(s.cols))
		var err error
		gjson.Parse(doc).ForEach(func(k, v gjson.Result) bool {
			var i int
			var ok bool
			if s.byField {
				if i, ok = s.index[strings.ToLower(k.Str)]; !ok {
					err = fmt.Errorf("field %q is not a column of the table (its columns are %s)", k.Str, columnNames(s.cols))
					return false
				}
			} else if i, ok = s.direct[k.Str]; !ok {
				return true // not a column: ignored
			}
			// A field given twice: the first counts, as gjson.Get would read it.
			if seen[i] {
				return true
			}
			seen[i] = true
			err = s.cols[i].value(v, &dst[i])
			return err == nil
		})
		if err != nil {
			return err
		}
	default:
		for i, c := range s.cols {
			if err := c.value(gjson.Get(doc, c.path), &dst[i]); err != nil {
				return err
			}
		}
	}
	return s.checkKey(dst, func() string { return doc })
}

// checkKey fails a row with no value for a key column; doc gives the row as
// JSON, to tell a null from a missing value.
func (s *schema) checkKey(row []val, doc func() string) error {
	for _, i := range s.keyIdx {
		if row[i].kind == valNull {
			c := s.cols[i]
			what := "missing"
			if gjson.Get(doc(), c.path).Exists() {
				what = "null"
			}
			return fmt.Errorf("column %q is part of the key, and the value at %q is %s", c.name, c.path, what)
		}
	}
	return nil
}

// value converts v for the column; a missing or null v is NULL.
func (c *column) value(v gjson.Result, dst *val) error {
	var ok bool
	if *dst, ok = c.convert(v); !ok {
		return c.bad(v.Raw)
	}
	return nil
}

// convert converts v for the column, reporting false if it does not take v.
func (c *column) convert(v gjson.Result) (val, bool) {
	switch v.Type {
	case gjson.Null:
		return val{}, true
	case gjson.String:
		return c.fromString(v.Str)
	case gjson.Number:
		return c.fromNumber(v.Raw)
	case gjson.True, gjson.False:
		return c.fromBool(v.Type == gjson.True)
	}
	return c.fromJSON(v.Raw)
}

// The conversions below are one per kind of JSON value, so that a frame's
// typed cell, which a JSON message would have carried as that kind of
// value, converts by the very same rules (see frames.go). Each reports
// false for a value the column does not take.

// fromString converts a JSON string's (unescaped) value.
func (c *column) fromString(s string) (val, bool) {
	switch c.typ {
	case typeText, typeAny:
		return textVal(s), true
	case typeBlob:
		return val{s: s, kind: valBlob}, true
	case typeInteger:
		n, ok := intOf(s)
		return intVal(n), ok
	case typeReal:
		f, ok := floatOf(s)
		return realVal(f), ok
	case typeBoolean:
		b, err := strconv.ParseBool(s)
		return boolVal(b), err == nil
	case typeTimestamp:
		t, ok := parseTime(s)
		if !ok {
			return val{}, false
		}
		return textVal(t.UTC().Format(time.RFC3339Nano)), true
	}
	return val{}, false
}

// fromNumber converts a JSON number, raw as it is written.
func (c *column) fromNumber(raw string) (val, bool) {
	switch c.typ {
	case typeText:
		return textVal(raw), true
	case typeBlob:
		return val{s: raw, kind: valBlob}, true
	case typeInteger:
		n, ok := intOf(raw)
		return intVal(n), ok
	case typeReal:
		f, ok := floatOf(raw)
		return realVal(f), ok
	case typeBoolean:
		n, ok := intOf(raw)
		return intVal(n), ok && (n == 0 || n == 1)
	case typeTimestamp:
		t, ok := epoch(raw)
		if !ok {
			return val{}, false
		}
		return textVal(t.UTC().Format(time.RFC3339Nano)), true
	case typeAny:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			return intVal(n), true
		}
		// As gjson reads the number (its Result.Num).
		f, _ := strconv.ParseFloat(raw, 64)
		return realVal(f), true
	}
	return val{}, false
}

// fromBool converts a JSON true or false.
func (c *column) fromBool(b bool) (val, bool) {
	switch c.typ {
	case typeText:
		return textVal(strconv.FormatBool(b)), true
	case typeBlob:
		return val{s: strconv.FormatBool(b), kind: valBlob}, true
	case typeBoolean, typeAny:
		return boolVal(b), true
	}
	return val{}, false
}

// fromJSON converts a JSON object or array, raw as it is written.
func (c *column) fromJSON(raw string) (val, bool) {
	switch c.typ {
	case typeText, typeAny:
		return textVal(raw), true
	case typeBlob:
		return val{s: raw, kind: valBlob}, true
	}
	return val{}, false
}

// bad is the error of a value (as JSON) that the column does not take.
func (c *column) bad(raw string) error {
	var want string
	switch c.typ {
	case typeInteger:
		want = "an integer"
	case typeReal:
		want = "a number"
	case typeBoolean:
		want = "a boolean"
	case typeTimestamp:
		want = "a timestamp (RFC 3339, 2006-01-02 15:04:05, 2006-01-02 or epoch seconds)"
	default:
		want = "a value it takes"
	}
	return fmt.Errorf("column %q (%s): value %s is not %s", c.name, c.typ, show(raw), want)
}

func intOf(s string) (int64, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, ok := floatOf(s)
	if !ok {
		return 0, false
	}
	return wholeReal(f)
}

// floatOf parses a decimal number; SQLite would store NaN as NULL and an
// infinity is no one's price.
func floatOf(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func parseTime(s string) (time.Time, bool) {
	// Go's parser accepts fractional seconds after the seconds of a layout
	// that has none; a layout with no zone is read as UTC.
	layouts := [...]string{time.RFC3339, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, inRange(t)
		}
	}
	return epoch(s)
}

// epoch reads seconds since 1970, fractions allowed.
func epoch(s string) (time.Time, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		t := time.Unix(n, 0)
		return t, inRange(t)
	}
	f, ok := floatOf(s)
	// Beyond ±2^53 seconds a float has no fraction left, and the years are
	// out of range anyway.
	if !ok || math.Abs(f) > 1<<53 {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	t := time.Unix(int64(sec), int64(math.Round((f-sec)*1e9)))
	return t, inRange(t)
}

// inRange: RFC 3339 has four-digit years.
func inRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// show renders a value for an error message, cut short.
func show(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
