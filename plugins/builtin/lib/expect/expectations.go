package expect

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
	"unsafe"
)

type op uint8

const (
	opColumnExists op = iota
	opColumnsOrdered
	opColumnsSet
	opColumnCountEqual
	opColumnCountBetween
	opNotNull
	opNull
	opType
	opBetween
	opInSet
	opNotInSet
	opRegex
	opNotRegex
	opRegexList
	opNotRegexList
	opLengthBetween
	opStrftime
	opDateutil
	opJSON
	opUnique
	opCompoundUnique
	// window-level (aggregate) expectations: judged over a window, never
	// on a record
	opRowCount
	opMean
	opMin
	opMax
	opStdev
	opUniqueProportion
	opNonNullProportion
)

// expectation is one compiled expectation of a suite.
type expectation struct {
	index  int    // position in the suite
	name   string // GX expectation type
	path   string // where its arguments are in the config, for errors
	agg    bool   // window-level: an aggregate over the window's rows
	kwargs []byte // the arguments as written, compact JSON, for reports
	op     op
	// jsonHead opens the expectation's entry in sluice_validation:
	// {"expectation":...,"column":...; rendered once, not per record.
	jsonHead []byte

	col      int // the column's index in Suite.columns, -1 for table-level ones
	colName  string
	cols     []int // compound uniqueness
	colNames []string

	mostly         float64
	mostlyText     []byte
	soft           bool // mostly < 1: judged per batch, never fails a record alone
	ignoresMissing bool // a column map expectation: missing values are not evaluated

	// arguments, by op
	types        []typeCheck
	lo, hi       float64
	hasLo, hasHi bool
	strictLo     bool
	strictHi     bool
	timeBounds   bool
	loT, hiT     instant
	strSet       map[string]struct{}
	numSet       map[float64]struct{}
	strList      []string  // a small strSet, scanned instead of hashed
	numList      []float64 // a small numSet
	boolSet      [2]bool   // false, true
	res          []*regexp.Regexp
	matchAll     bool
	format       *strftime
	list         []string
	exact        bool
	present      []int // column set without exact_match: its columns, read as values
	table        bool  // judged on the record's keys
	columnIndex  int   // expect_column_to_exist: -1 if not given
	ignoreRowIf  int
	uid          uint32
}

const (
	ignoreAllMissing = iota
	ignoreAnyMissing
	ignoreNever
)

// spec describes an expectation's arguments and how to compile them.
type spec struct {
	op     op
	args   []string
	mapExp bool // a column map expectation: takes mostly, evaluated value by value
	build  func(*builder) error
}

var specs map[string]spec

