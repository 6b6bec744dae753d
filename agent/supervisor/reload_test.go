package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// TestWatchReloadsChangedFile runs two pipelines from files in one
// directory: replacing one file (written beside it and renamed over it, as
// deploy tools do) reloads that pipeline only; a pipeline that stops stops
// being watched; a second Watch is refused while the first runs.
func TestWatchReloadsChangedFile(t *testing.T) {
	dir := t.TempDir()
	var pipelines []Pipeline
	for _, name := range []string{"a", "b"} {
		src := filepath.Join(dir, name+".yaml")
		y := endlessYAML(filepath.Join(dir, name+".jsonl"))
		if err := os.WriteFile(src, y, 0o644); err != nil {
			t.Fatal(err)
		}
		pipelines = append(pipelines, Pipeline{Name: name, Source: src, YAML: y})
	}
	r := NewReloader()
	tap := &logTap{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := runAsync(t, ctx, pipelines, Options{Env: service.NewEnvironment(), Logger: tap.logger(), ShutdownTimeout: 5 * time.Second, Reloader: r})
	// Pipelines running before Watch starts are watched too.
	waitUntil(t, "both pipelines to subscribe", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.runners) == 2
	})
	stop, err := r.Watch(t.Context(), tap.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if _, err := r.Watch(t.Context(), tap.logger()); err == nil || !strings.Contains(err.Error(), "already watching") {
		t.Errorf("second Watch: %v, want already watching", err)
	}

	a2 := filepath.Join(dir, "a2.jsonl")
	tmp := filepath.Join(dir, "a.yaml.new")
	if err := os.WriteFile(tmp, endlessYAML(a2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, pipelines[0].Source); err != nil {
		t.Fatal(err)
	}
	waitForLines(t, a2, 10)
	tap.waitFor(t, "a's reload", func(rec map[string]string) bool {
		return rec["msg"] == "pipeline reloaded: the new version is starting" && rec["pipeline"] == "a"
	})
	if rec := tap.find(func(rec map[string]string) bool {
		return strings.HasPrefix(rec["msg"], "pipeline reloaded") && rec["pipeline"] == "b"
	}); rec != nil {
		t.Errorf("b was reloaded for a change to a: %v", rec)
	}

	cancel()
	if err := wait(hangGuard).Err(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	n := len(r.runners)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d pipelines still subscribed after Run returned", n)
	}
	stop()
	stop() // a second stop does nothing
	// Once stopped, Watch can run again.
	stop2, err := r.Watch(t.Context(), tap.logger())
	if err != nil {
		t.Fatalf("Watch after stop: %v", err)
	}
	stop2()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
