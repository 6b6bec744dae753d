package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/pipelines"
)

var restoreSecondsRE = regexp.MustCompile(`changelog restored.* records=(\d+) .*seconds=([0-9.e+-]+)`)

// BenchmarkFailover: two agents in a group on four partitions hold the
// state of 20,000 users (200,000 events); one is SIGKILLed, and the clock
// runs from the kill until an event produced right after it to each
// partition has its prediction: the group's session timeout (6 s here),
// the rebalance, the survivor's restore of the dead agent's partitions,
// and the first batch. With standby the survivor has followed those
// partitions' changelog all along, so its restore reads (almost) nothing.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./cmd/agent/
func BenchmarkFailover(b *testing.B) {
	for _, standby := range []bool{false, true} {
		b.Run(fmt.Sprintf("standby=%v", standby), func(b *testing.B) {
			var failover, restore time.Duration
			var restored int
			for range b.N {
				f, r, n := failoverOnce(b, standby)
				failover += f
				restore += r
				restored += n
			}
			b.ReportMetric(failover.Seconds()/float64(b.N), "s_failover")
			b.ReportMetric(restore.Seconds()/float64(b.N), "s_restore")
			b.ReportMetric(float64(restored)/float64(b.N), "records_restored")
		})
	}
}

func failoverOnce(b *testing.B, standby bool) (failover, restore time.Duration, restored int) {
	b.StopTimer()
	const partitions, n, users = 4, 200_000, 20_000
	broker := scaleoutBroker(b, partitions)
	lines := scaleoutEvents(0, n, users)
	y, ok := pipelines.Lookup("realtime_scaleout")
	if !ok || !bytes.Contains(y, []byte("changelog: {}")) {
		b.Fatal("builtin:realtime_scaleout no longer has `changelog: {}`")
	}
	if standby {
		y = bytes.Replace(y, []byte("changelog: {}"), []byte("changelog: {standby: true}"), 1)
	}
	pipeline := filepath.Join(b.TempDir(), "scaleout.yaml")
	if err := os.WriteFile(pipeline, y, 0o644); err != nil {
		b.Fatal(err)
	}
	start := func(dir string) *agentProc {
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_KAFKA_BROKERS="+broker,
			"SLUICE_HTTP_ADDRESS=", "SCALEOUT_SESSION_TIMEOUT=6s")
		return startPipeline(b, dir, env, "--pipeline", pipeline)
	}
	w := watchPredictions(b, broker)
	a, k := start(b.TempDir()), start(b.TempDir())
	produceLines(b, broker, lines)
	w.waitFor(b, "every event's prediction", func(_, distinct int) bool { return distinct == n })
	// Let the standby catch up with the last commits, as a running one is.
	time.Sleep(2 * time.Second)
	before := len(restoreSecondsRE.FindAllString(a.stderr.String(), -1))

	// One event per partition, for a user whose key lands there.
	var markers []string
	seen := map[int32]bool{}
	part := kgo.StickyKeyPartitioner(nil).ForTopic("user_events")
	for u := users + 1; len(markers) < partitions; u++ {
		p := int32(part.Partition(&kgo.Record{Key: []byte(strconv.Itoa(u))}, partitions))
		if seen[p] {
			continue
		}
		seen[p] = true
		markers = append(markers, fmt.Sprintf(`{"user_id":%d,"event_type":"click","event_data":{"amount":1,"seq":%d},"timestamp":%q}`,
			u, n+len(markers), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)))
	}
	b.StartTimer()
	killed := time.Now()
	k.kill(syscall.SIGKILL)
	produceLines(b, broker, markers)
	w.waitFor(b, "the markers' predictions", func(_, distinct int) bool { return distinct == n+len(markers) })
	failover = time.Since(killed)
	b.StopTimer()
	for _, m := range restoreSecondsRE.FindAllStringSubmatch(a.stderr.String(), -1)[before:] {
		r, _ := strconv.Atoi(m[1])
		s, _ := strconv.ParseFloat(m[2], 64)
		restored += r
		restore += time.Duration(s * float64(time.Second))
	}
	a.kill(syscall.SIGTERM)
	<-a.done
	<-k.done
	return failover, restore, restored
}
