package expect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mode is what happens to a record that breaks an expectation (one without
// `mostly`, which is judged per batch instead).
type Mode uint8

const (
	// ModeFail errors the record with a reason listing what it broke; it
	// keeps its bytes and goes down the pipeline's error path.
	ModeFail Mode = iota
	// ModeFlag lets the record through, marked invalid in its metadata.
	ModeFlag
	// ModeDrop removes the record.
	ModeDrop
)

var modeNames = map[string]Mode{"fail": ModeFail, "flag": ModeFlag, "drop": ModeDrop}

type reportMode uint8

const (
	reportAuto  reportMode = iota // a report when the suite has a `mostly` expectation
	reportBatch                   // a report for every batch
	reportNone
)

// Horizon bounds what a uniqueness expectation remembers per key: at most
// Count values, and only those seen within Duration (in event time, from
// TimeColumn) before the record being checked.
type Horizon struct {
	Count      int
	Duration   time.Duration
	TimeColumn string
}

// defaultCount caps a duration-only horizon, so a burst of distinct values
// within the duration cannot grow one key's state without bound.
const defaultCount = 10000

// Suite is a parsed expectation suite, ready to check records. It is
// immutable after Parse; each Validator holds the per-batch counts.
type Suite struct {
	Name      string
	OnFailure Mode
	Horizon   Horizon

	report    reportMode
	exps      []*expectation
	columns   []string
	colIndex  map[string]int
	needsKeys bool
	unique    []*expectation
	timeCol   int // index in columns of Horizon.TimeColumn, -1 if none
	anyMostly bool

	// Window is the suite's tumbling window (window:), zero when unset.
	Window    Window
	winCol    int            // index in columns of Window.TimeColumn, -1 if none
	aggs      []*expectation // window-level expectations
	reportSet bool           // report: written in the config
	forms     []Form         // per column: what its expectations read
}

// Columns lists the record fields the suite reads, in the order a Row's
// Values must hold them. Names are dotted paths (event_data.amount).
func (s *Suite) Columns() []string { return s.columns }

// NeedsKeys reports whether an expectation looks at the record's list of
// top-level keys (Row.Keys), so the caller must provide it.
func (s *Suite) NeedsKeys() bool { return s.needsKeys }

// Stateful reports whether the suite has uniqueness expectations, which
// need per-key state (Row.Key, Row.State) and a keyed step.
func (s *Suite) Stateful() bool { return len(s.unique) > 0 }

// Windowed reports whether the suite has a window: its report is built per
// window (see Validator.WindowSegment) rather than per batch.
func (s *Suite) Windowed() bool { return s.Window.Count > 0 || s.Window.Duration > 0 }

// Reports reports whether a GX result is built for every batch: when
// `report: batch` is set, or (by default) when an expectation has `mostly`.
func (s *Suite) Reports() bool {
	if s.Windowed() {
		return false // a report per window instead
	}
	return s.report == reportBatch || (s.report == reportAuto && s.anyMostly)
}

// KeyRule explains, for a suite with uniqueness expectations, how its step
// must be keyed; "" for a suite without.
func (s *Suite) KeyRule() string {
	if len(s.unique) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "suite %s checks uniqueness, which is remembered per key, so its step needs `key:` set to ", s.Name)
	for i, e := range s.unique {
		if i > 0 {
			b.WriteString(", and ")
		}
		if len(e.colNames) == 1 {
			fmt.Fprintf(&b, "%s (for %s)", e.colNames[0], e.name)
		} else {
			fmt.Fprintf(&b, "one of %s (for %s)", strings.Join(e.colNames, ", "), e.name)
		}
	}
	b.WriteString(", and `state: {namespace: NAME}`")
	return b.String()
}

// Len is the number of expectations.
func (s *Suite) Len() int { return len(s.exps) }