func init() {
	col := func(b *builder) error {
		var err error
		b.e.col, b.e.colName, err = b.column("column")
		return err
	}
	specs = map[string]spec{
		"expect_column_to_exist": {op: opColumnExists, args: []string{"column", "column_index"}, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			b.e.columnIndex = -1
			if n, ok, err := b.optInt("column_index"); err != nil {
				return err
			} else if ok {
				if n < 0 {
					return fmt.Errorf("%s: want 0 or more, got %d", b.argPath("column_index"), n)
				}
				b.e.columnIndex = int(n)
				b.suite.needsKeys = true
			}
			return nil
		}},
		"expect_table_columns_to_match_ordered_list": {op: opColumnsOrdered, args: []string{"column_list"}, build: func(b *builder) error {
			var err error
			b.e.list, err = b.stringList("column_list")
			b.suite.needsKeys = true
			return err
		}},
		"expect_table_columns_to_match_set": {op: opColumnsSet, args: []string{"column_set", "exact_match"}, build: func(b *builder) error {
			var err error
			if b.e.list, err = b.stringList("column_set"); err != nil {
				return err
			}
			if b.e.exact, err = b.optBool("exact_match", true); err != nil {
				return err
			}
			if !b.e.exact && plainKeys(b.e.list) {
				// "At least these columns" is each one's presence, which the
				// columns' own values tell without listing the record's keys.
				for _, c := range b.e.list {
					b.e.present = append(b.e.present, b.suite.addColumn(c))
				}
				return nil
			}
			b.suite.needsKeys = true
			return nil
		}},
		"expect_table_column_count_to_equal": {op: opColumnCountEqual, args: []string{"value"}, build: func(b *builder) error {
			n, ok, err := b.optInt("value")
			if err != nil {
				return err
			}
			if !ok {
				return b.missing("value")
			}
			b.e.lo, b.e.hasLo = float64(n), true
			b.suite.needsKeys = true
			return nil
		}},
		"expect_table_column_count_to_be_between": {op: opColumnCountBetween, args: []string{"min_value", "max_value", "strict_min", "strict_max"}, build: func(b *builder) error {
			b.suite.needsKeys = true
			return buildBounds(b, false)
		}},
		"expect_column_values_to_not_be_null": {op: opNotNull, args: []string{"column"}, mapExp: true, build: col},
		"expect_column_values_to_be_null":     {op: opNull, args: []string{"column"}, mapExp: true, build: col},
		"expect_column_values_to_be_of_type": {op: opType, args: []string{"column", "type_"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			name, ok, err := b.optString("type_")
			if err != nil {
				return err
			}
			if !ok {
				return b.missing("type_")
			}
			t, ok := lookupType(name)
			if !ok {
				return fmt.Errorf("%s: unknown type %q (want one of %s)", b.argPath("type_"), name, knownTypes())
			}
			b.e.types = []typeCheck{t}
			return nil
		}},
		"expect_column_values_to_be_in_type_list": {op: opType, args: []string{"column", "type_list"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			names, err := b.stringList("type_list")
			if err != nil {
				return err
			}
			if len(names) == 0 {
				return fmt.Errorf("%s: empty list", b.argPath("type_list"))
			}
			for i, n := range names {
				t, ok := lookupType(n)
				if !ok {
					return fmt.Errorf("%s[%d]: unknown type %q (want one of %s)", b.argPath("type_list"), i, n, knownTypes())
				}
				b.e.types = append(b.e.types, t)
			}
			return nil
		}},
		"expect_column_values_to_be_between": {op: opBetween, args: []string{"column", "min_value", "max_value", "strict_min", "strict_max", "parse_strings_as_datetimes"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			return buildBounds(b, true)
		}},
		"expect_column_values_to_be_in_set":       {op: opInSet, args: []string{"column", "value_set"}, mapExp: true, build: buildSet},
		"expect_column_values_to_not_be_in_set":   {op: opNotInSet, args: []string{"column", "value_set"}, mapExp: true, build: buildSet},
		"expect_column_values_to_match_regex":     {op: opRegex, args: []string{"column", "regex"}, mapExp: true, build: buildRegex},
		"expect_column_values_to_not_match_regex": {op: opNotRegex, args: []string{"column", "regex"}, mapExp: true, build: buildRegex},
		"expect_column_values_to_match_regex_list": {op: opRegexList, args: []string{"column", "regex_list", "match_on"}, mapExp: true, build: func(b *builder) error {
			if err := buildRegexList(b); err != nil {
				return err
			}
			on, ok, err := b.optString("match_on")
			if err != nil {
				return err
			}
			switch {
			case !ok || on == "any":
			case on == "all":
				b.e.matchAll = true
			default:
				return fmt.Errorf("%s: want any or all, got %q", b.argPath("match_on"), on)
			}
			return nil
		}},
		"expect_column_values_to_not_match_regex_list": {op: opNotRegexList, args: []string{"column", "regex_list"}, mapExp: true, build: buildRegexList},
		"expect_column_value_lengths_to_be_between": {op: opLengthBetween, args: []string{"column", "min_value", "max_value"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			return buildBounds(b, false)
		}},
		"expect_column_value_lengths_to_equal": {op: opLengthBetween, args: []string{"column", "value"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			n, ok, err := b.optInt("value")
			if err != nil {
				return err
			}
			if !ok {
				return b.missing("value")
			}
			if n < 0 {
				return fmt.Errorf("%s: want 0 or more, got %d", b.argPath("value"), n)
			}
			b.e.lo, b.e.hi, b.e.hasLo, b.e.hasHi = float64(n), float64(n), true, true
			return nil
		}},
		"expect_column_values_to_match_strftime_format": {op: opStrftime, args: []string{"column", "strftime_format"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			f, ok, err := b.optString("strftime_format")
			if err != nil {
				return err
			}
			if !ok {
				return b.missing("strftime_format")
			}
			if b.e.format, err = compileStrftime(f); err != nil {
				return fmt.Errorf("%s: %v", b.argPath("strftime_format"), err)
			}
			return nil
		}},
		"expect_column_values_to_be_dateutil_parseable": {op: opDateutil, args: []string{"column"}, mapExp: true, build: func(b *builder) error {
			dateutilParsers() // at load, not on the first record
			return col(b)
		}},
		"expect_column_values_to_be_json_parseable": {op: opJSON, args: []string{"column"}, mapExp: true, build: col},
		"expect_column_values_to_be_unique": {op: opUnique, args: []string{"column"}, mapExp: true, build: func(b *builder) error {
			if err := col(b); err != nil {
				return err
			}
			b.e.cols, b.e.colNames = []int{b.e.col}, []string{b.e.colName}
			b.e.ignoreRowIf = ignoreAnyMissing
			return nil
		}},
		"expect_compound_columns_to_be_unique": {op: opCompoundUnique, args: []string{"column_list", "ignore_row_if"}, mapExp: true, build: func(b *builder) error {
			names, err := b.stringList("column_list")
			if err != nil {
				return err
			}
			if len(names) == 0 {
				return fmt.Errorf("%s: empty list", b.argPath("column_list"))
			}
			for i, n := range names {
				p := fmt.Sprintf("%s[%d]", b.argPath("column_list"), i)
				if err := checkColumn(p, n); err != nil {
					return err
				}
				if contains(b.e.colNames, n) {
					return fmt.Errorf("%s: %q is listed twice", p, n)
				}
				b.e.cols = append(b.e.cols, b.suite.addColumn(n))
				b.e.colNames = append(b.e.colNames, n)
			}
			ign, ok, err := b.optString("ignore_row_if")
			if err != nil {
				return err
			}
			switch {
			case !ok || ign == "all_values_are_missing":
				b.e.ignoreRowIf = ignoreAllMissing
			case ign == "any_value_is_missing":
				b.e.ignoreRowIf = ignoreAnyMissing
			case ign == "never":
				b.e.ignoreRowIf = ignoreNever
			default:
				return fmt.Errorf("%s: want all_values_are_missing, any_value_is_missing or never, got %q", b.argPath("ignore_row_if"), ign)
			}
			return nil
		}},
	}
	for name, sp := range aggSpecs {
		specs[name] = sp
	}
}

