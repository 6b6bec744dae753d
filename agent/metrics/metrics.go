// Package metrics exposes the agent's metrics in Prometheus format: every
// pipeline's standard Benthos metrics (through the `sluice_prometheus`
// metrics exporter, labelled with the pipeline's name) and the state
// store's, all in one registry owned by the agent and served on its HTTP
// server at /metrics.
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/state"
)

// ExporterName is the Benthos metrics exporter the supervisor sets on
// every pipeline.
const ExporterName = "sluice_prometheus"

// Registry is the agent's metrics. Benthos asks for the same metric name
// from every stream; the vectors are created once and shared, each stream
// writing under its own `pipeline` label.
type Registry struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	counters map[string]*prometheus.CounterVec
	gauges   map[string]*prometheus.GaugeVec
	timers   map[string]*prometheus.HistogramVec
	labels   map[string][]string

	// probes holds, per token, the pipeline whose exporter saw the token
	// (see PipelineOf).
	probes   sync.Map
	probeSeq atomic.Uint64
}

// New returns a registry with Go runtime and process collectors.
func New() *Registry {
	r := &Registry{
		reg:      prometheus.NewRegistry(),
		counters: map[string]*prometheus.CounterVec{},
		gauges:   map[string]*prometheus.GaugeVec{},
		timers:   map[string]*prometheus.HistogramVec{},
		labels:   map[string][]string{},
	}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Register adds the `sluice_prometheus` exporter to env.
func (r *Registry) Register(env *service.Environment) error {
	spec := service.NewConfigSpec().
		Summary("Exports a pipeline's metrics to the agent's Prometheus registry, served at /metrics. The agent sets it on every pipeline.").
		Fields(service.NewStringField("pipeline").Description("The pipeline's name, used as the `pipeline` label."))
	return env.RegisterMetricsExporter(ExporterName, spec, func(conf *service.ParsedConfig, _ *service.Logger) (service.MetricsExporter, error) {
		name, err := conf.FieldString("pipeline")
		if err != nil {
			return nil, err
		}
		return &exporter{r: r, pipeline: name}, nil
	})
}

// promName turns a Benthos metric name (input_received, or a dotted
// legacy one) into a valid Prometheus name.
func promName(name string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':' {
			return c
		}
		return '_'
	}, name)
}

// vecLabels checks that a name is always asked for with the same labels:
// Prometheus refuses one name with two label sets.
func (r *Registry) vecLabels(name string, keys []string) ([]string, error) {
	all := append([]string{"pipeline"}, keys...)
	if prev, ok := r.labels[name]; ok {
		if strings.Join(prev, ",") != strings.Join(all, ",") {
			return nil, fmt.Errorf("metric %s asked for with labels %v, already has %v", name, all, prev)
		}
		return prev, nil
	}
	r.labels[name] = all
	return all, nil
}

// vec returns the vector called name from vecs, creating and registering
// it with mk on first use. It returns the zero V (nil) for a name
// Prometheus would refuse (reused with other labels), whose metric then
// goes unexported.
func vec[V prometheus.Collector](r *Registry, vecs map[string]V, name string, keys []string, mk func(name string, labels []string) V) V {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := vecs[name]; ok {
		return v
	}
	var zero V
	labels, err := r.vecLabels(name, keys)
	if err != nil {
		return zero
	}
	v := mk(name, labels)
	if err := r.reg.Register(v); err != nil {
		return zero
	}
	vecs[name] = v
	return v
}

func (r *Registry) counter(name string, keys []string) *prometheus.CounterVec {
	return vec(r, r.counters, promName(name), keys, func(n string, l []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: n, Help: "Benthos counter " + n}, l)
	})
}

func (r *Registry) gauge(name string, keys []string) *prometheus.GaugeVec {
	return vec(r, r.gauges, promName(name), keys, func(n string, l []string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: n, Help: "Benthos gauge " + n}, l)
	})
}

func (r *Registry) timer(name string, keys []string) *prometheus.HistogramVec {
	return vec(r, r.timers, promName(name)+"_seconds", keys, func(n string, l []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n, Help: "Benthos timing " + n, Buckets: prometheus.ExponentialBuckets(0.00005, 4, 12)}, l)
	})
}

type exporter struct {
	r        *Registry
	pipeline string
}

// noop stands in for a metric Prometheus would refuse (a name reused with
// other labels): the pipeline runs on, that metric is not exported.
type noop struct{}

func (noop) Incr(int64)   {}
func (noop) Timing(int64) {}
func (noop) Set(int64)    {}

func (e *exporter) values(vals []string) []string { return append([]string{e.pipeline}, vals...) }

