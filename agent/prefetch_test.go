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
// built; without it, New compiles nothing.
func TestPrefetchDuringNew(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Pipelines = []string{"builtin:sales_etl"}
		a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{Prefetch: prefetch})
		if err != nil {
			t.Fatal(err)
		}
		cache := filepath.Join(cfg.DataDir, "wasm-cache")
		if !prefetch {
			if n := cached(t, cache); n != 0 {
				t.Errorf("without Prefetch, New compiled %d modules", n)
			}
			_ = a.Close(context.Background())
			continue
		}
		// A cold compile of both takes seconds; the deadline is generous.
		deadline := time.Now().Add(2 * time.Minute)
		for cached(t, cache) < 2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := cached(t, cache); n < 2 {
			t.Errorf("with Prefetch, %d modules compiled into %s, want the sales ETL's 2 builtins", n, cache)
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
