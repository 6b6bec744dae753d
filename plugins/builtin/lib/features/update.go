package features

import (
	"math"
	"slices"
	"time"
)

// Value is one input field of an event; which member holds it depends on
// the Field's Type.
type Value struct {
	Int int64   // TypeInt; TypeTime as ns since the epoch
	Num float64 // TypeNumber
	Str []byte  // TypeString; may alias the caller's buffer
	Ok  bool    // present and not null
}

// Event is one event's inputs, Values[i] for Config.Inputs()[i].
type Event struct {
	Values []Value
}

// NewEvent returns an Event sized for c.
func (c *Config) NewEvent() *Event { return &Event{Values: make([]Value, len(c.inputs))} }

// Vector is the feature vector of one event, index j for Config.Outputs()[j].
// Int holds KindInt, KindBool (0 or 1) and KindTime (ns since the epoch);
// Float holds KindFloat. Valid is false where a feature has no value (the
// mean, min or max of an empty window): leave that field unwritten.
type Vector struct {
	Int   []int64
	Float []float64
	Valid []bool
}

// NewVector returns a Vector sized for c.
func (c *Config) NewVector() *Vector {
	n := len(c.outputs)
	return &Vector{Int: make([]int64, n), Float: make([]float64, n), Valid: make([]bool, n)}
}

// LateError is Update's refusal of an event more than allowed_lateness
// behind the user's latest event. The state is left as it was.
type LateError struct {
	Time, Latest int64 // ns since the epoch
	Allowed      time.Duration
}

func (e *LateError) Error() string {
	return "late: event time " + formatTime(e.Time) + " is " + time.Duration(e.Latest-e.Time).String() +
		" behind the user's latest event time " + formatTime(e.Latest) +
		" (allowed_lateness " + e.Allowed.String() + ")"
}

func formatTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// Update applies ev to s and fills v with the features after it. Its only
// error is a *LateError, for an event it did not apply. s must be the zero
// State or one decoded or updated with c.
func (c *Config) Update(s *State, ev *Event, v *Vector) error {
	if s.count == 0 {
		c.reset(s) // the zero State, or a user with no events
	}
	t := ev.Values[InputTime].Int
	if s.count > 0 && t < s.last && uint64(s.last-t) > uint64(c.lateness) {
		return &LateError{Time: t, Latest: s.last, Allowed: time.Duration(c.lateness)}
	}
	h := hashBytes(ev.Values[InputType].Str)
	c.apply(s, ev, t, h)
	c.eval(s, ev, h, true, v)
	return nil
}

// Eval fills v with the features of s for ev without applying ev: for an
// event already counted before (a redelivery). Windows are as of the
// user's latest event.
func (c *Config) Eval(s *State, ev *Event, v *Vector) {
	if s.count == 0 {
		c.reset(s)
	}
	c.eval(s, ev, hashBytes(ev.Values[InputType].Str), true, v)
}

func (c *Config) apply(s *State, ev *Event, t int64, typeHash uint64) {
	switch {
	case s.count == 0:
		s.first, s.last = t, t
	case t > s.last:
		c.advance(s, t)
		s.last = t
	case t < s.first:
		s.first = t
	}
	s.count++

	if k := slices.Index(c.typeHashes, typeHash); k >= 0 {
		s.known[k]++
	} else if k := slices.IndexFunc(s.others, func(tc typeCount) bool { return tc.hash == typeHash }); k >= 0 {
		s.others[k].n++
	} else if len(s.others) < c.maxOther {
		s.others = append(s.others, typeCount{hash: typeHash, n: 1})
	}

	if a := ev.Values[c.amount]; a.Ok && slices.Contains(c.valueHashes, typeHash) {
		s.total += a.Num
	}

	c.addToSession(s, t)

	for k := range c.windows {
		w, r := &c.windows[k], &s.rings[k]
		if w.types != nil && !slices.Contains(w.types, typeHash) {
			continue
		}
		var val Value
		if w.input >= 0 {
			val = ev.Values[w.input]
			if !val.Ok {
				continue
			}
		}
		b := floorDiv(t, w.width)
		head := floorDiv(s.last, w.width)
		if b <= head-w.n {
			continue // behind the window already
		}
		if w.agg == aggDistinct {
			addDistinct(w, r, valueHash(w.typ, val), b)
			continue
		}
		slot := floorMod(b, w.n)
		x := val.Num
		if w.typ == TypeInt {
			x = float64(val.Int)
		}
		switch w.agg {
		case aggSum, aggMean:
			r.vals[slot] += x
		case aggMin:
			if r.counts[slot] == 0 || x < r.vals[slot] {
				r.vals[slot] = x
			}
		case aggMax:
			if r.counts[slot] == 0 || x > r.vals[slot] {
				r.vals[slot] = x
			}
		}
		r.counts[slot]++
		r.total++
	}
}

