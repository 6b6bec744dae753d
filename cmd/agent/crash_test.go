package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrashNoLossNoDoubleCount runs a keyed counting pipeline over a file of
// events, kills the agent with SIGKILL at random points several times,
// restarting it each time on the same data dir and the same input (the file
// input redelivers everything, as an at-least-once source does after a
// crash), then lets it finish. Every user's count must equal the count in
// the input: nothing lost, nothing counted twice.
func TestCrashNoLossNoDoubleCount(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the agent several times")
	}
	dir := t.TempDir()
	const events, users = 6000, 50
	rng := rand.New(rand.NewSource(7))
	want := map[string]int64{}
	var in strings.Builder
	for seq := 1; seq <= events; seq++ {
		u := fmt.Sprintf("u%d", rng.Intn(users))
		want[u]++
		fmt.Fprintf(&in, `{"seq":%d,"user_id":%q,"timestamp":"2025-01-01T00:00:00Z"}`+"\n", seq, u)
	}
	writeFile(t, filepath.Join(dir, "events.jsonl"), in.String())
	writeFile(t, filepath.Join(dir, "pipeline.yaml"), fmt.Sprintf(`
input:
  broker:
    inputs:
      - file:
          paths: [ events.jsonl ]
          scanner: { lines: {} }
    batching: { count: 64, period: 5ms }
pipeline:
  threads: 1
  processors:
    - wasm:
        path: %s
        key: user_id
        state: { namespace: tallies }
        offsets:
          source: events.jsonl
          partition: "0"
          offset: '${! json("seq") }'
output:
  file:
    path: '${! env("RUN") }.jsonl'
    codec: lines
`, counterWasm))
	data := filepath.Join(dir, "data")
	env := func(run string) []string {
		return append(baseEnv(), "SLUICE_DATA_DIR="+data, "RUN="+run)
	}

	for kill := 0; kill < 4; kill++ {
		run := fmt.Sprintf("killed-%d", kill)
		ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
		cmd, _, stderr := command(ctx, dir, env(run), "--pipeline", "pipeline.yaml")
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		// Kill at a random point of progress, read off the run's output,
		// so every kill lands mid-stream rather than before start or after
		// the end.
		target := 1 + rng.Intn(events-1)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		deadline := time.Now().Add(runTimeout)
	poll:
		for countLines(filepath.Join(dir, run+".jsonl")) < target && time.Now().Before(deadline) {
			select {
			case <-exited:
				break poll
			case <-time.After(5 * time.Millisecond):
			}
		}
		_ = cmd.Process.Kill() // SIGKILL: no drain, no clean close
		<-exited
		cancel()
		t.Logf("run %d killed after %d of %d output lines (target %d)", kill, countLines(filepath.Join(dir, run+".jsonl")), events, target)
		if strings.Contains(stderr.String(), "panic") {
			t.Fatalf("run %d panicked:\n%s", kill, stderr)
		}
	}

	res := runAgent(t, dir, env("final"), "--pipeline", "pipeline.yaml")
	if res.code != 0 {
		t.Fatalf("final run exited %d:\n%s", res.code, res.stderr)
	}
	f, err := os.Open(filepath.Join(dir, "final.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int64{}
	seen := map[int]bool{}
	replayed := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Seq        int    `json:"seq"`
			User       string `json:"user_id"`
			EventCount int64  `json:"event_count"`
			Replayed   bool   `json:"replayed"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		seen[ev.Seq] = true
		if ev.Replayed {
			replayed++
		}
		got[ev.User] = max(got[ev.User], ev.EventCount)
	}
	t.Logf("final run: %d of %d events were redeliveries of already-counted ones", replayed, events)
	if replayed == 0 {
		t.Errorf("the final run replayed nothing: state from the killed runs was not kept")
	}
	if len(seen) != events {
		t.Errorf("final run output %d distinct events, want %d", len(seen), events)
	}
	for u, n := range want {
		if got[u] != n {
			t.Errorf("user %s: count %d after crashes, want %d (input)", u, got[u], n)
		}
	}
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
