// Package etlbench holds the sales ETL's side-by-side measurements:
// compare.sh runs the whole pipeline beside the seed's Python, and
// BenchmarkStepsBeforeLoad times the steps before the load (extract,
// validate, dedupe, transform) with rows as JSON messages and as frames.
package etlbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the stream's defaults (tracer none, ...)
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/csvinput"
	"github.com/sluice-dev/sluice/agent/distinct"
	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
)

// salesCSV writes rows rows from the seed's generator
// (../shared/peers/gen_sales.py, as compare.sh uses), or skips; with
// SLUICE_SALES_CSV set it uses that file instead (for profiling, where
// the generator's Python would be most of the samples).
func salesCSV(b *testing.B, rows int) string {
	b.Helper()
	if path := os.Getenv("SLUICE_SALES_CSV"); path != "" {
		return path
	}
	gen := filepath.Join("..", "..", "..", "shared", "peers", "gen_sales.py")
	if _, err := os.Stat(gen); err != nil {
		b.Skipf("the seed's generator is not here: %v", err)
	}
	path := filepath.Join(b.TempDir(), "sales.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("python3", gen, fmt.Sprint(rows), "7")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("gen_sales.py: %v: %s", err, stderr.String())
	}
	return path
}

// holdCompiled opens a wasm step of each config (the wasm processor's
// YAML) until the benchmark ends: compiling a plugin is the first
// stream's cost, not the steps', and a step held open keeps it compiled
// in the engine.
func holdCompiled(b *testing.B, eng *wasm.Engine, confs ...string) {
	b.Helper()
	ctx := context.Background()
	for _, conf := range confs {
		parsed, err := wasm.ConfigSpec().ParseYAML(conf, nil)
		if err != nil {
			b.Fatal(err)
		}
		p, err := wasm.NewProcessor(ctx, eng, parsed, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.Close(ctx) })
	}
}

