package sdk

import "github.com/sluice-dev/sluice/plugins/sdk/abi"

// metricLabels is reused between metric calls: a plugin runs one call at a
// time.
var metricLabels abi.Writer

// CounterAdd adds n (>= 0) to the counter name, labelled by labels, given
// as name, value pairs. It becomes one of the pipeline's metrics, labelled
// by pipeline too, and so appears on the agent's /metrics. Label by
// bounded values (a suite, a class), never by a user: the agent refuses a
// step's metrics past 1000 label combinations. The agent logs a refused
// metric once; the plugin carries on.
func CounterAdd(name string, n int64, labels ...string) { metric(0, name, n, labels) }

// GaugeSet sets the gauge name, labelled by labels (name, value pairs), to
// v. Gauges are integers, as in Benthos; export counters and let queries
// divide (rows_valid_total / rows_total) rather than a rounded ratio.
func GaugeSet(name string, v int64, labels ...string) { metric(1, name, v, labels) }

func metric(kind uint32, name string, v int64, labels []string) {
	metricLabels.Reset()
	metricLabels.U32(uint32(len(labels) / 2))
	for i := 0; i+1 < len(labels); i += 2 {
		metricLabels.String(labels[i])
		metricLabels.String(labels[i+1])
	}
	hostMetric(kind, name, metricLabels.Buf, v)
}
