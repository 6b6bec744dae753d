// Package wasmtest is the set-up the tests of plugins and of components
// beside the wasm processor share: an engine, and a processor from its
// YAML, each closed when the test ends. (agent/wasm's own tests cannot
// use it: it imports agent/wasm.)
package wasmtest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/sluice-dev/sluice/agent/wasm"
)

// Engine is an engine of cfg, closed when tb ends.
func Engine(tb testing.TB, cfg wasm.EngineConfig) *wasm.Engine {
	tb.Helper()
	eng, err := wasm.NewEngine(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// Processor is the wasm processor yaml (its config, as a pipeline has it
// under `wasm:`) configures on eng, logging nowhere, closed when tb ends.
func Processor(tb testing.TB, eng *wasm.Engine, yaml string) *wasm.Processor {
	tb.Helper()
	conf, err := wasm.ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}