// plainKeys reports whether every name is a top-level key the host can
// read as a field (a dotted name would be read as a nested path instead).
func plainKeys(names []string) bool {
	for _, n := range names {
		if checkColumn("", n) != nil || strings.Contains(n, ".") {
			return false
		}
	}
	return true
}

// buildBounds reads min_value/max_value (and strict_min/strict_max where
// the expectation has them). For expect_column_values_to_be_between the
// bounds may instead be ISO 8601 date-time strings, which then compare
// values as instants.
func buildBounds(b *builder, allowTimes bool) error {
	e := b.e
	var err error
	loRaw, hasLo := b.args["min_value"]
	hiRaw, hasHi := b.args["max_value"]
	if !hasLo && !hasHi {
		return fmt.Errorf("%s: set min_value, max_value or both", b.path)
	}
	isStr := func(raw []byte) bool { return len(raw) > 0 && raw[0] == '"' }
	if allowTimes && (hasLo && isStr(loRaw) || hasHi && isStr(hiRaw)) {
		e.timeBounds = true
		read := func(arg string, raw []byte) (instant, error) {
			s, err := wantString(b.argPath(arg), raw)
			if err != nil {
				return instant{}, fmt.Errorf("%s: the other bound is a date-time, so this must be one too", err)
			}
			t, ok := parseISO([]byte(s))
			if !ok {
				return instant{}, fmt.Errorf("%s: want a number or an ISO 8601 date-time (2025-01-31, 2025-01-31T08:00:00Z), got %q", b.argPath(arg), s)
			}
			return t, nil
		}
		if hasLo {
			if e.loT, err = read("min_value", loRaw); err != nil {
				return err
			}
		}
		if hasHi {
			if e.hiT, err = read("max_value", hiRaw); err != nil {
				return err
			}
		}
		if hasLo && hasHi && e.hiT.before(e.loT) {
			return fmt.Errorf("%s: %s is before min_value %s", b.argPath("max_value"), hiRaw, loRaw)
		}
	} else {
		if hasLo {
			if e.lo, err = wantNumber(b.argPath("min_value"), loRaw); err != nil {
				return err
			}
		}
		if hasHi {
			if e.hi, err = wantNumber(b.argPath("max_value"), hiRaw); err != nil {
				return err
			}
		}
		if hasLo && hasHi && e.hi < e.lo {
			return fmt.Errorf("%s: %s is below min_value %s", b.argPath("max_value"), hiRaw, loRaw)
		}
		if e.op == opLengthBetween && (hasLo && e.lo < 0 || hasHi && e.hi < 0) {
			return fmt.Errorf("%s: lengths are 0 or more", b.path)
		}
	}
	e.hasLo, e.hasHi = hasLo, hasHi
	if contains(specs[b.name].args, "strict_min") {
		if e.strictLo, err = b.optBool("strict_min", false); err != nil {
			return err
		}
		if e.strictHi, err = b.optBool("strict_max", false); err != nil {
			return err
		}
	}
	if contains(specs[b.name].args, "parse_strings_as_datetimes") {
		parse, err := b.optBool("parse_strings_as_datetimes", false)
		if err != nil {
			return err
		}
		if parse && !e.timeBounds {
			return fmt.Errorf("%s: true, but min_value/max_value are numbers: write them as date-times (2025-01-01T00:00:00Z)", b.argPath("parse_strings_as_datetimes"))
		}
	}
	return nil
}

