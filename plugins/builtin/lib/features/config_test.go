package features

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDefaultOutputs(t *testing.T) {
	c := Default()
	var got []string
	for _, o := range c.Outputs() {
		got = append(got, o.Name)
	}
	want := []string{
		"features.event_count", "features.unique_event_types", "features.total_value", "features.avg_value_per_event",
		"features.is_purchase_event", "features.hour_of_day", "features.day_of_week", "features.is_weekend",
		"features.page_view_count", "features.page_view_ratio", "features.click_count", "features.click_ratio",
		"features.add_to_cart_count", "features.add_to_cart_ratio", "features.purchase_count", "features.purchase_ratio",
		"features.search_count", "features.search_ratio",
		"features.total_sessions", "features.avg_session_length", "features.recent_activity_7d",
		"features.avg_events_per_day", "features.last_activity",
	}
	if !slices.Equal(got, want) {
		t.Errorf("default outputs:\n got %v\nwant %v", got, want)
	}
	var in []Field
	in = append(in, c.Inputs()...)
	wantIn := []Field{{"timestamp", TypeTime, true}, {"event_type", TypeString, true}, {"event_data.amount", TypeNumber, false}}
	if !slices.Equal(in, wantIn) {
		t.Errorf("default inputs %v, want %v", in, wantIn)
	}
}

func TestConfigOutputsFollowConfig(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		want         []Output
	}{
		{"include keeps feature order, empty prefix is top level",
			`{"prefix": "", "include": ["last_activity", "event_count", "is_weekend"]}`,
			[]Output{{"event_count", KindInt}, {"is_weekend", KindBool}, {"last_activity", KindTime}}},
		{"windows after builtins, kinds by aggregation",
			`{"prefix": "f.", "event_types": [], "include": ["w_max", "w_count", "w_distinct", "recent_activity_12h"], "recent_window": "12h",
			  "windows": [{"name": "w_count", "agg": "count", "window": "1h"},
			              {"name": "w_max", "agg": "max", "field": "n", "type": "int", "window": "1h"},
			              {"name": "w_distinct", "agg": "distinct", "field": "s", "window": "1h"}]}`,
			[]Output{{"f.recent_activity_12h", KindInt}, {"f.w_count", KindInt}, {"f.w_max", KindFloat}, {"f.w_distinct", KindInt}}},
		{"event type names make feature names",
			`{"event_types": ["signup"], "include": ["signup_count", "signup_ratio"]}`,
			[]Output{{"features.signup_count", KindInt}, {"features.signup_ratio", KindFloat}}},
		{"recent window name in the largest whole unit",
			`{"recent_window": "90m", "recent_bucket": "1m", "include": ["recent_activity_90m"]}`,
			[]Output{{"features.recent_activity_90m", KindInt}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.config)
			if !slices.Equal(c.Outputs(), tc.want) {
				t.Errorf("outputs %v, want %v", c.Outputs(), tc.want)
			}
		})
	}
}

func TestConfigInputsShared(t *testing.T) {
	c := mustParse(t, `{"windows": [
		{"name": "a", "agg": "sum", "field": "event_data.amount", "window": "1h"},
		{"name": "b", "agg": "distinct", "field": "event_type", "window": "1h"},
		{"name": "c", "agg": "distinct", "field": "event_data.product_id", "type": "int", "window": "1h"}]}`)
	want := []Field{{"timestamp", TypeTime, true}, {"event_type", TypeString, true},
		{"event_data.amount", TypeNumber, false}, {"event_data.product_id", TypeInt, false}}
	if !slices.Equal(c.Inputs(), want) {
		t.Errorf("inputs %v, want %v: a field read by several parts of the config is declared once", c.Inputs(), want)
	}
}

