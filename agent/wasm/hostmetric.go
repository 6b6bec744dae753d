package wasm

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Metric kinds of the metric import (ABI.md §8.10).
const (
	metricCounterAdd = 0
	metricGaugeSet   = 1
)

// maxSeries bounds the label combinations one step's plugin may create, so
// a plugin labelling by user id cannot blow up the agent's memory and its
// scrape.
const maxSeries = 1000

var metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// pluginMetrics turns a step's metric calls into the pipeline's Benthos
// metrics (and so into the agent's Prometheus registry, labelled by
// pipeline). It is shared by the step's instances.
type pluginMetrics struct {
	m *service.Metrics

	mu       sync.Mutex
	keys     map[string]string // metric name -> its label keys, joined by \x00
	counters map[string]*service.MetricCounter
	gauges   map[string]*service.MetricGauge
	series   map[string]bool
	warned   map[string]bool
}

func newPluginMetrics(m *service.Metrics) *pluginMetrics {
	if m == nil {
		return nil
	}
	return &pluginMetrics{m: m, keys: map[string]string{}, counters: map[string]*service.MetricCounter{},
		gauges: map[string]*service.MetricGauge{}, series: map[string]bool{}, warned: map[string]bool{}}
}

// record applies one metric call; the error says why it was refused.
func (p *pluginMetrics) record(kind uint32, name string, labels []string, v int64) error {
	if !metricName.MatchString(name) {
		return fmt.Errorf("metric name %q: use letters, digits and _", name)
	}
	if strings.HasPrefix(name, reservedMetricPrefix) {
		return fmt.Errorf("metric name %q: the %s prefix is the agent's own plugin metrics", name, reservedMetricPrefix)
	}
	keys := make([]string, 0, len(labels)/2)
	vals := make([]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		if !metricName.MatchString(labels[i]) || labels[i] == "pipeline" {
			return fmt.Errorf("metric %s: label name %q: use letters, digits and _, not pipeline (the agent sets it)", name, labels[i])
		}
		keys, vals = append(keys, labels[i]), append(vals, labels[i+1])
	}
	joined := strings.Join(keys, "\x00")
	p.mu.Lock()
	defer p.mu.Unlock()
	if k, ok := p.keys[name]; ok && k != joined {
		return fmt.Errorf("metric %s: labels %v, but it was first used with %q", name, keys, strings.ReplaceAll(k, "\x00", ","))
	}
	p.keys[name] = joined
	sid := name + "\x00" + strings.Join(vals, "\x00")
	if !p.series[sid] {
		if len(p.series) >= maxSeries {
			return fmt.Errorf("metric %s: more than %d label combinations; label by bounded values (a suite, a class), never by a user", name, maxSeries)
		}
		p.series[sid] = true
	}
	switch kind {
	case metricCounterAdd:
		if v < 0 {
			return fmt.Errorf("counter %s: cannot add %d", name, v)
		}
		c := p.counters[name]
		if c == nil {
			if p.gauges[name] != nil {
				return fmt.Errorf("metric %s is a gauge", name)
			}
			c = p.m.NewCounter(name, keys...)
			p.counters[name] = c
		}
		c.Incr(v, vals...)
	case metricGaugeSet:
		g := p.gauges[name]
		if g == nil {
			if p.counters[name] != nil {
				return fmt.Errorf("metric %s is a counter", name)
			}
			g = p.m.NewGauge(name, keys...)
			p.gauges[name] = g
		}
		g.Set(v, vals...)
	default:
		return fmt.Errorf("metric %s: unknown kind %d", name, kind)
	}
	return nil
}

// hostMetric is the metric import: (kind, name_ptr, name_len, labels_ptr,
// labels_len i32, value i64). Labels are packed: u32 count of pairs, then
// per pair two u32-length-prefixed strings.
func hostMetric(ctx context.Context, mod api.Module, stack []uint64) {
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	if info == nil {
		return
	}
	kind := api.DecodeU32(stack[0])
	name, ok := readGuest(mod, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	if !ok {
		info.logger.Warn("plugin metric call out of memory range")
		return
	}
	if info.metrics == nil {
		return // no metrics in this context (lint, tests): nothing to record
	}
	raw, ok := mod.Memory().Read(api.DecodeU32(stack[3]), api.DecodeU32(stack[4]))
	if !ok {
		info.logger.Warn("plugin metric call out of memory range", "metric", name)
		return
	}
	labels, ok := decodeLabels(raw)
	if !ok {
		info.logger.Warn("plugin metric call with malformed labels", "metric", name)
		return
	}
	if err := info.metrics.record(kind, name, labels, int64(stack[5])); err != nil {
		info.metrics.warnOnce(info, name, err)
	}
}

func (p *pluginMetrics) warnOnce(info *callInfo, name string, err error) {
	p.mu.Lock()
	first := !p.warned[name]
	p.warned[name] = true
	p.mu.Unlock()
	if first {
		info.logger.Warn("plugin metric refused (further refusals of it are not logged)", "error", err)
	}
}

func decodeLabels(b []byte) ([]string, bool) {
	r := abi.NewReader(b)
	n := r.U32()
	if r.Err() != nil || n > 16 {
		return nil, false
	}
	out := make([]string, 0, 2*n)
	for i := uint32(0); i < 2*n; i++ {
		out = append(out, string(r.Bytes()))
	}
	return out, r.Err() == nil
}