// Parse reads a suite from its JSON config. Unknown keys and arguments are
// errors, and every error starts with the JSON path of what is wrong
// (expectations[2].expect_column_values_to_be_between.min_value), so the
// agent's lint can point at the line of the suite file.
func Parse(raw []byte) (*Suite, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return nil, errors.New("no suite configured: set at least `expectations:` (a list of GX expectations)")
	}
	top, err := objectFields("", raw)
	if err != nil {
		return nil, err
	}
	s := &Suite{Name: "suite", colIndex: map[string]int{}, timeCol: -1, winCol: -1}
	var exps json.RawMessage
	var horizon, window *field
	for i := range top {
		f := &top[i]
		switch f.key {
		case "suite":
			if s.Name, err = wantString(f.key, f.raw); err != nil {
				return nil, err
			}
			if s.Name == "" {
				return nil, errors.New("suite: want a name, got an empty string")
			}
		case "on_failure":
			name, err := wantString(f.key, f.raw)
			if err != nil {
				return nil, err
			}
			m, ok := modeNames[name]
			if !ok {
				return nil, fmt.Errorf("on_failure: want fail, flag or drop, got %q", name)
			}
			s.OnFailure = m
		case "report":
			name, err := wantString(f.key, f.raw)
			if err != nil {
				return nil, err
			}
			s.reportSet = name != "auto"
			switch name {
			case "auto":
				s.report = reportAuto
			case "batch":
				s.report = reportBatch
			case "none":
				s.report = reportNone
			default:
				return nil, fmt.Errorf("report: want auto, batch or none, got %q", name)
			}
		case "horizon":
			horizon = f
		case "window":
			window = f
		case "expectations":
			exps = f.raw
		default:
			return nil, fmt.Errorf("%s: unknown key (want suite, on_failure, report, horizon, window or expectations)", f.key)
		}
	}
	if exps == nil {
		return nil, errors.New("expectations: missing: a suite needs at least one expectation")
	}
	list, err := arrayItems("expectations", exps)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("expectations: empty: a suite needs at least one expectation")
	}
	for i, item := range list {
		e, err := s.parseExpectation(fmt.Sprintf("expectations[%d]", i), item)
		if err != nil {
			return nil, err
		}
		e.index = i
		s.exps = append(s.exps, e)
		if e.soft {
			s.anyMostly = true
		}
		if e.op == opUnique || e.op == opCompoundUnique {
			for _, u := range s.unique {
				if u.uid == e.uid {
					return nil, fmt.Errorf("expectations[%d]: the same uniqueness expectation as expectations[%d]", i, u.index)
				}
			}
			s.unique = append(s.unique, e)
		}
		if e.agg {
			s.aggs = append(s.aggs, e)
		}
	}
	if err := s.parseHorizon(horizon); err != nil {
		return nil, err
	}
	if err := s.parseWindow(window); err != nil {
		return nil, err
	}
	s.forms = s.columnForms()
	return s, nil
}

// Form says what the expectations on column i (of Columns) read of its
// values: a plugin asks the host for no more, and must then fill the
// column's Values in that form (FormNumbers: a number as text or as its
// bytes, Value.Num saying which; FormKinds: Text may be empty).
func (s *Suite) Form(i int) Form { return s.forms[i] }

// columnForms decides each column's Form: the least its expectations
// need, and text for any expectation not known to need less. Only the
// expectations whose every path reads a number through Value.number are
// FormNumbers, so binary values never reach code that reads Text as a
// number's text.
func (s *Suite) columnForms() []Form {
	forms := make([]Form, len(s.columns))
	need := func(c int, f Form) {
		if c >= 0 {
			forms[c] = max(forms[c], f)
		}
	}
	need(s.timeCol, FormText)
	need(s.winCol, FormText)
	for _, e := range s.exps {
		for _, c := range e.cols {
			need(c, FormText)
		}
		for _, c := range e.present {
			need(c, FormText)
		}
		switch {
		case e.op == opNotNull && !e.agg:
			need(e.col, FormKinds)
		case e.op == opBetween && !e.timeBounds && !e.agg:
			need(e.col, FormNumbers)
		default:
			need(e.col, FormText)
		}
	}
	return forms
}

