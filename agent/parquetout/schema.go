package parquetout

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/civil"
)

// Column types, as spelled in the config.
const (
	typeString    = "string"
	typeInt64     = "int64"
	typeDouble    = "double"
	typeBool      = "bool"
	typeTimestamp = "timestamp"
	typeDate      = "date"
)

func columnTypes() []string {
	return []string{typeString, typeInt64, typeDouble, typeBool, typeTimestamp, typeDate}
}

// column is one leaf of the file's schema and where its value comes from.
type column struct {
	name     string
	typ      string
	path     string // gjson path into the message
	optional bool
	// byPath: the value needs a gjson lookup of its own, the path not
	// being a plain top-level key (or another column already has it).
	byPath bool
	conv   func(gjson.Result) (parquet.Value, error)
}

// schema is the columns of every file the output writes, in file order.
type schema struct {
	cols []column
	// byKey maps a top-level key to its column, so that a message is
	// scanned once for all such columns instead of once per column.
	byKey map[string]int
	// strict rejects keys with no column: an inferred schema cannot hold
	// them, and dropping them silently would lose data.
	strict bool
	node   *parquet.Schema
}

func newSchema(cols []column, strict bool) (*schema, error) {
	s := &schema{cols: cols, strict: strict, byKey: map[string]int{}}
	fields := make([]orderedField, len(cols))
	seen := map[string]bool{}
	for i := range cols {
		c := &cols[i]
		if c.name == "" {
			return nil, fmt.Errorf("column %d: empty name", i)
		}
		if seen[c.name] {
			return nil, fmt.Errorf("column %q: name used twice", c.name)
		}
		seen[c.name] = true
		if c.path == "" {
			c.path = c.name
		}
		var leaf parquet.Node
		switch c.typ {
		case typeString:
			leaf, c.conv = parquet.String(), convString
		case typeInt64:
			leaf, c.conv = parquet.Leaf(parquet.Int64Type), convInt64
		case typeDouble:
			leaf, c.conv = parquet.Leaf(parquet.DoubleType), convDouble
		case typeBool:
			leaf, c.conv = parquet.Leaf(parquet.BooleanType), convBool
		case typeTimestamp:
			leaf, c.conv = parquet.Timestamp(parquet.Microsecond), convTimestamp
		case typeDate:
			leaf, c.conv = parquet.Date(), convDate
		default:
			return nil, fmt.Errorf("column %q: unknown type %q (want one of %s)", c.name, c.typ, strings.Join(columnTypes(), ", "))
		}
		if c.optional {
			leaf = parquet.Optional(leaf)
		}
		fields[i] = orderedField{Node: leaf, name: c.name}
		if _, dup := s.byKey[c.path]; dup || !(strict || plainKey(c.path)) {
			c.byPath = true
		} else {
			s.byKey[c.path] = i
		}
	}
	s.node = parquet.NewSchema("sluice", newOrderedGroup(fields))
	return s, nil
}

// plainKey reports whether a gjson path is just a top-level key, with none
// of gjson's path syntax in it.
func plainKey(p string) bool {
	for _, r := range p {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return p != ""
}

// maxInferRows bounds how many rows of the first batch the schema is
// inferred from: enough to see past a first row's nulls and integral
// values, without a second pass over a whole file read as one batch.
const maxInferRows = 100_000

// inference gathers the top-level fields of rows, in the order they first
// appear, and what their values say of each field's type.
type inference struct {
	names  []string
	fields map[string]*inferred
	rows   int
}

// inferred is what a field's values so far say of its type.
type inferred struct {
	typ      string // "" while every value is null
	integral bool   // for a number: every value so far is integral
}

// add takes one row's fields into the inference.
func (in *inference) add(raw []byte) error {
	obj, err := parseObject(string(raw))
	if err != nil {
		return err
	}
	if in.fields == nil {
		in.fields = map[string]*inferred{}
	}
	in.rows++
	obj.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		f, ok := in.fields[name]
		if !ok {
			f = &inferred{}
			in.fields[name] = f
			in.names = append(in.names, name)
		}
		var typ string
		switch v.Type {
		case gjson.Null:
			return true
		case gjson.Number:
			typ = typeDouble
		case gjson.True, gjson.False:
			typ = typeBool
		default: // strings; objects and arrays as their JSON
			typ = typeString
		}
		switch {
		case f.typ == "":
			f.typ, f.integral = typ, typ == typeDouble && !strings.ContainsAny(v.Raw, ".eE")
		case f.typ == typeDouble && typ == typeDouble:
			f.integral = f.integral && !strings.ContainsAny(v.Raw, ".eE")
		}
		return true
	})
	return nil
}

