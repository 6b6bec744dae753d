package plugintool_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/plugintool"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/plugins/builtin"
)

// plugins are agent/wasm's test plugins, built once by TestMain: echo
// (bytes mode: keeps, drops, fails, rewrites as bodies say; sets metadata),
// counter (stateful: per-key counts), abiv2 (exports ABI v2 only).
var plugins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-plugintool-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := []string{"echo", "counter", "abiv2"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		plugins[name] = filepath.Join(dir, name+".wasm")
		wg.Go(func() {
			errs[i] = wasmbuild.Build(context.Background(), filepath.Join("../../agent/wasm/testdata/plugins", name), plugins[name])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needC skips a test without a C toolchain for wasm32-wasi, unless
// WASI_C_REQUIRED=1 (CI) makes that a failure.
func needC(t *testing.T) {
	t.Helper()
	if err := plugintool.CheckC(t.Context()); err != nil {
		if os.Getenv("WASI_C_REQUIRED") == "1" {
			t.Fatalf("WASI_C_REQUIRED=1 but the C toolchain cannot build: %v", err)
		}
		t.Skipf("skipping: no C toolchain for wasm32-wasi (set WASI_C_REQUIRED=1 to make this a failure): %v", err)
	}
}

// moduleDir is a fresh folder inside this module, where a generated Go
// plugin can build (testdata, so ./... never picks it up).
func moduleDir(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("testdata", "roundtrip-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(dir)
		_ = os.Remove("testdata") // only if empty: leave the tree as it was
	})
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRoundTrip: `plugin new` writes a folder that `plugin build` builds
// (to the same bytes twice, from two folders for C) and whose fixtures
// `plugin test` passes, in each language; a wrong expectation fails with
// a diff.
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		lang  string
		files []string
	}{
		{plugintool.LangGo, []string{"main.go", "main_test.go", "events.jsonl", "expected.jsonl", "README.md", ".gitignore"}},
		{plugintool.LangC, []string{"rt.c", "sluice_abi.h", "Makefile", "events.jsonl", "expected.jsonl", "README.md", ".gitignore"}},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			var base string
			if tc.lang == plugintool.LangC {
				needC(t)
				base = t.TempDir() // a C plugin builds anywhere
			} else {
				base = moduleDir(t)
			}
			dir := filepath.Join(base, "rt")
			written, err := plugintool.New(t.Context(), plugintool.NewOptions{Name: "rt", Lang: tc.lang, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if len(written) != len(tc.files) {
				t.Errorf("wrote %q, want %q", written, tc.files)
			}
			for _, f := range tc.files {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("generated folder lacks %s: %v", f, err)
				}
			}

			out, err := plugintool.DefaultOutput(dir)
			if err != nil || filepath.Base(out) != "rt.wasm" {
				t.Fatalf("default output %q, %v; want rt.wasm in the folder", out, err)
			}
			if err := plugintool.Build(t.Context(), dir, out, "", nil); err != nil {
				t.Fatal(err)
			}
			// Same bytes again; for C also from a copy in another folder,
			// so no path leaks into the module.
			again := filepath.Join(t.TempDir(), "again.wasm")
			src := dir
			if tc.lang == plugintool.LangC {
				src = filepath.Join(t.TempDir(), "elsewhere", "rt")
				copyDir(t, dir, src)
			}
			if err := plugintool.Build(t.Context(), src, again, tc.lang, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readFile(t, out), readFile(t, again)) {
				t.Errorf("two builds gave different bytes: not reproducible")
			}

			res, err := plugintool.Run(t.Context(), plugintool.RunOptions{
				Step:  plugintool.StepConfig{Plugin: out},
				Input: readFile(t, filepath.Join(dir, "events.jsonl")),
			})
			if err != nil {
				t.Fatal(err)
			}
			expected := readFile(t, filepath.Join(dir, "expected.jsonl"))
			if diff, err := plugintool.Compare(res.Records, expected, "expected.jsonl"); err != nil || diff != "" {
				t.Fatalf("generated plugin does not pass its fixtures: %v\n%s", err, diff)
			}
			wrong := bytes.Replace(expected, []byte(`"amount_cents":1234`), []byte(`"amount_cents":1`), 1)
			diff, err := plugintool.Compare(res.Records, wrong, "expected.jsonl")
			if err != nil || !strings.Contains(diff, "1 of 4 messages differ") || !strings.Contains(diff, "expected.jsonl:1 (input line 1) differs in body") {
				t.Errorf("a wrong expectation gave diff %q, err %v", diff, err)
			}

			if tc.lang == plugintool.LangGo {
				if testing.Short() {
					t.Log("-short: not running the generated go test")
					return
				}
				cmd := exec.CommandContext(t.Context(), "go", "test", "-count=1", ".")
				cmd.Dir = dir
				if msg, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("the generated go test fails: %v\n%s", err, msg)
				}
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && !strings.HasSuffix(e.Name(), ".wasm") {
			if err := os.WriteFile(filepath.Join(to, e.Name()), readFile(t, filepath.Join(from, e.Name())), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestNewRefuses: what `plugin new` will not do, and why it says.
func TestNewRefuses(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    plugintool.NewOptions
		want string
	}{
		{"bad name", plugintool.NewOptions{Name: "My Plugin", Lang: "c", Dir: filepath.Join(t.TempDir(), "p")}, "use lower-case letters"},
		{"unknown language", plugintool.NewOptions{Name: "p", Lang: "rust", Dir: filepath.Join(t.TempDir(), "p")}, `unknown language "rust"`},
		{"folder not empty", plugintool.NewOptions{Name: "p", Lang: "c", Dir: full}, "exists and is not empty"},
		{"go outside the module", plugintool.NewOptions{Name: "p", Lang: "go", Dir: filepath.Join(t.TempDir(), "p")}, "is in no Go module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugintool.New(t.Context(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func str(s string) *string { return &s }

// TestRun: every kind of result of a bytes-mode plugin, as records.
func TestRun(t *testing.T) {
	input := "hello\n\ndrop\nfail\nupper:abc\n{\"a\": 1}\nerror\n"
	res, err := plugintool.Run(t.Context(), plugintool.RunOptions{
		Step:  plugintool.StepConfig{Plugin: plugins["echo"], YAML: []byte("wasm:\n  config: {tag: t1}\n")},
		Input: []byte(input),
		Batch: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"tag": "t1"}
	want := []plugintool.Record{
		{Line: 1, Result: plugintool.Kept, BodyText: str("hello"), Meta: meta},
		{Line: 3, Result: plugintool.Dropped},
		{Line: 4, Result: plugintool.Errored, Error: "told to fail", BodyText: str("fail"), Meta: meta},
		{Line: 5, Result: plugintool.Replaced, BodyText: str("ABC"), Meta: meta},
		{Line: 6, Result: plugintool.Kept, Body: []byte(`{"a":1}`), Meta: meta},
		// The SDK fails the message whose handler returned an error, with
		// the metadata set so far.
		{Line: 7, Result: plugintool.Errored, Error: "handler returned an error", BodyText: str("error"), Meta: meta},
	}
	var b bytes.Buffer
	if err := plugintool.WriteRecords(&b, want); err != nil {
		t.Fatal(err)
	}
	if diff, err := plugintool.Compare(res.Records, b.Bytes(), "want"); err != nil || diff != "" {
		t.Errorf("%v\n%s", err, diff)
	}
	var human bytes.Buffer
	if err := plugintool.WriteHuman(&human, res); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`1    kept      "hello"`,
		`3    dropped`,
		`4    errored   told to fail`,
		`               meta tag=t1`,
		`6 messages: 2 kept, 1 replaced, 1 dropped, 2 errored`,
	} {
		if !strings.Contains(human.String(), line+"\n") {
			t.Errorf("human output lacks %q:\n%s", line, human.String())
		}
	}
}

// TestRunRefuses: setup errors are errors, not records, and say what to
// do: a pinned hash that does not match, a stateful plugin without a key,
// state to seed without a namespace.
func TestRunRefuses(t *testing.T) {
	bin := readFile(t, plugins["echo"])
	for _, tc := range []struct {
		name string
		o    plugintool.RunOptions
		want []string
	}{
		{"pin mismatch", plugintool.RunOptions{
			Step: plugintool.StepConfig{Plugin: plugins["echo"], YAML: []byte("sha256: " + strings.Repeat("ab", 32))},
		}, []string{"expected sha256 " + strings.Repeat("ab", 32), fmt.Sprintf("the module's is %x", sha(bin))}},
		{"stateful without a key", plugintool.RunOptions{
			Step: plugintool.StepConfig{Plugin: plugins["counter"]},
		}, []string{"keeps per-key state", "--key FIELD"}},
		{"state for a stateless step", plugintool.RunOptions{
			Step:  plugintool.StepConfig{Plugin: plugins["echo"]},
			State: []byte(`{"key":"a","value":1}`),
		}, []string{"state line 1: no namespace"}},
		{"bad state line", plugintool.RunOptions{
			Step:  plugintool.StepConfig{Plugin: plugins["counter"], Key: "user_id"},
			State: []byte(`{"key":"a"}`),
		}, []string{"state line 1: want exactly one of value and value_base64"}},
		{"no such builtin", plugintool.RunOptions{
			Step: plugintool.StepConfig{Plugin: "builtin:nope"},
		}, []string{`no builtin plugin named "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugintool.Run(t.Context(), tc.o)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Run: %v, want an error containing %q", err, w)
				}
			}
		})
	}
}

// TestRunState: --state seeds keyed state in a real store, the plugin sees
// it, and the state after the run is reported.
func TestRunState(t *testing.T) {
	// counter's state is a Go struct {Events int64; Amount float64}, stored
	// as its memory: little-endian, 16 bytes.
	tally := func(events int64, amount float64) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(events))
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(amount))
	}
	seedLine := fmt.Sprintf(`{"key":"a","value_base64":%q}`, base64.StdEncoding.EncodeToString(tally(5, 10)))
	input := `{"user_id":"a","event_data":{"amount":2.5}}
{"user_id":"b"}
{"user_id":"a"}
`
	res, err := plugintool.Run(t.Context(), plugintool.RunOptions{
		Step:  plugintool.StepConfig{Plugin: plugins["counter"], Key: "user_id", Namespace: "tallies"},
		Input: []byte(input),
		State: []byte(seedLine + "\n" + `{"namespace":"other","key":"x","value":{"note":"read_state"}}` + "\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"line":1,"result":"replaced","body":{"user_id":"a","event_data":{"amount":2.5},"event_count":6,"total_value":12.5,"replayed":false}}
{"line":2,"result":"replaced","body":{"user_id":"b","event_count":1,"total_value":0,"replayed":false}}
{"line":3,"result":"replaced","body":{"user_id":"a","event_count":7,"total_value":12.5,"replayed":false}}
`
	if diff, err := plugintool.Compare(res.Records, []byte(want), "want"); err != nil || diff != "" {
		t.Errorf("%v\n%s", err, diff)
	}
	got := map[string][]byte{}
	for _, e := range res.State {
		got[e.Namespace+"/"+e.Key] = e.Value
	}
	if len(got) != 3 || !bytes.Equal(got["tallies/a"], tally(7, 12.5)) || !bytes.Equal(got["tallies/b"], tally(1, 0)) ||
		string(got["other/x"]) != `{"note":"read_state"}` {
		t.Errorf("state after the run: %v", res.State)
	}
	for _, e := range res.State {
		// counter offers a view of its own namespace; "other" is not its.
		want := map[string]string{"tallies/a": `{"Events":7,"Amount":12.5}`, "tallies/b": `{"Events":1,"Amount":0}`}[e.Namespace+"/"+e.Key]
		if string(e.View) != want {
			t.Errorf("%s/%s: view %s, want %q", e.Namespace, e.Key, e.View, want)
		}
	}
}

// TestCompare: what counts as a difference, and how it is reported.
func TestCompare(t *testing.T) {
	got := []plugintool.Record{
		{Line: 1, Result: plugintool.Replaced, Body: []byte(`{"a":1,"b":"<x>"}`)},
		{Line: 3, Result: plugintool.Dropped},
	}
	for _, tc := range []struct {
		name, expected string
		want           []string // substrings of the diff; none: no diff
		wantErr        string
	}{
		{"equal, whitespace aside", "{\"line\":1,\"result\":\"replaced\",\"body\":{ \"a\" : 1, \"b\":\"<x>\" }}\n\n{\"result\":\"dropped\"}\n", nil, ""},
		{"key order counts", `{"result":"replaced","body":{"b":"<x>","a":1}}` + "\n" + `{"result":"dropped"}`, []string{"1 of 2 messages differ", "want:1 (input line 1) differs in body"}, ""},
		{"result and line", `{"line":2,"result":"kept","body":{"a":1,"b":"<x>"}}` + "\n" + `{"result":"dropped"}`, []string{"differs in line, result"}, ""},
		{"one record short", `{"result":"replaced","body":{"a":1,"b":"<x>"}}`, []string{"input line 3: not in want (it has 1 records)"}, ""},
		{"one record more", `{"result":"replaced","body":{"a":1,"b":"<x>"}}` + "\n" + `{"result":"dropped"}` + "\n" + `{"result":"dropped"}`, []string{"want:3: no such input message (the input has 2)"}, ""},
		{"not a record", `{"result":"dropped","extra":1}`, nil, "want:1: json: unknown field \"extra\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diff, err := plugintool.Compare(got, []byte(tc.expected), "want")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.want) == 0 && diff != "" {
				t.Errorf("unexpected diff:\n%s", diff)
			}
			for _, w := range tc.want {
				if !strings.Contains(diff, w) {
					t.Errorf("diff lacks %q:\n%s", w, diff)
				}
			}
		})
	}
}

// TestInspect: what the agent learns from a module, for a builtin, a
// stateful plugin, a module for another ABI version and one that is not
// Wasm at all.
func TestInspect(t *testing.T) {
	transform, _ := builtin.Lookup("transform")
	for _, tc := range []struct {
		plugin string
		check  func(t *testing.T, r *plugintool.Report)
		err    string
	}{
		{plugin: "builtin:transform", check: func(t *testing.T, r *plugintool.Report) {
			want := plugintool.Report{Mode: "columns",
				Inputs:  []plugintool.Field{{Name: "timestamp", Type: "time", Required: true}},
				Outputs: []plugintool.Field{{Name: "hour_of_day", Type: "int"}, {Name: "day_of_week", Type: "int"}, {Name: "is_weekend", Type: "bool"}}}
			if r.LoadError != "" || r.Mode != want.Mode || fmt.Sprint(r.Inputs) != fmt.Sprint(want.Inputs) || fmt.Sprint(r.Outputs) != fmt.Sprint(want.Outputs) {
				t.Errorf("descriptor: mode %q in %v out %v (load error %q); want %v", r.Mode, r.Inputs, r.Outputs, r.LoadError, want)
			}
			if r.SHA256 != fmt.Sprintf("%x", sha(transform)) || r.Size != len(transform) || fmt.Sprint(r.ABIVersions) != "[1]" {
				t.Errorf("sha256 %s size %d abi %v", r.SHA256, r.Size, r.ABIVersions)
			}
			if !hasGrant(r, "clock: true", false) || hasGrant(r, "key, state.namespace", true) {
				t.Errorf("grants %v: want clock optional (a Go module imports clock_time_get), no state", r.Grants)
			}
		}},
		{plugin: plugins["counter"], check: func(t *testing.T, r *plugintool.Report) {
			if !r.Stateful || !r.StateView || !hasGrant(r, "key, state.namespace", true) {
				t.Errorf("stateful %v view %v grants %v: want a stateful plugin with a view, needing key and state", r.Stateful, r.StateView, r.Grants)
			}
		}},
		{plugin: plugins["abiv2"], check: func(t *testing.T, r *plugintool.Report) {
			if fmt.Sprint(r.ABIVersions) != "[2]" || !strings.Contains(r.LoadError, "plugin ABI version mismatch") || r.Mode != "" {
				t.Errorf("abi %v, load error %q, mode %q: want v2, refused, no descriptor", r.ABIVersions, r.LoadError, r.Mode)
			}
		}},
		{plugin: "testdata-not-wasm", err: "no such file"},
	} {
		t.Run(filepath.Base(tc.plugin), func(t *testing.T) {
			r, err := plugintool.Inspect(t.Context(), plugintool.StepConfig{Plugin: tc.plugin})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
			var human, js bytes.Buffer
			if err := r.WriteHuman(&human); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(human.String(), "sha256   "+r.SHA256) || !strings.Contains(js.String(), `"sha256": "`+r.SHA256+`"`) {
				t.Errorf("reports lack the sha256:\n%s\n%s", human.String(), js.String())
			}
		})
	}
}

func sha(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

func hasGrant(r *plugintool.Report, setting string, required bool) bool {
	for _, g := range r.Grants {
		if g.Setting == setting && g.Required == required {
			return true
		}
	}
	return false
}

// TestHeaderInSync: `plugin new --lang c` writes the header the C example
// is built and tested with.
func TestHeaderInSync(t *testing.T) {
	tmpl := readFile(t, "templates/c/sluice_abi.h")
	example := readFile(t, "../../examples/wasm/c-transform/sluice_abi.h")
	if !bytes.Equal(tmpl, example) {
		t.Error("templates/c/sluice_abi.h differs from examples/wasm/c-transform/sluice_abi.h: copy the example's over it")
	}
}

// TestCheckCSaysWhatToInstall: a clang that cannot find wasi-libc (here, a
// wrapper pointing it at an empty sysroot) is reported with the packages
// to install, not as a bug in the plugin.
func TestCheckCSaysWhatToInstall(t *testing.T) {
	needC(t)
	wrapper := filepath.Join(t.TempDir(), "clang-nolibc")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec clang --sysroot=/nonexistent \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CC", wrapper)
	err := plugintool.CheckC(t.Context())
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32") ||
		!strings.Contains(err.Error(), "file not found") {
		t.Errorf("CheckC with no wasi-libc: %v; want clang's complaint and what to install", err)
	}
}

// TestCHeaderHelpers runs two C test plugins (testdata/c) that use the
// helpers of sluice_abi.h the transform does not: string, int and bool
// input columns, a string output with rows skipped, a float output, drop,
// fail and metadata in columns mode; every action and metadata, read and
// written, in bytes mode.
func TestCHeaderHelpers(t *testing.T) {
	needC(t)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"columns", `{"name":"ann","n":4}
{"n":-1}
{"name":"bo","flag":true}
{"flag":false,"n":3}
{"name":"cy"}
{}
{"name":"a<b>"}
`, `{"line":1,"result":"replaced","body":{"name":"ann","n":4,"greeting":"hi ann","half":2},"meta":{"seen":"yes"}}
{"line":2,"result":"errored","error":"negative n","body":{"n":-1},"meta":{"seen":"yes"}}
{"line":3,"result":"dropped"}
{"line":4,"result":"replaced","body":{"flag":false,"n":3,"half":1.5},"meta":{"seen":"yes"}}
{"line":5,"result":"replaced","body":{"name":"cy","greeting":"hi cy"},"meta":{"seen":"yes"}}
{"line":6,"result":"kept","body":{},"meta":{"seen":"yes"}}
{"line":7,"result":"replaced","body":{"name":"a<b>","greeting":"hi a\u003cb\u003e"},"meta":{"seen":"yes"}}
`},
		{"bytes", "hello\ndrop\nbye\nkeep\n{\"a\":\"b\"}\n", `{"line":1,"result":"replaced","body_text":"HELLO","meta":{"len":"5"}}
{"line":2,"result":"dropped"}
{"line":3,"result":"errored","error":"no goodbyes","body_text":"bye","meta":{"len":"3"}}
{"line":4,"result":"kept","body_text":"keep"}
{"line":5,"result":"replaced","body":{"A":"B"},"meta":{"len":"9"}}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), tc.name+".wasm")
			if err := plugintool.Build(t.Context(), filepath.Join("testdata", "c", tc.name), out, "", nil); err != nil {
				t.Fatal(err)
			}
			res, err := plugintool.Run(t.Context(), plugintool.RunOptions{Step: plugintool.StepConfig{Plugin: out}, Input: []byte(tc.input)})
			if err != nil {
				t.Fatal(err)
			}
			if diff, err := plugintool.Compare(res.Records, []byte(tc.want), "want"); err != nil || diff != "" {
				t.Errorf("%v\n%s", err, diff)
			}
			if tc.name != "bytes" {
				return
			}
			// Input metadata, which fixtures do not carry: sl_message_meta.
			eng, err := wasm.NewEngine(wasm.EngineConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close(t.Context())
			conf, err := wasm.ConfigSpec().ParseYAML("path: "+out, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := wasm.NewProcessor(t.Context(), eng, conf, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(t.Context())
			with, without := service.NewMessage([]byte("keep")), service.NewMessage([]byte("keep"))
			with.MetaSetMut("other", "1")
			with.MetaSetMut("in", "from the input")
			if _, err := p.ProcessBatch(t.Context(), service.MessageBatch{with, without}); err != nil {
				t.Fatal(err)
			}
			if v, _ := with.MetaGet("in_seen"); v != "from the input" {
				t.Errorf("in_seen = %q, want the input's in", v)
			}
			if v, ok := without.MetaGet("in_seen"); ok {
				t.Errorf("in_seen = %q on a message without in", v)
			}
		})
	}
}
