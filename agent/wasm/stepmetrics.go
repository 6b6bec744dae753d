package wasm

import (
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Names of the metrics every `wasm` step reports about its plugin, beside
// those the plugin defines itself. Through the pipeline's Benthos metrics
// they carry the step's label and path, and the agent adds the pipeline.
const (
	MetricCalls          = "sluice_plugin_calls_total"
	MetricBatchLatency   = "sluice_plugin_batch_latency" // a timer: exported as ..._seconds
	MetricMessagesIn     = "sluice_plugin_messages_in_total"
	MetricMessagesOut    = "sluice_plugin_messages_out_total"
	MetricMessagesDrop   = "sluice_plugin_messages_dropped_total"
	MetricMessagesErr    = "sluice_plugin_messages_errored_total"
	MetricTraps          = "sluice_plugin_traps_total"
	MetricTimeouts       = "sluice_plugin_timeouts_total"
	MetricRestarts       = "sluice_plugin_restarts_total"
	MetricMemoryPages    = "sluice_plugin_memory_pages"
	reservedMetricPrefix = "sluice_plugin_"
)

// stepMetrics are a step's own metrics about its plugin. All are updated
// once per call, never per message. The zero value (no pipeline metrics)
// and nil record nothing.
type stepMetrics struct {
	calls, in, out, dropped, errored *service.MetricCounter
	traps, timeouts, restarts        *service.MetricCounter
	latency                          *service.MetricTimer
	pages                            *service.MetricGauge
}

func newStepMetrics(m *service.Metrics) *stepMetrics {
	if m == nil {
		return &stepMetrics{}
	}
	return &stepMetrics{
		calls:    m.NewCounter(MetricCalls),
		latency:  m.NewTimer(MetricBatchLatency),
		in:       m.NewCounter(MetricMessagesIn),
		out:      m.NewCounter(MetricMessagesOut),
		dropped:  m.NewCounter(MetricMessagesDrop),
		errored:  m.NewCounter(MetricMessagesErr),
		traps:    m.NewCounter(MetricTraps),
		timeouts: m.NewCounter(MetricTimeouts),
		restarts: m.NewCounter(MetricRestarts),
		pages:    m.NewGauge(MetricMemoryPages),
	}
}

// call records one call into the plugin: in messages went in, took ns
// nanoseconds and came back as out (nil when the call failed, err).
// broken says whether the call left the instance unsound.
func (s *stepMetrics) call(in service.MessageBatch, out service.MessageBatch, ns int64, err error, broken bool, pages uint32) {
	failed := 0
	for _, m := range out {
		if m.GetError() != nil {
			failed++
		}
	}
	s.callRows(len(in), len(out), failed, ns, err, broken, pages)
}

// callRows records a call of in rows (messages, or a frame's rows) of
// which out were kept and failed failed.
func (s *stepMetrics) callRows(in, out, failed int, ns int64, err error, broken bool, pages uint32) {
	if s == nil || s.calls == nil {
		return
	}
	s.calls.Incr(1)
	s.latency.Timing(ns)
	s.pages.Set(int64(pages))
	if err != nil {
		switch {
		case errors.Is(err, ErrTimeout):
			s.timeouts.Incr(1)
		case broken:
			s.traps.Incr(1)
		}
		s.messages(in, in, in)
		return
	}
	s.messages(in, out, failed)
}

// messages counts a call's messages: in went in, out went on (failed ones
// included), failed of them with an error; the rest were dropped.
func (s *stepMetrics) messages(in, out, failed int) {
	if s == nil || s.calls == nil {
		return
	}
	s.in.Incr(int64(in))
	s.out.Incr(int64(out))
	if in > out {
		s.dropped.Incr(int64(in - out))
	}
	if failed > 0 {
		s.errored.Incr(int64(failed))
	}
}

// restart records an instance discarded after a failure, to be replaced.
func (s *stepMetrics) restart() {
	if s != nil && s.restarts != nil {
		s.restarts.Incr(1)
	}
}
