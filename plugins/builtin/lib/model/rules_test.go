package model

import (
	"math"
	"strings"
	"testing"
)

// The seed's two rule scorers, as a user writes them in the score plugin's
// config. README.md shows the same blocks in YAML.
const (
	seedValueConfig = `{
		"features": ["event_count", "unique_event_types", "total_value", "is_purchase_event"],
		"model": {"weights": {"event_count": 0.1, "unique_event_types": 0.2, "total_value": 0.001, "is_purchase_event": 0.5}},
		"labels": [{"label": "high_value_user", "above": 0.7}, {"label": "medium_value_user", "above": 0.3}],
		"default_label": "low_value_user",
		"confidence": {"constant": 0.85}
	}`
	seedEngagementConfig = `{
		"model": {"conditions": [
			{"feature": "total_events", "op": ">", "value": 10, "add": 0.3},
			{"feature": "recent_activity_7d", "op": ">", "value": 5, "add": 0.3},
			{"feature": "avg_events_per_day", "op": ">", "value": 2, "add": 0.2},
			{"feature": "total_sessions", "op": ">", "value": 3, "add": 0.2}
		]},
		"labels": [{"label": "high_engagement", "at_least": 0.8}, {"label": "medium_engagement", "at_least": 0.5}],
		"default_label": "low_engagement",
		"confidence": {"score_plus": 0.2, "max": 1.0}
	}`
)

// seedValue transcribes the seed's RealTimeDataProcessor._make_prediction
// and the constant confidence of _send_prediction. Python adds left to
// right in float64; the conversions keep Go from fusing a multiply and an
// add, which Python never does.
func seedValue(f map[string]float64) (string, float64, float64) {
	score := float64(f["event_count"]*0.1) +
		float64(f["unique_event_types"]*0.2) +
		float64(f["total_value"]*0.001) +
		float64(f["is_purchase_event"]*0.5)
	label := "low_value_user"
	if score > 0.7 {
		label = "high_value_user"
	} else if score > 0.3 {
		label = "medium_value_user"
	}
	return label, score, 0.85
}

// seedEngagement transcribes the buffered RealTimeProcessor.make_prediction;
// a missing feature is 0, as features.get(name, 0).
func seedEngagement(f map[string]float64) (string, float64, float64) {
	score := 0.0
	if f["total_events"] > 10 {
		score += 0.3
	}
	if f["recent_activity_7d"] > 5 {
		score += 0.3
	}
	if f["avg_events_per_day"] > 2 {
		score += 0.2
	}
	if f["total_sessions"] > 3 {
		score += 0.2
	}
	label := "low_engagement"
	if score >= 0.8 {
		label = "high_engagement"
	} else if score >= 0.5 {
		label = "medium_engagement"
	}
	return label, score, math.Min(score+0.2, 1.0)
}

// SeedValueRows are feature vectors for the value scorer: zero, scores of
// exactly 0.3 and 0.7 (in float64, as Python computes them), the nearest
// values either side, and ordinary users.
var seedValueRows = []map[string]float64{
	{},
	{"total_value": 300}, // 0.3 exactly: low
	{"event_count": 3},   // 0.30000000000000004: medium
	{"event_count": 1, "unique_event_types": 1},       // 0.30000000000000004
	{"total_value": 299.99},                           // just under 0.3
	{"unique_event_types": 1, "is_purchase_event": 1}, // 0.7 exactly: medium
	{"event_count": 5, "unique_event_types": 1},       // 0.7 exactly
	{"event_count": 4, "total_value": 300},            // 0.7 exactly
	{"event_count": 2, "total_value": 500},            // 0.7 exactly
	{"event_count": 7},                                // 0.7000000000000001: high
	{"total_value": 700},                              // 0.7000000000000001
	{"event_count": 2, "total_value": 100},            // 0.30000000000000004
	{"event_count": 12, "unique_event_types": 4, "total_value": 1234.56, "is_purchase_event": 1},
	{"event_count": 1, "unique_event_types": 1, "total_value": 25.5},
	// 0.7000000000000001 in the seed's order, 0.7 in alphabetical order.
	{"event_count": 1, "unique_event_types": 1, "total_value": 400},
}

// seedEngagementRows cross every threshold of the engagement rules: each
// feature at its boundary (not above it) and just past it, and sums of
// exactly 0.5 and 0.8.
var seedEngagementRows = []map[string]float64{
	{}, // every feature missing: 0, as the seed's features.get(name, 0)
	{"total_events": 10, "recent_activity_7d": 5, "avg_events_per_day": 2, "total_sessions": 3},
	{"total_events": 11},
	{"total_events": 10.5, "recent_activity_7d": 5.5},                      // 0.6
	{"total_events": 11, "avg_events_per_day": 2.5},                        // 0.5 exactly
	{"recent_activity_7d": 6, "total_sessions": 4},                         // 0.5 exactly
	{"avg_events_per_day": 2.01, "total_sessions": 4},                      // 0.4
	{"total_events": 11, "recent_activity_7d": 6, "avg_events_per_day": 3}, // 0.8 exactly
	{"total_events": 11, "recent_activity_7d": 6, "total_sessions": 4},     // 0.8 exactly
	{"total_events": 11, "avg_events_per_day": 3, "total_sessions": 4},     // 0.7
	{"recent_activity_7d": 6, "avg_events_per_day": 3, "total_sessions": 4},
	{"total_events": 50, "recent_activity_7d": 20, "avg_events_per_day": 7, "total_sessions": 9},
	{"total_events": -1, "avg_events_per_day": 2.0000001},
}

