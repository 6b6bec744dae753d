package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seedPrediction is the seed's RealTimeDataProcessor, transcribed: per user
// count, distinct event types and purchase total, then the weighted rule.
type seedUser struct {
	count int
	types map[string]bool
	value float64
}

// seedApply is the seed's per-user update for one good event.
func seedApply(users map[int]*seedUser, id int, eventType string, amount float64) *seedUser {
	u := users[id]
	if u == nil {
		u = &seedUser{types: map[string]bool{}}
		users[id] = u
	}
	u.count++
	u.types[eventType] = true
	if eventType == "purchase" {
		u.value += amount
	}
	return u
}

func seedLabel(u *seedUser, eventType string) string {
	purchase := 0.0
	if eventType == "purchase" {
		purchase = 1
	}
	score := float64(u.count)*0.1 + float64(len(u.types))*0.2 + u.value*0.001 + purchase*0.5
	switch {
	case score > 0.7:
		return "high_value_user"
	case score > 0.3:
		return "medium_value_user"
	}
	return "low_value_user"
}

// TestRealtimePipeline runs the shipped real-time pipeline over its embedded
// sample and checks what a user reads: each good event's running count and
// label equal the seed's logic applied to the good events before it, each
// of the five bad events is rejected with its reason and original bytes, and
// a second run on the same data dir counts nothing twice.
func TestRealtimePipeline(t *testing.T) {
	dir := t.TempDir()
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"))
	res := runAgent(t, dir, env, "--pipeline", "builtin:realtime_sample")
	if res.code != 0 || strings.Contains(res.stderr, "level=ERROR") {
		t.Fatalf("run: %s", res)
	}
	sample, err := os.ReadFile("../../pipelines/sample/realtime.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	wantRejects := map[int]string{ // line of the sample -> reason
		4:  "expect_column_values_to_be_of_type(user_id)",
		10: "expect_column_values_to_be_in_set(event_type)",
		15: "expect_column_values_to_be_between(event_data.amount)",
		21: "expect_column_values_to_not_be_null(timestamp)",
		25: "late: event time 2025-01-07T14:00:00Z",
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	events := strings.Split(strings.TrimSpace(string(sample)), "\n")
	pred := regexp.MustCompile(`^user (\d+)\s+(\S+)\s+\S+\s+events=(\d+)\s.*-> (\S+) \(score`)
	users := map[int]*seedUser{}
	out := 0
	for n, ev := range events {
		if out >= len(lines) {
			t.Fatalf("output ends before sample line %d:\n%s", n+1, res.stdout)
		}
		line := lines[out]
		if reason, bad := wantRejects[n+1]; bad {
			if line != "REJECTED  "+ev || !strings.Contains(lines[out+1], reason) {
				t.Errorf("sample line %d: got\n%s\n%s\nwant it rejected with its bytes and %q", n+1, line, lines[out+1], reason)
			}
			out += 2
			continue
		}
		out++
		var e struct {
			UserID    int    `json:"user_id"`
			EventType string `json:"event_type"`
			EventData struct {
				Amount float64 `json:"amount"`
			} `json:"event_data"`
		}
		if err := json.Unmarshal([]byte(ev), &e); err != nil {
			t.Fatal(err)
		}
		u := seedApply(users, e.UserID, e.EventType, e.EventData.Amount)
		m := pred.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("sample line %d: output %q is not a prediction", n+1, line)
			continue
		}
		want := []string{strconv.Itoa(e.UserID), e.EventType, strconv.Itoa(u.count), seedLabel(u, e.EventType)}
		if got := m[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("sample line %d: user, type, count, label = %v, want %v", n+1, got, want)
		}
	}
	if out != len(lines) {
		t.Errorf("%d output lines for %d sample lines", len(lines), out)
	}

	// Again on the same data dir: the offsets recorded with the state say
	// every event was applied, so no user's count grows.
	res = runAgent(t, dir, env, "--pipeline", "builtin:realtime_sample")
	if res.code != 0 {
		t.Fatalf("second run: %s", res)
	}
	for _, line := range strings.Split(res.stdout, "\n") {
		if m := pred.FindStringSubmatch(line); m != nil {
			id, _ := strconv.Atoi(m[1])
			if n, _ := strconv.Atoi(m[3]); n != users[id].count {
				t.Errorf("second run: %q: count %d, want user %d's total %d (nothing counted twice)", line, n, id, users[id].count)
			}
		}
	}
}

