package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/agent/config"
)

// TestHTTPAddressTaken: another process holds the HTTP address. With the
// built-in default address a stateless batch job runs anyway, without the
// HTTP server, and says so; an address the operator set, or a pipeline
// whose partitioned state other agents look up at this address, fails the
// run naming the address.
func TestHTTPAddressTaken(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()

	const rows = 20
	batch := func(out string) string {
		return `input:
  generate: {count: ` + strconv.Itoa(rows) + `, interval: "", mapping: 'root = {"n": counter()}'}
output:
  file: {path: ` + strconv.Quote(out) + `, codec: lines}
`
	}
	// Never built: the address is taken before any pipeline starts.
	partitioned := `input:
  kafka_franz: {seed_brokers: [127.0.0.1:1], topics: [events], consumer_group: g}
pipeline:
  processors:
    - wasm: {builtin: features, key: '${! this.user_id }', state: {namespace: users, changelog: {}}}
output:
  drop: {}
`
	for _, tc := range []struct {
		name        string
		defaultAddr bool
		pipeline    func(out string) string
		wantErr     bool
	}{
		{"default address, stateless job", true, batch, false},
		{"address set by the operator", false, batch, true},
		{"default address, partitioned state", true, func(string) string { return partitioned }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.jsonl")
			pipeline := filepath.Join(dir, "job.yaml")
			writeFile(t, pipeline, tc.pipeline(out))
			cfg := config.Default()
			cfg.DataDir, cfg.Pipelines, cfg.HTTPAddress, cfg.DevKafka = filepath.Join(dir, "data"), []string{pipeline}, addr, false
			var log bytes.Buffer
			a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)), Options{LazyState: true, DefaultHTTPAddress: tc.defaultAddr})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(context.Background())
			err = a.Run(context.Background())
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "start HTTP server on "+addr) {
					t.Fatalf("run: %v, want an error naming the address %s", err, addr)
				}
				if _, err := os.Stat(out); err == nil {
					t.Error("the pipeline ran though the run failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(got), "\n"); n != rows {
				t.Errorf("%d rows out, want %d", n, rows)
			}
			if !strings.Contains(log.String(), "running without the HTTP server") || !strings.Contains(log.String(), addr) {
				t.Errorf("the log does not say the agent runs without its HTTP server at %s:\n%s", addr, log.String())
			}
		})
	}
}
