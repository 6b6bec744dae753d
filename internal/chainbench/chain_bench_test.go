package chainbench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/eventgen"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
	"github.com/sluice-dev/sluice/state"
)

// The workload: gen_events.py's defaults scaled to a benchmark, processed in
// batches of batchSize (Benthos' batching of a busy input).
const (
	numEvents = 100_000
	numUsers  = 1_000
	batchSize = 1024
)

func events(b *testing.B) [][]byte {
	b.Helper()
	return eventBodies(eventgen.Generate(numEvents, numUsers, 42), 0)
}

func eventBodies(evs []eventgen.Event, userOffset int) [][]byte {
	out := make([][]byte, len(evs))
	for i, e := range evs {
		e.User += userOffset
		out[i] = e.AppendJSON(nil)
	}
	return out
}

// warmUp runs events of other users (ids above a million) through a fresh
// Wasm chain, untimed, so each guest's heap has grown to its working size:
// a fresh instance grows its linear memory step by step, each step copying
// it, which a long-running agent pays once and a benchmark of fresh
// instances would count per run. The measured users' state is untouched.
func warmUp(b *testing.B, procs []*wasm.Processor) {
	b.Helper()
	warm := eventBodies(eventgen.Generate(numEvents/5, numUsers, 43), 1_000_000)
	runWasm(b, procs, warm)
}

// openState returns a store kept in memory or a durable one with sync
// writes on a temporary dir, as the agent opens it.
func openState(b *testing.B, durable bool) *state.Store {
	b.Helper()
	opts := state.Options{InMemory: true, Logger: slog.New(slog.DiscardHandler)}
	if durable {
		opts = state.Options{Dir: b.TempDir(), SyncWrites: true, Logger: opts.Logger}
	}
	st, err := state.Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// stateModes are the two ways state is kept: the seed's Python keeps it in
// a dict, Sluice commits it before acknowledging each batch.
var stateModes = []struct {
	name    string
	durable bool
}{{"memory", false}, {"badger", true}}

// chainSteps returns the `wasm` processors of the shipped real-time
// sample pipeline, in order, as YAML: the benchmark runs exactly what
// users run. The sample's, not realtime.yaml's: their steps are the same
// but for the offsets the features step commits, which the sample takes
// from sample_seq, as the benchmark's events carry (realtime.yaml's come
// from Kafka metadata, which they lack, so none would be committed).
func chainSteps(b *testing.B) []string {
	b.Helper()
	doc, ok := pipelines.Lookup("realtime_sample")
	if !ok {
		b.Fatal("no builtin realtime_sample pipeline")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		b.Fatal(err)
	}
	var steps []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i++ {
			if n.Kind == yaml.MappingNode && i%2 == 0 && n.Content[i].Value == "wasm" {
				text, err := yaml.Marshal(n.Content[i+1])
				if err != nil {
					b.Fatal(err)
				}
				steps = append(steps, string(text))
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if len(steps) != 3 {
		b.Fatalf("the realtime_sample pipeline has %d wasm steps, want validate, features, score", len(steps))
	}
	return steps
}

// BenchmarkChain is events per second through validate -> features ->
// score: as Wasm steps, natively, and by the seed's Python, with state in
// memory and committed to Badger. Each iteration processes every event
// once, on fresh state (re-reading the same events on old state would make
// them all late).
func BenchmarkChain(b *testing.B) {
	bodies := events(b)
	steps := chainSteps(b)
	for _, sm := range stateModes {
		b.Run("wasm/state="+sm.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				st := openState(b, sm.durable)
				procs, closeChain := newWasmChain(b, steps, st)
				warmUp(b, procs)
				b.StartTimer()
				failed := runWasm(b, procs, bodies)
				b.StopTimer()
				if failed > len(bodies)/100 {
					b.Fatalf("%d of %d events failed", failed, len(bodies))
				}
				closeChain()
				_ = st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*len(bodies))/b.Elapsed().Seconds(), "events/s")
		})
	}
	// The Wasm chain's output for the first events, computed once and only
	// when a native sub-benchmark runs: what the native chain must match.
	var ref *wasmOutput
	for _, sm := range stateModes {
		b.Run("native/state="+sm.name, func(b *testing.B) {
			if ref == nil {
				ref = wasmReference(b, steps, bodies[:min(parityEvents, len(bodies))])
			}
			benchNative(b, steps, bodies, sm.durable, ref)
		})
	}
	b.Run("python-seed/state=memory", func(b *testing.B) {
		py, err := exec.LookPath("python3")
		if err != nil {
			b.Skip("python3 not found")
		}
		file := filepath.Join(b.TempDir(), "events.jsonl")
		if err := os.WriteFile(file, append(bytes.Join(bodies, []byte("\n")), '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
		var elapsed time.Duration
		for i := 0; i < b.N; i++ {
			in, err := os.Open(file)
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(py, "testdata/seed_realtime.py")
			cmd.Stdin = in
			var out bytes.Buffer
			cmd.Stdout = &out
			start := time.Now()
			err = cmd.Run()
			elapsed += time.Since(start)
			_ = in.Close()
			if err != nil {
				b.Fatal(err)
			}
			if n := bytes.Count(out.Bytes(), []byte("\n")); n != len(bodies) {
				b.Fatalf("python wrote %d predictions for %d events", n, len(bodies))
			}
		}
		b.ReportMetric(float64(b.N*len(bodies))/elapsed.Seconds(), "events/s")
	})
}

// newWasmChain starts the pipeline's steps as `wasm` processors over st,
// as the agent does, and returns them with a func that closes them.
func newWasmChain(b *testing.B, steps []string, st *state.Store) ([]*wasm.Processor, func()) {
	b.Helper()
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File, State: st})
	if err != nil {
		b.Fatal(err)
	}
	var procs []*wasm.Processor
	for _, y := range steps {
		conf, err := wasm.ConfigSpec().ParseYAML(y, nil)
		if err != nil {
			b.Fatal(err)
		}
		p, err := wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
	}
	return procs, func() {
		for _, p := range procs {
			_ = p.Close(context.Background())
		}
		_ = eng.Close(context.Background())
	}
}

