package wasm

import (
	"strings"
	"testing"
)

// TestPluginMetricReservedPrefix: a plugin's own metric may not pass for
// one of the step's sluice_plugin_ metrics.
func TestPluginMetricReservedPrefix(t *testing.T) {
	p := &pluginMetrics{}
	for _, name := range []string{MetricCalls, MetricMemoryPages, "sluice_plugin_anything"} {
		err := p.record(metricCounterAdd, name, nil, 1)
		if err == nil || !strings.Contains(err.Error(), reservedMetricPrefix) {
			t.Errorf("record(%s) = %v, want a refusal naming the reserved prefix", name, err)
		}
	}
}
