package expect

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Value is what a record holds at one column: its kind and its text (a
// string's unescaped bytes, a number's or object's JSON text; nothing for
// missing, null and booleans). Text may alias the caller's buffer; the
// Validator copies what it keeps.
type Value struct {
	Kind Kind
	// Num says how a number's Text holds it: its JSON text, or the 8
	// bytes of an int64 or a float64 (little endian), as a host sends
	// them to a column whose Form is FormNumbers.
	Num  NumForm
	Text []byte
}

// NumForm is how a number Value holds it.
type NumForm uint8

const (
	NumText  NumForm = iota // the number's JSON text
	NumInt                  // an int64's 8 bytes
	NumFloat                // a float64's 8 bytes
)

// number is a number Value's value (false for text that is no number).
// A binary value gives exactly what its text, as the host would have
// written it, parses to: an int64 converts with the same rounding, and
// text parsing refuses infinities (and takes NaN).
func (v Value) number() (float64, bool) {
	switch v.Num {
	case NumInt:
		return float64(int64(binary.LittleEndian.Uint64(v.Text))), true
	case NumFloat:
		f := math.Float64frombits(binary.LittleEndian.Uint64(v.Text))
		return f, !math.IsInf(f, 0)
	}
	return parseNumber(v.Text)
}

// Form is what a column's expectations read of its values, so that a
// plugin can ask the host for no more (Suite.Form).
type Form uint8

const (
	// FormKinds is each value's kind only: whether it is there.
	FormKinds Form = iota
	// FormNumbers is FormText, but numbers may come as their bytes
	// (Value.Num): the column's expectations read a number's value,
	// never its text, but to report it.
	FormNumbers
	// FormText is every value with its text.
	FormText
)

// Column is one column of a batch's rows as the agent sends a value
// field (ABI.md §8.1, §8.5): row r's kind is Kinds[r], the ABI's value
// kind, and its data Data[Offs[r]:Offs[r+1]] (len(Offs) is the rows + 1).
// Kinds 8 and 9, a number as its 8 bytes, read as KindNumber with Num
// NumInt or NumFloat.
type Column struct {
	Kinds []byte
	Offs  []uint32
	Data  []byte
}

// The ABI's kinds for a number sent as its bytes (abi.KindInt,
// abi.KindFloat), which a Value holds as KindNumber and Num.
const (
	kindInt   = 8
	kindFloat = 9
)

// Value is row r's value.
func (c *Column) Value(r int) Value {
	v := Value{Kind: Kind(c.Kinds[r]), Text: c.Data[c.Offs[r]:c.Offs[r+1]]}
	switch v.Kind {
	case kindInt:
		v.Kind, v.Num = KindNumber, NumInt
	case kindFloat:
		v.Kind, v.Num = KindNumber, NumFloat
	}
	return v
}

// Slice is rows lo to hi of the column.
func (c Column) Slice(lo, hi int) Column {
	return Column{Kinds: c.Kinds[lo:hi], Offs: c.Offs[lo : hi+1], Data: c.Data}
}

// columnsOf lays rows' Values out as columns (in the validator's own
// buffers, valid until the next call).
func (v *Validator) columnsOf(rows []Row) []Column {
	n := len(v.s.columns)
	if cap(v.own) < n {
		v.own = make([]Column, n)
	}
	v.own = v.own[:n]
	v.ownData = v.ownData[:0]
	for c := range v.own {
		col := &v.own[c]
		col.Kinds, col.Offs = col.Kinds[:0], append(col.Offs[:0], uint32(len(v.ownData)))
		for r := range rows {
			val := rows[r].Values[c]
			k := byte(val.Kind)
			switch {
			case val.Kind == KindNumber && val.Num == NumInt:
				k = kindInt
			case val.Kind == KindNumber && val.Num == NumFloat:
				k = kindFloat
			}
			v.ownData = append(v.ownData, val.Text...)
			col.Kinds, col.Offs = append(col.Kinds, k), append(col.Offs, uint32(len(v.ownData)))
		}
	}
	// ownData may have moved while growing: point every column at its
	// final array.
	for c := range v.own {
		v.own[c].Data = v.ownData
	}
	return v.own
}

// row is rows[r] with its Values read out of the columns, in scratch
// valid until the next call.
func (v *Validator) row(rows []Row, r int) *Row { return v.rowOf(&rows[r], r) }

// rowOf is row (row r of the last Evaluate) with its Values read out of
// the columns.
func (v *Validator) rowOf(row *Row, r int) *Row {
	v.vals = v.vals[:0]
	for c := range v.cols {
		v.vals = append(v.vals, v.cols[c].Value(r))
	}
	v.whole = *row
	v.whole.Values = v.vals
	return &v.whole
}

// Row is one record as the suite sees it. The caller fills it and may
// reuse it once the record is finished.
type Row struct {
	// Values holds one value per Suite.Columns(), in that order, for
	// Evaluate (EvaluateColumns takes them as columns instead).
	Values []Value
	// Keys are the record's top-level keys, in order; read only when
	// Suite.NeedsKeys(). NotObject says the record is not a JSON object,
	// which fails every table-level expectation.
	Keys      [][]byte
	NotObject bool
	// Key is the record's entity key (the step's `key:`), State that key's
	// current state and Replayed whether the record is a redelivery that
	// was already applied to state; read by Finish, only when
	// Suite.Stateful().
	Key      []byte
	State    []byte
	Replayed bool
}

// Action is what to do with a record.
type Action uint8

const (
	Keep Action = iota // pass it on (possibly flagged invalid)
	Fail               // error it with Validator.AppendReason
	Drop               // remove it
)

// Outcome is the verdict on one record.
type Outcome struct {
	Action Action
	// Valid is false when the record broke an expectation without
	// `mostly`: what the `sluice_valid` metadata says.
	Valid bool
	// Violations counts every expectation the record broke, `mostly` ones
	// included; when non-zero, AppendViolations lists them.
	Violations int
	// SetState says State is the key's new state, to store for the
	// record's key. It aliases the Validator's buffer until the next
	// Finish.
	SetState bool
	State    []byte
}

// partialMax is how many unexpected values per expectation a batch report
// lists, as GX's partial_unexpected_count default.
const partialMax = 20

// observeLimit bounds an observed value's rendering, so one huge string
// cannot bloat a record's metadata.
const observeLimit = 128

// Validator checks records against a suite and keeps the batch's counts.
// It is not safe for concurrent use; a plugin instance has one.
//
// A batch goes Begin, then Evaluate on its rows, then Finish on each row in
// order. Evaluate runs each expectation over all the rows in one tight
// loop rather than each row through every expectation: per (row,
// expectation) that is a few instructions instead of a dispatch and calls,
// which is what costs most in Wasm. Finish then checks uniqueness, which
// needs each key's state as earlier rows left it, and decides the record's
// outcome. Check does both for one row.
type Validator struct {
	s     *Suite
	stats []stats
	rows  int // rows evaluated since Begin
	valid int
	arena []byte // observed values kept for the batch report

	// the rows of the last Evaluate
	base  int      // batch index of its first row
	words int      // mask words per row
	masks []uint64 // per row, a bit per expectation it broke
	// broken says some row of the last Evaluate broke an expectation.
	broken bool

	// the last row finished
	fails  []failure
	obs    []byte // rendered observed values of fails
	key    []byte // the row's key, kept when the key rule is broken
	adds   []uniqueAdd
	now    int64
	hasNow bool
	state  []byte
	keep   []int // indexes of the entries a state rewrite keeps
	scr    []byte
	one    [1]Row

	// cols are the last Evaluate's columns; a row's values are read out
	// of them into whole (a row's Values in vals) only where a row is
	// read whole: a failing row's report, uniqueness, a window's
	// proportion of unique values.
	cols  []Column
	whole Row
	vals  []Value
	// own holds Evaluate's columns, made from its rows' Values.
	own     []Column
	ownData []byte

	report Report

	// windows (window-level expectations and Suite.Window)
	aggs    []agg // per expectation; used by the window-level ones
	seq     int64 // rows evaluated since the validator was made
	first   int64 // seq of the first row since Begin
	started bool  // a time window: the current window has a time
	window  int64 // a time window: the current window's number, floor(t / duration)
	winInfo WindowInfo
}

type failure struct {
	e          *expectation
	start, end int // observed value, JSON, in obs
	absent     bool
	keyRule    bool
}

type span struct{ row, start, end int }

type stats struct {
	elements, missing, unexpected int
	partial                       []span
	observed                      span
	hasObserved                   bool
}

// NewValidator returns a Validator for the suite, ready for a batch.
func (s *Suite) NewValidator() *Validator {
	v := &Validator{s: s, stats: make([]stats, len(s.exps)), words: (len(s.exps) + 63) / 64}
	if len(s.aggs) > 0 {
		v.aggs = make([]agg, len(s.exps))
	}
	for i := range v.stats {
		v.stats[i].partial = make([]span, 0, partialMax)
	}
	return v
}

// Begin starts a batch: counts and report examples start from zero.
func (v *Validator) Begin() {
	for i := range v.stats {
		st := &v.stats[i]
		st.elements, st.missing, st.unexpected, st.hasObserved = 0, 0, 0, false
		st.partial = st.partial[:0]
	}
	v.rows, v.valid = 0, 0
	v.arena = v.arena[:0]
	for _, e := range v.s.aggs {
		v.aggs[e.index].reset()
	}
	v.first, v.started = v.seq, false
}

// Rows is the number of rows evaluated since Begin.
func (v *Validator) Rows() int { return v.rows }

// Check evaluates and finishes one row: Evaluate and Finish for a batch
// of one.
func (v *Validator) Check(row *Row) Outcome {
	v.one[0] = *row
	v.Evaluate(v.one[:])
	var out Outcome
	v.Finish(0, row, &out)
	return out
}

// Evaluate runs every expectation but the uniqueness ones on rows, which
// are the batch's next rows, and counts the results for the report. Each
// row must then be passed to Finish, in order.
func (v *Validator) Evaluate(rows []Row) {
	v.EvaluateColumns(v.columnsOf(rows), rows)
}

// EvaluateColumns is Evaluate for rows whose values come a column at a
// time, as the agent sends them: cols[c] is Suite.Columns()[c] for every
// row, and rows carry the rest (Keys, Key, State, Replayed; their Values
// are not read). Each expectation then reads one column's kinds or values
// in a loop of its own, which in Wasm costs a fraction of reading them
// out of every row. cols are read until the last of the rows is finished.
func (v *Validator) EvaluateColumns(cols []Column, rows []Row) {
	v.cols = cols
	v.base = v.rows
	v.broken = false
	v.rows += len(rows)
	v.seq += int64(len(rows))
	n := len(rows) * v.words
	if cap(v.masks) < n {
		v.masks = make([]uint64, n)
	}
	v.masks = v.masks[:n]
	clear(v.masks)
	for _, e := range v.s.exps {
		if e.op == opUnique || e.op == opCompoundUnique {
			continue // Finish checks these, row by row
		}
		if e.agg {
			v.aggregate(e, rows) // judged over the window, never on a row
			continue
		}
		st := &v.stats[e.index]
		st.elements += len(rows)
		var col *Column
		if e.col >= 0 {
			col = &cols[e.col]
		}
		// The cheapest checks get a loop of their own; the rest go through
		// evalValue per row.
		switch {
		case e.op == opNotNull:
			v.notNull(e, rows, col.Kinds)
		case e.op == opNull:
			for r, k := range col.Kinds {
				if Kind(k) > KindNull {
					v.unexpected(e, rows, r)
				}
			}
		case e.op == opColumnExists && e.columnIndex < 0:
			for r, k := range col.Kinds {
				if Kind(k) == KindAbsent {
					v.unexpected(e, rows, r)
				}
			}
		case e.present != nil:
			// A column set checked without the record's keys (no
			// exact_match): whether each listed column is there.
			for r := range rows {
				for _, c := range e.present {
					if Kind(cols[c].Kinds[r]) == KindAbsent {
						v.unexpected(e, rows, r)
						break
					}
				}
			}
		case e.table || e.op == opColumnExists:
			for r := range rows {
				row := &rows[r]
				fail := e.evalKeys(row) == vFail
				if e.table && e.present == nil && (v.base+r == 0 || fail && st.unexpected == 0) {
					// GX reports the observed column list of a table
					// expectation: the first row's, or the first failing one's.
					start := len(v.arena)
					v.arena = appendKeys(v.arena, &rows[r])
					st.observed, st.hasObserved = span{v.base + r, start, len(v.arena)}, true
				}
				if fail {
					v.unexpected(e, rows, r)
				}
			}
		case e.op == opType && len(e.types) == 1 && e.types[0].class == tcInt && e.types[0].bits == 64 && !e.types[0].unsigned:
			for r := range rows {
				val := col.Value(r)
				if val.Kind <= KindNull {
					st.missing++
				} else if val.Kind != KindNumber || !int64Literal(val.Text) {
					v.unexpected(e, rows, r)
				}
			}
		case e.op == opType && len(e.types) == 1 && e.types[0].class == tcDatetime:
			for r := range rows {
				val := col.Value(r)
				if val.Kind <= KindNull {
					st.missing++
				} else if val.Kind != KindString {
					v.unexpected(e, rows, r)
				} else if _, ok := parseISO(val.Text); !ok {
					v.unexpected(e, rows, r)
				}
			}
		case e.op == opBetween && !e.timeBounds:
			v.between(e, rows, col, st)
		case (e.op == opInSet || e.op == opNotInSet) && e.strSet == nil:
			in := e.op == opInSet
			for r := range rows {
				val := col.Value(r)
				if val.Kind <= KindNull {
					st.missing++
					continue
				}
				found := false
				if val.Kind == KindString {
					for _, m := range e.strList {
						if string(val.Text) == m {
							found = true
							break
						}
					}
				} else {
					found = e.inSet(val)
				}
				if found != in {
					v.unexpected(e, rows, r)
				}
			}
		case e.op == opType && len(e.types) == 1 && e.types[0].class != tcInt && e.types[0].class != tcDatetime:
			// A kind check: no text to look at.
			want := kindsOf(e.types[0].class)
			for r := range rows {
				k := col.Value(r).Kind
				if k <= KindNull {
					st.missing++
				} else if want&(1<<k) == 0 {
					v.unexpected(e, rows, r)
				}
			}
		default:
			for r := range rows {
				val := col.Value(r)
				if e.ignoresMissing && val.Kind <= KindNull {
					st.missing++
				} else if e.evalValue(val) == vFail {
					v.unexpected(e, rows, r)
				}
			}
		}
	}
}

// between checks a column against e's bounds. The column's slices and
// the bounds are read into locals first: Go does not move loads out of a
// loop, and in Wasm each was a checked memory access a row, about as dear
// as the check itself (docs/BENCHMARKS.md, session 24).
func (v *Validator) between(e *expectation, rows []Row, col *Column, st *stats) {
	kinds, offs, data := col.Kinds, col.Offs, col.Data
	hasLo, lo, strictLo, hasHi, hi, strictHi := e.hasLo, e.lo, e.strictLo, e.hasHi, e.hi, e.strictHi
	for r, k := range kinds {
		// A number as its bytes, the usual case from a frame, without
		// making a Value: Value.number written out, since it does not
		// inline and the call cost ~20 ns a row in Wasm
		// (BenchmarkSalesFrame, 106-110 -> 124-130).
		if k == kindFloat || k == kindInt {
			o := offs[r]
			u := binary.LittleEndian.Uint64(data[o : o+8])
			f := math.Float64frombits(u)
			if k == kindInt {
				f = float64(int64(u))
			}
			// e.inBounds written out over the locals.
			if math.IsInf(f, 0) || hasLo && (f < lo || strictLo && f == lo) || hasHi && (f > hi || strictHi && f == hi) {
				v.unexpected(e, rows, r)
			}
			continue
		}
		val := col.Value(r)
		if val.Kind <= KindNull {
			st.missing++
			continue
		}
		if val.Kind != KindNumber {
			v.unexpected(e, rows, r)
			continue
		}
		if f, ok := val.number(); !ok || !e.inBounds(f) {
			v.unexpected(e, rows, r)
		}
	}
}

// notNull marks the rows whose kind is absent or null (0 or 1). Eight rows
// are looked at a word at a time, row by row only in a word that has
// one: in Wasm a loop iteration per row was most of a not-null check's
// cost, and most words have none (docs/BENCHMARKS.md, session 24).
func (v *Validator) notNull(e *expectation, rows []Row, kinds []byte) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	r := 0
	for ; r+8 <= len(kinds); r += 8 {
		// t has a zero byte where kinds has a 0 or a 1, and a zero byte
		// is found with the usual borrow test (exact for "any").
		t := binary.LittleEndian.Uint64(kinds[r:]) &^ ones
		if (t-ones)&^t&highs == 0 {
			continue
		}
		for j := r; j < r+8; j++ {
			if Kind(kinds[j]) <= KindNull {
				v.unexpected(e, rows, j)
			}
		}
	}
	for ; r < len(kinds); r++ {
		if Kind(kinds[r]) <= KindNull {
			v.unexpected(e, rows, r)
		}
	}
}