// advance moves every window's head to the bucket of t, emptying the
// buckets it passes and forgetting distinct values that fall out.
func (c *Config) advance(s *State, t int64) {
	for k := range c.windows {
		w, r := &c.windows[k], &s.rings[k]
		from, to := floorDiv(s.last, w.width), floorDiv(t, w.width)
		if from == to {
			continue
		}
		if w.agg == aggDistinct {
			r.seen = slices.DeleteFunc(r.seen, func(e distinctEntry) bool { return e.bucket <= to-w.n })
			continue
		}
		if uint64(to-from) >= uint64(w.n) {
			clear(r.counts)
			clear(r.vals)
			r.total = 0
			continue
		}
		slot := floorMod(from, w.n)
		for range to - from {
			if slot++; slot == w.n {
				slot = 0
			}
			r.total -= r.counts[slot]
			r.counts[slot] = 0
			if len(r.vals) > 0 {
				r.vals[slot] = 0
			}
		}
	}
}

// addDistinct records value hash h seen in bucket b. When the window
// already holds maxDistinct values, the value seen longest ago (ties: the
// larger hash) gives way, the newcomer included; README "distinct" shows
// why the count is then exactly min(true count, max_distinct).
func addDistinct(w *window, r *ring, h uint64, b int64) {
	for i := range r.seen {
		if r.seen[i].hash == h {
			r.seen[i].bucket = max(r.seen[i].bucket, b)
			return
		}
	}
	if len(r.seen) < w.maxDistinct {
		r.seen = append(r.seen, distinctEntry{hash: h, bucket: b})
		return
	}
	old := 0
	for i, e := range r.seen[1:] {
		if older(e, r.seen[old]) {
			old = i + 1
		}
	}
	if n := (distinctEntry{hash: h, bucket: b}); older(r.seen[old], n) {
		r.seen[old] = n
	}
}

func older(a, b distinctEntry) bool {
	return a.bucket < b.bucket || a.bucket == b.bucket && a.hash > b.hash
}

// addToSession puts t into the session it belongs to, under the seed's rule
// applied to the user's events sorted by time: a gap of more than
// session_gap starts a new session. An out-of-order t may extend a session,
// join two into one, or stand alone as a new one.
func (c *Config) addToSession(s *State, t int64) {
	gap := uint64(c.sessionGap)
	i, _ := slices.BinarySearchFunc(s.spans, t, func(sp span, t int64) int {
		if sp.start <= t {
			return -1
		}
		return 1
	})
	// spans[:i] start at or before t; spans[i:] after it.
	joinPrev := i > 0 && (t <= s.spans[i-1].end || uint64(t-s.spans[i-1].end) <= gap)
	joinNext := i < len(s.spans) && uint64(s.spans[i].start-t) <= gap
	switch {
	case joinPrev && joinNext:
		s.spans[i-1].end = s.spans[i].end
		s.spans = slices.Delete(s.spans, i, i+1)
		if s.sessions > 1 {
			s.sessions--
		}
	case joinPrev:
		s.spans[i-1].end = max(s.spans[i-1].end, t)
	case joinNext:
		s.spans[i].start = t
	default:
		s.spans = slices.Insert(s.spans, i, span{t, t})
		s.sessions++
	}
	// An on-time event is at most allowed_lateness behind the latest, so
	// sessions ending more than a gap before that can no longer change.
	horizon := satSub(s.last, c.lateness+c.sessionGap)
	drop := 0
	for drop < len(s.spans)-1 && s.spans[drop].end < horizon {
		drop++
	}
	if over := len(s.spans) - c.maxSpans; over > drop {
		drop = over
	}
	if drop > 0 {
		s.spans = append(s.spans[:0], s.spans[drop:]...)
	}
}