// BenchmarkStepsBeforeLoad: pipelines/sales_etl.yaml's input and
// processors, exactly (validate the input's processor, dedupe and
// transform the pipeline's), over the seed's generated sales (1M rows),
// into a consumer that only counts rows: rows as one JSON message each
// (`frames: false`) and as frames; then, with frames, the three steps on
// the pipeline's one thread (as before session 22), the input alone and
// with each step alone.
//
//	go test -run '^$' -bench StepsBeforeLoad -benchtime 1x -count 3 ./internal/etlbench/
func BenchmarkStepsBeforeLoad(b *testing.B) {
	const rows = 1_000_000
	path := salesCSV(b, rows)
	// sales_etl.yaml's batch_size; SLUICE_BATCH_SIZE tries another
	// (docs/bench/batch-size-s14.txt).
	batchSize := 8192
	if v := os.Getenv("SLUICE_BATCH_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("SLUICE_BATCH_SIZE=%q is not a positive integer", v)
		}
		batchSize = n
	}
	ctx := context.Background()
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File, CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close(ctx) })
	env := service.NewEnvironment()
	for _, reg := range []func(*service.Environment) error{
		func(e *service.Environment) error { return wasm.Register(e, eng) },
		func(e *service.Environment) error { return csvinput.Register(e, pipelines.File) },
		distinct.Register, frame.RegisterUnframe,
	} {
		if err := reg(env); err != nil {
			b.Fatal(err)
		}
	}
	input := `
csv_file:
  paths: [%q]
  batch_size: %d
  columns:
    - {name: date, type: date}
    - {name: product_id, type: int}
    - {name: quantity, type: int}
    - {name: price, type: float}
    - {name: customer_id, type: int}
  file_field: source_file
  line_field: line
  frames: %v
`
	processors := []string{
		`wasm: {builtin: validate, config_file: builtin:suites/sales_data.yaml, skip_errored: true, parallel_calls: 0, max_call_messages: 1024}`,
		`distinct: {key: '${! @csv_raw }', reason: 'duplicate row: the same as an earlier row of this run'}`,
		`wasm: {builtin: sales, skip_errored: true, parallel_calls: 0, max_call_messages: 1024}`,
	}
	// SLUICE_MAX_CALL tries another max_call_messages for the Wasm steps
	// than sales_etl.yaml's 1024 (docs/bench/max-call-s23.txt; 8192 is the
	// default, which parallel_calls cuts to half a frame).
	if v := os.Getenv("SLUICE_MAX_CALL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("SLUICE_MAX_CALL=%q is not a positive integer", v)
		}
		for _, i := range []int{0, 2} {
			processors[i] = strings.Replace(processors[i], "max_call_messages: 1024", fmt.Sprintf("max_call_messages: %d", n), 1)
		}
	}
	holdCompiled(b, eng, strings.TrimPrefix(processors[0], "wasm: "), strings.TrimPrefix(processors[2], "wasm: "))
	// The whole chain as rows and as frames, then with frames the reading
	// alone and with one step each, so each step's share is a difference
	// of two figures of one command.
	// "one-call" runs each frame's calls one at a time (parallel_calls: 1),
	// as before the pipeline ran them on every core; "one-thread" runs
	// validate on the pipeline's thread too, beside dedupe and transform,
	// as before it was the input's processor; "validate+dedupe-in-input"
	// moves dedupe to the input's processors as well, leaving the
	// pipeline's thread the transform alone.
	for _, tc := range []struct {
		name    string
		frames  bool
		oneCall bool
		steps   []int // indexes into processors
		inSteps int   // how many of steps run as the input's processors
	}{
		{"rows", false, false, []int{0, 1, 2}, 1},
		{"frames", true, false, []int{0, 1, 2}, 1},
		{"frames-one-call", true, true, []int{0, 1, 2}, 1},
		{"frames-one-thread", true, false, []int{0, 1, 2}, 0},
		{"frames-validate+dedupe-in-input", true, false, []int{0, 1, 2}, 2},
		{"frames-extract", true, false, nil, 0},
		{"frames-extract+validate", true, false, []int{0}, 0},
		{"frames-extract+validate-one-call", true, true, []int{0}, 0},
		{"frames-extract+dedupe", true, false, []int{1}, 0},
		{"frames-extract+transform", true, false, []int{2}, 0},
	} {
		frames := tc.frames
		b.Run(tc.name, func(b *testing.B) {
			profile(b, tc.name)
			cpu0, faults0 := usage(b)
			for b.Loop() {
				sb := env.NewStreamBuilder()
				if err := sb.SetLoggerYAML("level: none"); err != nil {
					b.Fatal(err)
				}
				inConf := fmt.Sprintf(input, path, batchSize, frames)
				if tc.inSteps > 0 {
					inConf += "processors:\n"
					for _, step := range tc.steps[:tc.inSteps] {
						inConf += "  - " + processors[step] + "\n"
					}
				}
				if err := sb.AddInputYAML(inConf); err != nil {
					b.Fatal(err)
				}
				sb.SetThreads(1)
				for _, step := range tc.steps[tc.inSteps:] {
					conf := processors[step]
					if tc.oneCall {
						conf = strings.Replace(conf, "parallel_calls: 0", "parallel_calls: 1", 1)
					}
					if err := sb.AddProcessorYAML(conf); err != nil {
						b.Fatal(err)
					}
				}
				var good, rejected int
				if err := sb.AddBatchConsumerFunc(func(_ context.Context, mb service.MessageBatch) error {
					for _, m := range mb {
						body, err := m.AsBytes()
						if err != nil {
							return err
						}
						if !frame.Is(body) {
							if m.GetError() != nil {
								rejected++
							} else {
								good++
							}
							continue
						}
						f, err := frame.Decode(body)
						if err != nil {
							return err
						}
						n := f.Accepted()
						good += n
						rejected += f.Rows - n
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				strm, err := sb.Build()
				if err != nil {
					b.Fatal(err)
				}
				if err := strm.Run(ctx); err != nil {
					b.Fatal(err)
				}
				// The generated rows' faults are missing values, prices
				// and quantities not above zero, and duplicates: the
				// reader alone rejects none, every step some.
				checks := len(tc.steps) > 0
				if good+rejected != rows || (rejected > 0) != checks {
					b.Fatalf("%d good and %d rejected rows, want %d in all, some rejected: %v", good, rejected, rows, checks)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			// The process's CPU over the runs (the stream's goroutines,
			// its collector): over 2 cores, half of it is the least
			// wall time the steps could take.
			cpu, faults := usage(b)
			b.ReportMetric((cpu-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			// Page faults: in a VM each first touch of a page is dear,
			// and a run's frames are fresh memory until the heap stops
			// growing.
			b.ReportMetric(float64(faults-faults0)/float64(b.N), "faults/op")
		})
	}
}

// profile writes a CPU profile of the benchmark's runs alone, without the
// setup before them (the Wasm modules' compiling, whose collector work
// -test.cpuprofile mixes in), to $SLUICE_CPUPROFILE.name.prof.
//
//	SLUICE_CPUPROFILE=/tmp/steps go test -run '^$' -bench 'StepsBeforeLoad/frames$' -benchtime 1x ./internal/etlbench/
func profile(b *testing.B, name string) {
	b.Helper()
	prefix := os.Getenv("SLUICE_CPUPROFILE")
	if prefix == "" {
		return
	}
	f, err := os.Create(prefix + "." + name + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	})
}

// usage is the CPU time, user and system, this process has used, and
// the page faults it has taken without I/O.
func usage(b *testing.B) (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt
}