// kindsOf is the set of kinds, as bits, that a kind-only type accepts.
func kindsOf(c typeClass) uint16 {
	switch c {
	case tcFloat:
		return 1 << KindNumber
	case tcString:
		return 1 << KindString
	case tcBool:
		return 1<<KindTrue | 1<<KindFalse
	case tcDict:
		return 1 << KindObject
	case tcList:
		return 1 << KindArray
	case tcObject:
		return 1<<KindString | 1<<KindObject | 1<<KindArray
	}
	return 0
}

// unexpected records that rows[r] broke e.
func (v *Validator) unexpected(e *expectation, rows []Row, r int) {
	v.broken = true
	v.masks[r*v.words+e.index/64] |= 1 << (e.index % 64)
	st := &v.stats[e.index]
	st.unexpected++
	if len(st.partial) < partialMax {
		start := len(v.arena)
		v.arena, _ = appendObserved(v.arena, e, v.row(rows, r))
		st.partial = append(st.partial, span{v.base + r, start, len(v.arena)})
	}
}

// Finish completes row r of the last Evaluate: it checks the uniqueness
// expectations against row.State (the key's state as earlier rows left
// it) and sets out to what to do with the record. AppendReason and
// AppendViolations then describe it. out is the caller's, not a result:
// a struct this size returned per row is a memory copy per row in Wasm.
func (v *Validator) Finish(r int, row *Row, out *Outcome) {
	s := v.s
	row = v.rowOf(row, r)
	v.fails, v.obs, v.adds = v.fails[:0], v.obs[:0], v.adds[:0]
	hard, keyRule := false, false
	mask := v.masks[r*v.words : (r+1)*v.words]
	if !v.clean(r) {
		for _, e := range s.exps {
			if mask[e.index/64]&(1<<(e.index%64)) != 0 {
				v.broke(e, row, false)
				hard = hard || !e.soft
			}
		}
	}
	if len(s.unique) > 0 {
		v.now, v.hasNow = 0, false
		if s.timeCol >= 0 {
			v.now, v.hasNow = eventTime(row.Values[s.timeCol])
		}
		for _, e := range s.unique {
			st := &v.stats[e.index]
			st.elements++
			switch vd, broken := v.checkUnique(e, row); vd {
			case vMissing:
				st.missing++
			case vFail:
				st.unexpected++
				if len(st.partial) < partialMax {
					start := len(v.arena)
					v.arena, _ = appendObserved(v.arena, e, row)
					st.partial = append(st.partial, span{v.base + r, start, len(v.arena)})
				}
				v.broke(e, row, broken)
				hard = hard || !e.soft || broken
				keyRule = keyRule || broken
			}
		}
		if len(v.fails) > 1 {
			// Uniqueness was checked last; report in suite order.
			sortFails(v.fails)
		}
	}
	*out = Outcome{Valid: !hard, Violations: len(v.fails)}
	switch {
	case keyRule:
		// A wrongly keyed step cannot check uniqueness at all: that is a
		// pipeline mistake to surface, whatever on_failure says.
		out.Action = Fail
	case hard && s.OnFailure == ModeFail:
		out.Action = Fail
	case hard && s.OnFailure == ModeDrop:
		out.Action = Drop
	}
	if !hard {
		v.valid++
	}
	// Only records that go on are remembered: a rejected record's corrected
	// resend must not be taken for a duplicate of it.
	if out.Action == Keep && len(v.adds) > 0 && !row.Replayed {
		out.State, out.SetState = v.encodeState(row.State), true
	}
}

