package changelog

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/state"
)

// benchWrites is one 1024-key batch of 128-byte states, the real-time
// pipeline's batch size and roughly a feature vector's size.
func benchWrites(round int) []state.Write {
	ws := make([]state.Write, 1024)
	val := make([]byte, 128)
	for i := range ws {
		val[0] = byte(round)
		ws[i] = state.Write{Key: []byte("user-" + strconv.Itoa(i)), Value: append([]byte{}, val...), LastEvent: int64(round)}
	}
	return ws
}

// BenchmarkCommit compares a batch's state commit with the changelog off
// (the local Badger commit alone) and on (produced to the changelog and
// acknowledged, then committed locally), on an in-process kfake broker.
func BenchmarkCommit(b *testing.B) {
	brokers := cluster(b)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("changelog=%v", on), func(b *testing.B) {
			a := newAgent(b, brokers, b.TempDir())
			if err := a.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			ns, epoch, err := a.log.Ready(ctx, srcTopic, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				ws := benchWrites(i)
				offs := []state.Offset{{Source: srcTopic, Partition: "0", Offset: int64(i)}}
				b.StartTimer()
				if on {
					err = a.log.Commit(ctx, srcTopic, 0, epoch, ws, offs)
				} else {
					err = a.store.Commit(ctx, ns, ws, offs)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*1024)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkRestore measures a new owner's restore of a partition whose
// changelog holds 100 batches of 1024 keys (102,400 records, 15 MB).
func BenchmarkRestore(b *testing.B) {
	brokers := cluster(b)
	src := newAgent(b, brokers, b.TempDir())
	if err := src.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	_, epoch, err := src.log.Ready(ctx, srcTopic, 0)
	if err != nil {
		b.Fatal(err)
	}
	const batches = 100
	for i := range batches {
		ws := benchWrites(i)
		for j := range ws { // distinct keys, so compaction would keep them all
			ws[j].Key = []byte(fmt.Sprintf("user-%d-%d", i, j))
		}
		if err := src.log.Commit(ctx, srcTopic, 0, epoch, ws, []state.Offset{{Source: srcTopic, Partition: "0", Offset: int64(i)}}); err != nil {
			b.Fatal(err)
		}
	}
	var records, bytes int64
	var took time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := newAgent(b, brokers, b.TempDir())
		if err := dst.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, _, err := dst.log.Ready(ctx, srcTopic, 0); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		s := dst.log.Stats()
		records += s.RestoredRecords
		bytes += s.RestoredBytes
		b.StopTimer()
		dst.close()
		b.StartTimer()
	}
	if records != int64(b.N)*batches*1024 {
		b.Fatalf("restored %d records in %d restores, want %d each", records, b.N, batches*1024)
	}
	b.ReportMetric(float64(records)/took.Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/took.Seconds()/1e6, "MB/s")
}