func (s *Suite) parseHorizon(f *field) error {
	if f == nil {
		if len(s.unique) > 0 {
			u := s.unique[0]
			return fmt.Errorf("horizon: missing: expectations[%d] (%s) remembers values per key, so the suite must bound how many: "+
				"set horizon.count (values per key) and/or horizon.duration with horizon.time_column (event time)", u.index, u.name)
		}
		return nil
	}
	if len(s.unique) == 0 {
		return errors.New("horizon: set, but it only applies to uniqueness expectations and the suite has none")
	}
	fs, err := objectFields("horizon", f.raw)
	if err != nil {
		return err
	}
	for _, hf := range fs {
		path := "horizon." + hf.key
		switch hf.key {
		case "count":
			n, err := wantInt(path, hf.raw)
			if err != nil {
				return err
			}
			if n < 1 || n > 1_000_000 {
				return fmt.Errorf("%s: want 1 to 1000000 values per key, got %d", path, n)
			}
			s.Horizon.Count = int(n)
		case "duration":
			str, err := wantString(path, hf.raw)
			if err != nil {
				return err
			}
			d, err := time.ParseDuration(str)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: want a positive duration such as 24h or 90m, got %q", path, str)
			}
			s.Horizon.Duration = d
		case "time_column":
			col, err := wantString(path, hf.raw)
			if err != nil {
				return err
			}
			if err := checkColumn(path, col); err != nil {
				return err
			}
			s.Horizon.TimeColumn = col
		default:
			return fmt.Errorf("%s: unknown key (want count, duration or time_column)", path)
		}
	}
	switch {
	case s.Horizon.Count == 0 && s.Horizon.Duration == 0:
		return errors.New("horizon: set count, duration or both")
	case s.Horizon.Duration > 0 && s.Horizon.TimeColumn == "":
		return errors.New("horizon.duration: needs horizon.time_column, the field holding each record's event time")
	case s.Horizon.Duration == 0 && s.Horizon.TimeColumn != "":
		return errors.New("horizon.time_column: only used with horizon.duration, which is not set")
	}
	if s.Horizon.TimeColumn != "" {
		s.timeCol = s.addColumn(s.Horizon.TimeColumn)
	}
	if s.Horizon.Count == 0 {
		s.Horizon.Count = defaultCount
	}
	return nil
}

func (s *Suite) addColumn(name string) int {
	if i, ok := s.colIndex[name]; ok {
		return i
	}
	s.colIndex[name] = len(s.columns)
	s.columns = append(s.columns, name)
	return len(s.columns) - 1
}

// gxEntryKeys are the keys of an expectation in GX's own JSON form, 0.x
// (expectation_type) or 1.x (type); those other than the type and kwargs
// are bookkeeping that does not change what is checked.
var gxEntryKeys = map[string]bool{
	"expectation_type": true, "type": true, "kwargs": true, "meta": true, "id": true,
	"notes": true, "rendered_content": true, "description": true, "severity": true, "ge_cloud_id": true,
}

