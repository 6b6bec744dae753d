package features

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// randomUser feeds n events of a seed-shaped stream, some of them out of
// order and some late, to one user of c.
func randomUser(t testing.TB, c *Config, seed uint64, n int) *user {
	u := newUser(t, c)
	rng := rand.New(rand.NewPCG(seed, 0))
	types := []string{"page_view", "click", "add_to_cart", "purchase", "search", "refund", "share"}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for range n {
		at = at.Add(time.Duration(rng.ExpFloat64() * float64(20*time.Minute)))
		ts := at
		if rng.IntN(10) == 0 {
			ts = at.Add(-time.Duration(rng.IntN(90)) * time.Minute)
		}
		typ := types[rng.IntN(len(types))]
		fields := []any{"event_data.page", string(rune('a' + rng.IntN(20)))}
		if typ == "purchase" {
			fields = []any{"event_data.amount", math.Round(rng.Float64()*50000) / 100, "event_data.product_id", int64(rng.IntN(30)), "qty", int64(rng.IntN(5))}
		}
		var read []any // only what c reads
		for k := 0; k < len(fields); k += 2 {
			if slices.ContainsFunc(c.Inputs(), func(f Field) bool { return f.Path == fields[k] }) {
				read = append(read, fields[k:k+2]...)
			}
		}
		_ = u.add(ts.Format(time.RFC3339Nano), typ, read...) // late events are refused, as they should be
	}
	return u
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, config := range []string{`{}`, windowsConfig, `{"max_other_event_types": 0, "allowed_lateness": "0s", "event_types": []}`} {
		c := mustParse(t, config)
		u := randomUser(t, c, 1, 500)
		enc := c.Encode(nil, &u.s)
		if enc[0] != Version {
			t.Fatalf("first byte %d, want the format version %d", enc[0], Version)
		}
		var back State
		if err := c.Decode(&back, enc); err != nil {
			t.Fatal(err)
		}
		if again := c.Encode(nil, &back); !bytes.Equal(again, enc) {
			t.Fatalf("%s: decode then encode changed the bytes:\n%x\n%x", config, enc, again)
		}
		// The decoded state answers the next event exactly as the live one.
		v1, v2 := c.NewVector(), c.NewVector()
		fill(t, c, u.ev, "2025-02-01T00:00:00Z", "purchase", "event_data.amount", 1.5)
		if err := c.Update(&u.s, u.ev, v1); err != nil {
			t.Fatal(err)
		}
		if err := c.Update(&back, u.ev, v2); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(v1.Int, v2.Int) || !slices.Equal(v1.Float, v2.Float) || !slices.Equal(v1.Valid, v2.Valid) {
			t.Errorf("%s: features from the decoded state differ:\n%v\n%v", config, v1, v2)
		}
		// Same events, same bytes: the encoding is deterministic.
		if other := randomUser(t, c, 1, 500); !bytes.Equal(c.Encode(nil, &other.s), enc) {
			t.Errorf("%s: the same events encoded differently", config)
		}
	}
}

// worst builds the largest state c can hold: every list full, every
// number at its widest.
func worst(c *Config) *State {
	s := &State{}
	c.reset(s)
	s.count, s.sessions = math.MaxUint64, math.MaxUint64
	s.first, s.last = math.MinInt64, math.MaxInt64
	s.total = -math.MaxFloat64
	for i := range s.known {
		s.known[i] = math.MaxUint64
	}
	for i := range c.maxOther {
		s.others = append(s.others, typeCount{hash: uint64(i)*0x9e3779b97f4a7c15 + 1, n: math.MaxUint64})
	}
	step := int64(math.MaxInt64/int64(c.maxSpans)) * 2
	for i := range c.maxSpans {
		start := math.MinInt64 + int64(i)*step
		s.spans = append(s.spans, span{start, start + step/2})
	}
	s.spans[len(s.spans)-1].end = s.last
	for k, w := range c.windows {
		r := &s.rings[k]
		head := floorDiv(s.last, w.width)
		if w.agg == aggDistinct {
			for i := range w.maxDistinct {
				r.seen = append(r.seen, distinctEntry{hash: math.MaxUint64 - uint64(i), bucket: head - int64(i)%w.n})
			}
			continue
		}
		for i := range r.counts {
			r.counts[i] = math.MaxUint64
		}
		for i := range r.vals {
			r.vals[i] = math.Pi
		}
	}
	return s
}

