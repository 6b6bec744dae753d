package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The benchmarks measure the processor's call pattern with SyncWrites on,
// as the agent runs by default. Run them all with:
//
//	go test -run '^$' -bench . -benchtime 400x ./state
const (
	benchBatch = 1024
	benchValue = 128
)

var benchNS = Namespace{Name: "bench"}

func benchKey(i int) []byte { return fmt.Appendf(nil, "user-%07d", i) }

// preload writes n keys with Badger's batch writer, bypassing Commit: it is
// setup, not what is measured.
func preload(b *testing.B, s *Store, n int) {
	b.Helper()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	val := make([]byte, benchValue)
	for i := range n {
		if err := wb.Set(appendStateKey(nil, benchNS.Name, benchKey(i)), encodeValue(val, 0)); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), SyncWrites: true, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// batches walks a shuffled keyspace in windows of benchBatch distinct keys,
// as a processor sees a batch after grouping messages by key.
type batches struct {
	order []int
	pos   int
	keys  [][]byte
}

func newBatches(space int) *batches {
	rng := rand.New(rand.NewPCG(7, 7))
	order := rng.Perm(space)
	return &batches{order: order, keys: make([][]byte, benchBatch)}
}

func (w *batches) next() [][]byte {
	for i := range w.keys {
		w.keys[i] = benchKey(w.order[w.pos])
		w.pos = (w.pos + 1) % len(w.order)
	}
	return w.keys
}

// cycle is one batch of keyed updates: load the keys' states, increment a
// counter in each 128-byte value, commit them with the batch's offset.
func cycle(b *testing.B, s *Store, keys [][]byte, vals []byte, offset int64) {
	es, err := s.Load(benchNS, keys, 0)
	if err != nil {
		b.Fatal(err)
	}
	writes := make([]Write, len(keys))
	for i, e := range es {
		v := vals[i*benchValue : (i+1)*benchValue]
		var n uint64
		if len(e.Value) >= 8 {
			n = binary.BigEndian.Uint64(e.Value)
		}
		binary.BigEndian.PutUint64(v, n+1)
		writes[i] = Write{Key: keys[i], Value: v, LastEvent: offset}
	}
	err = s.Commit(context.Background(), benchNS, writes, []Offset{{Source: "bench", Partition: "0", Offset: offset}})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCommit: 1024 keyed updates (Load, modify, Commit with offsets)
// per op, over 10k hot users (all cached after warm-up) and over 1M users
// walked so that every batch reads cold keys from Badger. The commit_only
// variants leave out the Load.
func BenchmarkCommit(b *testing.B) {
	for _, c := range []struct {
		name  string
		space int
	}{
		{"hot_10k", 10_000},
		{"distinct_1M", 1_000_000},
	} {
		var (
			s      *Store
			w      *batches
			offset int64
			vals   = make([]byte, benchBatch*benchValue)
		)
		// Set up on first use, so that -bench filters skip the preload; on
		// the parent b, which outlives the sub-benchmarks' repeated runs.
		setup := func() {
			if s == nil {
				s = benchStore(b)
				preload(b, s, c.space)
				w = newBatches(c.space)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			setup()
			b.ReportAllocs()
			for b.Loop() {
				offset++
				cycle(b, s, w.next(), vals, offset)
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "updates/s")
		})
		b.Run(c.name+"/commit_only", func(b *testing.B) {
			setup()
			writes := make([]Write, benchBatch)
			for b.Loop() {
				offset++
				for i, k := range w.next() {
					writes[i] = Write{Key: k, Value: vals[i*benchValue : (i+1)*benchValue], LastEvent: offset}
				}
				if err := s.Commit(context.Background(), benchNS, writes, []Offset{{Source: "bench", Partition: "0", Offset: offset}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}

// BenchmarkNaive is the same keyed update with one transaction (one Load,
// one Commit, one fsync) per update, over 10k users. One op is one update.
func BenchmarkNaive(b *testing.B) {
	s := benchStore(b)
	preload(b, s, 10_000)
	rng := rand.New(rand.NewPCG(3, 3))
	vals := make([]byte, benchValue)
	keys := make([][]byte, 1)
	var offset int64
	b.ResetTimer()
	for b.Loop() {
		offset++
		keys[0] = benchKey(rng.IntN(10_000))
		cycle(b, s, keys, vals, offset)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkLoad reads 1024 distinct keys of 1M per op: hot (all cached) and
// cold (cache emptied before each op, so one Badger read txn of 1024 Gets).
func BenchmarkLoad(b *testing.B) {
	s := benchStore(b)
	preload(b, s, 1_000_000)
	w := newBatches(1_000_000)
	b.Run("hot", func(b *testing.B) {
		keys := w.next()
		if _, err := s.Load(benchNS, keys, 0); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Load(benchNS, keys, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			if err := s.coldRead(); err != nil {
				b.Fatal(err)
			}
			keys := w.next()
			b.StartTimer()
			if _, err := s.Load(benchNS, keys, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "keys/s")
	})
}