func (e *exporter) NewCounterCtor(name string, keys ...string) service.MetricsExporterCounterCtor {
	v := e.r.counter(name, keys)
	return func(vals ...string) service.MetricsExporterCounter {
		if v == nil {
			return noop{}
		}
		return counter{v.WithLabelValues(e.values(vals)...)}
	}
}

func (e *exporter) NewTimerCtor(name string, keys ...string) service.MetricsExporterTimerCtor {
	v := e.r.timer(name, keys)
	return func(vals ...string) service.MetricsExporterTimer {
		if v == nil {
			return noop{}
		}
		return timer{v.WithLabelValues(e.values(vals)...)}
	}
}

func (e *exporter) NewGaugeCtor(name string, keys ...string) service.MetricsExporterGaugeCtor {
	if name == probeMetric {
		return func(vals ...string) service.MetricsExporterGauge {
			if len(vals) > 0 { // the token is last, after Benthos' own labels
				e.r.probes.Store(vals[len(vals)-1], e.pipeline)
			}
			return noop{}
		}
	}
	v := e.r.gauge(name, keys)
	return func(vals ...string) service.MetricsExporterGauge {
		if v == nil {
			return noop{}
		}
		return gauge{v.WithLabelValues(e.values(vals)...)}
	}
}

func (e *exporter) Close(context.Context) error { return nil }

type counter struct{ c prometheus.Counter }

func (c counter) Incr(n int64) { c.c.Add(float64(n)) }

type timer struct{ o prometheus.Observer }

func (t timer) Timing(ns int64) { t.o.Observe(float64(ns) / 1e9) }

type gauge struct{ g prometheus.Gauge }

func (g gauge) Set(v int64) { g.g.Set(float64(v)) }

// probeMetric is a gauge that is never exported: PipelineOf sets it to
// learn which pipeline's exporter a component's metrics go through.
const probeMetric = "sluice_internal_pipeline_probe"

// PipelineOf reports the name of the pipeline whose component was given
// res, if the pipeline's metrics go to this registry (as every pipeline
// the agent runs does). Benthos gives a component no other sign of the
// stream it belongs to; the exporter, configured per pipeline by the
// supervisor, is the one per-stream thing a component can reach, and a
// gauge's label values reach it synchronously, on the caller's goroutine.
func (r *Registry) PipelineOf(res *service.Resources) (string, bool) {
	token := strconv.FormatUint(r.probeSeq.Add(1), 10)
	res.Metrics().NewGauge(probeMetric, "probe").Set(0, token)
	v, ok := r.probes.LoadAndDelete(token)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// RegisterState exports the state store's counters, read at scrape time.
func (r *Registry) RegisterState(st *state.Store) {
	type stat struct {
		name, help string
		kind       prometheus.ValueType
		get        func(state.Stats) float64
	}
	stats := []stat{
		{"sluice_state_keys_cached", "Keys held in memory.", prometheus.GaugeValue, func(s state.Stats) float64 { return float64(s.KeysCached) }},
		{"sluice_state_keys_dirty", "Keys committed but not yet checkpointed.", prometheus.GaugeValue, func(s state.Stats) float64 { return float64(s.DirtyKeys) }},
		{"sluice_state_cache_hits_total", "Keys loaded from memory.", prometheus.CounterValue, func(s state.Stats) float64 { return float64(s.CacheHits) }},
		{"sluice_state_cache_misses_total", "Keys read from Badger.", prometheus.CounterValue, func(s state.Stats) float64 { return float64(s.CacheMisses) }},
		{"sluice_state_cache_hit_ratio", "Hits over hits and misses since start.", prometheus.GaugeValue, func(s state.Stats) float64 {
			if t := s.CacheHits + s.CacheMisses; t > 0 {
				return float64(s.CacheHits) / float64(t)
			}
			return 0
		}},
		{"sluice_state_commits_total", "Commits that wrote something.", prometheus.CounterValue, func(s state.Stats) float64 { return float64(s.Commits) }},
		{"sluice_state_writes_total", "Keyed writes committed.", prometheus.CounterValue, func(s state.Stats) float64 { return float64(s.Writes) }},
		{"sluice_state_last_commit_latency_seconds", "Latency of the last commit, fsync included.", prometheus.GaugeValue, func(s state.Stats) float64 { return s.LastCommitLatency.Seconds() }},
		{"sluice_state_lsm_bytes", "Badger LSM size on disk (refreshed about once a minute).", prometheus.GaugeValue, func(s state.Stats) float64 { return float64(s.LSMBytes) }},
		{"sluice_state_vlog_bytes", "Badger value log size on disk (refreshed about once a minute).", prometheus.GaugeValue, func(s state.Stats) float64 { return float64(s.VlogBytes) }},
	}
	for _, s := range stats {
		get := s.get
		desc := prometheus.NewDesc(s.name, s.help, nil, nil)
		r.reg.MustRegister(&funcCollector{desc: desc, kind: s.kind, get: func() float64 { return get(st.Stats()) }})
	}
}

type funcCollector struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	get  func() float64
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, c.kind, c.get())
}

