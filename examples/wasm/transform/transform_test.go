//go:build !wasip1

// The test drives the compiled plugin from the host, through the agent.

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// TestTransform compiles this plugin and runs events through the agent's
// real wasm processor, as a pipeline would.
func TestTransform(t *testing.T) {
	ctx := context.Background()
	out := wasmbuild.ForTest(t, "transform.wasm")
	eng, err := wasm.NewEngine(wasm.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	conf, err := wasm.ConfigSpec().ParseYAML("path: "+out, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := wasm.NewProcessor(ctx, eng, conf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close(ctx)

	good := []string{
		"2025-01-01T05:28:42.268Z",  // Wednesday
		"2025-01-04T23:59:59Z",      // Saturday, last second
		"2025-01-05T00:00:00Z",      // Sunday, first second
		"2025-01-06T12:00:00+02:00", // Monday 10:00 UTC
		"2025-01-06T01:00:00+02:00", // Sunday 23:00 UTC
		"1969-12-31T23:30:00Z",      // before the epoch: Wednesday
		"2024-02-29T12:00:00Z",      // leap day
	}
	bad := map[string]string{
		`{"user_id":1}`:                           `required field "timestamp" is missing`,
		`{"user_id":2,"timestamp":"yesterday"}`:   `field "timestamp": want time`,
		`{"user_id":3,"timestamp":true}`:          `field "timestamp": want time`,
		`{"user_id":4,"timestamp":"2025-13-01Z"}`: `field "timestamp"`,
	}
	var batch service.MessageBatch
	for i, ts := range good {
		batch = append(batch, service.NewMessage([]byte(fmt.Sprintf(`{"user_id":%d,"timestamp":%q}`, i, ts))))
	}
	var badBodies []string
	for b := range bad {
		badBodies = append(badBodies, b)
		batch = append(batch, service.NewMessage([]byte(b)))
	}
	res, err := proc.ProcessBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	got := res[0]
	if len(got) != len(good)+len(bad) {
		t.Fatalf("got %d messages, want %d: none dropped, none lost", len(got), len(good)+len(bad))
	}
	for i, ts := range good {
		m := got[i]
		if err := m.GetError(); err != nil {
			t.Errorf("%s: %v", ts, err)
			continue
		}
		b, _ := m.AsBytes()
		want, _ := time.Parse(time.RFC3339Nano, ts)
		want = want.UTC()
		dow := (int(want.Weekday()) + 6) % 7
		for field, w := range map[string]string{
			"hour_of_day": fmt.Sprint(want.Hour()),
			"day_of_week": fmt.Sprint(dow),
			"is_weekend":  fmt.Sprint(dow >= 5),
			"timestamp":   ts,
		} {
			if v := gjson.GetBytes(b, field).String(); v != w {
				t.Errorf("%s: %s = %s, want %s (%s)", ts, field, v, w, b)
			}
		}
	}
	for i, body := range badBodies {
		m := got[len(good)+i]
		err := m.GetError()
		if err == nil || !strings.Contains(err.Error(), bad[body]) {
			t.Errorf("%s: error %v, want one containing %q", body, err, bad[body])
		}
		if b, _ := m.AsBytes(); string(b) != body {
			t.Errorf("rejected event lost its bytes: %s", b)
		}
	}
}
