package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	r.RecordRun(Run{Pipeline: "sales_etl", OK: true, End: at(1000), Duration: 1500 * time.Millisecond, Rows: map[string]int64{"in": 10, "out": 8, "rejected": 2, "checked": 9, "valid": 8}})
	r.RecordRun(Run{Pipeline: "sales_etl", OK: true, End: at(2000), Duration: 2 * time.Second, Rows: map[string]int64{"in": 4, "out": 3, "rejected": 1, "checked": 4, "valid": 3}})
	r.RecordRun(Run{Pipeline: "sales_etl", OK: false, End: at(3000), Duration: time.Second})
	r.RecordRun(Run{Pipeline: "ml_dag", OK: false, End: at(4000), Duration: time.Second})
	body := scrape(t, r)
	for _, want := range []string{
		`sluice_pipeline_runs_total{outcome="ok",pipeline="sales_etl"} 2`,
		`sluice_pipeline_runs_total{outcome="failed",pipeline="sales_etl"} 1`,
		`sluice_pipeline_last_run_seconds{pipeline="sales_etl"} 1`,
		`sluice_pipeline_last_run_timestamp_seconds{pipeline="sales_etl"} 3000`,
		`sluice_pipeline_last_success_timestamp_seconds{pipeline="sales_etl"} 2000`,
		`sluice_pipeline_last_run_timestamp_seconds{pipeline="ml_dag"} 4000`,
		`sluice_pipeline_last_run_rows{kind="in",pipeline="sales_etl"} 4`,
		`sluice_pipeline_last_run_rows{kind="rejected",pipeline="sales_etl"} 1`,
		`sluice_pipeline_run_rows_total{kind="in",pipeline="sales_etl"} 14`,
		`sluice_pipeline_run_rows_total{kind="out",pipeline="sales_etl"} 11`,
		`sluice_pipeline_last_run_dqs{pipeline="sales_etl"} 0.75`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `sluice_pipeline_last_success_timestamp_seconds{pipeline="ml_dag"}`) {
		t.Error("a pipeline that never succeeded has a last success time")
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
	if got := r.Sum("input_received", "etl", "path", "root.input.b"); got != 4 {
		t.Errorf("Sum where path=root.input.b = %v, want 4", got)
	}
	if got := r.Sum("input_received", "etl", "path", "root.input.c"); got != 0 {
		t.Errorf("Sum where path matches nothing = %v, want 0", got)
	}
	if got := r.Sum("nothing", "etl"); got != 0 {
		t.Errorf("Sum of a missing counter = %v", got)
	}
}

func TestTimeBy(t *testing.T) {
	r := New()
	tm := func(pipeline, label, path string) prometheus.Observer {
		return r.timer("processor_latency_ns", []string{"label", "path"}).WithLabelValues(pipeline, label, path)
	}
	tm("etl", "validate", "root.pipeline.processors.0").Observe(1.5)
	tm("etl", "validate", "root.pipeline.processors.0").Observe(0.5)
	tm("etl", "transform", "root.pipeline.processors.1").Observe(0.25)
	tm("etl", "", "root.pipeline.processors.2").Observe(9)
	tm("other", "validate", "root.pipeline.processors.0").Observe(100)
	got := r.TimeBy("processor_latency_ns", "etl", "label")
	if len(got) != 2 || got["validate"] != 2 || got["transform"] != 0.25 {
		t.Errorf("TimeBy = %v, want validate 2s and transform 0.25s of etl, unlabelled and other pipelines left out", got)
	}
}
