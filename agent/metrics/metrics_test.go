package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestPipelinesShareMetricsUnderTheirLabel(t *testing.T) {
	r := New()
	a, b := &exporter{r: r, pipeline: "a"}, &exporter{r: r, pipeline: "b"}
	a.NewCounterCtor("input_received", "path")("root.input").Incr(3)
	b.NewCounterCtor("input_received", "path")("root.input").Incr(5)
	a.NewTimerCtor("processor_latency_ns", "path")("root.pipeline").Timing(2_000_000)
	a.NewGaugeCtor("output.connection.up")().Set(1)
	// The same name with other labels would make Prometheus refuse the
	// registry; it is dropped instead, without failing the pipeline.
	a.NewCounterCtor("input_received", "other")("x").Incr(1)

	out := scrape(t, r)
	for _, want := range []string{
		`input_received{path="root.input",pipeline="a"} 3`,
		`input_received{path="root.input",pipeline="b"} 5`,
		`processor_latency_ns_seconds_count{path="root.pipeline",pipeline="a"} 1`,
		`output_connection_up{pipeline="a"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape has no %q", want)
		}
	}
	if strings.Contains(out, `other="x"`) {
		t.Error("a metric re-declared with other labels was exported")
	}
}

func TestRecordRun(t *testing.T) {
	r := New()
	r.RecordRun("sales_etl", true, 1500*time.Millisecond)
	r.RecordRun("sales_etl", false, time.Second)
	r.RecordRun("sales_etl", true, 2*time.Second)
	body := scrape(t, r)
	for _, want := range []string{
		`sluice_pipeline_runs_total{outcome="ok",pipeline="sales_etl"} 2`,
		`sluice_pipeline_runs_total{outcome="failed",pipeline="sales_etl"} 1`,
		`sluice_pipeline_last_run_seconds{pipeline="sales_etl"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestSum(t *testing.T) {
	r := New()
	r.counter("input_received", []string{"path"}).WithLabelValues("etl", "root.input.a").Add(3)
	r.counter("input_received", []string{"path"}).WithLabelValues("etl", "root.input.b").Add(4)
	r.counter("input_received", []string{"path"}).WithLabelValues("other", "root.input").Add(100)
	if got := r.Sum("input_received", "etl"); got != 7 {
		t.Errorf("Sum = %v, want 7 (both inputs of etl, not other's)", got)
	}
	if got := r.Sum("nothing", "etl"); got != 0 {
		t.Errorf("Sum of a missing counter = %v", got)
	}
}
