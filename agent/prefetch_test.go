package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/agent/config"
)

// TestPrefetchDuringNew: with Options.Prefetch, the builtins the configured
// pipelines name (the sales ETL's validate and sales) are compiled into
// the data dir's cache while New sets up the rest, before any pipeline is
// built, and Options.Prefetched is called once both are; without it, New
// compiles nothing and Prefetched is called at once.
func TestPrefetchDuringNew(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Pipelines = []string{"builtin:sales_etl"}
		cache := filepath.Join(cfg.DataDir, "wasm-cache")
		done := make(chan struct{})
		a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{Prefetch: prefetch,
			Prefetched: func() { close(done) }})
		if err != nil {
			t.Fatal(err)
		}
		// A cold compile of both takes seconds; the limit only stops a
		// hang.
		select {
		case <-done:
			// Nothing else compiles: what is cached now was when it was
			// called.
			if n, want := cached(t, cache), map[bool]int{false: 0, true: 2}[prefetch]; n != want {
				t.Errorf("Prefetch %v: when Prefetched was called, %d modules were compiled into %s, want %d", prefetch, n, cache, want)
			}
		case <-time.After(2 * time.Minute):
			t.Errorf("Prefetch %v: Prefetched was not called", prefetch)
		}
		_ = a.Close(context.Background())
	}
}

// cached counts the compiled modules in wazero's cache dir.
func cached(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		if os.IsNotExist(err) {
			return filepath.SkipAll
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
