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
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStateCommands counts events per user through a keyed pipeline, then
// reads the state back with `agent state`, backs it up, restores it into a
// fresh data dir and reads the same thing there.
func TestStateCommands(t *testing.T) {
	dir := t.TempDir()
	var in strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&in, `{"seq":%d,"user_id":"u%d","timestamp":"2025-01-0%dT00:00:00Z"}`+"\n", i, i%3, 1+i%5)
	}
	writeFile(t, filepath.Join(dir, "events.jsonl"), in.String())
	writeFile(t, filepath.Join(dir, "pipeline.yaml"), fmt.Sprintf(`
input:
  file: { paths: [ events.jsonl ], scanner: { lines: {} } }
pipeline:
  processors:
    - wasm:
        path: %s
        key: user_id
        state: { namespace: tallies }
output:
  drop: {}
`, counterWasm))
	dataA, dataB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	envA := append(baseEnv(), "SLUICE_DATA_DIR="+dataA)
	envB := append(baseEnv(), "SLUICE_DATA_DIR="+dataB)
	if res := runAgent(t, dir, envA, "--pipeline", "pipeline.yaml"); res.code != 0 {
		t.Fatalf("pipeline exited %d:\n%s", res.code, res.stderr)
	}

	get := func(env []string, key string) map[string]any {
		t.Helper()
		res := runAgent(t, dir, env, "state", "get", "tallies", key)
		if res.code != 0 {
			t.Fatalf("state get exited %d: %s", res.code, res.stderr)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &m); err != nil {
			t.Fatalf("state get printed %q: %v", res.stdout, err)
		}
		return m
	}
	u1 := get(envA, "u1")
	// The counter's state is {Events int64, Amount float64}: 16 bytes.
	if u1["found"] != true || u1["bytes"] != float64(16) || u1["value_base64"] == "" {
		t.Errorf("state get u1 = %v, want found with 16 bytes", u1)
	}
	if m := get(envA, "nobody"); m["found"] != false {
		t.Errorf("state get of an unknown key = %v, want found false", m)
	}

	res := runAgent(t, dir, envA, "state", "list", "tallies")
	var page struct{ Keys []string }
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil || strings.Join(page.Keys, ",") != "u0,u1,u2" {
		t.Errorf("state list = %q (%v), want keys u0,u1,u2", res.stdout, err)
	}
	res = runAgent(t, dir, envA, "state", "stats")
	if res.code != 0 || !strings.Contains(res.stdout, "Commits") {
		t.Errorf("state stats exited %d: %s %s", res.code, res.stdout, res.stderr)
	}

	backup := filepath.Join(dir, "state.bak")
	if res := runAgent(t, dir, envA, "state", "backup", backup); res.code != 0 {
		t.Fatalf("backup exited %d: %s", res.code, res.stderr)
	}
	if res := runAgent(t, dir, envB, "state", "restore", backup); res.code != 0 {
		t.Fatalf("restore exited %d: %s", res.code, res.stderr)
	}
	for _, key := range []string{"u0", "u1", "u2"} {
		a, b := get(envA, key), get(envB, key)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s after restore: %v, want %v", key, b, a)
		}
	}
}

// TestDataDirHeldByRunningAgent starts an agent whose pipeline keeps
// state, then other commands on the same data dir: the state command and a
// pipeline that keeps state must refuse, saying why, while a pipeline that
// keeps none (a batch job) runs beside it, since it never opens the dir.
func TestDataDirHeldByRunningAgent(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "forever.yaml"), `
cache_resources:
  - label: seen
    sluice_state: {namespace: seen}
input:
  generate: { interval: 10ms, mapping: 'root.n = counter()' }
pipeline:
  processors:
    - cache: {resource: seen, operator: set, key: '${! json("n") }', value: 'x'}
output:
  drop: {}
`)
	writeFile(t, filepath.Join(dir, "batch.yaml"), `
input:
  generate: { count: 3, interval: '', mapping: 'root.n = counter()' }
output:
  file: { path: out.jsonl, codec: lines }
`)
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, _, _ := command(ctx, dir, env, "--pipeline", "forever.yaml")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Wait until the first agent holds its state dir (Badger's lock file).
	lock := filepath.Join(dir, "data", "state", "LOCK")
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(lock); err == nil {
			break
		}
	}
	// realtime_sample's features step is keyed: it opens the dir when
	// the pipeline is built.
	for _, args := range [][]string{{"state", "stats"}, {"--pipeline", "builtin:realtime_sample"}} {
		res := runAgent(t, dir, env, args...)
		if res.code == 0 || !strings.Contains(res.stderr, "in use by another agent") || !strings.Contains(res.stderr, filepath.Join(dir, "data")) {
			t.Errorf("%v on a held data dir: exit %d, stderr %q; want a refusal naming the dir", args, res.code, res.stderr)
		}
	}
	res := runAgent(t, dir, env, "--pipeline", "batch.yaml")
	if res.code != 0 {
		t.Fatalf("a pipeline without state beside an agent holding the data dir: exit %d, stderr %q", res.code, res.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out.jsonl")); err != nil || string(got) != `{"n":1}`+"\n"+`{"n":2}`+"\n"+`{"n":3}`+"\n" {
		t.Errorf("its output: %q, %v; want the three rows", got, err)
	}
}

// TestHTTPServer runs the agent with its HTTP server on a free loopback port
// and checks what an operator and an orchestrator would: health and
// readiness without a token, the state API only with it.
func TestHTTPServer(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	writeFile(t, filepath.Join(dir, "counted.yaml"), fmt.Sprintf(`
input:
  generate: { interval: 20ms, mapping: 'root = {"user_id": "u" + (counter() %% 3).string()}' }
pipeline:
  processors:
    - wasm:
        path: %s
        key: user_id
        state: { namespace: tallies }
output:
  drop: {}
`, counterWasm))
	const token = "test-token-0123456789"
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS="+addr, "SLUICE_HTTP_TOKEN="+token)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, _, _ := command(ctx, dir, env, "--pipeline", "counted.yaml")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()

	get := func(path, tok string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, _ = get("/readyz", ""); code == 200 {
			break
		}
	}
	if code != 200 {
		t.Fatalf("/readyz never answered 200 (last %d)", code)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get("/v1/state/tallies/u1", ""); code != 401 {
		t.Errorf("state lookup without the token: %d, want 401", code)
	}
	// The pipeline counts while we look: poll until u1 has state.
	var body string
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = get("/v1/state/tallies/u1", token); code == 200 {
			break
		}
	}
	if code != 200 || !strings.Contains(body, `"found": true`) {
		t.Errorf("state lookup with the token: %d %s", code, body)
	}
	// The counter plugin offers a state view: the lookup shows its tally as
	// JSON, not only as bytes.
	var entry struct {
		Value struct{ Events *int64 }
	}
	if err := json.Unmarshal([]byte(body), &entry); err != nil || entry.Value.Events == nil || *entry.Value.Events < 1 {
		t.Errorf("state lookup of u1 has no rendered tally: %s", body)
	}
	if code, _ := get("/metrics", ""); code != 401 {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	code, body = get("/metrics", token)
	for _, want := range []string{`input_received{`, `pipeline="counted"`, "sluice_state_commits_total", "sluice_state_cache_hit_ratio"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) has no %q", code, want)
		}
	}
}
