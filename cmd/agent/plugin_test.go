package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/plugintool"
)

// pluginRun runs `agent ARGS...` in-process, as main does, and returns the
// exit code and output.
func pluginRun(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, baseEnv())
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// TestPluginCommands: each `agent plugin` command's exit code and output,
// as a user sees them.
func TestPluginCommands(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	writeFile(t, events, `{"user_id":1,"timestamp":"2025-01-04T23:59:59Z"}`+"\n"+`{"user_id":2}`+"\n")
	good := filepath.Join(dir, "good.jsonl")
	writeFile(t, good, `{"line":1,"result":"replaced","body":{"user_id":1,"timestamp":"2025-01-04T23:59:59Z","hour_of_day":23,"day_of_week":5,"is_weekend":true}}
{"line":2,"result":"errored","error":"required field \"timestamp\" is missing","body":{"user_id":2}}
`)
	bad := filepath.Join(dir, "bad.jsonl")
	writeFile(t, bad, strings.Replace(readFileString(t, good), `"is_weekend":true`, `"is_weekend":false`, 1))
	stalePin := filepath.Join(dir, "pinned.yaml")
	writeFile(t, stalePin, "wasm:\n  sha256: "+strings.Repeat("ab", 32)+"\n")

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{"no command", []string{"plugin"}, 2, nil, []string{"usage: agent plugin COMMAND"}},
		{"help", []string{"plugin", "--help"}, 0, nil, []string{"inspect PLUGIN"}},
		{"unknown command", []string{"plugin", "frob"}, 2, nil, []string{`unknown command "frob"`}},
		{"inspect a builtin", []string{"plugin", "inspect", "builtin:transform"}, 0,
			[]string{"abi      v1", "mode     columns", "inputs   timestamp  time  required", "outputs  hour_of_day  int", "is_weekend   bool", "pin      sha256: "}, nil},
		{"inspect, too many arguments", []string{"plugin", "inspect", "a.wasm", "b.wasm"}, 2, nil, []string{"want 1 to 1 arguments"}},
		{"inspect a missing file", []string{"plugin", "inspect", filepath.Join(dir, "nope.wasm")}, 1, nil, []string{"no such file"}},
		{"test, as expected", []string{"plugin", "test", transformWasm, "--input", events, "--expect", good}, 0,
			[]string{"ok   " + transformWasm + ": 2 messages as in " + good}, nil},
		{"test, not as expected", []string{"plugin", "test", transformWasm, "--input", events, "--expect", bad}, 1,
			[]string{"FAIL " + transformWasm, "1 of 2 messages differ", bad + ":1 (input line 1) differs in body"}, nil},
		{"test, printed", []string{"plugin", "test", "builtin:transform", "--input", events}, 0,
			[]string{`1    replaced  {"user_id":1,`, `2    errored   required field "timestamp" is missing`, "2 messages: 0 kept, 1 replaced, 0 dropped, 1 errored"}, nil},
		{"test, as JSON", []string{"plugin", "test", transformWasm, "--input", events, "--json"}, 0,
			[]string{readFileString(t, good)}, nil},
		{"test without input", []string{"plugin", "test", transformWasm}, 2, nil, []string{"--input is required"}},
		{"test, stale pin", []string{"plugin", "test", transformWasm, "--config", stalePin, "--input", events}, 1,
			nil, []string{"plugin does not match its pinned sha256", "expected sha256 " + strings.Repeat("ab", 32)}},
		{"test, stateful", []string{"plugin", "test", counterWasm, "--key", "user_id", "--input", events}, 0,
			[]string{`"event_count":1`, "state after the run:", `plugin_test/1 = {"Events":1,"Amount":0} (stored as base64:`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pluginRun(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", r.code, tc.code, r)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q\n%s", w, r)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q\n%s", w, r)
				}
			}
		})
	}
}

// TestPluginInspectJSON: --json is the Report, machine-readable.
func TestPluginInspectJSON(t *testing.T) {
	r := pluginRun(t, "plugin", "inspect", "--json", "builtin:transform")
	if r.code != 0 {
		t.Fatal(r)
	}
	var rep plugintool.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	if rep.Mode != "columns" || len(rep.Inputs) != 1 || rep.Inputs[0] != (plugintool.Field{Name: "timestamp", Type: "time", Required: true}) || len(rep.SHA256) != 64 {
		t.Errorf("report %+v", rep)
	}
}

// TestPluginRoundTrip: `plugin new`, then `plugin build`, then `plugin
// test --expect` on the generated fixtures passes, in Go and in C.
func TestPluginRoundTrip(t *testing.T) {
	for _, lang := range []string{"go", "c"} {
		t.Run(lang, func(t *testing.T) {
			var base string
			if lang == "c" {
				if err := plugintool.CheckC(t.Context()); err != nil {
					if os.Getenv("WASI_C_REQUIRED") == "1" {
						t.Fatalf("WASI_C_REQUIRED=1 but the C toolchain cannot build: %v", err)
					}
					t.Skipf("skipping: no C toolchain for wasm32-wasi (set WASI_C_REQUIRED=1 to make this a failure): %v", err)
				}
				base = t.TempDir()
			} else {
				// A Go plugin lives in this module: a folder under testdata,
				// which ./... never picks up.
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				if base, err = os.MkdirTemp("testdata", "plugin-"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = os.RemoveAll(base)
					_ = os.Remove("testdata") // only if empty
				})
			}
			dir := filepath.Join(base, "tally")
			steps := [][]string{
				{"plugin", "new", "tally", "--lang", lang, "--dir", dir},
				{"plugin", "build", dir},
				{"plugin", "test", filepath.Join(dir, "tally.wasm"), "--input", filepath.Join(dir, "events.jsonl"), "--expect", filepath.Join(dir, "expected.jsonl")},
			}
			wants := []string{"created " + lang + " plugin tally in " + dir, "built " + filepath.Join(dir, "tally.wasm") + ": ", "ok   "}
			for i, args := range steps {
				r := pluginRun(t, args...)
				if r.code != 0 || !strings.Contains(r.stdout, wants[i]) {
					t.Fatalf("agent %s: want exit 0 and %q\n%s", strings.Join(args, " "), wants[i], r)
				}
			}
		})
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