func TestConfigErrors(t *testing.T) {
	w := func(s string) string {
		return `{"windows": [{"name": "ok", "agg": "count", "window": "1h"}, ` + s + `]}`
	}
	for _, tc := range []struct{ config, want string }{
		{`[1]`, `want an object, got a list`},
		{`{"colour": 1}`, `colour: unknown key (known: allowed_lateness, amount,`},
		{`{"session_gap": "30 minutes"}`, `session_gap: "30 minutes" is not a duration`},
		{`{"session_gap": 30}`, `session_gap: want a duration such as "30m"`},
		{`{"session_gap": "0s"}`, `session_gap: must be positive`},
		{`{"allowed_lateness": "-1m"}`, `allowed_lateness: must not be negative`},
		{`{"allowed_lateness": "100h"}`, `allowed_lateness: 100h0m0s is more than 63 × session_gap`},
		{`{"timestamp": "a..b"}`, `timestamp: field path "a..b" has an empty key`},
		{`{"amount": "timestamp"}`, `amount: timestamp is already read as time`},
		{`{"event_types": ["page view"]}`, `event_types[0]: "page view" cannot be part of a feature name`},
		{`{"event_types": ["a", "a"]}`, `event_types[1]: "a" is listed twice`},
		{`{"event_types": "a"}`, `event_types: want a list, got a string`},
		{`{"event_types": [1]}`, `event_types[0]: want a string, got a number`},
		{`{"value_event_types": [""]}`, `value_event_types[0]: empty event type`},
		{`{"max_other_event_types": 1000}`, `max_other_event_types: 1000 is out of range`},
		{`{"max_other_event_types": 1.5}`, `max_other_event_types: want a whole number, got 1.5`},
		{`{"recent_window": "90s", "recent_bucket": "1h"}`, `recent_bucket: 1h0m0s does not divide the window`},
		{`{"recent_window": "1500ms"}`, `recent_window: 1.5s is not a positive whole number of seconds`},
		{`{"prefix": "a b."}`, `prefix: "a b." gives the output field "a b.event_count"`},
		{`{"include": []}`, `include: empty list`},
		{`{"include": ["event_count", "nope"]}`, `include[1]: unknown feature "nope" (known: event_count,`},
		{`{"include": ["event_count", "event_count"]}`, `include[1]: "event_count" is listed twice`},
		{`{"windows": {}}`, `windows: want a list, got an object`},
		{w(`{"name": "m", "agg": "median", "field": "x", "window": "1h"}`), `windows[1].agg: unknown aggregation "median" (want count, sum, mean, min, max or distinct)`},
		{w(`{"name": "m", "window": "1h"}`), `windows[1].agg: missing`},
		{w(`{"agg": "count", "window": "1h"}`), `windows[1].name: missing`},
		{w(`{"name": "a.b", "agg": "count", "window": "1h"}`), `windows[1].name: "a.b": character '.' is not allowed`},
		{w(`{"name": "event_count", "agg": "count", "window": "1h"}`), `windows[1].name: feature name "event_count" is also the name of builtin feature event_count`},
		{w(`{"name": "ok", "agg": "count", "window": "2h"}`), `windows[1].name: feature name "ok" is also the name of windows[0].name`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "colour": "red"}`), `windows[1].colour: unknown key (known: agg, bucket, buckets,`},
		{w(`{"name": "m", "agg": "sum", "window": "1h"}`), `windows[1].field: missing: sum needs a field`},
		{w(`{"name": "m", "agg": "count", "field": "x", "window": "1h"}`), `windows[1].type: missing: a count of events having x needs its type`},
		{w(`{"name": "m", "agg": "count", "type": "int", "window": "1h"}`), `windows[1].type: set without a field`},
		{w(`{"name": "m", "agg": "sum", "field": "x", "type": "string", "window": "1h"}`), `windows[1].type: a string cannot be aggregated with sum`},
		{w(`{"name": "m", "agg": "sum", "field": "x", "type": "decimal", "window": "1h"}`), `windows[1].type: unknown type "decimal"`},
		{w(`{"name": "m", "agg": "distinct", "field": "event_data.amount", "window": "1h"}`), `windows[1].type: event_data.amount is already read as number`},
		{w(`{"name": "m", "agg": "sum", "field": "x..y", "window": "1h"}`), `windows[1].field: field path "x..y" has an empty key`},
		{w(`{"name": "m", "agg": "count"}`), `windows[1].window: missing`},
		{w(`{"name": "m", "agg": "count", "window": "-1h"}`), `windows[1].window: must be positive`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "bucket": "7m"}`), `windows[1].bucket: 7m0s does not divide the window 1h0m0s`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "bucket": "1us"}`), `windows[1].bucket: 1µs is below the minimum bucket width`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "bucket": "1m", "buckets": 60}`), `windows[1].buckets: set together with bucket`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "buckets": 0}`), `windows[1].buckets: 0 is out of range`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "buckets": 7}`), `windows[1].buckets: a 1h0m0s window does not split into 7 whole buckets`},
		{w(`{"name": "m", "agg": "count", "window": "1000h", "bucket": "1m"}`), `windows[1].bucket: 60000 buckets, at most 4096`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "max_distinct": 3}`), `windows[1].max_distinct: only distinct windows keep values`},
		{w(`{"name": "m", "agg": "distinct", "field": "p", "window": "1h", "max_distinct": 0}`), `windows[1].max_distinct: 0 is out of range`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "event_types": ["a", "a"]}`), `windows[1].event_types[1]: "a" is listed twice`},
		{w(`{"name": "m", "agg": "count", "window": "1h", "buckets": "60"}`), `windows[1].buckets: want a whole number, got a string`},
		{w(`7`), `windows[1]: want an object, got a number`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := Parse([]byte(tc.config))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Parse(%s):\n got %v\nwant an error starting %q", tc.config, err, tc.want)
			}
		})
	}
}

// TestConfigUnmarshal: the plugin decodes its config through
// encoding/json (the SDK's Config.Decode); the path must survive that.
func TestConfigUnmarshal(t *testing.T) {
	c := Default()
	err := json.Unmarshal([]byte(`{"windows": [{"name": "m", "agg": "median", "field": "x", "window": "1h"}]}`), c)
	if err == nil || !strings.HasPrefix(err.Error(), "windows[0].agg: ") {
		t.Errorf("error %v, want one starting with the path", err)
	}
	if err := json.Unmarshal([]byte(`{"prefix": "", "include": ["event_count"]}`), c); err != nil {
		t.Fatal(err)
	}
	if got := c.Outputs(); len(got) != 1 || got[0].Name != "event_count" {
		t.Errorf("outputs %v after decoding", got)
	}
}

func TestConfigNullIsAbsent(t *testing.T) {
	c := mustParse(t, `{"prefix": null, "windows": [{"name": "m", "agg": "count", "window": "1h", "field": null, "buckets": null}]}`)
	if c.prefix != "features." || c.windows[1].input != -1 || c.windows[1].n != defaultBuckets {
		t.Errorf("null keys were not taken as absent: prefix %q, window %+v", c.prefix, c.windows[1])
	}
	for _, raw := range []string{"", "null", "{}"} {
		if _, err := Parse([]byte(raw)); err != nil {
			t.Errorf("Parse(%q): %v", raw, err)
		}
	}
}
