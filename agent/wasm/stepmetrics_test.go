package wasm_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/metrics"
	"github.com/sluice-dev/sluice/agent/wasm"
)

// runStream runs batches, one at a time, through a stream whose only
// processor is a `wasm` step labelled plug configured by procYAML, with its
// metrics going to a fresh agent registry; it returns the scrape.
func runStream(t *testing.T, eng *wasm.Engine, procYAML string, batches ...service.MessageBatch) string {
	t.Helper()
	env := service.NewEnvironment()
	reg := metrics.New()
	if err := reg.Register(env); err != nil {
		t.Fatal(err)
	}
	if err := wasm.Register(env, eng); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetMetricsYAML(metrics.ExporterName + ": {pipeline: t}"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddProcessorYAML("label: plug\nwasm:\n" + indent(procYAML)); err != nil {
		t.Fatal(err)
	}
	produce, err := b.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddBatchConsumerFunc(func(context.Context, service.MessageBatch) error { return nil }); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	for i, batch := range batches {
		if err := produce(ctx, batch); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	// Scrape before stopping: the step's series are the point.
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out, _ := io.ReadAll(rec.Body)
	if err := stream.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	return string(out)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// series returns the value of metric name for the step labelled plug in
// pipeline t, and whether the scrape has it.
func series(t *testing.T, scrape, name string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok || !strings.Contains(rest, `label="plug"`) || !strings.Contains(rest, `pipeline="t"`) {
			continue
		}
		if !strings.Contains(rest, `path="root.pipeline.processors.0"`) {
			t.Errorf("series %s has no path label: %s", name, line)
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("series %s: %v", line, err)
		}
		return v, true
	}
	return 0, false
}

func TestStepMetrics(t *testing.T) {
	eng := newEngine(t, "")
	for _, tc := range []struct {
		name    string
		proc    string
		batches []service.MessageBatch
		// want maps a series to its value; an absent series counts as 0.
		want map[string]float64
	}{
		{
			name:    "echo drops and fails",
			proc:    "path: " + plugins["echo"],
			batches: []service.MessageBatch{batchOf("a", "drop", "fail", "b", "upper:x")},
			want: map[string]float64{
				wasm.MetricCalls: 1, wasm.MetricBatchLatency + "_seconds_count": 1,
				wasm.MetricMessagesIn: 5, wasm.MetricMessagesOut: 4, wasm.MetricMessagesDrop: 1, wasm.MetricMessagesErr: 1,
				wasm.MetricTraps: 0, wasm.MetricTimeouts: 0, wasm.MetricRestarts: 0,
			},
		},
		{
			name:    "echo batches and a call split",
			proc:    "path: " + plugins["echo"] + "\nmax_call_messages: 2",
			batches: []service.MessageBatch{batchOf("a", "b", "c", "d", "drop"), batchOf("e")},
			want: map[string]float64{
				wasm.MetricCalls: 4, wasm.MetricBatchLatency + "_seconds_count": 4,
				wasm.MetricMessagesIn: 6, wasm.MetricMessagesOut: 5, wasm.MetricMessagesDrop: 1, wasm.MetricMessagesErr: 0,
			},
		},
		{
			name:    "trap",
			proc:    "path: " + plugins["crash"],
			batches: []service.MessageBatch{batchOf("trap", "bystander"), batchOf("fine")},
			want: map[string]float64{
				wasm.MetricCalls: 2, wasm.MetricMessagesIn: 3, wasm.MetricMessagesOut: 3, wasm.MetricMessagesErr: 2,
				wasm.MetricTraps: 1, wasm.MetricTimeouts: 0, wasm.MetricRestarts: 1,
			},
		},
		{
			name:    "panic",
			proc:    "path: " + plugins["crash"],
			batches: []service.MessageBatch{batchOf("panic", "bystander")},
			want:    map[string]float64{wasm.MetricCalls: 1, wasm.MetricMessagesErr: 2, wasm.MetricTraps: 1, wasm.MetricRestarts: 1},
		},
		{
			name:    "exit",
			proc:    "path: " + plugins["crash"],
			batches: []service.MessageBatch{batchOf("exit")},
			want:    map[string]float64{wasm.MetricCalls: 1, wasm.MetricMessagesErr: 1, wasm.MetricTraps: 1, wasm.MetricRestarts: 1},
		},
		{
			name:    "timeout",
			proc:    "path: " + plugins["crash"] + "\ntimeout: 200ms",
			batches: []service.MessageBatch{batchOf("loop", "bystander"), batchOf("fine")},
			want: map[string]float64{
				wasm.MetricCalls: 2, wasm.MetricMessagesIn: 3, wasm.MetricMessagesOut: 3, wasm.MetricMessagesErr: 2,
				wasm.MetricTraps: 0, wasm.MetricTimeouts: 1, wasm.MetricRestarts: 1,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scrape := runStream(t, eng, tc.proc, tc.batches...)
			for name, want := range tc.want {
				got, _ := series(t, scrape, name)
				if got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			if pages, ok := series(t, scrape, wasm.MetricMemoryPages); !ok || pages < 1 {
				t.Errorf("%s = %v (present %v), want at least one page", wasm.MetricMemoryPages, pages, ok)
			}
		})
	}
}

// TestStepMetricsDocumented: every step metric is named in the spec's
// Metrics section, with the sluice_plugin_ prefix.
func TestStepMetricsDocumented(t *testing.T) {
	env := service.NewEmptyEnvironment()
	if err := wasm.Register(env, newEngine(t, "")); err != nil {
		t.Fatal(err)
	}
	var desc string
	env.WalkProcessors(func(name string, c *service.ConfigView) {
		if name == "wasm" {
			desc = c.Description()
		}
	})
	_, section, ok := strings.Cut(desc, "### Metrics")
	if !ok {
		t.Fatal("the wasm spec's description has no ### Metrics section")
	}
	for _, name := range []string{
		wasm.MetricCalls, wasm.MetricBatchLatency, wasm.MetricMessagesIn, wasm.MetricMessagesOut,
		wasm.MetricMessagesDrop, wasm.MetricMessagesErr, wasm.MetricTraps, wasm.MetricTimeouts,
		wasm.MetricRestarts, wasm.MetricMemoryPages,
	} {
		if !strings.HasPrefix(name, "sluice_plugin_") {
			t.Errorf("%s lacks the sluice_plugin_ prefix", name)
		}
		if !strings.Contains(section, "`"+name+"`") {
			t.Errorf("the Metrics section does not document %s", name)
		}
	}
}
