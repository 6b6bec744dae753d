package features

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

type step struct {
	ts, typ string
	fields  []any
	late    bool           // Update must refuse it
	want    map[string]any // features after it; nil value = no value
}

func runSteps(t *testing.T, config string, steps []step) {
	t.Helper()
	u := newUser(t, mustParse(t, config))
	for _, s := range steps {
		err := u.add(s.ts, s.typ, s.fields...)
		var late *LateError
		switch {
		case s.late && !errors.As(err, &late):
			t.Fatalf("event at %s: error %v, want late", s.ts, err)
		case !s.late && err != nil:
			t.Fatalf("event at %s: %v", s.ts, err)
		}
		if !s.late {
			u.want(s.typ+"@"+s.ts, s.want)
		}
	}
}

func TestSeedFeatures(t *testing.T) {
	// The seed's own example: user 123 views /products, then buys.
	runSteps(t, `{}`, []step{
		{ts: "2025-01-04T10:15:00Z", typ: "page_view", want: map[string]any{
			"event_count": 1, "unique_event_types": 1, "total_value": 0.0, "avg_value_per_event": 0.0,
			"is_purchase_event": 0, "hour_of_day": 10, "day_of_week": 5, "is_weekend": true,
			"page_view_count": 1, "page_view_ratio": 1.0, "purchase_count": 0, "purchase_ratio": 0.0,
			"total_sessions": 1, "avg_session_length": 1.0, "recent_activity_7d": 1, "avg_events_per_day": 1.0,
		}},
		{ts: "2025-01-06T23:59:59Z", typ: "purchase", fields: []any{"event_data.amount", 99.99}, want: map[string]any{
			"event_count": 2, "unique_event_types": 2, "total_value": 99.99, "avg_value_per_event": 99.99 / 2,
			"is_purchase_event": 1, "hour_of_day": 23, "day_of_week": 0, "is_weekend": false,
			"page_view_ratio": 0.5, "purchase_count": 1, "purchase_ratio": 0.5,
			"total_sessions": 2, "avg_session_length": 1.0, "recent_activity_7d": 2,
			"avg_events_per_day": 1.0, // 2 days 13h45m: 2 events / 2 whole days
			"last_activity":      float64(time.Date(2025, 1, 6, 23, 59, 59, 0, time.UTC).UnixNano()),
		}},
		// An amount on a type that is not a value event type is not summed.
		{ts: "2025-01-07T00:00:00Z", typ: "click", fields: []any{"event_data.amount", 5.0}, want: map[string]any{
			"total_value": 99.99, "click_count": 1, "click_ratio": 1.0 / 3, "avg_events_per_day": 3.0 / 2,
		}},
		// A purchase without an amount counts as a purchase, adds nothing.
		{ts: "2025-01-07T00:01:00Z", typ: "purchase", want: map[string]any{"total_value": 99.99, "purchase_count": 2}},
	})
}

func TestSessions(t *testing.T) {
	cfg := `{"allowed_lateness": "1h"}`
	t.Run("in order", func(t *testing.T) {
		runSteps(t, cfg, []step{
			{ts: "2025-01-01T00:00:00Z", typ: "click", want: map[string]any{"total_sessions": 1}},
			{ts: "2025-01-01T00:10:00Z", typ: "click", want: map[string]any{"total_sessions": 1}},
			{ts: "2025-01-01T00:40:00Z", typ: "click", want: map[string]any{"total_sessions": 1}}, // exactly 30m: same session, as the seed's <= 30
			{ts: "2025-01-01T01:10:00.001Z", typ: "click", want: map[string]any{"total_sessions": 2, "avg_session_length": 2.0}},
			{ts: "2025-01-01T01:10:00.001Z", typ: "click", want: map[string]any{"total_sessions": 2, "avg_session_length": 2.5}},
		})
	})
	t.Run("out of order joins, extends and splits", func(t *testing.T) {
		runSteps(t, cfg, []step{
			{ts: "2025-01-01T00:00:00Z", typ: "click", want: map[string]any{"total_sessions": 1}},
			{ts: "2025-01-01T00:50:00Z", typ: "click", want: map[string]any{"total_sessions": 2}},
			{ts: "2025-01-01T00:25:00Z", typ: "click", want: map[string]any{"total_sessions": 1}}, // bridges both
			{ts: "2025-01-01T02:00:00Z", typ: "click", want: map[string]any{"total_sessions": 2}},
			{ts: "2025-01-01T01:15:00Z", typ: "click", want: map[string]any{"total_sessions": 2}}, // 25m after 00:50: extends it
			{ts: "2025-01-01T01:40:00Z", typ: "click", want: map[string]any{"total_sessions": 1, "avg_session_length": 6.0}},
			{ts: "2025-01-01T04:00:00Z", typ: "click", want: map[string]any{"total_sessions": 2}},
			{ts: "2025-01-01T03:00:00Z", typ: "click", want: map[string]any{"total_sessions": 3}}, // alone between two
			{ts: "2025-01-01T03:30:00Z", typ: "click", want: map[string]any{"total_sessions": 2}},
		})
	})
	t.Run("no lateness", func(t *testing.T) {
		runSteps(t, `{"allowed_lateness": "0s"}`, []step{
			{ts: "2025-01-01T00:00:00Z", typ: "click", want: map[string]any{"total_sessions": 1}},
			{ts: "2025-01-01T01:00:00Z", typ: "click", want: map[string]any{"total_sessions": 2}},
			{ts: "2025-01-01T01:00:00Z", typ: "click", want: map[string]any{"total_sessions": 2, "event_count": 3}},
			{ts: "2025-01-01T00:59:59Z", typ: "click", late: true},
		})
	})
}

