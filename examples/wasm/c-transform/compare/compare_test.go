//go:build !wasip1

package compare_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/plugintool"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/internal/wasmtest"
	"github.com/sluice-dev/sluice/pipelines"
)

var tmpDir string

func TestMain(m *testing.M) {
	var err error
	if tmpDir, err = os.MkdirTemp("", "sluice-c-transform-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(tmpDir)
	os.Exit(code)
}

// modules builds the C plugin (with clang and wasi-libc, as `agent plugin
// build` does) and the Go one it mirrors, once per run.
var modules = sync.OnceValues(func() ([2]string, error) {
	ctx := context.Background()
	c, goMod := filepath.Join(tmpDir, "c.wasm"), filepath.Join(tmpDir, "go.wasm")
	if err := plugintool.CheckC(ctx); err != nil {
		return [2]string{}, errNoC{err}
	}
	if err := plugintool.BuildC(ctx, "..", c, os.Stderr); err != nil {
		return [2]string{}, err
	}
	if err := wasmbuild.Build(ctx, "../../transform", goMod); err != nil {
		return [2]string{}, err
	}
	return [2]string{c, goMod}, nil
})

type errNoC struct{ err error }

func (e errNoC) Error() string { return e.err.Error() }

// needModules returns the C and Go modules' paths. Without a C toolchain it
// skips, unless WASI_C_REQUIRED=1 (CI) makes that a failure.
func needModules(t testing.TB) (c, goMod string) {
	t.Helper()
	m, err := modules()
	if _, noC := err.(errNoC); noC && os.Getenv("WASI_C_REQUIRED") != "1" {
		t.Skipf("skipping: no C toolchain for wasm32-wasi (set WASI_C_REQUIRED=1 to make this a failure): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m[0], m[1]
}

func processor(t testing.TB, eng *wasm.Engine, path string, extra string) *wasm.Processor {
	t.Helper()
	return wasmtest.Processor(t, eng, "path: "+path+"\n"+extra)
}

func engine(t testing.TB) *wasm.Engine {
	t.Helper()
	return wasmtest.Engine(t, wasm.EngineConfig{})
}

// outcome is one message after the step: its bytes and its error without
// the plugin's name (the two modules sit at different paths).
type outcome struct {
	body, err string
}

func runAll(t *testing.T, p *wasm.Processor, name string, bodies []string) []outcome {
	t.Helper()
	batch := make(service.MessageBatch, len(bodies))
	for i, b := range bodies {
		batch[i] = service.NewMessage([]byte(b))
	}
	res, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0]) != len(bodies) {
		t.Fatalf("want one batch of %d messages, none dropped", len(bodies))
	}
	out := make([]outcome, len(bodies))
	for i, m := range res[0] {
		b, _ := m.AsBytes()
		out[i].body = string(b)
		if e := m.GetError(); e != nil {
			out[i].err = strings.ReplaceAll(e.Error(), name, "PLUGIN")
		}
	}
	return out
}

// events are the sample events, the Go transform test's edge cases, events
// the host rejects, and random instants over the whole range a time field
// holds, written both as RFC 3339 and as epoch seconds.
func events() []string {
	var evs []string
	for l := range strings.Lines(string(pipelines.SampleEvents())) {
		if l = strings.TrimSpace(l); l != "" {
			evs = append(evs, l)
		}
	}
	for _, ts := range []string{
		"2025-01-01T05:28:42.268Z", "2025-01-04T23:59:59Z", "2025-01-05T00:00:00Z",
		"2025-01-06T12:00:00+02:00", "2025-01-06T01:00:00+02:00", "1969-12-31T23:30:00Z",
		"1969-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "2024-02-29T12:00:00Z",
		"1677-09-21T00:12:43.145224192Z", "2262-04-11T23:47:16.854775807Z",
	} {
		evs = append(evs, fmt.Sprintf(`{"user_id":7,"timestamp":%q,"event_data":{"page":"/<a&b>"}}`, ts))
	}
	evs = append(evs,
		`{"user_id":1}`, `{"user_id":2,"timestamp":"yesterday"}`, `{"user_id":3,"timestamp":true}`,
		`{"user_id":4,"timestamp":"2025-13-01Z"}`, `{"timestamp":null}`, `not json`, `[1,2]`,
		`{"timestamp":1700000000.25,"hour_of_day":"overwritten in place"}`,
		`{ "timestamp" : -1 , "nested" : { "a" : [1, 2] } }`,
	)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		ns := rng.Int64N(1<<63-1) - (1<<62 - 1)
		ts := time.Unix(0, ns).UTC()
		if i%2 == 0 {
			evs = append(evs, fmt.Sprintf(`{"i":%d,"timestamp":%q}`, i, ts.Format(time.RFC3339Nano)))
		} else {
			evs = append(evs, fmt.Sprintf(`{"i":%d,"timestamp":%d}`, i, ts.Unix()))
		}
	}
	return evs
}