// Run is one finished run of a scheduled pipeline.
type Run struct {
	Pipeline string
	OK       bool
	// End is when the run finished.
	End      time.Time
	Duration time.Duration
	// Rows the run counted, by kind: in, out, rejected, checked, valid. A
	// kind the pipeline does not report is absent, not zero.
	Rows map[string]int64
}

// RecordRun counts one run of a scheduled pipeline by outcome (ok or
// failed) and records its duration, its rows by kind and its data-quality
// score, so an operator can alert on a failed batch job as on a failed
// Airflow task, or on a run that loaded nothing or rejected too much.
func (r *Registry) RecordRun(run Run) {
	outcome := "ok"
	if !run.OK {
		outcome = "failed"
	}
	// All are labelled pipeline first, like every vector here.
	if c := r.counter("sluice_pipeline_runs_total", []string{"outcome"}); c != nil {
		c.WithLabelValues(run.Pipeline, outcome).Inc()
	}
	if g := r.gauge("sluice_pipeline_last_run_seconds", nil); g != nil {
		g.WithLabelValues(run.Pipeline).Set(run.Duration.Seconds())
	}
	// When, as Unix seconds, as Prometheus' batch-job practice has it: a
	// job that stopped succeeding is `time() - last_success > 2 * period`,
	// which a count of failures cannot say of a job that stopped running.
	end := float64(run.End.UnixNano()) / 1e9
	if g := r.gauge("sluice_pipeline_last_run_timestamp_seconds", nil); g != nil {
		g.WithLabelValues(run.Pipeline).Set(end)
	}
	if g := r.gauge("sluice_pipeline_last_success_timestamp_seconds", nil); g != nil && run.OK {
		g.WithLabelValues(run.Pipeline).Set(end)
	}
	last := r.gauge("sluice_pipeline_last_run_rows", []string{"kind"})
	total := r.counter("sluice_pipeline_run_rows_total", []string{"kind"})
	for kind, n := range run.Rows {
		if last != nil {
			last.WithLabelValues(run.Pipeline, kind).Set(float64(n))
		}
		if total != nil {
			total.WithLabelValues(run.Pipeline, kind).Add(float64(n))
		}
	}
	if checked := run.Rows["checked"]; checked > 0 {
		if g := r.gauge("sluice_pipeline_last_run_dqs", nil); g != nil {
			g.WithLabelValues(run.Pipeline).Set(float64(run.Rows["valid"]) / float64(checked))
		}
	}
}

// Sum adds up every series of the counter called name (its exported name)
// labelled with pipeline, e.g. a pipeline's input_received across its
// inputs. where narrows it to series with these label values, given as
// name, value pairs (output_sent of the output labelled "rejects": "label",
// "rejects"). Zero if there is none.
func (r *Registry) Sum(name, pipeline string, where ...string) float64 {
	total, _ := r.Lookup(name, pipeline, where...)
	return total
}

// Lookup is Sum, also reporting whether any counter matched: a component
// that registered the counter has it, at 0 until it counts.
func (r *Registry) Lookup(name, pipeline string, where ...string) (float64, bool) {
	want := map[string]string{"pipeline": pipeline}
	for i := 0; i+1 < len(where); i += 2 {
		want[where[i]] = where[i+1]
	}
	families, err := r.reg.Gather()
	if err != nil {
		return 0, false
	}
	var total float64
	found := false
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(want) {
				total += m.GetCounter().GetValue()
				found = true
			}
		}
	}
	return total, found
}

// TimeBy adds up the observed seconds of the Benthos timer called name
// (its Benthos name, as processor_latency_ns) labelled with pipeline,
// grouped by the value of label, leaving out series where it is empty:
// e.g. how long each labelled processor of a pipeline has spent.
func (r *Registry) TimeBy(name, pipeline, label string) map[string]float64 {
	out := map[string]float64{}
	families, err := r.reg.Gather()
	if err != nil {
		return out
	}
	want := promName(name) + "_seconds"
	for _, f := range families {
		if f.GetName() != want {
			continue
		}
		for _, m := range f.GetMetric() {
			var ofPipeline bool
			var group string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "pipeline":
					ofPipeline = l.GetValue() == pipeline
				case label:
					group = l.GetValue()
				}
			}
			if ofPipeline && group != "" {
				out[group] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}