func TestLateness(t *testing.T) {
	runSteps(t, `{"allowed_lateness": "1h"}`, []step{
		{ts: "2025-01-01T02:00:00Z", typ: "purchase", fields: []any{"event_data.amount", 10.0}, want: map[string]any{"event_count": 1}},
		{ts: "2025-01-01T00:59:59Z", typ: "purchase", fields: []any{"event_data.amount", 10.0}, late: true},
		{ts: "2025-01-01T01:00:00Z", typ: "click", want: map[string]any{"event_count": 2, "total_value": 10.0, "last_activity": float64(time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC).UnixNano())}}, // exactly 1h behind: on time
		{ts: "2024-12-01T00:00:00Z", typ: "click", late: true},
		{ts: "2025-01-01T02:00:01Z", typ: "click", want: map[string]any{"event_count": 3, "total_value": 10.0}},
	})
	c := Default()
	u := newUser(t, c)
	u.mustAdd("2025-01-01T02:00:00Z", "click")
	err := u.add("2025-01-01T00:30:00.5Z", "click")
	want := "late: event time 2025-01-01T00:30:00.5Z is 1h29m59.5s behind the user's latest event time 2025-01-01T02:00:00Z (allowed_lateness 1h0m0s)"
	if err == nil || err.Error() != want {
		t.Errorf("late error:\n got %v\nwant %s", err, want)
	}
}

func TestUniqueEventTypesBound(t *testing.T) {
	runSteps(t, `{"max_other_event_types": 2, "event_types": ["click", "purchase"]}`, []step{
		{ts: "2025-01-01T00:00:00Z", typ: "x", want: map[string]any{"unique_event_types": 1}},
		{ts: "2025-01-01T00:00:01Z", typ: "y", want: map[string]any{"unique_event_types": 2}},
		{ts: "2025-01-01T00:00:02Z", typ: "z", want: map[string]any{"unique_event_types": 2}}, // a third other type is not tracked
		{ts: "2025-01-01T00:00:03Z", typ: "click", want: map[string]any{"unique_event_types": 3, "click_count": 1}},
		{ts: "2025-01-01T00:00:04Z", typ: "x", want: map[string]any{"unique_event_types": 3, "event_count": 5}},
		{ts: "2025-01-01T00:00:05Z", typ: "purchase", want: map[string]any{"unique_event_types": 4, "purchase_ratio": 1.0 / 6}},
	})
}

func TestRecentActivity(t *testing.T) {
	// Hour buckets: the window is the 168 hours up to the latest event's hour.
	runSteps(t, `{}`, []step{
		{ts: "2025-01-01T00:30:00Z", typ: "click", want: map[string]any{"recent_activity_7d": 1}},
		{ts: "2025-01-07T23:59:59Z", typ: "click", want: map[string]any{"recent_activity_7d": 2}},
		{ts: "2025-01-08T00:00:00Z", typ: "click", want: map[string]any{"recent_activity_7d": 2}}, // the 2025-01-01T00 hour left
		{ts: "2025-01-20T00:00:00Z", typ: "click", want: map[string]any{"recent_activity_7d": 1, "event_count": 4}},
	})
	runSteps(t, `{"recent_window": "2h", "recent_bucket": "30m"}`, []step{
		{ts: "2025-01-01T00:29:00Z", typ: "click", want: map[string]any{"recent_activity_2h": 1}},
		{ts: "2025-01-01T01:00:00Z", typ: "click", want: map[string]any{"recent_activity_2h": 2}},
		{ts: "2025-01-01T02:00:00Z", typ: "click", want: map[string]any{"recent_activity_2h": 2}},
		{ts: "2025-01-01T01:59:00Z", typ: "click", want: map[string]any{"recent_activity_2h": 3}}, // out of order, in the window
		{ts: "2025-01-01T01:29:00Z", typ: "click", want: map[string]any{"recent_activity_2h": 4}}, // in its bucket 01:00
	})
}