// TestCMatchesGo runs the same events through the C and the Go plugin,
// each in the agent's wasm processor in fast mode, in batches of growing
// and shrinking size (so the C plugin's request buffer is reallocated and
// reused), and wants every message byte-identical, errors included.
func TestCMatchesGo(t *testing.T) {
	cPath, goPath := needModules(t)
	eng := engine(t)
	cProc, goProc := processor(t, eng, cPath, ""), processor(t, eng, goPath, "")
	evs := events()
	checked, errored := 0, 0
	for _, size := range []int{1, 7, 1024, len(evs), 3} {
		for start := 0; start < len(evs); start += size {
			chunk := evs[start:min(start+size, len(evs))]
			c, g := runAll(t, cProc, cPath, chunk), runAll(t, goProc, goPath, chunk)
			for i := range chunk {
				if c[i] != g[i] {
					t.Fatalf("batch size %d, event %s:\n  C:  %q %q\n  Go: %q %q", size, chunk[i], c[i].body, c[i].err, g[i].body, g[i].err)
				}
				checked++
				if c[i].err != "" {
					errored++
				}
			}
		}
	}
	if errored == 0 || errored == checked {
		t.Fatalf("%d of %d messages errored: want some of each", errored, checked)
	}
	t.Logf("%d messages identical (%d errored on the host)", checked, errored)
}

// TestCBuildReproducible builds the plugin from two copies of its source in
// different folders and wants the same bytes, as a sha256 pin needs.
func TestCBuildReproducible(t *testing.T) {
	cPath, _ := needModules(t)
	want, err := os.ReadFile(cPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"a", "deeper/b"} {
		dir := filepath.Join(t.TempDir(), sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"transform.c", "sluice_abi.h"} {
			b, err := os.ReadFile(filepath.Join("..", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(dir, "out.wasm")
		if err := plugintool.BuildC(t.Context(), dir, out, nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("built in %s: %d bytes differing from the first build's %d", dir, len(got), len(want))
		}
	}
}

// TestCPluginSandbox: the C plugin asks for nothing outside its sandbox, so
// it needs no grant, and it refuses a config rather than ignore it.
func TestCPluginSandbox(t *testing.T) {
	cPath, _ := needModules(t)
	rep, err := plugintool.Inspect(t.Context(), plugintool.StepConfig{Plugin: cPath})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LoadError != "" || len(rep.Imports) != 0 || len(rep.Grants) != 0 || rep.Mode != "columns" {
		t.Errorf("report: load error %q, imports %v, grants %v, mode %q; want it to load in columns mode with no imports", rep.LoadError, rep.Imports, rep.Grants, rep.Mode)
	}
	conf, err := wasm.ConfigSpec().ParseYAML("path: "+cPath+"\nconfig: {tz: CET}", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wasm.NewProcessor(t.Context(), engine(t), conf, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "init: config: transform takes no config") {
		t.Errorf("load with a config: %v, want the plugin's refusal", err)
	}
}