func TestStateSizeBound(t *testing.T) {
	for _, config := range []string{
		`{}`,
		windowsConfig,
		`{"max_other_event_types": 256, "allowed_lateness": "31h", "session_gap": "30m",
		  "windows": [{"name": "d", "agg": "distinct", "field": "p", "window": "4096h", "bucket": "1h", "max_distinct": 4096},
		              {"name": "s", "agg": "sum", "field": "x", "window": "4096m", "bucket": "1m"}]}`,
	} {
		c := mustParse(t, config)
		bound := c.MaxStateSize()
		enc := c.Encode(nil, worst(c))
		if len(enc) > bound {
			t.Errorf("%s: the fullest state takes %d bytes, over MaxStateSize %d", config, len(enc), bound)
		}
		if len(enc) < bound*3/4 {
			t.Errorf("%s: the fullest state takes %d bytes, MaxStateSize %d is a loose bound", config, len(enc), bound)
		}
		var back State
		if err := c.Decode(&back, enc); err != nil {
			t.Fatalf("%s: decode the fullest state: %v", config, err)
		}
		if again := c.Encode(nil, &back); !bytes.Equal(again, enc) {
			t.Errorf("%s: the fullest state does not round-trip", config)
		}
		// Real events stay within the bound too, and far below it.
		u := randomUser(t, c, 2, 3000)
		if n := len(c.Encode(nil, &u.s)); n > bound {
			t.Errorf("%s: a user of 3000 events takes %d bytes, over %d", config, n, bound)
		}
	}
	// README quotes the default config's bound.
	if got := Default().MaxStateSize(); got != 2837 {
		t.Errorf("default MaxStateSize %d: update README.md", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	c := mustParse(t, windowsConfig)
	enc := c.Encode(nil, &randomUser(t, c, 3, 200).s)
	var s State
	if err := c.Decode(&s, nil); err != nil || s.count != 0 {
		t.Errorf("no stored state: err %v, count %d; want a user with no events", err, s.count)
	}
	bad := append([]byte{2}, enc[1:]...)
	if err := c.Decode(&s, bad); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v", err)
	}
	for n := 1; n < len(enc); n++ {
		if err := c.Decode(&s, enc[:n]); err == nil {
			t.Fatalf("decoding the first %d of %d bytes succeeded", n, len(enc))
		}
	}
	if err := c.Decode(&s, append(slices.Clone(enc), 0)); err == nil || !strings.Contains(err.Error(), "after the end") {
		t.Errorf("trailing byte: %v", err)
	}
	if err := c.Decode(&s, enc); err != nil || s.count == 0 {
		t.Errorf("a failed decode spoiled the next: %v", err)
	}
}

// TestConfigChangeKeepsWindows: windows are matched by definition, so a
// renamed window keeps its data, a changed one starts empty.
func TestConfigChangeKeepsWindows(t *testing.T) {
	before := mustParse(t, `{"windows": [
		{"name": "a", "agg": "count", "window": "1h"},
		{"name": "b", "agg": "sum", "field": "x", "window": "1h"}]}`)
	after := mustParse(t, `{"windows": [
		{"name": "b_renamed", "agg": "sum", "field": "x", "window": "1h"},
		{"name": "a", "agg": "count", "window": "2h"}]}`)
	u := newUser(t, before)
	u.mustAdd("2025-01-01T00:00:00Z", "click", "x", 2.0)
	u.mustAdd("2025-01-01T00:01:00Z", "click", "x", 3.0)
	var s State
	if err := after.Decode(&s, u.enc); err != nil {
		t.Fatal(err)
	}
	ev, v := after.NewEvent(), after.NewVector()
	fill(t, after, ev, "2025-01-01T00:02:00Z", "click", "x", 4.0)
	if err := after.Update(&s, ev, v); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"b_renamed": 9, "a": 1, "event_count": 3} {
		if got, _ := featureOf(t, after, v, name); got != want {
			t.Errorf("after the config change: %s = %v, want %v", name, got, want)
		}
	}
}