// buildSet reads a value_set of strings, numbers and booleans. Numbers are
// kept by value, so 1 and 1.0 are the same member, as in Python.
func buildSet(b *builder) error {
	var err error
	if b.e.col, b.e.colName, err = b.column("column"); err != nil {
		return err
	}
	raw, ok := b.args["value_set"]
	if !ok {
		return b.missing("value_set")
	}
	items, err := arrayItems(b.argPath("value_set"), raw)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return fmt.Errorf("%s: empty list", b.argPath("value_set"))
	}
	b.e.strSet, b.e.numSet = map[string]struct{}{}, map[float64]struct{}{}
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", b.argPath("value_set"), i)
		switch {
		case len(it) > 0 && it[0] == '"':
			s, err := wantString(p, it)
			if err != nil {
				return err
			}
			b.e.strSet[s] = struct{}{}
		case string(it) == "true":
			b.e.boolSet[1] = true
		case string(it) == "false":
			b.e.boolSet[0] = true
		default:
			f, ok := number(it)
			if !ok {
				return fmt.Errorf("%s: want a string, number or boolean, got %s", p, short(it))
			}
			b.e.numSet[f] = struct{}{}
		}
	}
	// A few members are found faster by comparing than by hashing, most
	// of all in Wasm, where a map lookup is many calls.
	if len(b.e.strSet) <= smallSet && len(b.e.numSet) <= smallSet {
		for s := range b.e.strSet {
			b.e.strList = append(b.e.strList, s)
		}
		for f := range b.e.numSet {
			b.e.numList = append(b.e.numList, f)
		}
		b.e.strSet, b.e.numSet = nil, nil
	}
	return nil
}

const smallSet = 8

func buildRegex(b *builder) error {
	var err error
	if b.e.col, b.e.colName, err = b.column("column"); err != nil {
		return err
	}
	src, ok, err := b.optString("regex")
	if err != nil {
		return err
	}
	if !ok {
		return b.missing("regex")
	}
	re, err := compileRegex(b.argPath("regex"), src)
	if err != nil {
		return err
	}
	b.e.res = []*regexp.Regexp{re}
	return nil
}

func buildRegexList(b *builder) error {
	var err error
	if b.e.col, b.e.colName, err = b.column("column"); err != nil {
		return err
	}
	srcs, err := b.stringList("regex_list")
	if err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("%s: empty list", b.argPath("regex_list"))
	}
	for i, src := range srcs {
		re, err := compileRegex(fmt.Sprintf("%s[%d]", b.argPath("regex_list"), i), src)
		if err != nil {
			return err
		}
		b.e.res = append(b.e.res, re)
	}
	return nil
}

// outcome of one expectation on one row.
type verdict uint8

const (
	vPass    verdict = iota
	vMissing         // a map expectation skipped a missing value
	vFail
)

