package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// TestHotReload runs the agent binary on an endless pipeline and changes
// what it runs under it, as an operator deploying would: a new plugin
// version (picked up by POST /admin/reload, or the file watch, whichever
// comes first) serves every event after the swap and none before; a
// broken one is refused in the reply and the log while the old one keeps
// serving; SIGHUP reloads instead of killing the agent; an edited pipeline
// file replaces the running stream, and an edit that does not build is
// refused and the running stream kept.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	tag := map[int]string{}
	for _, v := range []int{1, 2} {
		tag[v] = filepath.Join(dir, fmt.Sprintf("tagv%d.wasm", v))
		if err := wasmbuild.Build(t.Context(), fmt.Sprintf("../../agent/wasm/testdata/plugins/tagv%d", v), tag[v]); err != nil {
			t.Fatal(err)
		}
	}
	plug := filepath.Join(dir, "plugins", "tag.wasm")
	if err := os.MkdirAll(filepath.Dir(plug), 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(path string, b []byte) {
		t.Helper()
		tmp := path + ".new"
		writeFile(t, tmp, string(b))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) []byte {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put(plug, read(tag[1]))
	pipeline := func(extra string) string {
		return fmt.Sprintf(`input:
  generate:
    interval: 1ms
    mapping: 'root = {"seq": counter()}'
pipeline:
  threads: 1
  processors:
    - label: tag
      wasm:
        path: %s
%soutput:
  file:
    path: ./out.jsonl
    codec: lines
`, plug, extra)
	}
	pipeFile := filepath.Join(dir, "flow.yaml")
	writeFile(t, pipeFile, pipeline(""))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	const token = "test-token-0123456789"
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS="+addr, "SLUICE_HTTP_TOKEN="+token)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd, _, stderr := command(ctx, dir, env, "run", "--pipeline", "flow.yaml", "--shutdown-timeout", "10s")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	type event struct {
		Seq int `json:"seq"`
		V   int `json:"v"`
		Cfg int `json:"cfg"`
	}
	events := func() []event {
		b, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		var out []event
		for _, l := range bytes.Split(b, []byte("\n")) {
			var e event
			if json.Unmarshal(l, &e) == nil {
				out = append(out, e)
			}
		}
		return out
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-exited:
				t.Fatalf("agent exited (%v) while waiting for %s\n--- stderr:\n%s", err, what, stderr)
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s\n--- stderr:\n%s", what, stderr)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	seen := func(match func(event) bool) int {
		n := 0
		for _, e := range events() {
			if match(e) {
				n++
			}
		}
		return n
	}
	type report struct {
		Pipelines []struct{ Pipeline, Source, Result, Error string }
		Plugins   []struct{ Step, Plugin, Result, Error, SHA256 string }
	}
	reload := func() (int, report) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/admin/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("reload reply %s: %v", b, err)
		}
		if len(r.Plugins) != 1 || r.Plugins[0].Step != "tag" || r.Plugins[0].Plugin != plug {
			t.Fatalf("reload reply names %+v, want the one step tag running %s", r.Plugins, plug)
		}
		return resp.StatusCode, r
	}
	hash := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

	waitUntil("v1 to serve", func() bool { return seen(func(e event) bool { return e.V == 1 }) >= 50 })

	// v2: the reply names the version serving after the reload.
	put(plug, read(tag[2]))
	status, rep := reload()
	if p := rep.Plugins[0]; status != http.StatusOK || p.SHA256 != hash(read(tag[2])) || (p.Result != "reloaded" && p.Result != "unchanged") {
		t.Fatalf("reload to v2: %d %+v, want 200 and v2's sha256 serving", status, p)
	}
	waitUntil("v2 to serve", func() bool { return seen(func(e event) bool { return e.V == 2 }) >= 50 })

	// v3 is broken: refused, v2 keeps serving.
	put(plug, []byte("not a wasm module"))
	status, rep = reload()
	if p := rep.Plugins[0]; status != http.StatusUnprocessableEntity || p.Result != "refused" || !strings.Contains(p.Error, "compile") || p.SHA256 != hash(read(tag[2])) {
		t.Fatalf("reload to a broken v3: %d %+v, want 422, refused for not compiling, v2 serving", status, p)
	}
	// The reply can arrive before the agent's stderr pipe has been
	// copied into the buffer, so the log line is waited for.
	waitUntil("a log line refusing v3", func() bool { return strings.Contains(stderr.String(), "plugin reload refused") })
	n := seen(func(e event) bool { return e.V == 2 })
	waitUntil("v2 to keep serving", func() bool { return seen(func(e event) bool { return e.V == 2 }) >= n+50 })

	// SIGHUP reloads; it does not end the agent.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil("SIGHUP's reload", func() bool {
		return strings.Contains(stderr.String(), "SIGHUP: reloading") && strings.Count(stderr.String(), "reload done") >= 3
	})
	beforeEdit := events()

	// The pipeline file is edited: the new stream replaces the old one.
	put(plug, read(tag[2]))
	writeFile(t, pipeFile, pipeline(`    - mapping: 'root = this.merge({"cfg": 2})'
`))
	waitUntil("the edited pipeline to run", func() bool { return seen(func(e event) bool { return e.Cfg == 2 }) >= 50 })
	// An edit that does not build is refused; the running stream goes on.
	writeFile(t, pipeFile, pipeline(`    - no_such_processor: {}
`))
	status, rep = reload()
	if status != http.StatusUnprocessableEntity || len(rep.Pipelines) != 1 || rep.Pipelines[0].Result != "refused" || !strings.Contains(rep.Pipelines[0].Error, "no_such_processor") {
		t.Fatalf("reload of a broken pipeline edit: %d %+v, want 422 and the pipeline refused naming the problem", status, rep.Pipelines)
	}
	n = seen(func(e event) bool { return e.Cfg == 2 })
	waitUntil("the edited pipeline to keep running", func() bool { return seen(func(e event) bool { return e.Cfg == 2 }) >= n+50 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit: %v\n--- stderr:\n%s", err, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("agent did not stop\n--- stderr:\n%s", stderr)
	}

	// Until the pipeline edit (which restarts generate's counter: its
	// events have no stored position to resume from), every event is
	// there once, in order, v1 then only v2.
	v2 := false
	for i, e := range beforeEdit {
		if e.Seq != i+1 {
			t.Fatalf("line %d has seq %d: events lost or doubled", i+1, e.Seq)
		}
		switch {
		case e.V == 2:
			v2 = true
		case e.V == 1 && v2:
			t.Fatalf("seq %d ran on v1 after v2 had served", e.Seq)
		}
	}
	if !strings.Contains(stderr.String(), "pipeline reload refused") {
		t.Errorf("no log line refusing the broken pipeline edit\n--- stderr:\n%s", stderr)
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "reload") {
			t.Log(l)
		}
	}
}