// PassedAll reports whether every row of the last Evaluate is finished
// already, as Passed would say of each (none broke an expectation, and
// the suite checks no uniqueness), and if so counts them as Passed
// would: the caller then skips the rows. In Wasm even a call per row is
// much of a simple suite's cost, and most batches pass whole.
func (v *Validator) PassedAll() bool {
	if len(v.s.unique) > 0 || v.broken {
		return false
	}
	v.valid += v.rows - v.base
	return true
}

// Passed reports whether row r of the last Evaluate is finished already:
// it broke no expectation and the suite checks no uniqueness, so Finish
// would keep it, valid, with nothing to say. Passed counts it as Finish
// would; the caller then skips Finish. Most rows of most batches pass, and
// in Wasm a call per row is much of a simple suite's cost.
func (v *Validator) Passed(r int) bool {
	if len(v.s.unique) > 0 || !v.clean(r) {
		return false
	}
	v.valid++
	return true
}

// PassClean passes the rows of the last Evaluate from r on that Passed
// would pass, counting them as it does, and returns the first it would
// not (or the number of rows): the caller finishes that one and goes on
// from the next. A batch with a bad row in it is not PassedAll, and a
// call per good row around the bad ones cost as much as the checks, in
// Wasm. With uniqueness expectations it passes none and returns r.
func (v *Validator) PassClean(r int) int {
	if len(v.s.unique) > 0 {
		return r
	}
	n, from := v.rows-v.base, r
	if v.words == 1 {
		for r < n && v.masks[r] == 0 {
			r++
		}
	} else {
		for r < n && v.clean(r) {
			r++
		}
	}
	v.valid += r - from
	return r
}