func (s *Suite) parseExpectation(path string, raw json.RawMessage) (*expectation, error) {
	fs, err := objectFields(path, raw)
	if err != nil {
		return nil, err
	}
	var name, kwPath string
	var kwargs json.RawMessage
	gx := false
	for _, f := range fs {
		if f.key == "expectation_type" || f.key == "type" {
			gx = true
		}
	}
	if gx {
		for _, f := range fs {
			switch {
			case f.key == "expectation_type" || f.key == "type":
				if name, err = wantString(path+"."+f.key, f.raw); err != nil {
					return nil, err
				}
			case f.key == "kwargs":
				kwargs = f.raw
			case !gxEntryKeys[f.key]:
				return nil, fmt.Errorf("%s.%s: unknown key in a GX expectation (want expectation_type and kwargs)", path, f.key)
			}
		}
		if kwargs == nil {
			return nil, fmt.Errorf("%s: missing kwargs", path)
		}
		kwPath = path + ".kwargs"
	} else {
		if len(fs) != 1 {
			keys := make([]string, len(fs))
			for i, f := range fs {
				keys[i] = f.key
			}
			return nil, fmt.Errorf("%s: want one expectation, written as its name with its arguments "+
				"(expect_column_values_to_not_be_null: {column: user_id}), or GX's {expectation_type, kwargs}; got keys %s",
				path, strings.Join(keys, ", "))
		}
		name, kwargs, kwPath = fs[0].key, fs[0].raw, path+"."+fs[0].key
	}
	sp, ok := specs[name]
	if !ok {
		msg := fmt.Sprintf("%s: unknown expectation %q", path, name)
		if near := nearest(name); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
		return nil, errors.New(msg)
	}
	kw, err := objectFields(kwPath, kwargs)
	if err != nil {
		return nil, err
	}
	b := &builder{suite: s, path: kwPath, name: name, args: map[string]json.RawMessage{}}
	for _, f := range kw {
		switch {
		case ignoredKwargs[f.key]:
			continue
		case f.key == "row_condition" || f.key == "condition_parser":
			return nil, fmt.Errorf("%s.%s: conditional expectations are not supported; route the records it selects to their own validate step with a switch", kwPath, f.key)
		case f.key == "mostly" && sp.mapExp:
		case !contains(sp.args, f.key):
			want := append([]string(nil), sp.args...)
			if sp.mapExp {
				want = append(want, "mostly")
			}
			return nil, fmt.Errorf("%s.%s: unknown argument of %s (want %s)", kwPath, f.key, name, strings.Join(want, ", "))
		}
		if string(f.raw) != "null" { // GX writes unset optional arguments as null
			b.args[f.key] = f.raw
		}
	}
	e := &expectation{name: name, path: kwPath, op: sp.op, mostly: 1, col: -1, ignoresMissing: sp.mapExp && sp.op != opNotNull && sp.op != opNull}
	var compact bytes.Buffer
	if err := json.Compact(&compact, kwargs); err == nil {
		e.kwargs = compact.Bytes()
	}
	b.e = e
	if sp.mapExp {
		if raw, ok := b.args["mostly"]; ok {
			m, err := wantNumber(kwPath+".mostly", raw)
			if err != nil {
				return nil, err
			}
			if m < 0 || m > 1 {
				return nil, fmt.Errorf("%s.mostly: want a fraction from 0 to 1, got %s", kwPath, raw)
			}
			e.mostly, e.soft, e.mostlyText = m, m < 1, appendFloat(nil, m)
		}
	}
	if err := sp.build(b); err != nil {
		return nil, err
	}
	switch e.op {
	case opColumnsOrdered, opColumnsSet, opColumnCountEqual, opColumnCountBetween:
		e.table = true
	}
	e.jsonHead = appendJSONStr(append(e.jsonHead, `{"expectation":`...), e.name)
	switch {
	case e.op == opCompoundUnique:
		e.jsonHead = append(e.jsonHead, `,"column_list":[`...)
		for j, c := range e.colNames {
			if j > 0 {
				e.jsonHead = append(e.jsonHead, ',')
			}
			e.jsonHead = appendJSONStr(e.jsonHead, c)
		}
		e.jsonHead = append(e.jsonHead, ']')
	case e.col >= 0:
		e.jsonHead = appendJSONStr(append(e.jsonHead, `,"column":`...), e.colName)
	}
	if e.op == opUnique || e.op == opCompoundUnique {
		h := fnv.New32a()
		h.Write([]byte(e.name))
		for _, c := range e.colNames {
			h.Write([]byte{0})
			h.Write([]byte(c))
		}
		e.uid = h.Sum32()
	}
	return e, nil
}

