package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/agent/config"
)

// bufferedPipeline generates n events into a `sluice_disk` buffer with no
// path, and writes them to out, one per line; n 0 generates forever.
func bufferedPipeline(n int, out string) string {
	return `input:
  generate:
    count: ` + strconv.Itoa(n) + `
    interval: ` + map[bool]string{true: `""`, false: "10ms"}[n > 0] + `
    mapping: 'root = {"n": counter()}'
buffer:
  sluice_disk: {}
output:
  file:
    path: ` + strconv.Quote(out) + `
    codec: lines
`
}

// runAgent runs the agent on the pipeline files until they end, or until
// cancel is called, with the HTTP server and the dev broker off.
func runAgent(t *testing.T, data string, pipelines []string, log slog.Handler, ctx context.Context) error {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir, cfg.Pipelines, cfg.HTTPAddress, cfg.DevKafka = data, pipelines, "", false
	if log == nil {
		log = slog.DiscardHandler
	}
	a, err := New(context.Background(), cfg, slog.New(log), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	return a.Run(ctx)
}

// TestBufferDefaultDirPerPipeline: two pipelines whose `sluice_disk` has
// no path each get a buffer of their own under <data_dir>/buffers, named
// after the pipeline, and every event goes through.
func TestBufferDefaultDirPerPipeline(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	for _, name := range []string{"orders", "payments"} {
		writeFile(t, filepath.Join(dir, "pipelines", name+".yaml"), bufferedPipeline(200, filepath.Join(dir, name+".jsonl")))
	}
	if err := runAgent(t, data, []string{filepath.Join(dir, "pipelines")}, nil, context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"orders", "payments"} {
		out, err := os.ReadFile(filepath.Join(dir, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), "\n"); n != 200 {
			t.Errorf("%s: %d events out, want 200", name, n)
		}
		lock, err := os.ReadFile(filepath.Join(data, "buffers", name, "lock"))
		if err != nil {
			t.Fatalf("%s's buffer is not in its default directory: %v", name, err)
		}
		if !strings.HasPrefix(string(lock), strconv.Quote(name)+" ") {
			t.Errorf("%s's lock file says %q", name, lock)
		}
	}
}

// capture keeps the agent's error records and signals the first.
type capture struct {
	mu     sync.Mutex
	errs   []string
	failed chan struct{}
	once   sync.Once
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *capture) WithGroup(string) slog.Handler            { return c }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		c.mu.Lock()
		r.Attrs(func(a slog.Attr) bool {
			c.errs = append(c.errs, a.Value.String())
			return true
		})
		c.mu.Unlock()
		c.once.Do(func() { close(c.failed) })
	}
	return nil
}

// TestBufferDefaultDirClash: two pipeline files of the same name, in
// different directories, would share a default directory; the second is
// refused with an error naming it, the directory, and the pipeline that
// holds it, and the first runs on.
func TestBufferDefaultDirClash(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	a, b := filepath.Join(dir, "a", "events.yaml"), filepath.Join(dir, "b", "events.yaml")
	writeFile(t, a, bufferedPipeline(0, filepath.Join(dir, "a.jsonl")))
	writeFile(t, b, bufferedPipeline(0, filepath.Join(dir, "b.jsonl")))
	log := &capture{failed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-log.failed; cancel() }()
	err := runAgent(t, data, []string{a, b}, log, ctx)
	cancel()
	if err == nil {
		t.Fatal("both pipelines ran on one buffer directory")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		"1 of 2 pipelines failed",
		filepath.Join(data, "buffers", "events", "lock"),
		`in use by another sluice_disk buffer (pipeline "events", in this process)`,
		"set path in one of them",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q\ndoes not contain %q", msg, want)
		}
	}
	if !strings.Contains(msg, a) && !strings.Contains(msg, b) {
		t.Errorf("error %q names neither pipeline file", msg)
	}
}