// schema is the inferred schema: one optional column per field; a field
// only ever null is a string, a number int64 if every value was integral.
func (in *inference) schema() (*schema, error) {
	if len(in.names) == 0 {
		return nil, errors.New("cannot infer a schema from an object with no fields")
	}
	cols := make([]column, 0, len(in.names))
	for _, name := range in.names {
		f := in.fields[name]
		typ := f.typ
		switch {
		case typ == "":
			typ = typeString
		case typ == typeDouble && f.integral:
			typ = typeInt64
		}
		cols = append(cols, column{name: name, typ: typ, optional: true})
	}
	return newSchema(cols, true)
}

func parseObject(js string) (gjson.Result, error) {
	if !gjson.Valid(js) {
		return gjson.Result{}, errors.New("not valid JSON")
	}
	obj := gjson.Parse(js)
	if !obj.IsObject() {
		return gjson.Result{}, fmt.Errorf("not a JSON object: %s", clip(obj.Raw))
	}
	return obj, nil
}

// row converts one message into row, which has one value per column;
// found is scratch space of the same length.
func (s *schema) row(raw []byte, row parquet.Row, found []gjson.Result) error {
	// The message's bytes, not a copy: every value found below is a
	// substring of js, read during this call only (values kept in the row
	// are copied or decoded), and the message is not modified meanwhile.
	js := unsafe.String(unsafe.SliceData(raw), len(raw))
	obj, err := parseObject(js)
	if err != nil {
		return err
	}
	clear(found)
	var extra string
	obj.ForEach(func(k, v gjson.Result) bool {
		i, ok := s.byKey[k.String()]
		switch {
		case ok && !found[i].Exists():
			found[i] = v
		case !ok && s.strict:
			extra = k.String()
			return false
		}
		return true
	})
	if extra != "" {
		return errExtraField(extra)
	}
	for i := range s.cols {
		c := &s.cols[i]
		v := found[i]
		if c.byPath {
			v = gjson.Get(js, c.path)
		}
		if !v.Exists() || v.Type == gjson.Null {
			if !c.optional {
				return errNoValue(c)
			}
			row[i] = parquet.NullValue().Level(0, 0, i)
			continue
		}
		pv, err := c.conv(v)
		if err != nil {
			return errValue(c, v.Raw, err)
		}
		def := 0
		if c.optional {
			def = 1
		}
		row[i] = pv.Level(0, def, i)
	}
	return nil
}

// clip keeps a value quoted in an error readable.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func convString(v gjson.Result) (parquet.Value, error) {
	if v.Type == gjson.String {
		return parquet.ByteArrayValue([]byte(v.Str)), nil
	}
	// Numbers keep their JSON text, so no precision is lost; objects and
	// arrays are kept as JSON.
	return parquet.ByteArrayValue([]byte(v.Raw)), nil
}

func convInt64(v gjson.Result) (parquet.Value, error) {
	var text string
	switch v.Type {
	case gjson.Number:
		// gjson has parsed it already; below 2^53 the float is exact.
		if f := v.Num; f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return parquet.Int64Value(int64(f)), nil
		}
		text = v.Raw
	case gjson.String:
		text = strings.TrimSpace(v.Str)
	default:
		return parquet.Value{}, errors.New("is not an int64")
	}
	n, err := parseInt(text)
	if err != nil {
		return parquet.Value{}, errors.New("is not an int64")
	}
	return parquet.Int64Value(n), nil
}

// parseInt accepts an integer written as such, or as a number with no
// fraction (3.0, 1e3), which JSON encoders produce for floats that hold
// integers.
func parseInt(text string) (int64, error) {
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, errors.New("not an integer")
	}
	return int64(f), nil
}

func convDouble(v gjson.Result) (parquet.Value, error) {
	switch v.Type {
	case gjson.Number:
		return parquet.DoubleValue(v.Num), nil
	case gjson.String:
		if f, err := strconv.ParseFloat(strings.TrimSpace(v.Str), 64); err == nil {
			return parquet.DoubleValue(f), nil
		}
	}
	return parquet.Value{}, errors.New("is not a double")
}

func convBool(v gjson.Result) (parquet.Value, error) {
	switch v.Type {
	case gjson.True:
		return parquet.BooleanValue(true), nil
	case gjson.False:
		return parquet.BooleanValue(false), nil
	case gjson.String:
		if b, err := strconv.ParseBool(strings.TrimSpace(v.Str)); err == nil {
			return parquet.BooleanValue(b), nil
		}
	}
	return parquet.Value{}, errors.New("is not a bool")
}

const badTimestamp = "is not a timestamp (want RFC 3339, \"2006-01-02 15:04:05\", \"2006-01-02\" or epoch seconds)"