const windowsConfig = `{"allowed_lateness": "2h", "windows": [
	{"name": "amount_1h", "agg": "sum", "field": "event_data.amount", "window": "1h", "event_types": ["purchase"]},
	{"name": "mean_1h", "agg": "mean", "field": "event_data.amount", "window": "1h", "event_types": ["purchase"]},
	{"name": "min_1h", "agg": "min", "field": "event_data.amount", "window": "1h", "event_types": ["purchase"]},
	{"name": "max_1h", "agg": "max", "field": "event_data.amount", "window": "1h", "event_types": ["purchase"]},
	{"name": "events_1h", "agg": "count", "window": "1h"},
	{"name": "with_page_1h", "agg": "count", "field": "event_data.page", "type": "string", "window": "1h", "bucket": "15m"},
	{"name": "pages_1h", "agg": "distinct", "field": "event_data.page", "window": "1h", "max_distinct": 2},
	{"name": "products_1h", "agg": "distinct", "field": "event_data.product_id", "type": "int", "window": "1h"},
	{"name": "qty_max_1h", "agg": "max", "field": "qty", "type": "int", "window": "1h"}
]}`

func TestWindows(t *testing.T) {
	buy := func(a float64) []any { return []any{"event_data.amount", a} }
	page := func(p string) []any { return []any{"event_data.page", p} }
	runSteps(t, windowsConfig, []step{
		{ts: "2025-01-01T10:00:30Z", typ: "purchase", fields: append(buy(5), "event_data.product_id", int64(7), "qty", int64(3)), want: map[string]any{
			"amount_1h": 5.0, "mean_1h": 5.0, "min_1h": 5.0, "max_1h": 5.0, "events_1h": 1, "with_page_1h": 0, "pages_1h": 0,
			"products_1h": 1, "qty_max_1h": 3.0,
		}},
		{ts: "2025-01-01T10:30:00Z", typ: "click", fields: append(buy(1000), page("a")...), want: map[string]any{
			"amount_1h": 5.0, "events_1h": 2, "with_page_1h": 1, "pages_1h": 1,
		}},
		{ts: "2025-01-01T10:59:59Z", typ: "purchase", fields: append(buy(-2), "event_data.product_id", int64(7)), want: map[string]any{
			"amount_1h": 3.0, "mean_1h": 1.5, "min_1h": -2.0, "max_1h": 5.0, "events_1h": 3, "products_1h": 1, "qty_max_1h": 3.0,
		}},
		// The window is the 60 one-minute buckets up to 11:00: 10:00:30's
		// bucket (10:00) has left it.
		{ts: "2025-01-01T11:00:00Z", typ: "page_view", fields: page("b"), want: map[string]any{
			"amount_1h": -2.0, "mean_1h": -2.0, "min_1h": -2.0, "max_1h": -2.0, "events_1h": 3, "with_page_1h": 2, "pages_1h": 2,
			"qty_max_1h": nil, // its only value left with 10:00
		}},
		{ts: "2025-01-01T11:01:00Z", typ: "page_view", fields: page("c"), want: map[string]any{"pages_1h": 2}}, // at max_distinct
		// 15-minute buckets: 10:30 leaves at 11:30.
		{ts: "2025-01-01T11:30:00Z", typ: "page_view", fields: page("c"), want: map[string]any{
			"with_page_1h": 3, "pages_1h": 2, "events_1h": 4,
		}},
		{ts: "2025-01-01T12:00:00Z", typ: "page_view", fields: page("c"), want: map[string]any{
			"amount_1h": 0.0, "mean_1h": nil, "min_1h": nil, "max_1h": nil, "pages_1h": 1, "with_page_1h": 2, "events_1h": 3,
		}},
		// Out of order: 11:10 is in the window (counted), 10:59 is not
		// (its bucket left), but both are on time and counted overall.
		{ts: "2025-01-01T11:10:00Z", typ: "purchase", fields: buy(4), want: map[string]any{"amount_1h": 4.0, "events_1h": 4, "event_count": 8}},
		{ts: "2025-01-01T10:59:00Z", typ: "purchase", fields: buy(4), want: map[string]any{"amount_1h": 4.0, "events_1h": 4, "event_count": 9}},
		// A jump past the whole window empties it.
		{ts: "2025-01-02T12:00:00Z", typ: "click", want: map[string]any{"amount_1h": 0.0, "events_1h": 1, "pages_1h": 0, "products_1h": 0}},
	})
}