func TestStateJSON(t *testing.T) {
	c := mustParse(t, `{"event_types": ["click", "purchase"], "windows": [
		{"name": "spend_1h", "agg": "sum", "field": "event_data.amount", "window": "1h"},
		{"name": "max_1h", "agg": "max", "field": "event_data.amount", "window": "1h", "event_types": ["refund"]}]}`)
	u := newUser(t, c)
	u.mustAdd("2025-01-01T10:00:00Z", "click")
	u.mustAdd("2025-01-01T10:20:00.25Z", "purchase", "event_data.amount", 12.5)
	got, err := c.StateJSON([]byte("x"), u.enc)
	if err != nil {
		t.Fatal(err)
	}
	want := `x{"event_count":2,"unique_event_types":2,"total_value":12.5,"avg_value_per_event":6.25,` +
		`"click_count":1,"click_ratio":0.5,"purchase_count":1,"purchase_ratio":0.5,` +
		`"total_sessions":1,"avg_session_length":2,"recent_activity_7d":2,"avg_events_per_day":2,` +
		`"last_activity":"2025-01-01T10:20:00.25Z","spend_1h":12.5,"max_1h":null}`
	if string(got) != want {
		t.Errorf("StateJSON:\n got %s\nwant %s", got, want)
	}
	c2 := mustParse(t, `{"include": ["hour_of_day", "event_count"]}`)
	if got, err := c2.StateJSON(nil, c2.Encode(nil, &newUserWith(t, c2, "2025-01-01T10:00:00Z").s)); err != nil || string(got) != `{"event_count":1}` {
		t.Errorf("with include: %s, %v; want only the included features of the user", got, err)
	}
	if _, err := c.StateJSON(nil, []byte{Version, 0xff}); err == nil {
		t.Error("a corrupt state gave no error")
	}
	if _, err := c.StateJSON(nil, nil); err == nil {
		t.Error("no state gave no error")
	}
}

func newUserWith(t testing.TB, c *Config, ts string) *user {
	u := newUser(t, c)
	u.mustAdd(ts, "click")
	return u
}

// FuzzDecode: no input makes Decode panic; what it accepts re-encodes
// canonically and can be updated and rendered.
func FuzzDecode(f *testing.F) {
	c := mustParse(f, windowsConfig)
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add(c.Encode(nil, worst(c)))
	for seed := range uint64(4) {
		f.Add(c.Encode(nil, &randomUser(f, c, seed, 50*int(seed+1)).s))
	}
	ev, v := c.NewEvent(), c.NewVector()
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := c.Decode(&s, b); err != nil {
			return
		}
		enc := c.Encode(nil, &s)
		var back State
		if err := c.Decode(&back, enc); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if again := c.Encode(nil, &back); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not canonical:\n%x\n%x", enc, again)
		}
		if js, err := c.StateJSON(nil, enc); err != nil || !json.Valid(js) {
			t.Fatalf("StateJSON: %s, %v", js, err)
		}
		ev.Values[InputTime] = Value{Int: s.last - int64(time.Minute), Ok: true}
		ev.Values[InputType] = Value{Str: []byte("purchase"), Ok: true}
		ev.Values[c.amount] = Value{Num: 1, Ok: true}
		_ = c.Update(&s, ev, v)
		ev.Values[InputTime].Int = s.last + int64(time.Hour)
		_ = c.Update(&s, ev, v)
		_ = c.Encode(nil, &s)
	})
}
