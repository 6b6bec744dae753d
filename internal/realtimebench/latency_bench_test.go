package realtimebench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Latency is measured over latencySeconds of events produced at a fixed
// rate, by default half of what the same pipeline sustains (measured by a
// short calibration run first); REALTIME_RATE_SHIPPED sets the rate in
// events/s instead, so a figure can be reproduced at a stated rate, and
// REALTIME_LATENCY_SECONDS the length.
const defaultLatencySeconds = 10

// BenchmarkRealtimeLatency is produce-to-prediction latency through the
// Kafka pipeline (broker in memory) at a fixed rate: each event carries
// sent_ns, the wall clock when it was handed to the producer (the validate
// suite allows extra fields, and features and score add theirs beside it),
// and each prediction's latency is when the consumer of the predictions
// topic received it minus that. The producer (linger 0) and the consumer
// run in the benchmark's process, on the same two cores as the pipeline.
func BenchmarkRealtimeLatency(b *testing.B) {
	for _, v := range []variant{variants[0]} {
		name, _, _ := strings.Cut(v.name, "/")
		b.Run(name, func(b *testing.B) {
			b.StopTimer() // the calibration is not the measurement
			rate := latencyRate(b, v, "REALTIME_RATE_"+strings.ToUpper(name))
			secs := defaultLatencySeconds
			if s := os.Getenv("REALTIME_LATENCY_SECONDS"); s != "" {
				var err error
				if secs, err = strconv.Atoi(s); err != nil || secs < 1 {
					b.Fatalf("REALTIME_LATENCY_SECONDS=%q: want whole seconds", s)
				}
			}
			warm := genEvents(v.warm, numUsers, 43, warmUsers)
			measured := genEvents(int(rate*float64(secs)), numUsers, 42, 0)
			var (
				lat     []time.Duration
				dead    int64
				offered float64
				others  float64
			)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				l, d, o, oc := runLatency(b, v, warm, measured, rate)
				lat = append(lat, l...)
				dead += d
				offered += o
				others += oc
			}
			slices.Sort(lat)
			ms := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50_ms")
			b.ReportMetric(ms(0.99), "p99_ms")
			b.ReportMetric(ms(1), "max_ms")
			b.ReportMetric(offered/float64(b.N), "offered_events/s")
			b.ReportMetric(float64(dead)/float64(b.N), "dead/op")
			b.ReportMetric(others/float64(b.N), "others_cpu_%")
		})
	}
}

// calibrated keeps each pipeline's calibrated rate for the process, so the
// benchmark's b.N rounds do not calibrate again.
var (
	calibratedMu sync.Mutex
	calibrated   = map[string]float64{}
)

// latencyRate is the env var's rate, or half of what v sustains in a
// calibration run of half its throughput workload.
func latencyRate(b *testing.B, v variant, env string) float64 {
	b.Helper()
	if s := os.Getenv(env); s != "" {
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			b.Fatalf("%s=%q: want events per second", env, s)
		}
		return r
	}
	calibratedMu.Lock()
	defer calibratedMu.Unlock()
	if r, ok := calibrated[v.name]; ok {
		return r
	}
	cv := v
	cv.events /= 2
	elapsed, _, _ := runThroughput(b, cv, workloadFor(cv), cv.warm, noTimer{})
	r := float64(cv.events) / elapsed.Seconds() / 2
	b.Logf("%s: calibrated at %.0f events/s, producing at half: %.0f events/s (set %s to fix it)", v.name, 2*r, r, env)
	calibrated[v.name] = r
	return r
}

// withSent returns the event's JSON with "sent_ns":now added at the end.
func withSent(body []byte, now int64) []byte {
	out := make([]byte, 0, len(body)+32)
	out = append(out, body[:len(body)-1]...)
	out = append(out, `,"sent_ns":`...)
	out = strconv.AppendInt(out, now, 10)
	return append(out, '}')
}

// runLatency runs v on a fresh rig: the warm-up events first, untimed,
// then measured produced at rate while the predictions are read back. It
// returns each prediction's latency, the measured events that became dead
// letters, the rate actually offered, and other processes' CPU share.
func runLatency(b *testing.B, v variant, warm, measured []event, rate float64) ([]time.Duration, int64, float64, float64) {
	b.Helper()
	r := newRig(b, true, v.brokerOnDisk)
	defer r.close()
	prod := r.client(b, kgo.ProducerLinger(0))
	defer prod.Close()
	produce(b, prod, warm)
	cons := r.client(b,
		kgo.ConsumeTopics(topicPred, topicDead),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	defer cons.Close()
	stop, done := r.start(b, v.conf(b))
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	total := len(warm) + len(measured)
	got := 0
	var (
		lat  = make([]time.Duration, 0, len(measured))
		dead int64
	)
	poll := func() {
		fs := cons.PollFetches(ctx)
		now := time.Now()
		if err := ctx.Err(); err != nil {
			b.Fatalf("%d of %d events out: %v", got, total, err)
		}
		select {
		case err := <-done:
			b.Fatalf("the stream stopped after %d of %d events: %v", got, total, err)
		default:
		}
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("consume %s/%d: %v", t, p, err) })
		fs.EachRecord(func(rec *kgo.Record) {
			got++
			sent := gjson.GetBytes(rec.Value, "sent_ns").Int()
			if sent == 0 {
				return // a warm-up event
			}
			if rec.Topic == topicDead {
				dead++
				return
			}
			lat = append(lat, now.Sub(time.Unix(0, sent)))
		})
	}
	for got < len(warm) {
		poll()
	}

	b.StartTimer()
	cpu0 := sampleCPU()
	sendErr := make(chan error, 1)
	var offered float64
	go func() {
		offered = pace(ctx, prod, measured, rate, sendErr)
		close(sendErr)
	}()
	for got < total {
		poll()
	}
	b.StopTimer()
	others := othersPercent(cpu0, sampleCPU())
	if err := <-sendErr; err != nil {
		b.Fatal(err)
	}
	if len(lat)+int(dead) != len(measured) || got != total {
		b.Fatalf("%d predictions + %d dead letters for %d events (%d records out for %d)", len(lat), dead, len(measured), got, total)
	}
	return lat, dead, offered, others
}

// pace produces evs at rate, stamping each with sent_ns as it is handed to
// the client, and returns the rate achieved. A produce error is sent on
// errs.
func pace(ctx context.Context, cl *kgo.Client, evs []event, rate float64, errs chan<- error) float64 {
	var once sync.Once
	fail := func(_ *kgo.Record, err error) {
		if err != nil {
			once.Do(func() { errs <- fmt.Errorf("produce: %w", err) })
		}
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for sent < len(evs) {
		due := min(len(evs), int(time.Since(start).Seconds()*rate)+1)
		for ; sent < due; sent++ {
			e := evs[sent]
			cl.Produce(ctx, &kgo.Record{Topic: topicIn, Key: e.key, Value: withSent(e.body, time.Now().UnixNano())}, fail)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0
		}
	}
	return float64(len(evs)) / time.Since(start).Seconds()
}
