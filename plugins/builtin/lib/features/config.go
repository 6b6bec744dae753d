// Package features computes per-user real-time features in event time: the
// seed tutorial's RealTimeDataProcessor and session features, plus sliding
// windows configured in YAML. It is the logic of the builtin `features`
// Wasm plugin (plugins/builtin/features), kept free of the plugin SDK so it
// compiles natively too: the agent's benchmarks and tests run exactly this
// code outside wazero.
//
// A Config is parsed once from the plugin's `config:` block. Per event the
// caller fills an Event with the fields the Config asks for (Inputs), calls
// Update on the user's State, and writes the Vector it fills (Outputs). A
// State is stored between batches in a compact binary form (Encode, Decode)
// whose size is bounded by MaxStateSize. Nothing is read from the clock:
// every time is the event's own.
package features

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Type is how an input field is read from the event.
type Type uint8

const (
	TypeTime   Type = iota + 1 // RFC 3339 string or epoch seconds; Value.Int holds ns since the epoch
	TypeString                 // Value.Str
	TypeNumber                 // Value.Num
	TypeInt                    // Value.Int
)

func (t Type) String() string {
	switch t {
	case TypeTime:
		return "time"
	case TypeString:
		return "string"
	case TypeNumber:
		return "number"
	case TypeInt:
		return "int"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Kind is how an output feature is written.
type Kind uint8

const (
	KindInt   Kind = iota + 1 // Vector.Int
	KindFloat                 // Vector.Float
	KindBool                  // Vector.Int, 0 or 1
	KindTime                  // Vector.Int, ns since the epoch
)

// Field is an input field the plugin declares.
type Field struct {
	Path     string
	Type     Type
	Required bool
}

// Output is an output field: Name is the feature's name with the prefix.
type Output struct {
	Name string
	Kind Kind
}

// Indices of the fixed inputs in Config.Inputs and Event.Values.
const (
	InputTime = 0
	InputType = 1
)

// Aggregations of a window.
type agg uint8

const (
	aggCount agg = iota
	aggSum
	aggMean
	aggMin
	aggMax
	aggDistinct
)

var aggNames = []string{"count", "sum", "mean", "min", "max", "distinct"}

// Bounds that keep one user's state small whatever the config says.
const (
	maxBuckets      = 4096
	maxDistinctCap  = 4096
	maxWindows      = 32
	maxOtherCap     = 256
	maxSpans        = 64
	minBucket       = time.Millisecond
	defaultBuckets  = 60
	defaultDistinct = 64
)

// window is one sliding window, resolved. windows[0] of a Config is the
// builtin recent_activity count.
type window struct {
	name        string
	agg         agg
	input       int // index in inputs, -1 for a count of events
	typ         Type
	width       int64 // bucket width, ns
	n           int64 // buckets
	types       []uint64
	maxDistinct int
	id          uint32
}

// Where a feature's value comes from.
type source uint8

const (
	srcEventCount source = iota
	srcUniqueTypes
	srcTotalValue
	srcAvgValue
	srcIsPurchase
	srcHour
	srcDayOfWeek
	srcWeekend
	srcTypeCount
	srcTypeRatio
	srcSessions
	srcSessionLength
	srcWindow
	srcEventsPerDay
	srcLastActivity
)

type feature struct {
	name string
	kind Kind
	src  source
	arg  int // event type index or window index
}

// perEvent reports whether a feature describes the current event rather
// than the user's state; StateJSON leaves those out.
func (f feature) perEvent() bool {
	return f.src == srcIsPurchase || f.src == srcHour || f.src == srcDayOfWeek || f.src == srcWeekend
}

// Config is a parsed, validated `features` config. It is read-only after
// parsing and may be shared.
type Config struct {
	inputs      []Field
	amount      int
	eventTypes  []string
	typeHashes  []uint64
	valueHashes []uint64
	maxOther    int
	sessionGap  int64
	lateness    int64
	maxSpans    int
	windows     []window
	prefix      string
	feats       []feature // written features, in output order
	outputs     []Output
}

// spec is the config as written; pointers tell "absent" from zero.
type spec struct {
	Timestamp       *string
	EventType       *string
	Amount          *string
	ValueEventTypes []string
	EventTypes      []string
	MaxOther        *int
	SessionGap      *time.Duration
	Lateness        *time.Duration
	RecentWindow    *time.Duration
	RecentBucket    *time.Duration
	Prefix          *string
	Include         []string
	hasInclude      bool
	Windows         []windowSpec
}

type windowSpec struct {
	Name        string
	Agg         string
	Field       string
	Type        string
	Window      time.Duration
	Bucket      time.Duration
	Buckets     int
	EventTypes  []string
	MaxDistinct int
	has         map[string]bool
}

// Defaults, as in the seed.
var (
	defaultEventTypes = []string{"page_view", "click", "add_to_cart", "purchase", "search"}
	defaultValueTypes = []string{"purchase"}
)

// Default returns the config used when the plugin is given none.
func Default() *Config {
	c, err := Parse(nil)
	if err != nil {
		panic("features: default config does not parse: " + err.Error())
	}
	return c
}

// UnmarshalJSON parses a config block, so a Config can be the target of
// the SDK's Config.Decode. Errors start with the path of the offending key.
func (c *Config) UnmarshalJSON(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	*c = *p
	return nil
}

// Parse parses and validates a config block given as JSON; empty or null
// means all defaults. Unknown keys are errors. Every error starts with the
// path of the key at fault, e.g. `windows[1].agg: ...`.
func Parse(raw []byte) (*Config, error) {
	var s spec
	if err := s.read(raw); err != nil {
		return nil, err
	}
	return s.compile()
}

func (s *spec) read(raw []byte) error {
	if isNull(raw) {
		return nil
	}
	return object("", raw, map[string]func(string, json.RawMessage) error{
		"timestamp":             func(p string, r json.RawMessage) error { return optString(p, r, &s.Timestamp) },
		"event_type":            func(p string, r json.RawMessage) error { return optString(p, r, &s.EventType) },
		"amount":                func(p string, r json.RawMessage) error { return optString(p, r, &s.Amount) },
		"value_event_types":     func(p string, r json.RawMessage) error { return stringList(p, r, &s.ValueEventTypes) },
		"event_types":           func(p string, r json.RawMessage) error { return stringList(p, r, &s.EventTypes) },
		"max_other_event_types": func(p string, r json.RawMessage) error { return optInt(p, r, &s.MaxOther) },
		"session_gap":           func(p string, r json.RawMessage) error { return optDuration(p, r, &s.SessionGap) },
		"allowed_lateness":      func(p string, r json.RawMessage) error { return optDuration(p, r, &s.Lateness) },
		"recent_window":         func(p string, r json.RawMessage) error { return optDuration(p, r, &s.RecentWindow) },
		"recent_bucket":         func(p string, r json.RawMessage) error { return optDuration(p, r, &s.RecentBucket) },
		"prefix":                func(p string, r json.RawMessage) error { return optString(p, r, &s.Prefix) },
		"include": func(p string, r json.RawMessage) error {
			s.hasInclude = !isNull(r)
			return stringList(p, r, &s.Include)
		},
		"windows": func(p string, r json.RawMessage) error {
			var items []json.RawMessage
			if err := list(p, r, &items); err != nil {
				return err
			}
			s.Windows = make([]windowSpec, len(items))
			for i, item := range items {
				if err := s.Windows[i].read(fmt.Sprintf("%s[%d]", p, i), item); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

func (w *windowSpec) read(path string, raw json.RawMessage) error {
	w.has = map[string]bool{}
	// A key given as null (YAML `field:` with nothing after it) is absent.
	field := func(key string, read func(string, json.RawMessage) error) func(string, json.RawMessage) error {
		return func(p string, r json.RawMessage) error {
			if isNull(r) {
				return nil
			}
			w.has[key] = true
			return read(p, r)
		}
	}
	return object(path, raw, map[string]func(string, json.RawMessage) error{
		"name":         field("name", func(p string, r json.RawMessage) error { return str(p, r, &w.Name) }),
		"agg":          field("agg", func(p string, r json.RawMessage) error { return str(p, r, &w.Agg) }),
		"field":        field("field", func(p string, r json.RawMessage) error { return str(p, r, &w.Field) }),
		"type":         field("type", func(p string, r json.RawMessage) error { return str(p, r, &w.Type) }),
		"window":       field("window", func(p string, r json.RawMessage) error { return duration(p, r, &w.Window) }),
		"bucket":       field("bucket", func(p string, r json.RawMessage) error { return duration(p, r, &w.Bucket) }),
		"buckets":      field("buckets", func(p string, r json.RawMessage) error { return integer(p, r, &w.Buckets) }),
		"event_types":  field("event_types", func(p string, r json.RawMessage) error { return stringList(p, r, &w.EventTypes) }),
		"max_distinct": field("max_distinct", func(p string, r json.RawMessage) error { return integer(p, r, &w.MaxDistinct) }),
	})
}

// compile validates the spec and resolves it into a Config.
func (s *spec) compile() (*Config, error) {
	c := &Config{maxOther: 32, prefix: "features."}
	var err error
	paths := []struct {
		key string
		val *string
		def string
		typ Type
	}{
		{"timestamp", s.Timestamp, "timestamp", TypeTime},
		{"event_type", s.EventType, "event_type", TypeString},
		{"amount", s.Amount, "event_data.amount", TypeNumber},
	}
	for _, p := range paths {
		path := p.def
		if p.val != nil {
			path = *p.val
		}
		if err := checkPath(path); err != nil {
			return nil, fmt.Errorf("%s: %w", p.key, err)
		}
		// Types differ, so a shared path is refused and the fixed inputs
		// land at InputTime, InputType and then amount.
		if c.amount, err = c.input(p.key, path, p.typ); err != nil {
			return nil, err
		}
	}
	c.inputs[InputTime].Required, c.inputs[InputType].Required = true, true

	c.eventTypes = defaultEventTypes
	if s.EventTypes != nil {
		c.eventTypes = s.EventTypes
	}
	for i, t := range c.eventTypes {
		if err := checkKey(t); err != nil {
			return nil, fmt.Errorf("event_types[%d]: %q cannot be part of a feature name: %w", i, t, err)
		}
		if slices.Index(c.eventTypes[:i], t) >= 0 {
			return nil, fmt.Errorf("event_types[%d]: %q is listed twice", i, t)
		}
		c.typeHashes = append(c.typeHashes, hashString(t))
	}
	valueTypes := defaultValueTypes
	if s.ValueEventTypes != nil {
		valueTypes = s.ValueEventTypes
	}
	if c.valueHashes, err = typeSet("value_event_types", valueTypes); err != nil {
		return nil, err
	}
	if s.MaxOther != nil {
		if *s.MaxOther < 0 || *s.MaxOther > maxOtherCap {
			return nil, fmt.Errorf("max_other_event_types: %d is out of range (want 0 to %d)", *s.MaxOther, maxOtherCap)
		}
		c.maxOther = *s.MaxOther
	}

	gap, lateness := durOr(s.SessionGap, 30*time.Minute), durOr(s.Lateness, time.Hour)
	if gap <= 0 {
		return nil, fmt.Errorf("session_gap: must be positive, got %s", gap)
	}
	if lateness < 0 {
		return nil, fmt.Errorf("allowed_lateness: must not be negative, got %s", lateness)
	}
	if lateness > math.MaxInt64-gap {
		return nil, fmt.Errorf("allowed_lateness: %s plus session_gap %s is beyond what a duration holds", lateness, gap)
	}
	// Sessions stay exact under out-of-order events by remembering the
	// sessions an on-time event could still touch: at most
	// ceil(lateness/gap)+1 of them (README, "Sessions").
	spans := (lateness+gap-1)/gap + 1
	if spans > maxSpans {
		return nil, fmt.Errorf("allowed_lateness: %s is more than %d × session_gap (%s): sessions could not be kept exactly in bounded state", lateness, maxSpans-1, gap)
	}
	c.sessionGap, c.lateness, c.maxSpans = int64(gap), int64(lateness), int(spans)

	if s.Prefix != nil {
		c.prefix = *s.Prefix
	}

	recentWindow, recentBucket := durOr(s.RecentWindow, 7*24*time.Hour), durOr(s.RecentBucket, time.Hour)
	recent := windowSpec{Agg: "count", Window: recentWindow, Bucket: recentBucket, has: map[string]bool{"bucket": true}}
	recentName, err := recentName(recentWindow)
	if err != nil {
		return nil, fmt.Errorf("recent_window: %w", err)
	}
	recent.Name = recentName
	if err := c.addWindow("recent_window", recent); err != nil {
		return nil, err
	}
	if len(s.Windows) > maxWindows {
		return nil, fmt.Errorf("windows: %d windows, at most %d", len(s.Windows), maxWindows)
	}
	for i, w := range s.Windows {
		if err := c.addWindow(fmt.Sprintf("windows[%d]", i), w); err != nil {
			return nil, err
		}
	}

	all := c.allFeatures()
	seen := map[string]int{}
	for i, f := range all {
		if j, dup := seen[f.name]; dup {
			return nil, fmt.Errorf("%s: feature name %q is also the name of %s", c.featurePath(all, i), f.name, c.featurePath(all, j))
		}
		seen[f.name] = i
	}
	c.feats = all
	if s.hasInclude {
		if len(s.Include) == 0 {
			return nil, errors.New("include: empty list: nothing would be written (omit include to write every feature)")
		}
		c.feats = nil
		for i, name := range s.Include {
			j, ok := seen[name]
			if !ok {
				return nil, fmt.Errorf("include[%d]: unknown feature %q (known: %s)", i, name, featureNames(all))
			}
			if slices.Index(s.Include[:i], name) >= 0 {
				return nil, fmt.Errorf("include[%d]: %q is listed twice", i, name)
			}
			c.feats = append(c.feats, all[j])
		}
		// Output order is the documented feature order, not include's.
		sort.SliceStable(c.feats, func(a, b int) bool { return seen[c.feats[a].name] < seen[c.feats[b].name] })
	}
	for _, f := range c.feats {
		name := c.prefix + f.name
		if err := checkPath(name); err != nil {
			return nil, fmt.Errorf("prefix: %q gives the output field %q: %w", c.prefix, name, err)
		}
		c.outputs = append(c.outputs, Output{Name: name, Kind: f.kind})
	}
	return c, nil
}

// featurePath names where a feature's name came from, for errors.
func (c *Config) featurePath(all []feature, i int) string {
	f := all[i]
	switch f.src {
	case srcTypeCount, srcTypeRatio:
		return fmt.Sprintf("event_types[%d]", f.arg)
	case srcWindow:
		if f.arg == 0 {
			return "recent_window"
		}
		return fmt.Sprintf("windows[%d].name", f.arg-1)
	}
	return "builtin feature " + f.name
}

func featureNames(all []feature) string {
	names := make([]string, len(all))
	for i, f := range all {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// allFeatures lists every feature of the config, in output order.
func (c *Config) allFeatures() []feature {
	fs := []feature{
		{"event_count", KindInt, srcEventCount, 0},
		{"unique_event_types", KindInt, srcUniqueTypes, 0},
		{"total_value", KindFloat, srcTotalValue, 0},
		{"avg_value_per_event", KindFloat, srcAvgValue, 0},
		{"is_purchase_event", KindInt, srcIsPurchase, 0},
		{"hour_of_day", KindInt, srcHour, 0},
		{"day_of_week", KindInt, srcDayOfWeek, 0},
		{"is_weekend", KindBool, srcWeekend, 0},
	}
	for i, t := range c.eventTypes {
		fs = append(fs, feature{t + "_count", KindInt, srcTypeCount, i}, feature{t + "_ratio", KindFloat, srcTypeRatio, i})
	}
	fs = append(fs,
		feature{"total_sessions", KindInt, srcSessions, 0},
		feature{"avg_session_length", KindFloat, srcSessionLength, 0},
		feature{c.windows[0].name, KindInt, srcWindow, 0},
		feature{"avg_events_per_day", KindFloat, srcEventsPerDay, 0},
		feature{"last_activity", KindTime, srcLastActivity, 0},
	)
	for i, w := range c.windows[1:] {
		k := KindFloat
		if w.agg == aggCount || w.agg == aggDistinct {
			k = KindInt
		}
		fs = append(fs, feature{w.name, k, srcWindow, i + 1})
	}
	return fs
}

// recentName is recent_activity_ followed by the window in the largest
// whole unit: 168h gives recent_activity_7d.
func recentName(d time.Duration) (string, error) {
	for _, u := range []struct {
		d      time.Duration
		suffix string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d > 0 && d%u.d == 0 {
			return "recent_activity_" + strconv.FormatInt(int64(d/u.d), 10) + u.suffix, nil
		}
	}
	return "", fmt.Errorf("%s is not a positive whole number of seconds", d)
}

func (c *Config) addWindow(path string, w windowSpec) error {
	if !w.has["name"] && path != "recent_window" {
		return fmt.Errorf("%s.name: missing: every window needs a name (its feature's name)", path)
	}
	if err := checkKey(w.Name); err != nil {
		return fmt.Errorf("%s.name: %q: %w", path, w.Name, err)
	}
	a := slices.Index(aggNames, w.Agg)
	if a < 0 {
		if !w.has["agg"] {
			return fmt.Errorf("%s.agg: missing (want count, sum, mean, min, max or distinct)", path)
		}
		return fmt.Errorf("%s.agg: unknown aggregation %q (want count, sum, mean, min, max or distinct)", path, w.Agg)
	}
	win := window{name: w.Name, agg: agg(a), input: -1}
	switch {
	case w.Field == "" && w.has["field"]:
		return fmt.Errorf("%s.field: empty", path)
	case w.Field == "" && win.agg != aggCount:
		return fmt.Errorf("%s.field: missing: %s needs a field to aggregate", path, w.Agg)
	case w.Field == "" && w.has["type"]:
		return fmt.Errorf("%s.type: set without a field", path)
	case w.Field != "":
		if err := checkPath(w.Field); err != nil {
			return fmt.Errorf("%s.field: %w", path, err)
		}
		switch w.Type {
		case "":
			switch win.agg {
			case aggCount:
				// The host fails an event whose field has another type, so
				// guessing would silently reject events: make it explicit.
				return fmt.Errorf("%s.type: missing: a count of events having %s needs its type (number, int or string)", path, w.Field)
			case aggDistinct:
				win.typ = TypeString
			default:
				win.typ = TypeNumber
			}
		case "number":
			win.typ = TypeNumber
		case "int":
			win.typ = TypeInt
		case "string":
			win.typ = TypeString
		default:
			return fmt.Errorf("%s.type: unknown type %q (want number, int or string)", path, w.Type)
		}
		if win.typ == TypeString && win.agg != aggCount && win.agg != aggDistinct {
			return fmt.Errorf("%s.type: a string cannot be aggregated with %s (want number or int)", path, w.Agg)
		}
		in, err := c.input(path+".type", w.Field, win.typ)
		if err != nil {
			return err
		}
		win.input = in
	}
	if w.Window <= 0 {
		if !w.has["window"] && path != "recent_window" {
			return fmt.Errorf("%s.window: missing (a duration such as 1h)", path)
		}
		return fmt.Errorf("%s: must be positive, got %s", windowKey(path), w.Window)
	}
	switch {
	case w.has["bucket"] && w.has["buckets"]:
		return fmt.Errorf("%s.buckets: set together with bucket: give one of them", path)
	case w.has["bucket"]:
		if w.Bucket < minBucket {
			return fmt.Errorf("%s: %s is below the minimum bucket width %s", bucketKey(path), w.Bucket, minBucket)
		}
		if w.Window%w.Bucket != 0 {
			return fmt.Errorf("%s: %s does not divide the window %s into whole buckets", bucketKey(path), w.Bucket, w.Window)
		}
		win.width, win.n = int64(w.Bucket), int64(w.Window/w.Bucket)
	default:
		n := defaultBuckets
		if w.has["buckets"] {
			n = w.Buckets
		}
		if n < 1 || n > maxBuckets {
			return fmt.Errorf("%s.buckets: %d is out of range (want 1 to %d)", path, n, maxBuckets)
		}
		if w.Window%time.Duration(n) != 0 || w.Window/time.Duration(n) < minBucket {
			key := path + ".window"
			if w.has["buckets"] {
				key = path + ".buckets"
			}
			return fmt.Errorf("%s: a %s window does not split into %d whole buckets of at least %s (set bucket, e.g. bucket: 1m)", key, w.Window, n, minBucket)
		}
		win.width, win.n = int64(w.Window)/int64(n), int64(n)
	}
	if win.n > maxBuckets {
		return fmt.Errorf("%s: %d buckets, at most %d (use a wider bucket)", bucketKey(path), win.n, maxBuckets)
	}
	if w.has["event_types"] {
		var err error
		if win.types, err = typeSet(path+".event_types", w.EventTypes); err != nil {
			return err
		}
	}
	if w.has["max_distinct"] {
		if win.agg != aggDistinct {
			return fmt.Errorf("%s.max_distinct: only distinct windows keep values (agg is %s)", path, w.Agg)
		}
		if w.MaxDistinct < 1 || w.MaxDistinct > maxDistinctCap {
			return fmt.Errorf("%s.max_distinct: %d is out of range (want 1 to %d)", path, w.MaxDistinct, maxDistinctCap)
		}
		win.maxDistinct = w.MaxDistinct
	} else if win.agg == aggDistinct {
		win.maxDistinct = defaultDistinct
	}
	win.id = c.windowID(win)
	c.windows = append(c.windows, win)
	return nil
}

func windowKey(path string) string {
	if path == "recent_window" {
		return path
	}
	return path + ".window"
}

func bucketKey(path string) string {
	if path == "recent_window" {
		return "recent_bucket"
	}
	return path + ".bucket"
}

// windowID identifies what a window's stored data means, so a changed
// config keeps the data of windows it did not change and starts changed
// ones empty. The name is left out: renaming keeps the data.
func (c *Config) windowID(w window) uint32 {
	types := slices.Clone(w.types)
	slices.Sort(types)
	def := fmt.Sprintf("%d|%v|%d|%d|%d|%v|%d", w.agg, c.inputPath(w.input), w.typ, w.width, w.n, types, w.maxDistinct)
	dup := 0
	for _, o := range c.windows {
		if o.agg == w.agg && c.inputPath(o.input) == c.inputPath(w.input) && o.typ == w.typ && o.width == w.width &&
			o.n == w.n && slices.Equal(o.types, w.types) && o.maxDistinct == w.maxDistinct {
			dup++
		}
	}
	h := hashString(def + "#" + strconv.Itoa(dup))
	return uint32(h ^ h>>32)
}

func (c *Config) inputPath(i int) string {
	if i < 0 {
		return ""
	}
	return c.inputs[i].Path
}

// input returns the index of the input reading path as typ, adding it.
func (c *Config) input(key, path string, typ Type) (int, error) {
	for i, f := range c.inputs {
		if f.Path == path {
			if f.Type != typ {
				return 0, fmt.Errorf("%s: %s is already read as %s; a field has one type", key, path, f.Type)
			}
			return i, nil
		}
	}
	c.inputs = append(c.inputs, Field{Path: path, Type: typ})
	return len(c.inputs) - 1, nil
}

func typeSet(path string, types []string) ([]uint64, error) {
	hs := make([]uint64, 0, len(types))
	for i, t := range types {
		if t == "" {
			return nil, fmt.Errorf("%s[%d]: empty event type", path, i)
		}
		h := hashString(t)
		if slices.Contains(hs, h) {
			return nil, fmt.Errorf("%s[%d]: %q is listed twice", path, i, t)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func durOr(d *time.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return *d
}

// Inputs are the fields to read from each event, in Event.Values order:
// the timestamp (InputTime) and event type (InputType) first, both
// required.
func (c *Config) Inputs() []Field { return c.inputs }

// Outputs are the features to write, in Vector order.
func (c *Config) Outputs() []Output { return c.outputs }

// checkPath applies the ABI's rule for field paths (ABI.md 8.5), so a bad
// path is reported against its config key rather than by the host.
func checkPath(path string) error {
	if path == "" {
		return errors.New("empty field path")
	}
	for seg := range strings.SplitSeq(path, ".") {
		if seg == "" {
			return fmt.Errorf("field path %q has an empty key", path)
		}
		if err := checkKey(seg); err != nil {
			return fmt.Errorf("field path %q: %w", path, err)
		}
	}
	return nil
}

func checkKey(k string) error {
	if k == "" {
		return errors.New("empty name")
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("character %q is not allowed (use letters, digits, _ and -)", r)
		}
	}
	return nil
}

// ---- a strict JSON reader that knows where it is ----

func isNull(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func jsonKind(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func at(path, msg string, args ...any) error {
	if path == "" {
		return fmt.Errorf(msg, args...)
	}
	return fmt.Errorf(path+": "+msg, args...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// object reads a JSON object whose keys must all be in fields; keys are
// handled in sorted order so the first error reported is deterministic.
func object(path string, raw json.RawMessage, fields map[string]func(string, json.RawMessage) error) error {
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return at(path, "want an object, got %s", jsonKind(raw))
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return at(path, "%v", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fn, ok := fields[k]
		if !ok {
			known := make([]string, 0, len(fields))
			for f := range fields {
				known = append(known, f)
			}
			sort.Strings(known)
			return at(join(path, k), "unknown key (known: %s)", strings.Join(known, ", "))
		}
		if err := fn(join(path, k), m[k]); err != nil {
			return err
		}
	}
	return nil
}

func list(path string, raw json.RawMessage, out *[]json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	if t := bytes.TrimSpace(raw); t[0] != '[' {
		return at(path, "want a list, got %s", jsonKind(raw))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return at(path, "%v", err)
	}
	return nil
}

func str(path string, raw json.RawMessage, out *string) error {
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '"' {
		return at(path, "want a string, got %s", jsonKind(raw))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return at(path, "%v", err)
	}
	return nil
}

func optString(path string, raw json.RawMessage, out **string) error {
	if isNull(raw) {
		return nil
	}
	var s string
	if err := str(path, raw, &s); err != nil {
		return err
	}
	*out = &s
	return nil
}

func stringList(path string, raw json.RawMessage, out *[]string) error {
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if err := list(path, raw, &items); err != nil {
		return err
	}
	*out = make([]string, len(items))
	for i, item := range items {
		if err := str(fmt.Sprintf("%s[%d]", path, i), item, &(*out)[i]); err != nil {
			return err
		}
	}
	return nil
}

func integer(path string, raw json.RawMessage, out *int) error {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || jsonKind(raw) != "a number" {
		return at(path, "want a whole number, got %s", jsonKind(raw))
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return at(path, "want a whole number, got %s", bytes.TrimSpace(raw))
	}
	*out = int(f)
	return nil
}

func optInt(path string, raw json.RawMessage, out **int) error {
	if isNull(raw) {
		return nil
	}
	var n int
	if err := integer(path, raw, &n); err != nil {
		return err
	}
	*out = &n
	return nil
}

func duration(path string, raw json.RawMessage, out *time.Duration) error {
	var s string
	if err := str(path, raw, &s); err != nil {
		return at(path, "want a duration such as \"30m\" or \"168h\", got %s", jsonKind(raw))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return at(path, "%q is not a duration (want e.g. 30m, 1h or 168h)", s)
	}
	*out = d
	return nil
}

func optDuration(path string, raw json.RawMessage, out **time.Duration) error {
	if isNull(raw) {
		return nil
	}
	var d time.Duration
	if err := duration(path, raw, &d); err != nil {
		return err
	}
	*out = &d
	return nil
}