func convTimestamp(v gjson.Result) (parquet.Value, error) {
	var text string
	switch v.Type {
	case gjson.Number:
		text = v.Raw
	case gjson.String:
		text = strings.TrimSpace(v.Str)
		if len(text) >= 10 && text[4] == '-' && text[7] == '-' {
			t, err := parseTime(text)
			if err != nil {
				return parquet.Value{}, errors.New(badTimestamp)
			}
			return parquet.Int64Value(t.UnixMicro()), nil
		}
	default:
		return parquet.Value{}, errors.New(badTimestamp)
	}
	us, ok := epochMicros(text)
	if !ok {
		return parquet.Value{}, errors.New(badTimestamp)
	}
	return parquet.Int64Value(us), nil
}

// parseTime reads the date-led spellings of a timestamp, choosing the
// layout by shape, as a failed time.Parse costs more than the rest of the
// row; those with no zone are UTC.
func parseTime(text string) (time.Time, error) {
	if len(text) == 10 {
		return time.Parse("2006-01-02", text)
	}
	zoned := len(text) > 19 && (text[len(text)-1] == 'Z' || strings.ContainsAny(text[19:], "+-"))
	switch {
	case text[10] == 'T' && zoned:
		return time.Parse(time.RFC3339Nano, text)
	case text[10] == 'T':
		return time.Parse("2006-01-02T15:04:05", text)
	case text[10] == ' ' && zoned:
		return time.Parse("2006-01-02 15:04:05Z07:00", text)
	case text[10] == ' ':
		return time.Parse("2006-01-02 15:04:05", text)
	}
	return time.Time{}, errors.New("no layout")
}

// epochMicros reads epoch seconds, possibly fractional, as microseconds.
func epochMicros(text string) (int64, bool) {
	const limit = math.MaxInt64 / 1_000_000
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		if n > limit || n < -limit {
			return 0, false
		}
		return n * 1e6, true
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || f > limit || f < -limit {
		return 0, false
	}
	return int64(math.Round(f * 1e6)), true
}

func convDate(v gjson.Result) (parquet.Value, error) {
	const bad = "is not a date (want \"2006-01-02\" or RFC 3339)"
	if v.Type != gjson.String {
		return parquet.Value{}, errors.New(bad)
	}
	text := strings.TrimSpace(v.Str)
	if d, ok := isoDay(text); ok {
		return parquet.Int32Value(d), nil
	}
	t, err := time.Parse("2006-01-02", text)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, text); err != nil {
			return parquet.Value{}, errors.New(bad)
		}
	}
	// The calendar date as written, whatever the offset: the writer meant
	// that day.
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return parquet.Int32Value(int32(day.Unix() / 86400)), nil
}

// isoDay reads a plain YYYY-MM-DD date as days since 1970-01-01 without
// time.Parse, which costs more than the rest of a row's conversion; false
// for anything else, which time.Parse then decides.
func isoDay(s string) (int32, bool) {
	y, m, d, ok := civil.ParseISO(s)
	if !ok {
		return 0, false
	}
	return int32(civil.DaysFromEpoch(y, m, d)), true
}

// orderedGroup is a parquet group whose columns keep the order they were
// given in; parquet.Group sorts them by name, which would scramble both
// the configured order and the inferred key order.
type orderedGroup struct{ fields []parquet.Field }

func newOrderedGroup(fields []orderedField) *orderedGroup {
	g := &orderedGroup{fields: make([]parquet.Field, len(fields))}
	for i := range fields {
		g.fields[i] = fields[i]
	}
	return g
}

type orderedField struct {
	parquet.Node
	name string
}

func (f orderedField) Name() string { return f.name }

// Value is only used to deconstruct Go values, which this package never
// does: rows are built value by value.
func (f orderedField) Value(reflect.Value) reflect.Value { return reflect.Value{} }

func (g *orderedGroup) ID() int                     { return 0 }
func (g *orderedGroup) String() string              { return parquet.NewSchema("", g).String() }
func (g *orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g *orderedGroup) Optional() bool              { return false }
func (g *orderedGroup) Repeated() bool              { return false }
func (g *orderedGroup) Required() bool              { return true }
func (g *orderedGroup) Leaf() bool                  { return false }
func (g *orderedGroup) Encoding() encoding.Encoding { return nil }
func (g *orderedGroup) Compression() compress.Codec { return nil }
func (g *orderedGroup) Fields() []parquet.Field     { return g.fields }

func (g *orderedGroup) GoType() reflect.Type {
	fields := make([]reflect.StructField, len(g.fields))
	for i, f := range g.fields {
		fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: f.GoType(), Tag: reflect.StructTag(`parquet:` + strconv.Quote(f.Name()))}
	}
	return reflect.StructOf(fields)
}
