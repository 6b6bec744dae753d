// Package wasmbuild compiles Go plugin packages to WebAssembly the one way
// Sluice builds them everywhere (tests, the committed builtins, CI's
// reproducibility check), so the flags cannot drift apart.
package wasmbuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Flags are the go build flags for a plugin: a wasip1 reactor (c-shared)
// with paths, VCS stamps and build IDs stripped, so the same source and Go
// version give the same bytes on any machine and at any commit.
var Flags = []string{"-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-buildid="}

// Build compiles the Go package at pkgDir into the .wasm file out.
func Build(ctx context.Context, pkgDir, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("build %s: %w", pkgDir, err)
	}
	args := append([]string{"build"}, Flags...)
	args = append(args, "-o", abs, ".")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = pkgDir
	// GOWASM pinned to Go's default: a developer's own setting would
	// otherwise change the bytes. (satconv,signext measured no faster on
	// the validate builtin: 296 vs 299 ns/row, p=0.88,
	// docs/bench/gowasm-s12.txt.)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWASM=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", pkgDir, err, msg)
	}
	return nil
}

// ForTest builds the plugin package in the working directory (a plugin's
// own test) into name in tb's temporary directory, and returns its path.
func ForTest(tb testing.TB, name string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), name)
	if err := Build(context.Background(), ".", out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// ForTestMain is ForTest for a TestMain, which has no testing.TB: the
// file is in a new temporary directory, which remove deletes.
func ForTestMain(name string) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "sluice-plugin-test-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) }
	path = filepath.Join(dir, name)
	if err := Build(context.Background(), ".", path); err != nil {
		remove()
		return "", nil, err
	}
	return path, remove, nil
}