func TestSeedRuleScorers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		seed   func(map[string]float64) (string, float64, float64)
		rows   []map[string]float64
	}{
		{"value", seedValueConfig, seedValue, seedValueRows},
		{"engagement", seedEngagementConfig, seedEngagement, seedEngagementRows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustLoad(t, tc.config, nil)
			b, err := mustConfig(t, tc.config).Bind(m.Features(), m)
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			x := make([]float64, len(m.Features()))
			for _, row := range tc.rows {
				for j, name := range m.Features() {
					v, ok := row[name]
					if !ok {
						v = b.Defaults[j]
					}
					x[j] = v
				}
				m.Score(x, &r)
				label, score, conf := tc.seed(row)
				if got := m.Labels()[r.Label]; got != label || r.Score != score || !r.HasConfidence || r.Confidence != conf {
					t.Errorf("%v: got %s score %v confidence %v (set %v), seed says %s %v %v",
						row, got, r.Score, r.Confidence, r.HasConfidence, label, score, conf)
				}
				if r.HasProbability {
					t.Errorf("%v: rules have no probability, got %v", row, r.Probability)
				}
			}
		})
	}
}

func TestRuleOperators(t *testing.T) {
	for _, tc := range []struct {
		op   string
		x    float64
		want bool
	}{
		{">", 2, false}, {">", 2.5, true},
		{">=", 2, true}, {">=", 1.9, false},
		{"<", 2, false}, {"<", 1.5, true},
		{"<=", 2, true}, {"<=", 2.1, false},
		{"==", 2, true}, {"==", 2.0000001, false},
		{"!=", 2, false}, {"!=", -2, true},
	} {
		cfg := `{"model": {"bias": 1, "conditions": [{"feature": "f", "op": "` + tc.op + `", "value": 2, "add": 10}]}}`
		m := mustLoad(t, cfg, nil)
		var r Result
		m.Score([]float64{tc.x}, &r)
		want := 1.0
		if tc.want {
			want = 11
		}
		if r.Score != want {
			t.Errorf("%v %s 2: score %v, want %v", tc.x, tc.op, r.Score, want)
		}
		if r.Label != -1 || r.HasConfidence {
			t.Errorf("no labels or confidence configured, got label %d, confidence %v", r.Label, r.HasConfidence)
		}
	}
}

// TestRulesWeightedSumAndConditions checks bias, weights and conditions
// combine, and that the sum follows the features' order.
func TestRulesWeightedSumAndConditions(t *testing.T) {
	m := mustLoad(t, `{
		"features": ["c", "a", "b"],
		"model": {"bias": -1, "weights": {"a": 2, "b": 0.5},
		          "conditions": [{"feature": "c", "op": "==", "value": 1, "add": 100}, {"feature": "a", "op": "<", "value": 0, "add": -3}]}
	}`, nil)
	if got := strings.Join(m.Features(), ","); got != "c,a,b" {
		t.Fatalf("features %s, want the configured order c,a,b", got)
	}
	var r Result
	for _, tc := range []struct {
		x    []float64
		want float64
	}{
		{[]float64{0, 0, 0}, -1},
		{[]float64{1, 3, 4}, -1 + 6 + 2 + 100},
		{[]float64{0, -1, 2}, -1 - 2 + 1 - 3},
	} {
		m.Score(tc.x, &r)
		if r.Score != tc.want {
			t.Errorf("%v: score %v, want %v", tc.x, r.Score, tc.want)
		}
	}

	// Without features, the weights' features come sorted, then the
	// conditions' in order of appearance.
	m = mustLoad(t, `{"model": {"weights": {"z": 1, "b": 1}, "conditions": [{"feature": "q", "op": ">", "value": 0, "add": 1}, {"feature": "b", "op": ">", "value": 0, "add": 1}]}}`, nil)
	if got := strings.Join(m.Features(), ","); got != "b,z,q" {
		t.Errorf("derived features %s, want b,z,q", got)
	}
}

// TestSumOrder checks the weighted sum adds its terms in features order:
// float64 addition is not associative, and for this row the seed's order
// gives 0.7000000000000001 (high_value_user) where the alphabetical order
// gives 0.7 (medium_value_user).
func TestSumOrder(t *testing.T) {
	row := map[string]float64{"event_count": 1, "unique_event_types": 1, "total_value": 400}
	label, want, _ := seedValue(row)
	if label != "high_value_user" {
		t.Fatalf("seed transcription: %s %v", label, want)
	}
	var r Result
	seedOrder := mustLoad(t, seedValueConfig, nil)
	seedOrder.Score([]float64{1, 1, 400, 0}, &r)
	if r.Score != want || seedOrder.Labels()[r.Label] != label {
		t.Errorf("features in the seed's order: %v %s, want %v %s", r.Score, seedOrder.Labels()[r.Label], want, label)
	}
	// Without features the order is alphabetical: event_count,
	// is_purchase_event, total_value, unique_event_types.
	alpha := mustLoad(t, `{"model": {"weights": {"event_count": 0.1, "unique_event_types": 0.2, "total_value": 0.001, "is_purchase_event": 0.5}},
		  "labels": [{"label": "high_value_user", "above": 0.7}, {"label": "medium_value_user", "above": 0.3}],
		  "default_label": "low_value_user"}`, nil)
	alpha.Score([]float64{1, 0, 400, 1}, &r)
	if r.Score != 0.7 || alpha.Labels()[r.Label] != "medium_value_user" {
		t.Errorf("alphabetical order: %v %s, want 0.7 medium_value_user", r.Score, alpha.Labels()[r.Label])
	}
}