// ignoredKwargs are GX's standard arguments that shape GX's output rather
// than what is checked; they are accepted so a pasted suite loads.
var ignoredKwargs = map[string]bool{"result_format": true, "include_config": true, "catch_exceptions": true, "meta": true}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest suggests a known expectation within a few edits of a typo.
func nearest(name string) string {
	best, bestD := "", 4
	for known := range specs {
		if d := editDistance(name, known); d < bestD || (d == bestD && known < best) {
			best, bestD = known, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// builder reads one expectation's arguments.
type builder struct {
	suite *Suite
	e     *expectation
	path  string
	name  string
	args  map[string]json.RawMessage
}

func (b *builder) argPath(arg string) string { return b.path + "." + arg }

func (b *builder) missing(arg string) error {
	return fmt.Errorf("%s: missing %s, which %s needs", b.path, arg, b.name)
}

// column reads a column argument and registers it as a field to read.
func (b *builder) column(arg string) (int, string, error) {
	raw, ok := b.args[arg]
	if !ok {
		return -1, "", b.missing(arg)
	}
	name, err := wantString(b.argPath(arg), raw)
	if err != nil {
		return -1, "", err
	}
	if err := checkColumn(b.argPath(arg), name); err != nil {
		return -1, "", err
	}
	return b.suite.addColumn(name), name, nil
}

func (b *builder) optString(arg string) (string, bool, error) {
	raw, ok := b.args[arg]
	if !ok {
		return "", false, nil
	}
	s, err := wantString(b.argPath(arg), raw)
	return s, true, err
}

func (b *builder) optBool(arg string, def bool) (bool, error) {
	raw, ok := b.args[arg]
	if !ok {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, fmt.Errorf("%s: want true or false, got %s", b.argPath(arg), short(raw))
	}
	return v, nil
}

func (b *builder) optInt(arg string) (int64, bool, error) {
	raw, ok := b.args[arg]
	if !ok {
		return 0, false, nil
	}
	n, err := wantInt(b.argPath(arg), raw)
	return n, true, err
}

func (b *builder) stringList(arg string) ([]string, error) {
	raw, ok := b.args[arg]
	if !ok {
		return nil, b.missing(arg)
	}
	items, err := arrayItems(b.argPath(arg), raw)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		if out[i], err = wantString(fmt.Sprintf("%s[%d]", b.argPath(arg), i), it); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkColumn enforces what the host can read: a dotted path of keys made
// of letters, digits, _ and -. A key with other characters cannot be
// addressed, and saying so here beats a load error about a field.
func checkColumn(path, name string) error {
	if name == "" {
		return fmt.Errorf("%s: want a column name, got an empty string", path)
	}
	for _, key := range strings.Split(name, ".") {
		if key == "" {
			return fmt.Errorf("%s: %q is not a field path: empty key between dots", path, name)
		}
		for i := 0; i < len(key); i++ {
			c := key[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("%s: %q is not a field path: keys are letters, digits, _ and -, nested keys are joined by dots", path, name)
			}
		}
	}
	return nil
}

// field is one key of a JSON object, in the order written.
type field struct {
	key string
	raw json.RawMessage
}

// objectFields splits a JSON object into its keys in order, refusing
// duplicates, which a map would silently merge.
func objectFields(path string, raw []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", orConfig(path), err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s: want a mapping, got %s", orConfig(path), short(raw))
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: not valid JSON: %v", orConfig(path), err)
		}
		key := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s: not valid JSON: %v", join(path, key), err)
		}
		for _, f := range out {
			if f.key == key {
				return nil, fmt.Errorf("%s: set twice", join(path, key))
			}
		}
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", orConfig(path), err)
	}
	return out, nil
}

func arrayItems(path string, raw []byte) ([]json.RawMessage, error) {
	var items []json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
		return nil, fmt.Errorf("%s: want a list, got %s", path, short(raw))
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", path, err)
	}
	return items, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orConfig(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

// short renders a config value for an error message.
func short(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	s := b.String()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func wantString(path string, raw []byte) (string, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%s: want a string, got %s", path, short(raw))
	}
	return s, nil
}

func wantNumber(path string, raw []byte) (float64, error) {
	f, ok := number(raw)
	if !ok {
		return 0, fmt.Errorf("%s: want a number, got %s", path, short(raw))
	}
	return f, nil
}

func number(raw []byte) (float64, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || !(t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(t), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

func wantInt(path string, raw []byte) (int64, error) {
	f, ok := number(raw)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("%s: want a whole number, got %s", path, short(raw))
	}
	return int64(f), nil
}

// Names lists the supported expectations, sorted.
func Names() []string {
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// compileRegex compiles a GX regex with Go's regexp (RE2).
func compileRegex(path, src string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%s: not a regular expression Go's regexp (RE2) accepts; lookarounds and backreferences are not supported: %v", path, err)
	}
	return re, nil
}
