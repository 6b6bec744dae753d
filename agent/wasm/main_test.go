package wasm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// plugins maps a test plugin's name to its compiled .wasm. They are real
// modules compiled from testdata/plugins by the Go toolchain, once per run.
var plugins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	entries, err := os.ReadDir("testdata/plugins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, e := range entries {
		out := filepath.Join(dir, e.Name()+".wasm")
		if err := wasmbuild.Build(context.Background(), filepath.Join("testdata/plugins", e.Name()), out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		plugins[e.Name()] = out
	}
	// The example users copy is measured and tested beside the test plugins.
	example := filepath.Join(dir, "transform.wasm")
	if err := wasmbuild.Build(context.Background(), "../../examples/wasm/transform", example); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	plugins["transform"] = example
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