func (c *Config) eval(s *State, ev *Event, typeHash uint64, withEvent bool, v *Vector) {
	n := float64(max(s.count, 1))
	var secs, days, dow int64
	if withEvent {
		secs = floorDiv(ev.Values[InputTime].Int, int64(time.Second))
		days = floorDiv(secs, 24*60*60)
		dow = (days%7 + 7 + 3) % 7 // 1970-01-01 was a Thursday: 3 when Monday is 0
	}
	for j := range c.feats {
		f := &c.feats[j]
		v.Valid[j] = true
		switch f.src {
		case srcEventCount:
			v.Int[j] = int64(s.count)
		case srcUniqueTypes:
			v.Int[j] = int64(s.seenKnown() + len(s.others))
		case srcTotalValue:
			v.Float[j] = s.total
		case srcAvgValue:
			v.Float[j] = s.total / n
		case srcIsPurchase:
			v.Int[j] = b2i(slices.Contains(c.valueHashes, typeHash))
		case srcHour:
			v.Int[j] = (secs - days*24*60*60) / 3600
		case srcDayOfWeek:
			v.Int[j] = dow
		case srcWeekend:
			v.Int[j] = b2i(dow >= 5)
		case srcTypeCount:
			v.Int[j] = int64(s.known[f.arg])
		case srcTypeRatio:
			v.Float[j] = float64(s.known[f.arg]) / n
		case srcSessions:
			v.Int[j] = int64(s.sessions)
		case srcSessionLength:
			v.Float[j] = float64(s.count) / float64(max(s.sessions, 1))
		case srcEventsPerDay:
			// The seed divides by whole days between first and last event.
			d := uint64(s.last-s.first) / uint64(24*time.Hour)
			v.Float[j] = float64(s.count) / float64(max(d, 1))
		case srcLastActivity:
			v.Int[j] = s.last
		case srcWindow:
			c.evalWindow(s, f, j, v)
		}
	}
}

func (c *Config) evalWindow(s *State, f *feature, j int, v *Vector) {
	w, r := &c.windows[f.arg], &s.rings[f.arg]
	if w.agg == aggDistinct {
		v.Int[j] = int64(len(r.seen))
		return
	}
	if w.agg == aggCount {
		v.Int[j] = int64(r.total)
		return
	}
	var cnt uint64
	acc := 0.0
	for slot, n := range r.counts {
		if n == 0 {
			continue
		}
		x := r.vals[slot]
		switch {
		case cnt == 0:
			acc = x
		case w.agg == aggMin:
			acc = min(acc, x)
		case w.agg == aggMax:
			acc = max(acc, x)
		default:
			acc += x
		}
		cnt += n
	}
	switch w.agg {
	case aggSum:
		v.Float[j] = acc
	case aggMean:
		v.Float[j] = acc / float64(cnt)
		v.Valid[j] = cnt > 0
	default:
		v.Float[j] = acc
		v.Valid[j] = cnt > 0
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// valueHash keys a distinct window's values: strings by their bytes,
// numbers by value (so 1 and 1.0 are one value).
func valueHash(t Type, v Value) uint64 {
	var b [8]byte
	var u uint64
	switch t {
	case TypeString:
		return hashBytes(v.Str)
	case TypeInt:
		u = uint64(v.Int)
	default:
		x := v.Num
		if x == 0 {
			x = 0 // -0 and 0 are one value
		}
		u = math.Float64bits(x)
	}
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	return hashBytes(b[:])
}

// FNV-1a, 64-bit: stable across processes and versions, which a stored
// hash must be (hash/maphash is seeded per process).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// floorDiv rounds toward negative infinity, so instants before 1970 land in
// the right bucket.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// satSub is a−b for b ≥ 0, stopping at the smallest int64.
func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}
