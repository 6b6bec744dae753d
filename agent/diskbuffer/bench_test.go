package diskbuffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	benchBatch     = 1024
	benchProducers = 4
)

// benchContent is n messages of about 200 bytes of JSON.
func benchContent(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		s := fmt.Sprintf(`{"id":%d,"user":"u-%06d","event":"page_view","path":"/products/%d","ts":"2024-05-01T12:00:00Z","pad":"`, i, i%100000, i%977)
		out[i] = []byte(s + strings.Repeat("x", 198-len(s)) + `"}`)
	}
	return out
}

func benchBatchOf(content [][]byte) service.MessageBatch {
	batch := make(service.MessageBatch, len(content))
	for i, c := range content {
		batch[i] = service.NewMessage(c)
	}
	return batch
}

// registerBenchBuffers adds the variants that a config cannot select:
// sluice_disk fsyncing inside each write, and the Badger queue.
func registerBenchBuffers(env *service.Environment) error {
	if err := Register(env, Options{}); err != nil {
		return err
	}
	if err := env.RegisterBatchBuffer("bench_disk_inline", ConfigSpec(Options{}), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchBuffer, error) {
		c, err := parseConfig(conf, "")
		if err != nil {
			return nil, err
		}
		c.inlineSync = true
		return open(c, res)
	}); err != nil {
		return err
	}
	return env.RegisterBatchBuffer("bench_badger", service.NewConfigSpec().Field(service.NewStringField("path")), func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchBuffer, error) {
		dir, err := conf.FieldString("path")
		if err != nil {
			return nil, err
		}
		return openBadger(dir)
	})
}

// BenchmarkStream runs batches of 1024 ~200-byte messages through a
// stream: benchProducers goroutines writing (each waits for its batch's
// acknowledgement, as an input with that many batches in flight) → the
// buffer → an output that counts. One op is one batch.
func BenchmarkStream(b *testing.B) {
	for _, v := range []struct{ name, buffer string }{
		{"memory", "memory: {}"},
		{"disk", "sluice_disk:\n    path: %s"},
		{"disk-interval", "sluice_disk:\n    path: %s\n    sync: interval"},
		{"disk-inline-fsync", "bench_disk_inline:\n    path: %s"},
		{"badger", "bench_badger:\n    path: %s"},
	} {
		b.Run(v.name, func(b *testing.B) {
			buffer := v.buffer
			if strings.Contains(buffer, "%s") {
				buffer = fmt.Sprintf(buffer, b.TempDir())
			}
			benchStream(b, buffer)
		})
	}
}

func benchStream(b *testing.B, buffer string) {
	p := newBenchPipe(b, buffer)
	b.SetBytes(int64(benchBatch * len(p.content[0])))
	b.ReportAllocs()
	b.ResetTimer()
	elapsed := p.run(b, b.N)
	b.StopTimer()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*benchBatch), "ns/msg")
}

// BenchmarkStreamRatio runs the memory buffer and sluice_disk (sync:
// always) in turns of 64 batches within one op loop, so that both see the
// same load on a shared machine, and reports each one's cost, wall clock
// and CPU time (user and system, all threads, the kernel's work for the
// writes and fsyncs included), and their ratios. One op is one batch
// through each. It runs with 4 and 16 producers (batches in flight at the
// input): with more, more batches share each fsync.
func BenchmarkStreamRatio(b *testing.B) {
	for _, producers := range []int{benchProducers, 16} {
		b.Run(fmt.Sprintf("inflight%d", producers), func(b *testing.B) { benchStreamRatio(b, producers) })
	}
}

func benchStreamRatio(b *testing.B, producers int) {
	mem := newBenchPipe(b, "memory: {}")
	disk := newBenchPipe(b, fmt.Sprintf("sluice_disk:\n    path: %s", b.TempDir()))
	mem.producers, disk.producers = producers, producers
	b.SetBytes(int64(2 * benchBatch * len(mem.content[0])))
	b.ResetTimer()
	var memT, diskT, memCPU, diskCPU time.Duration
	for done := 0; done < b.N; {
		n := min(64, b.N-done)
		c := cpuTime()
		memT += mem.run(b, n)
		c2 := cpuTime()
		diskT += disk.run(b, n)
		diskCPU += cpuTime() - c2
		memCPU += c2 - c
		done += n
	}
	b.StopTimer()
	msgs := float64(b.N * benchBatch)
	b.ReportMetric(float64(memT.Nanoseconds())/msgs, "memory-ns/msg")
	b.ReportMetric(float64(diskT.Nanoseconds())/msgs, "disk-ns/msg")
	b.ReportMetric(float64(diskT)/float64(memT), "disk/memory")
	if memCPU > 0 {
		b.ReportMetric(float64(memCPU.Nanoseconds())/msgs, "memory-cpu-ns/msg")
		b.ReportMetric(float64(diskCPU.Nanoseconds())/msgs, "disk-cpu-ns/msg")
		b.ReportMetric(float64(diskCPU)/float64(memCPU), "disk/memory-cpu")
	}
}

// benchPipe is a running stream: producers → buffer → a counting output.
type benchPipe struct {
	produce   service.MessageBatchHandlerFunc
	producers int
	content   [][]byte
	got       atomic.Int64
	target    atomic.Int64
	done      chan struct{}
	sent      int64
}

