package wasm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
)

func newEngine(t testing.TB, cacheDir string) *wasm.Engine {
	t.Helper()
	eng, err := wasm.NewEngine(wasm.EngineConfig{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// newProcessor builds a `wasm` processor from YAML, as a pipeline would.
func newProcessor(t testing.TB, eng *wasm.Engine, yaml string) (*wasm.Processor, error) {
	t.Helper()
	conf, err := wasm.ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	p, err := wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return p, err
}

func mustProcessor(t testing.TB, eng *wasm.Engine, yaml string) *wasm.Processor {
	t.Helper()
	p, err := newProcessor(t, eng, yaml)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func batchOf(bodies ...string) service.MessageBatch {
	b := make(service.MessageBatch, len(bodies))
	for i, s := range bodies {
		b[i] = service.NewMessage([]byte(s))
	}
	return b
}

func run(t testing.TB, p *wasm.Processor, batch service.MessageBatch) service.MessageBatch {
	t.Helper()
	out, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatalf("ProcessBatch returned an error, want errors on messages: %v", err)
	}
	if len(out) == 0 {
		return nil
	}
	if len(out) != 1 {
		t.Fatalf("got %d batches, want 1", len(out))
	}
	return out[0]
}

func body(t testing.TB, m *service.Message) string {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBytesMode(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, fmt.Sprintf("path: %s\nconfig: {tag: t1}\n", plugins["echo"]))

	in := batchOf("keep", "drop", "fail", "error", "upper:abc")
	in[0].MetaSetMut("in", "v0")
	out := run(t, p, in)

	type want struct {
		body, err, tag, inSeen string
	}
	wants := []want{
		{body: "keep", tag: "t1", inSeen: "v0"},
		{body: "fail", err: "told to fail", tag: "t1"},
		{body: "error", err: "handler returned an error", tag: "t1"},
		{body: "ABC", tag: "t1"},
	}
	if len(out) != len(wants) {
		t.Fatalf("got %d messages, want %d (one dropped)", len(out), len(wants))
	}
	for i, w := range wants {
		m := out[i]
		if got := body(t, m); got != w.body {
			t.Errorf("message %d: body %q, want %q", i, got, w.body)
		}
		gotErr := ""
		if err := m.GetError(); err != nil {
			gotErr = err.Error()
		}
		if (w.err == "") != (gotErr == "") || !strings.Contains(gotErr, w.err) {
			t.Errorf("message %d: error %q, want one containing %q", i, gotErr, w.err)
		}
		if tag, _ := m.MetaGet("tag"); tag != w.tag {
			t.Errorf("message %d: tag %q, want %q", i, tag, w.tag)
		}
		if v, _ := m.MetaGet("in_seen"); v != w.inSeen {
			t.Errorf("message %d: in_seen %q, want %q", i, v, w.inSeen)
		}
	}
}

func TestPluginConfigErrors(t *testing.T) {
	eng := newEngine(t, "")
	for _, tc := range []struct {
		name, config, want string
	}{
		{"plugin refuses", "{reject: true}", "refusing to load"},
		{"unknown key", "{tga: x}", `unknown field "tga"`},
		{"wrong type", "{tag: [1, 2]}", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProcessor(t, eng, fmt.Sprintf("path: %s\nconfig: %s\n", plugins["echo"], tc.config))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadRefusals(t *testing.T) {
	eng := newEngine(t, "")
	notWasm := filepath.Join(t.TempDir(), "not.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		is         error
		want       []string
	}{
		{"other ABI version", "path: " + plugins["abiv2"], wasm.ErrABIVersion, []string{"built for ABI v2", "speaks v1", "rebuild"}},
		{"missing file", "path: /nonexistent/x.wasm", os.ErrNotExist, []string{"/nonexistent/x.wasm"}},
		{"not wasm", "path: " + notWasm, nil, []string{"compile"}},
		{"unknown builtin", "builtin: nope", nil, []string{`no builtin plugin named "nope"`}},
		{"bad memory limit", "path: " + plugins["echo"] + "\nmemory_limit: lots", nil, []string{"memory_limit", "lots"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProcessor(t, eng, tc.yaml)
			if err == nil {
				t.Fatal("loaded, want a refusal")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestMisbehavingPlugins checks each way a plugin can fail a batch: the
// batch's messages carry the reason, the agent keeps going, and the next
// batch is processed normally by a fresh instance.
func TestMisbehavingPlugins(t *testing.T) {
	eng := newEngine(t, "")
	for _, tc := range []struct {
		plugin, body, extra string
		want                []string
	}{
		{"crash", "trap", "", []string{"out of bounds memory access"}},
		{"crash", "panic", "", []string{"panic: plugin panicked on purpose"}},
		{"crash", "exit", "", []string{"exited with code 3"}},
		{"crash", "loop", "timeout: 200ms", []string{"exceeded its deadline", "200ms"}},
		{"crash", "grow", "memory_limit: 16MiB\ntimeout: 20s", []string{"out of memory"}},
		{"malformed", "count", "", []string{"malformed result", "999 results for 2 messages"}},
		{"malformed", "range", "", []string{"malformed result", "outside its"}},
		{"malformed", "status", "", []string{"malformed result", "unknown status 77"}},
		{"malformed", "action", "", []string{"malformed result", "unknown action 9"}},
	} {
		t.Run(tc.plugin+"/"+tc.body, func(t *testing.T) {
			p := mustProcessor(t, eng, fmt.Sprintf("path: %s\n%s\n", plugins[tc.plugin], tc.extra))
			out := run(t, p, batchOf(tc.body, "bystander"))
			if len(out) != 2 {
				t.Fatalf("got %d messages back, want both (failed, not lost)", len(out))
			}
			for i, m := range out {
				err := m.GetError()
				if err == nil {
					t.Fatalf("message %d has no error", i)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("message %d: error %q does not say %q", i, err, w)
					}
				}
			}
			if got := body(t, out[0]); got != tc.body {
				t.Errorf("failed message lost its bytes: %q", got)
			}
			if tc.plugin == "malformed" {
				return // it answers every batch with garbage
			}
			next := run(t, p, batchOf("fine", "also fine"))
			for i, m := range next {
				if err := m.GetError(); err != nil {
					t.Errorf("next batch message %d: %v", i, err)
				}
			}
		})
	}
}

func TestColumnsMode(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, "path: "+plugins["columns"])

	in := []string{
		`{"n":21,"nested":{"x":1.5},"b":true,"s":"héllo \"q\"","t":"2025-01-04T23:30:00Z","keep":"me"}`,
		`{"n":1,"action":"drop"}`,
		`{"n":2,"action":"fail"}`,
		`{"n":"twenty"}`,
		`{"t":"yesterday"}`,
		`{"nested":{"x":null},"t":1735689600}`,
		`{}`,
	}
	out := run(t, p, batchOf(in...))
	if len(out) != len(in)-1 {
		t.Fatalf("got %d messages, want %d (one dropped)", len(out), len(in)-1)
	}
	wantDocs := []string{
		`{"n":21,"nested":{"x":1.5,"neg_x":-1.5},"b":true,"s":"héllo \"q\"","t":"2025-01-04T23:30:00Z","keep":"me","n2":42,"not_b":false,"s_upper":"HÉLLO \"Q\"","t_plus_1h":"2025-01-05T00:30:00Z"}`,
		`{"n":2,"action":"fail"}`,
		`{"n":"twenty"}`,
		`{"t":"yesterday"}`,
		`{"nested":{"x":null},"t":1735689600,"t_plus_1h":"2025-01-01T01:00:00Z"}`,
		`{}`,
	}
	wantErrs := []string{"", "row asked to fail", `field "n": want int, got "twenty"`, `field "t": want time`, "", ""}
	for i := range wantDocs {
		got := body(t, out[i])
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Fatalf("message %d is not JSON: %v: %s", i, err, got)
		}
		_ = json.Unmarshal([]byte(wantDocs[i]), &w)
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("message %d:\n got %s\nwant %s", i, got, wantDocs[i])
		}
		gotErr := ""
		if err := out[i].GetError(); err != nil {
			gotErr = err.Error()
		}
		if (wantErrs[i] == "") != (gotErr == "") || !strings.Contains(gotErr, wantErrs[i]) {
			t.Errorf("message %d: error %q, want %q", i, gotErr, wantErrs[i])
		}
	}
	// Rows the host rejected never reach the plugin, so the plugin's row
	// numbers (in metadata) count only the rows it saw.
	if row, _ := out[4].MetaGet("row"); row != "3" {
		t.Errorf("row metadata %q, want 3", row)
	}
	if got := body(t, out[2]); got != in[3] {
		t.Errorf("rejected message changed: %s", got)
	}
	// One entry for every row the plugin saw, overridden for the one it
	// failed after it; the host's rejects were never sent.
	for i, want := range []string{"yes", "failed", "", "", "yes", "yes"} {
		got, _ := out[i].MetaGet("checked")
		if got != want {
			t.Errorf("message %d: checked=%q, want %q", i, got, want)
		}
	}
	// Any other row past the end is a malformed result: the whole call
	// fails, nothing lost.
	for i, m := range run(t, p, batchOf(`{"action":"meta past the end"}`, `{"n":1}`)) {
		if err := m.GetError(); err == nil || !strings.Contains(err.Error(), "malformed result: metadata for row 2 of 2") {
			t.Errorf("message %d: error %v, want a malformed result naming the row", i, err)
		}
	}
}

func TestSandbox(t *testing.T) {
	eng := newEngine(t, "")
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello from host"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_SECRET", "s3cret")

	locked := mustProcessor(t, eng, "path: "+plugins["sandbox"])
	out := run(t, locked, batchOf("env", "file", "clock"))
	if got := body(t, out[0]); got != "SLUICE_TEST_SECRET=" {
		t.Errorf("environment leaked into the sandbox: %q", got)
	}
	if out[1].GetError() == nil {
		t.Errorf("plugin read a host file without a mount: %q", body(t, out[1]))
	}
	if got := body(t, out[2]); got == strconv.Itoa(time.Now().Year()) {
		t.Errorf("plugin saw the real clock without a grant: year %s", got)
	}

	open := mustProcessor(t, eng, fmt.Sprintf(`
path: %s
clock: true
env: [SLUICE_TEST_SECRET]
mounts:
  - {host: %s, guest: /data}
`, plugins["sandbox"], data))
	out = run(t, open, batchOf("env", "file", "clock", "write"))
	if got := body(t, out[0]); got != "SLUICE_TEST_SECRET=s3cret" {
		t.Errorf("granted env var: got %q", got)
	}
	if got := body(t, out[1]); got != "hello from host" {
		t.Errorf("granted mount: got %q (err %v)", got, out[1].GetError())
	}
	if got := body(t, out[2]); got < "2025" {
		t.Errorf("granted clock: year %s", got)
	}
	if err := out[3].GetError(); err == nil {
		t.Errorf("wrote through a read-only mount")
	}
}

// TestConcurrentThreads hammers one processor from several goroutines, as
// a pipeline with threads > 1 does: each call must see its own results.
func TestConcurrentThreads(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, "path: "+plugins["columns"])
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for iter := 0; iter < 50; iter++ {
				n := g*1000 + iter
				out, err := p.ProcessBatch(context.Background(), batchOf(fmt.Sprintf(`{"n":%d}`, n), fmt.Sprintf(`{"n":%d}`, n+1)))
				if err != nil {
					errs <- err
					return
				}
				for j, m := range out[0] {
					b, _ := m.AsBytes()
					want := fmt.Sprintf(`"n2":%d`, 2*(n+j))
					if !strings.Contains(string(b), want) {
						errs <- fmt.Errorf("goroutine %d: got %s, want %s", g, b, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCompilationCacheOnDisk(t *testing.T) {
	dir := t.TempDir()
	count := func() int {
		n := 0
		_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
			if d != nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	mustProcessor(t, newEngine(t, dir), "path: "+plugins["echo"])
	first := count()
	if first == 0 {
		t.Fatal("nothing cached on disk after compiling a plugin")
	}
	// A restarted agent (a new engine on the same dir) reuses the cache.
	mustProcessor(t, newEngine(t, dir), "path: "+plugins["echo"])
	if got := count(); got != first {
		t.Errorf("restart compiled again: %d cache files, had %d", got, first)
	}
}

// TestGoGuestCollectsGarbage runs a Go plugin that allocates per message
// through many small batches and then large ones: memory freed in earlier
// calls must be reusable, or the plugin hits its memory cap. (A wasip1 Go
// reactor only runs its GC workers while an export executes; the SDK yields
// to them at every call. Without that yield this plugin ran out of its 64MiB
// at about the 190th large batch.)
func TestGoGuestCollectsGarbage(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, "path: "+plugins["transformjson"]+"\ntimeout: 60s\ninterrupt_on_timeout: false\nmemory_limit: 64MiB")
	ev := `{"user_id":1,"event_type":"page_view","event_data":{"page":"/products/334"},"timestamp":"2025-01-01T05:28:42.268Z"}`
	big := make([]string, 1024)
	for i := range big {
		big[i] = ev
	}
	for i := 0; i < 300; i++ {
		if err := run(t, p, batchOf(ev))[0].GetError(); err != nil {
			t.Fatalf("small batch %d: %v", i, err)
		}
	}
	for i := 0; i < 200; i++ {
		if err := run(t, p, batchOf(big...))[0].GetError(); err != nil {
			t.Fatalf("large batch %d after many small ones: %v", i, err)
		}
	}
}

// TestConfigFile: a plugin's config can come from a file, on disk or
// shipped in the agent, with the inline config's keys on top of it.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "echo.yaml")
	if err := os.WriteFile(file, []byte("tag: from-file\nrules: [{name: ok}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notMap := filepath.Join(dir, "list.yaml")
	if err := os.WriteFile(notMap, []byte("- 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := wasm.NewEngine(wasm.EngineConfig{BuiltinFiles: func(name string) ([]byte, bool) {
		if name == "suites/echo.yaml" {
			return []byte(`{"tag": "shipped"}`), true
		}
		return nil, false
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	echo := strconv.Quote(plugins["echo"])
	cases := []struct {
		name, yaml, tag, err string
	}{
		{"file", "config_file: " + strconv.Quote(file), "from-file", ""},
		{"inline overrides", "config_file: " + strconv.Quote(file) + "\nconfig: {tag: inline}", "inline", ""},
		{"builtin", "config_file: builtin:suites/echo.yaml", "shipped", ""},
		{"missing builtin", "config_file: builtin:suites/none.yaml", "", `no builtin file "suites/none.yaml"`},
		{"missing file", "config_file: " + strconv.Quote(filepath.Join(dir, "none.yaml")), "", "none.yaml: no such file"},
		{"not a mapping", "config_file: " + strconv.Quote(notMap), "", "list.yaml"},
		{"inline not a mapping", "config_file: " + strconv.Quote(file) + "\nconfig: [1]", "", "must be a mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := newProcessor(t, eng, "path: "+echo+"\n"+c.yaml)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want it to contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := run(t, p, batchOf("hi"))
			if tag, _ := out[0].MetaGet("tag"); tag != c.tag {
				t.Errorf("tag %q, want %q", tag, c.tag)
			}
		})
	}
}

// TestInterruptDefault: a plugin loaded by path gets loop interrupts
// unless the pipeline turns them off; a builtin, trusted, does not unless
// the pipeline turns them on.
func TestInterruptDefault(t *testing.T) {
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: func(string) ([]byte, bool) { return []byte("\x00asm"), true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	for _, c := range []struct {
		yaml string
		want bool
	}{
		{"path: " + plugins["echo"], true},
		{"path: " + plugins["echo"] + "\ninterrupt_on_timeout: false", false},
		{"builtin: x", false},
		{"builtin: x\ninterrupt_on_timeout: true", true},
	} {
		conf, err := wasm.ConfigSpec().ParseYAML(c.yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := wasm.ParseSettings(eng, conf)
		if err != nil {
			t.Fatal(err)
		}
		if s.Load.Interrupt != c.want {
			t.Errorf("%q: interrupt %v, want %v", c.yaml, s.Load.Interrupt, c.want)
		}
	}
}

// TestBatchSplitIntoCalls: a batch larger than max_call_messages is split
// into calls; the result is the same as one call (order, drops, errors,
// replacements across the calls' boundaries), and a call that fails fails
// only its own messages.
func TestBatchSplitIntoCalls(t *testing.T) {
	eng := newEngine(t, "")
	bodies := make([]string, 25)
	for i := range bodies {
		switch i % 5 {
		case 1:
			bodies[i] = "drop"
		case 3:
			bodies[i] = "fail"
		default:
			bodies[i] = fmt.Sprintf("upper:m%d", i)
		}
	}
	whole := run(t, mustProcessor(t, eng, fmt.Sprintf("path: %s\n", plugins["echo"])), batchOf(bodies...))
	for _, n := range []int{1, 4, 7, 24, 25} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			split := run(t, mustProcessor(t, eng, fmt.Sprintf("path: %s\nmax_call_messages: %d\n", plugins["echo"], n)), batchOf(bodies...))
			if len(split) != len(whole) || len(whole) != 20 {
				t.Fatalf("split into calls of %d: %d messages, one call: %d, want 20 (5 dropped)", n, len(split), len(whole))
			}
			for i := range whole {
				if a, b := body(t, split[i]), body(t, whole[i]); a != b || (split[i].GetError() == nil) != (whole[i].GetError() == nil) {
					t.Errorf("message %d: %q (error %v), one call gives %q (error %v)", i, a, split[i].GetError(), b, whole[i].GetError())
				}
			}
		})
	}

	p := mustProcessor(t, eng, fmt.Sprintf("path: %s\nmax_call_messages: 2\n", plugins["crash"]))
	out := run(t, p, batchOf("fine", "fine", "panic", "fine", "fine"))
	for i, m := range out {
		if failed := m.GetError() != nil; failed != (i == 2 || i == 3) {
			t.Errorf("message %d: error %v; only the failing call's messages (2 and 3) should fail", i, m.GetError())
		}
	}
	if len(out) != 5 {
		t.Fatalf("%d messages back, want all 5", len(out))
	}
	if _, err := newProcessor(t, eng, fmt.Sprintf("path: %s\nmax_call_messages: 0\n", plugins["echo"])); err == nil || !strings.Contains(err.Error(), "max_call_messages must be positive") {
		t.Errorf("max_call_messages 0: %v", err)
	}
}

// TestSkipErrored: with skip_errored, messages an earlier step errored
// keep their place, bytes and first error and never reach the plugin;
// the others are processed as without it (kept, replaced, dropped,
// failed), in row mode and in columns mode.
func TestSkipErrored(t *testing.T) {
	eng := newEngine(t, "")
	earlier := errors.New("csv: line 3: quantity is not a number")
	for _, tc := range []struct {
		name    string
		plugin  string
		bodies  []string
		errored []int    // indexes errored before the step
		want    []string // body, and " !" + error if errored after it
	}{
		{
			name:    "row mode, errored between kept, dropped and failed",
			plugin:  "echo",
			bodies:  []string{"upper:a", "upper:x", "drop", "upper:b", "fail", "upper:y", "keep"},
			errored: []int{1, 5},
			want:    []string{"A", "upper:x !" + earlier.Error(), "B", "fail !told to fail", "upper:y !" + earlier.Error(), "keep"},
		},
		{
			name:    "row mode, every message errored",
			plugin:  "echo",
			bodies:  []string{"upper:a", "drop"},
			errored: []int{0, 1},
			want:    []string{"upper:a !" + earlier.Error(), "drop !" + earlier.Error()},
		},
		{
			name:    "row mode, none errored",
			plugin:  "echo",
			bodies:  []string{"upper:a", "drop", "upper:b"},
			errored: nil,
			want:    []string{"A", "B"},
		},
		{
			name:    "columns mode, the first and last errored",
			plugin:  "columns",
			bodies:  []string{`{"n":1}`, `{"n":2}`, `{"n":3,"action":"drop"}`, `{"n":4}`},
			errored: []int{0, 3},
			want:    []string{`{"n":1} !` + earlier.Error(), `{"n":2,"n2":4}`, `{"n":4} !` + earlier.Error()},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustProcessor(t, eng, fmt.Sprintf("path: %s\nskip_errored: true\n", plugins[tc.plugin]))
			batch := batchOf(tc.bodies...)
			for _, i := range tc.errored {
				batch[i].SetError(earlier)
			}
			var got []string
			for _, m := range run(t, p, batch) {
				s := body(t, m)
				if err := m.GetError(); err != nil {
					s += " !" + strings.TrimPrefix(err.Error(), plugins[tc.plugin]+": ")
				}
				got = append(got, s)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}

	keyed := keyedEngine(t, openStore(t, t.TempDir()))
	if _, err := newProcessor(t, keyed, fmt.Sprintf("path: %s\nskip_errored: true\nkey: user_id\nstate: {namespace: tallies}\n", plugins["counter"])); err == nil || !strings.Contains(err.Error(), "skip_errored is for a stateless step") {
		t.Errorf("skip_errored on a keyed step: %v", err)
	}
}
