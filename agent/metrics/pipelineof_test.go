package metrics

import (
	"context"
	"strings"
	"sync"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // generate, drop
	"github.com/redpanda-data/benthos/v4/public/service"
)

// TestPipelineOf: a component learns the pipeline it was built for from
// the exporter each stream is given, for streams built side by side, and
// the probe itself is never exported.
func TestPipelineOf(t *testing.T) {
	r := New()
	env := service.NewEnvironment()
	if err := r.Register(env); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	if err := env.RegisterBatchProcessor("whoami", service.NewConfigSpec(), func(_ *service.ParsedConfig, res *service.Resources) (service.BatchProcessor, error) {
		name, ok := r.PipelineOf(res)
		if !ok {
			t.Error("PipelineOf found no pipeline")
		}
		mu.Lock()
		seen[name] = true
		mu.Unlock()
		return passthrough{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range []string{"orders", "payments", "clicks"} {
		b := env.NewStreamBuilder()
		if err := b.SetYAML("input:\n  generate: {count: 1, interval: \"\", mapping: 'root = 1'}\npipeline:\n  processors:\n    - whoami: {}\noutput:\n  drop: {}\n"); err != nil {
			t.Fatal(err)
		}
		if err := b.SetMetricsYAML(ExporterName + ": {pipeline: " + name + "}"); err != nil {
			t.Fatal(err)
		}
		if err := b.SetLoggerYAML("level: none"); err != nil {
			t.Fatal(err)
		}
		s, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := s.Run(context.Background()); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	wg.Wait()
	if len(seen) != 3 || !seen["orders"] || !seen["payments"] || !seen["clicks"] {
		t.Errorf("pipelines seen: %v", seen)
	}
	if strings.Contains(scrape(t, r), probeMetric) {
		t.Errorf("%s is exported", probeMetric)
	}
	if _, ok := r.PipelineOf(service.MockResources()); ok {
		t.Error("a component outside any of this registry's pipelines was given one")
	}
}

type passthrough struct{}

func (passthrough) ProcessBatch(_ context.Context, b service.MessageBatch) ([]service.MessageBatch, error) {
	return []service.MessageBatch{b}, nil
}
func (passthrough) Close(context.Context) error { return nil }
