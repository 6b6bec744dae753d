//go:build sluice_lean

package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestLeanMainPipelineLints: the lean build runs the main job, so its
// pipeline lints clean, wasm plugins and Kafka included.
func TestLeanMainPipelineLints(t *testing.T) {
	if !LeanBuild {
		t.Fatal("built without -tags sluice_lean")
	}
	a := newTestAgent(t)
	for _, src := range []string{"builtin:realtime", "builtin:demo"} {
		if probs := a.Lint(context.Background(), []string{src}); len(probs) > 0 {
			t.Errorf("%s:%s", src, formatProblems(probs))
		}
	}
}

// TestLeanRefusesLeftOut: a pipeline using a component the lean build
// leaves out is refused by lint (at the first line of its config, where
// Benthos puts a component's lint) and by the run, saying that the build lacks it rather than that the config is wrong.
func TestLeanRefusesLeftOut(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		line       int
	}{
		{"sqlite", "input:\n  generate: {count: 1, mapping: 'root = {\"a\": 1}'}\noutput:\n  sqlite:\n    path: ./out.db\n    table: events\n", 5},
		{"parquet", "input:\n  generate: {count: 1, mapping: 'root = {\"a\": 1}'}\noutput:\n  parquet:\n    path: ./out.parquet\n", 5},
		{"grpc_plugin", "input:\n  generate: {count: 1, mapping: 'root = {\"a\": 1}'}\npipeline:\n  processors:\n    - grpc_plugin:\n        path: ./scorer\noutput:\n  drop: {}\n", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".yaml")
			writeFile(t, file, tc.yaml)
			want := tc.name + " is not in this build: the agent was built with -tags sluice_lean"
			probs := newTestAgent(t).Lint(context.Background(), []string{file})
			if len(probs) != 1 || probs[0].Line != tc.line || !strings.Contains(probs[0].Msg, want) {
				t.Errorf("lint:%s\nwant one problem at line %d saying %q", formatProblems(probs), tc.line, want)
			}
			err := runAgent(t, t.TempDir(), []string{file}, nil, context.Background())
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("run: %v\nwant an error saying %q", err, want)
			}
		})
	}
}
