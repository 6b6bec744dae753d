package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestRunMetrics: a scheduled pipeline's run is in /metrics: counted by
// outcome, with the time it ended and last succeeded, between the run's
// start and the scrape.
func TestRunMetrics(t *testing.T) {
	dir := t.TempDir()
	pipeline := filepath.Join(dir, "job.yaml")
	writeFile(t, pipeline, `schedule: {retries: 0}
input:
  generate: {count: 3, interval: "", mapping: 'root = {"n": counter()}'}
output:
  file: {path: `+strconv.Quote(filepath.Join(dir, "out.jsonl"))+`, codec: lines}
`)
	cfg := config.Default()
	cfg.DataDir, cfg.Pipelines, cfg.HTTPAddress, cfg.DevKafka = filepath.Join(dir, "data"), []string{pipeline}, "", false
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{LazyState: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	start := time.Now()
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	rec := httptest.NewRecorder()
	a.reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `sluice_pipeline_runs_total{outcome="ok",pipeline="job"} 1`) {
		t.Errorf("no successful run counted:\n%s", body)
	}
	for _, name := range []string{"sluice_pipeline_last_run_timestamp_seconds", "sluice_pipeline_last_success_timestamp_seconds"} {
		var at float64
		line := name + `{pipeline="job"} `
		i := strings.Index(body, line)
		if i < 0 {
			t.Errorf("no %s", line)
			continue
		}
		if _, err := fmt.Sscan(body[i+len(line):], &at); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(0, int64(at*1e9)); got.Before(start.Add(-time.Second)) || got.After(end.Add(time.Second)) {
			t.Errorf("%s = %s, want between the run's start %s and %s", name, got, start, end)
		}
	}
}