func newBenchPipe(b *testing.B, buffer string) *benchPipe {
	b.Helper()
	env := service.NewEnvironment()
	if err := registerBenchBuffers(env); err != nil {
		b.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	p := &benchPipe{content: benchContent(benchBatch), done: make(chan struct{}, 1), producers: benchProducers}
	var err error
	if p.produce, err = sb.AddBatchProducerFunc(); err != nil {
		b.Fatal(err)
	}
	p.target.Store(-1)
	if err := sb.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		if n := p.got.Add(int64(len(batch))); n == p.target.Load() {
			p.done <- struct{}{}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := sb.SetBufferYAML(buffer); err != nil {
		b.Fatal(err)
	}
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		b.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		b.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- stream.Run(context.Background()) }()
	b.Cleanup(func() {
		_ = stream.StopWithin(10 * time.Second)
		<-runDone
	})
	// A warm-up batch: the stream starts, files are created.
	p.run(b, 1)
	return p
}

// run sends n batches from p.producers goroutines and waits until the
// output has them all.
func (p *benchPipe) run(b *testing.B, n int) time.Duration {
	start := time.Now()
	p.sent += int64(n)
	p.target.Store(p.sent * benchBatch)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range p.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := p.produce(context.Background(), benchBatchOf(p.content)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	<-p.done
	return time.Since(start)
}

// BenchmarkWriteRead calls the buffer directly: one goroutine writes
// batches of 1024 (not waiting for acknowledgements), another reads and
// acknowledges. One op is one batch.
func BenchmarkWriteRead(b *testing.B) {
	for _, v := range []struct {
		name string
		conf config
	}{
		{"disk", config{}},
		{"disk-interval", config{SyncInterval: time.Second}},
		{"disk-inline-fsync", config{inlineSync: true}},
	} {
		b.Run(v.name, func(b *testing.B) {
			c := v.conf
			c.Dir = b.TempDir()
			buf := openT(b, c)
			content := benchContent(benchBatch)
			b.SetBytes(int64(benchBatch * len(content[0])))
			b.ReportAllocs()
			b.ResetTimer()
			readDone := make(chan error, 1)
			go func() {
				for n := 0; n < b.N*benchBatch; {
					batch, ack, err := buf.ReadBatch(context.Background())
					if err != nil {
						readDone <- err
						return
					}
					n += len(batch)
					_ = ack(context.Background(), nil)
				}
				readDone <- nil
			}()
			var acks sync.WaitGroup
			for range b.N {
				acks.Add(1)
				if err := buf.WriteBatch(context.Background(), benchBatchOf(content), func(context.Context, error) error { acks.Done(); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-readDone; err != nil {
				b.Fatal(err)
			}
			acks.Wait()
		})
	}
}

// BenchmarkDrain measures reading a buffer filled during an outage:
// 100,352 messages stored, then read and acknowledged in batches of up to
// 1024, as after an output recovers. Written in batches of 1024 (a
// batching input) or of 1 (an HTTP input, merged when read). The buffer is
// filled once; each op drains a fresh copy of its directory (the files are
// in the page cache, as after a recent outage). One op is one drain.
func BenchmarkDrain(b *testing.B) {
	const total = 98 * benchBatch
	for _, written := range []int{1024, 1} {
		for _, store := range []string{"disk", "badger"} {
			if store == "badger" && written == 1 {
				continue // a Badger transaction per message: minutes of filling
			}
			b.Run(fmt.Sprintf("%s/written%d", store, written), func(b *testing.B) {
				content := benchContent(written)
				template := b.TempDir()
				fill, err := openBench(store, template, 0)
				if err != nil {
					b.Fatal(err)
				}
				var acks sync.WaitGroup
				for n := 0; n < total; n += written {
					acks.Add(1)
					if err := fill.WriteBatch(context.Background(), benchBatchOf(content), func(context.Context, error) error { acks.Done(); return nil }); err != nil {
						b.Fatal(err)
					}
				}
				acks.Wait()
				if err := fill.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(total * len(content[0])))
				b.ReportAllocs()
				b.ResetTimer()
				var elapsed time.Duration
				for range b.N {
					b.StopTimer()
					dir := filepath.Join(b.TempDir(), "copy")
					if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
						b.Fatal(err)
					}
					buf, err := openBench(store, dir, total)
					if err != nil {
						b.Fatal(err)
					}
					buf.EndOfInput()
					b.StartTimer()
					start := time.Now()
					for n := 0; ; {
						batch, ack, err := buf.ReadBatch(context.Background())
						if errors.Is(err, service.ErrEndOfBuffer) {
							if n != total {
								b.Fatalf("drained %d, want %d", n, total)
							}
							break
						}
						if err != nil {
							b.Fatal(err)
						}
						n += len(batch)
						_ = ack(context.Background(), nil)
					}
					elapsed += time.Since(start)
					b.StopTimer()
					_ = buf.Close(context.Background())
				}
				b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "msgs/s")
			})
		}
	}
}

// openBench opens a buffer for BenchmarkDrain; stored tells the Badger
// queue how many messages its files hold.
func openBench(store, dir string, stored uint64) (service.BatchBuffer, error) {
	if store == "disk" {
		return open(config{Dir: dir, SyncInterval: time.Second}, nil)
	}
	bb, err := openBadger(dir)
	if err != nil {
		return nil, err
	}
	bb.nextSeq, bb.committed = stored, stored
	return bb, nil
}