// runWasm sends the events through the steps in batches, as a pipeline
// does (messages a step fails skip the steps after it, as in `try`), and
// returns how many failed.
func runWasm(b *testing.B, procs []*wasm.Processor, bodies [][]byte) int {
	failed := 0
	for start := 0; start < len(bodies); start += batchSize {
		failed += runWasmBatch(b, procs, wasmBatch(bodies, start, min(start+batchSize, len(bodies))))
	}
	return failed
}

// wasmBatch makes the messages of events start..end-1, each carrying its
// 1-based position as sample_seq (the offset the features step commits).
func wasmBatch(bodies [][]byte, start, end int) service.MessageBatch {
	batch := make(service.MessageBatch, 0, end-start)
	for i := start; i < end; i++ {
		m := service.NewMessage(bodies[i])
		m.MetaSetMut("sample_seq", strconv.Itoa(i+1))
		batch = append(batch, m)
	}
	return batch
}

// runWasmBatch sends one batch through the steps and returns how many of
// its messages failed. The messages keep their results: the final bytes,
// or the error of the step that failed them.
func runWasmBatch(b *testing.B, procs []*wasm.Processor, batch service.MessageBatch) int {
	ctx := context.Background()
	failed := 0
	for _, p := range procs {
		live := batch[:0:0]
		for _, m := range batch {
			if m.GetError() == nil {
				live = append(live, m)
			} else {
				failed++
			}
		}
		if len(live) == 0 {
			break
		}
		out, err := p.ProcessBatch(ctx, live)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) == 0 {
			batch = nil
			break
		}
		batch = out[0]
	}
	for _, m := range batch {
		if m.GetError() != nil {
			failed++
		}
	}
	return failed
}