// clean reports whether row r of the last Evaluate broke no expectation
// Evaluate checks.
func (v *Validator) clean(r int) bool {
	for _, w := range v.masks[r*v.words : (r+1)*v.words] {
		if w != 0 {
			return false
		}
	}
	return true
}

// broke adds e to the row's failures, with what the row holds.
func (v *Validator) broke(e *expectation, row *Row, keyRule bool) {
	f := failure{e: e, start: len(v.obs), keyRule: keyRule}
	v.obs, f.absent = appendObserved(v.obs, e, row)
	f.end = len(v.obs)
	if keyRule {
		v.key = append(v.key[:0], row.Key...)
	}
	v.fails = append(v.fails, f)
}

// sortFails orders a row's failures by expectation (an insertion sort:
// there are a few, nearly in order).
func sortFails(fs []failure) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].e.index < fs[j-1].e.index; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// appendObserved renders what the row holds for e, as JSON, for reasons,
// metadata and reports; absent says the field is not in the record.
func appendObserved(dst []byte, e *expectation, row *Row) (out []byte, absent bool) {
	switch e.op {
	case opColumnsSet:
		if e.present != nil {
			return appendMissing(dst, e, row), false
		}
		return appendKeys(dst, row), false
	case opColumnsOrdered:
		return appendKeys(dst, row), false
	case opColumnCountEqual, opColumnCountBetween:
		if row.NotObject {
			return append(dst, `"<not a JSON object>"`...), false
		}
		return strconv.AppendInt(dst, int64(len(row.Keys)), 10), false
	case opColumnExists:
		if e.columnIndex >= 0 {
			return appendKeys(dst, row), false
		}
		return append(dst, "null"...), true
	case opCompoundUnique:
		dst = append(dst, '[')
		for i, c := range e.cols {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, row.Values[c], observeLimit)
		}
		return append(dst, ']'), false
	}
	val := row.Values[e.col]
	return appendValue(dst, val, observeLimit), val.Kind == KindAbsent
}