// evalValue checks a column-value expectation against v, which is present
// (not missing) unless the expectation evaluates missing values itself.
func (e *expectation) evalValue(v Value) verdict {
	switch e.op {
	case opNotNull:
		if v.Kind.missing() {
			return vFail
		}
		return vPass
	case opNull:
		if v.Kind.missing() {
			return vPass
		}
		return vFail
	case opType:
		for _, t := range e.types {
			if t.accepts(v) {
				return vPass
			}
		}
		return vFail
	case opBetween:
		if e.timeBounds {
			if v.Kind != KindString {
				return vFail
			}
			t, ok := parseISO(v.Text)
			if !ok {
				return vFail
			}
			if e.hasLo && (t.before(e.loT) || e.strictLo && t == e.loT) {
				return vFail
			}
			if e.hasHi && (e.hiT.before(t) || e.strictHi && t == e.hiT) {
				return vFail
			}
			return vPass
		}
		if v.Kind != KindNumber {
			return vFail
		}
		f, ok := v.number()
		return pass(ok && e.inBounds(f))
	case opInSet, opNotInSet:
		in := e.inSet(v)
		return pass(in == (e.op == opInSet))
	case opRegex, opNotRegex:
		if v.Kind != KindString {
			return vFail
		}
		return pass(e.res[0].Match(v.Text) == (e.op == opRegex))
	case opRegexList:
		if v.Kind != KindString {
			return vFail
		}
		for _, re := range e.res {
			m := re.Match(v.Text)
			if m && !e.matchAll {
				return vPass
			}
			if !m && e.matchAll {
				return vFail
			}
		}
		return pass(e.matchAll)
	case opNotRegexList:
		if v.Kind != KindString {
			return vFail
		}
		for _, re := range e.res {
			if re.Match(v.Text) {
				return vFail
			}
		}
		return vPass
	case opLengthBetween:
		if v.Kind != KindString {
			return vFail
		}
		// Python's len counts code points, not bytes.
		return pass(e.inBounds(float64(utf8.RuneCount(v.Text))))
	case opStrftime:
		return pass(v.Kind == KindString && e.format.match(v.Text))
	case opDateutil:
		return pass(v.Kind == KindString && dateutilParseable(v.Text))
	case opJSON:
		return pass(v.Kind == KindString && json.Valid(v.Text))
	}
	return vFail
}

func pass(ok bool) verdict {
	if ok {
		return vPass
	}
	return vFail
}

func (e *expectation) inBounds(f float64) bool {
	if e.hasLo && (f < e.lo || e.strictLo && f == e.lo) {
		return false
	}
	if e.hasHi && (f > e.hi || e.strictHi && f == e.hi) {
		return false
	}
	return true
}

func (e *expectation) inSet(v Value) bool {
	switch v.Kind {
	case KindString:
		s := unsafe.String(unsafe.SliceData(v.Text), len(v.Text))
		if e.strSet == nil {
			for _, m := range e.strList {
				if m == s {
					return true
				}
			}
			return false
		}
		_, ok := e.strSet[s]
		return ok
	case KindNumber:
		f, ok := parseNumber(v.Text)
		if !ok {
			return false
		}
		if e.numSet == nil {
			for _, m := range e.numList {
				if m == f {
					return true
				}
			}
			return false
		}
		_, in := e.numSet[f]
		return in
	case KindTrue:
		return e.boolSet[1]
	case KindFalse:
		return e.boolSet[0]
	}
	return false
}

// evalKeys checks a table-level expectation against the record's keys
// (one with present columns instead is checked on its columns, in
// EvaluateColumns).
func (e *expectation) evalKeys(row *Row) verdict {
	if row.NotObject {
		return vFail
	}
	keys := row.Keys
	switch e.op {
	case opColumnExists:
		return pass(e.columnIndex < len(keys) && string(keys[e.columnIndex]) == e.colName)
	case opColumnsOrdered:
		if len(keys) != len(e.list) {
			return vFail
		}
		for i, k := range keys {
			if string(k) != e.list[i] {
				return vFail
			}
		}
		return vPass
	case opColumnsSet:
		// Every listed column is present; with exact_match, nothing else is.
		for _, want := range e.list {
			found := false
			for _, k := range keys {
				if string(k) == want {
					found = true
					break
				}
			}
			if !found {
				return vFail
			}
		}
		if e.exact {
			for _, k := range keys {
				if !contains(e.list, string(k)) {
					return vFail
				}
			}
		}
		return vPass
	case opColumnCountEqual:
		return pass(float64(len(keys)) == e.lo)
	case opColumnCountBetween:
		return pass(e.inBounds(float64(len(keys))))
	}
	return vFail
}