// TestDistinctSaturates checks max_distinct on a longer run against a
// direct count: min(distinct values in the window, max_distinct).
func TestDistinctSaturates(t *testing.T) {
	c := mustParse(t, `{"allowed_lateness": "30m", "windows": [{"name": "d", "agg": "distinct", "field": "p", "window": "1h", "bucket": "10m", "max_distinct": 3}]}`)
	u := newUser(t, c)
	type seen struct {
		t time.Time
		p string
	}
	var all []seen
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	latest := base
	saturated, exact := 0, 0
	for i := 0; i < 400; i++ {
		// Mostly forward, sometimes up to 25 minutes back.
		at := base.Add(time.Duration(i*7) * time.Minute)
		if i%5 == 3 {
			at = at.Add(-time.Duration(i%26) * time.Minute)
		}
		// Phases of few and of many values, so the count is sometimes
		// exact and sometimes capped.
		pool := 2
		if (i/40)%2 == 1 {
			pool = 7
		}
		p := string(rune('a' + (i*i)%pool))
		u.mustAdd(at.Format(time.RFC3339), "click", "p", p)
		all = append(all, seen{at, p})
		if at.After(latest) {
			latest = at
		}
		head := latest.Truncate(10 * time.Minute)
		set := map[string]bool{}
		for _, s := range all {
			if s.t.Truncate(10 * time.Minute).After(head.Add(-time.Hour)) {
				set[s.p] = true
			}
		}
		want := min(len(set), 3)
		if len(set) > 3 {
			saturated++
		} else {
			exact++
		}
		if got, _ := u.get("d"); int(got) != want {
			t.Fatalf("event %d at %s: distinct %v, want %d (exact %d)", i, at, got, want, len(set))
		}
	}
	if saturated < 50 || exact < 50 {
		t.Errorf("the run had %d events over max_distinct and %d under: both cases need exercising", saturated, exact)
	}
}

func TestEvalDoesNotApply(t *testing.T) {
	c := Default()
	u := newUser(t, c)
	u.mustAdd("2025-01-01T00:00:00Z", "purchase", "event_data.amount", 3.0)
	before := c.Encode(nil, &u.s)
	fill(t, c, u.ev, "2025-01-01T00:00:00Z", "purchase", "event_data.amount", 3.0)
	c.Eval(&u.s, u.ev, u.vec)
	if got := c.Encode(nil, &u.s); string(got) != string(before) {
		t.Error("Eval changed the state")
	}
	u.want("replayed", map[string]any{"event_count": 1, "total_value": 3.0, "is_purchase_event": 1})
}

func TestUsers(t *testing.T) {
	var us Users
	for round := 0; round < 3; round++ {
		us.Reset()
		for i := 0; i < 1000; i++ {
			key := []byte(strings.Repeat("k", i%500%3) + strconv.Itoa(i%500))
			u, fresh := us.Get(key)
			if fresh != (i < 500) {
				t.Fatalf("round %d, key %d (%q): fresh %v", round, i, key, fresh)
			}
			if fresh {
				u.Row = i
			} else if u.Row != i-500 {
				t.Fatalf("key %q: got the entry of row %d, want %d", key, u.Row, i-500)
			}
		}
		n := 0
		us.Each(func(u *User) {
			if u.Row != n {
				t.Errorf("Each: entry %d has row %d: not in order of first appearance", n, u.Row)
			}
			n++
		})
		if n != 500 {
			t.Errorf("Each visited %d users, want 500", n)
		}
	}
}

// TestUpdateDoesNotAllocate: the per-event path of a warmed-up user
// allocates nothing, natively (and so puts no load on the Wasm GC).
func TestUpdateDoesNotAllocate(t *testing.T) {
	c := mustParse(t, windowsConfig)
	u := newUser(t, c)
	for i := 0; i < 200; i++ {
		u.mustAdd(time.Date(2025, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339), "purchase",
			"event_data.amount", float64(i), "event_data.page", string(rune('a'+i%9)), "event_data.product_id", int64(i%5))
	}
	var users Users
	buf := make([]byte, 0, c.MaxStateSize())
	ns := time.Date(2025, 1, 1, 4, 0, 0, 0, time.UTC).UnixNano()
	allocs := testing.AllocsPerRun(200, func() {
		users.Reset()
		st, fresh := users.Get([]byte("user-1"))
		if fresh {
			if err := c.Decode(&st.State, u.enc); err != nil {
				t.Fatal(err)
			}
		}
		ns += int64(time.Second)
		u.ev.Values[InputTime].Int = ns
		if err := c.Update(&st.State, u.ev, u.vec); err != nil {
			t.Fatal(err)
		}
		buf = c.Encode(buf[:0], &st.State)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per event, want 0", allocs)
	}
}