// appendMissing writes {"missing":[...]}: the listed columns a record
// lacks, for a column set checked without the record's key list.
func appendMissing(dst []byte, e *expectation, row *Row) []byte {
	dst = append(dst, `{"missing":[`...)
	n := 0
	for i, c := range e.present {
		if row.Values[c].Kind != KindAbsent {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONStr(dst, e.list[i])
		n++
	}
	return append(dst, "]}"...)
}

func appendKeys(dst []byte, row *Row) []byte {
	if row.NotObject {
		return append(dst, `"<not a JSON object>"`...)
	}
	dst = append(dst, '[')
	for i, k := range row.Keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k, observeLimit)
	}
	return append(dst, ']')
}

// AppendReason appends the one-line reason for the last row checked:
// `suite: expectation(column) observed value; ...`, every broken
// expectation in suite order.
func (v *Validator) AppendReason(dst []byte) []byte {
	dst = append(dst, v.s.Name...)
	dst = append(dst, ": "...)
	for i, f := range v.fails {
		if i > 0 {
			dst = append(dst, "; "...)
		}
		dst = appendTitle(dst, f.e)
		if f.keyRule {
			dst = append(dst, " cannot be checked: "...)
			dst = v.appendKeyRule(dst, f.e)
			continue
		}
		dst = append(dst, " observed "...)
		if f.absent {
			dst = append(dst, "missing"...)
		} else {
			dst = append(dst, v.obs[f.start:f.end]...)
		}
		if f.e.soft {
			dst = append(dst, " (mostly "...)
			dst = append(dst, f.e.mostlyText...)
			dst = append(dst, ')')
		}
	}
	return dst
}

