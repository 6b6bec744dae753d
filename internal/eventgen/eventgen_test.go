package eventgen

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestGenerate(t *testing.T) {
	evs := Generate(5000, 50, 7)
	if again := Generate(5000, 50, 7); again[4999] != evs[4999] {
		t.Fatal("the same seed made different events")
	}
	counts := map[string]int{}
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, evs); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&buf)
	for i := 0; dec.More(); i++ {
		var e struct {
			UserID    int            `json:"user_id"`
			EventType string         `json:"event_type"`
			EventData map[string]any `json:"event_data"`
			Timestamp string         `json:"timestamp"`
		}
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if e.UserID < 1 || e.UserID > 50 || len(e.Timestamp) != len("2025-01-01T00:00:00.000Z") {
			t.Fatalf("line %d: %+v", i+1, e)
		}
		if _, ok := e.EventData["amount"]; ok != (e.EventType == "purchase") {
			t.Fatalf("line %d: amount present %v for a %s", i+1, ok, e.EventType)
		}
		if i > 0 && evs[i].Time.Before(evs[i-1].Time) {
			t.Fatalf("line %d: out of order", i+1)
		}
		counts[e.EventType]++
	}
	// gen_events.py's weights: 50/25/10/5/10 out of 100.
	for typ, want := range map[string]float64{"page_view": .5, "click": .25, "add_to_cart": .1, "purchase": .05, "search": .1} {
		if got := float64(counts[typ]) / 5000; got < want*0.8 || got > want*1.2 {
			t.Errorf("%s: share %.3f, want about %.2f", typ, got, want)
		}
	}
	if span := evs[4999].Time.Sub(Start).Hours() / 24; span < 12 || span > 16 {
		t.Errorf("events span %.1f days, want about 14", span)
	}
}