// TestFeaturesLookup: while a pipeline computes features, the HTTP state
// API shows a user's online features as JSON, rendered by the features
// plugin's state view.
func TestFeaturesLookup(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	writeFile(t, filepath.Join(dir, "features.yaml"), `
input:
  generate:
    interval: 20ms
    mapping: |
      let n = counter()
      root = {"user_id": if $n % 5 == 0 { "x" } else { 7 }, "event_type": if $n % 2 == 0 { "purchase" } else { "click" },
              "event_data": {"amount": 10}, "timestamp": now()}
pipeline:
  processors:
    - try:
        - wasm:
            builtin: validate
            config_file: builtin:suites/user_events.yaml
        - wasm:
            builtin: features
            key: user_id
            state: { namespace: user_features }
output:
  drop: {}
`)
	const token = "test-token-0123456789"
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS="+addr, "SLUICE_HTTP_TOKEN="+token)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, _, stderr := command(ctx, dir, env, "--pipeline", "features.yaml")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	var body string
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/state/user_features/7", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if body = string(b); resp.StatusCode != 200 {
			continue
		}
		var entry struct {
			Value map[string]any
		}
		if err := json.Unmarshal(b, &entry); err != nil {
			t.Fatalf("lookup: %v: %s", err, b)
		}
		n, _ := entry.Value["event_count"].(float64)
		purchases, _ := entry.Value["purchase_count"].(float64)
		// Every fifth event is bad; wait until one has been counted, so the
		// quality counters have something invalid to show.
		if n >= 4 && qualityHasInvalid(addr, token) {
			if total, _ := entry.Value["total_value"].(float64); total != purchases*10 || purchases < 1 {
				t.Errorf("user 7's features: %d events, %v purchases, total_value %v; want 10 per purchase", int(n), purchases, total)
			}
			checkQualityMetrics(t, addr, token)
			return
		}
	}
	t.Fatalf("no features for user 7 with 4 events; last lookup: %s\nstderr:\n%s", body, stderr)
}

// scrapeMetrics reads /metrics, or nil if the server did not answer.
func scrapeMetrics(addr, token string) []byte {
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// qualityCounter is a validate counter of suite user_events in a scrape.
func qualityCounter(scrape []byte, name string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*suite="user_events"[^}]*\} (\S+)$`).FindSubmatch(scrape)
	if m == nil {
		return 0, false
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v, true
}

// qualityHasInvalid reports whether /metrics already counts an invalid row.
func qualityHasInvalid(addr, token string) bool {
	b := scrapeMetrics(addr, token)
	rows, _ := qualityCounter(b, "sluice_quality_rows_total")
	valid, _ := qualityCounter(b, "sluice_quality_rows_valid_total")
	return rows > valid
}

// checkQualityMetrics reads the validate plugin's data-quality counters
// from /metrics: one event in five has a bad user_id, so some rows are
// invalid and the valid ones are fewer than all.
//
// The pipeline keeps running while /metrics is read, and a scrape reads
// the counters one by one, so a batch counted between two of them can make
// one scrape inconsistent (passed read after a batch, expectations before
// it); the counters must agree in one of a few scrapes.
func checkQualityMetrics(t *testing.T, addr, token string) {
	t.Helper()
	var problem string
	for range 20 {
		b := scrapeMetrics(addr, token)
		value := func(name string) float64 {
			v, ok := qualityCounter(b, name)
			if !ok {
				t.Fatalf("/metrics has no %s for suite user_events:\n%s", name, b)
			}
			return v
		}
		if !strings.Contains(string(b), `pipeline="features"`) {
			t.Fatalf("quality counters are not labelled with the pipeline")
		}
		rows, valid := value("sluice_quality_rows_total"), value("sluice_quality_rows_valid_total")
		run, passed := value("sluice_quality_expectations_total"), value("sluice_quality_expectations_passed_total")
		if rows >= 4 && valid < rows && valid >= 1 && run >= 1 && passed <= run {
			return
		}
		problem = fmt.Sprintf("rows %v valid %v, expectations %v passed %v", rows, valid, run, passed)
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("quality counters: %s; want some rows invalid, and no more expectations passed than run", problem)
}