func appendTitle(dst []byte, e *expectation) []byte {
	dst = append(dst, e.name...)
	switch {
	case len(e.colNames) > 0:
		dst = append(dst, '(')
		for i, c := range e.colNames {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, c...)
		}
		dst = append(dst, ')')
	case e.col >= 0:
		dst = append(dst, '(')
		dst = append(dst, e.colName...)
		dst = append(dst, ')')
	}
	return dst
}

func (v *Validator) appendKeyRule(dst []byte, e *expectation) []byte {
	dst = append(dst, "the step's key "...)
	dst = appendJSONString(dst, v.key, observeLimit)
	dst = append(dst, " is not the value of "...)
	for i, c := range e.colNames {
		switch {
		case i == 0:
		case i == len(e.colNames)-1:
			dst = append(dst, " or "...)
		default:
			dst = append(dst, ", "...)
		}
		dst = append(dst, c...)
	}
	dst = append(dst, ": uniqueness is remembered per key, so key the step by "...)
	if len(e.colNames) > 1 {
		dst = append(dst, "one of them ("...)
	} else {
		dst = append(dst, "it ("...)
	}
	dst = append(dst, "key: "...)
	dst = append(dst, e.colNames[0]...)
	return append(dst, ')')
}

// AppendViolations appends, as a compact JSON array, every expectation the
// last row broke: {"expectation", "column" (or "column_list"),
// "observed_value"}, plus "mostly" for those judged per batch and "error"
// where the expectation could not be checked.
func (v *Validator) AppendViolations(dst []byte) []byte {
	dst = append(dst, '[')
	for i, f := range v.fails {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f.e.jsonHead...)
		dst = append(dst, `,"observed_value":`...)
		dst = append(dst, v.obs[f.start:f.end]...)
		if f.e.soft {
			dst = append(dst, `,"mostly":`...)
			dst = append(dst, f.e.mostlyText...)
		}
		if f.keyRule {
			v.scr = v.appendKeyRule(v.scr[:0], f.e)
			dst = append(dst, `,"error":`...)
			dst = appendJSONString(dst, v.scr, 0)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}
