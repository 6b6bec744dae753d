package wasm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/metrics"
	"github.com/sluice-dev/sluice/agent/wasm"
)

// logBuffer collects log lines written from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the lines containing every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// tagged is one event out of a tag plugin: its sequence number from the
// input and the plugin version that handled it.
type tagged struct {
	Seq int `json:"seq"`
	V   int `json:"v"`
}

// tagStream is a running stream: generate (a numbered event per tick) into
// a `wasm` step labelled plug, into a consumer that records every event.
type tagStream struct {
	t    *testing.T
	reg  *metrics.Registry
	logs *logBuffer

	mu  sync.Mutex
	out []tagged

	stop func()
}

func startTagStream(t *testing.T, eng *wasm.Engine, procYAML string) *tagStream {
	t.Helper()
	ts := &tagStream{t: t, reg: metrics.New(), logs: &logBuffer{}}
	env := service.NewEnvironment()
	if err := ts.reg.Register(env); err != nil {
		t.Fatal(err)
	}
	if err := wasm.Register(env, eng); err != nil {
		t.Fatal(err)
	}
	b := env.NewStreamBuilder()
	b.SetLogger(slog.New(slog.NewTextHandler(ts.logs, nil)))
	if err := b.SetMetricsYAML(metrics.ExporterName + ": {pipeline: t}"); err != nil {
		t.Fatal(err)
	}
	// One thread: batches are processed in input order, so the version that
	// handled each event can only step up at the swap.
	b.SetThreads(1)
	if err := b.AddInputYAML(`
generate:
  mapping: 'root = {"seq": counter()}'
  interval: 1ms
  batch_size: 4
`); err != nil {
		t.Fatal(err)
	}
	if err := b.AddProcessorYAML("label: plug\nwasm:\n" + indent(procYAML)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddBatchConsumerFunc(func(_ context.Context, batch service.MessageBatch) error {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, m := range batch {
			raw, err := m.AsBytes()
			if err != nil {
				return err
			}
			if m.GetError() != nil {
				t.Errorf("event %s failed: %v", raw, m.GetError())
			}
			var e tagged
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Errorf("output %q: %v", raw, err)
			}
			ts.out = append(ts.out, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- stream.Run(context.Background()) }()
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			// Stop drains: every event read from the input reaches the
			// consumer before it returns.
			if err := stream.StopWithin(30 * time.Second); err != nil {
				t.Errorf("stop stream: %v", err)
			}
			<-done
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

func (ts *tagStream) events() []tagged {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.out)
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline: the point is what happens, not how fast.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reloads returns the step's sluice_plugin_reloads_total{result=result}.
func (ts *tagStream) reloads(result string) float64 {
	rec := httptest.NewRecorder()
	ts.reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	scrape, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(scrape), "\n") {
		if strings.HasPrefix(line, wasm.MetricReloads+"{") && strings.Contains(line, `label="plug"`) && strings.Contains(line, `result="`+result+`"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v
		}
	}
	return 0
}

// copyFile writes src's bytes over dst in place, as cp does: the file is
// truncated and written, so a watcher can see it half written.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes b beside dst and renames it over dst, as mv and most
// deployment tools do.
func replaceFile(t *testing.T, dst string, b []byte) {
	t.Helper()
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestHotReloadUnderLoad swaps a plugin file while events flow through a
// real stream: every event comes out exactly once, those before the swap
// from v1 and every one after from v2; then a broken v3 is refused, with a
// log line and a metric, and v2 keeps serving.
func TestHotReloadUnderLoad(t *testing.T) {
	eng := newEngine(t, t.TempDir())
	dir := t.TempDir()
	plug := filepath.Join(dir, "tag.wasm")
	copyFile(t, plugins["tagv1"], plug)
	ts := startTagStream(t, eng, "path: "+plug)
	stopWatch, err := eng.WatchFiles(t.Context(), slog.New(slog.NewTextHandler(ts.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stopWatch()

	count := func(v int) int {
		n := 0
		for _, e := range ts.events() {
			if e.V == v {
				n++
			}
		}
		return n
	}
	waitFor(t, "v1 to serve 200 events", func() bool { return count(1) >= 200 })

	copyFile(t, plugins["tagv2"], plug)
	waitFor(t, "v2 to serve 200 events", func() bool { return count(2) >= 200 })
	if got := ts.reloads("ok"); got != 1 {
		t.Errorf("%s{result=ok} = %v, want 1", wasm.MetricReloads, got)
	}
	if lines := ts.logs.lines("plugin reloaded", plug); len(lines) != 1 {
		t.Errorf("want one log line saying the plugin was reloaded, got %q", lines)
	}

	replaceFile(t, plug, []byte("this is not a wasm module"))
	waitFor(t, "v3 to be refused", func() bool { return ts.reloads("refused") >= 1 })
	afterRefusal := count(2)
	waitFor(t, "v2 to serve 200 more events", func() bool { return count(2) >= afterRefusal+200 })
	ts.stop()

	refused := ts.logs.lines("plugin reload refused", "level=ERROR")
	if len(refused) != 1 {
		t.Fatalf("want one error line refusing v3, got %q\nlogs:\n%s", refused, ts.logs.String())
	}
	for _, want := range []string{"step=plug", "file=" + plug, "compile"} {
		if !strings.Contains(refused[0], want) {
			t.Errorf("refusal %q does not say %q", refused[0], want)
		}
	}

	events := ts.events()
	slices.SortFunc(events, func(a, b tagged) int { return a.Seq - b.Seq })
	v2From := -1
	for i, e := range events {
		if e.Seq != i+1 {
			t.Fatalf("event %d has seq %d: events were lost or doubled (want 1..%d once each)", i, e.Seq, len(events))
		}
		switch {
		case e.V == 2 && v2From < 0:
			v2From = i
		case e.V == 1 && v2From >= 0:
			t.Fatalf("event seq %d ran on v1 after seq %d ran on v2", e.Seq, events[v2From].Seq)
		case e.V != 1 && e.V != 2:
			t.Fatalf("event seq %d has v=%d", e.Seq, e.V)
		}
	}
	if v2From <= 0 {
		t.Fatalf("want a prefix of v1 then v2, v2 starts at %d of %d", v2From, len(events))
	}
	t.Logf("%d events: seq 1..%d from v1, the rest from v2", len(events), events[v2From-1].Seq)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// selfTestFiles writes a self-test whose one event must come out tagged
// with version v; it returns the step YAML that declares it.
func selfTestFiles(t *testing.T, dir string, v int) string {
	t.Helper()
	in, exp := filepath.Join(dir, "st-in.jsonl"), filepath.Join(dir, "st-expect.jsonl")
	writeFile(t, in, `{"seq":0}`+"\n")
	writeFile(t, exp, fmt.Sprintf(`{"line":1,"result":"replaced","body":{"v":%d,"seq":0}}`+"\n", v))
	return fmt.Sprintf("self_test:\n  input: %s\n  expect: %s\n", in, exp)
}

// TestReloadRefusals: a new version is refused for every reason a first
// load would fail, with the reason in the result, and the running version
// keeps serving.
func TestReloadRefusals(t *testing.T) {
	eng := newEngine(t, "")
	for _, tc := range []struct {
		name string
		// extra is more step YAML; dir holds the plugin file.
		extra func(t *testing.T, dir, plug string) string
		// next is what the plugin file holds at the reload; nil removes it.
		next func(t *testing.T) []byte
		want string
	}{
		{
			name: "not a wasm module",
			next: func(*testing.T) []byte { return []byte("\x00asm half written") },
			want: "compile",
		},
		{
			name: "missing file",
			next: nil,
			want: "no such file",
		},
		{
			name: "another ABI version",
			next: func(t *testing.T) []byte { return readFile(t, plugins["abiv2"]) },
			want: "ABI",
		},
		{
			name: "stateful plugin on a stateless step",
			next: func(t *testing.T) []byte { return readFile(t, plugins["counter"]) },
			want: "keeps per-key state",
		},
		{
			name:  "init rejects the step's config",
			extra: func(*testing.T, string, string) string { return "config: {rules: [{name: bad}]}\n" },
			next:  func(t *testing.T) []byte { return readFile(t, plugins["echo"]) },
			want:  `rules[0].name: "bad" is not allowed`,
		},
		{
			name: "pinned",
			extra: func(t *testing.T, _, plug string) string {
				return "sha256: " + sha256File(t, plug) + "\n"
			},
			next: func(t *testing.T) []byte { return readFile(t, plugins["tagv2"]) },
			want: "does not match its pinned sha256",
		},
		{
			name:  "self-test fails",
			extra: func(t *testing.T, dir, _ string) string { return selfTestFiles(t, dir, 1) },
			next:  func(t *testing.T) []byte { return readFile(t, plugins["tagv2"]) },
			want:  `self-test failed: 1 of 1 messages differ`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			plug := filepath.Join(dir, "tag.wasm")
			copyFile(t, plugins["tagv1"], plug)
			yaml := "path: " + plug + "\n"
			if tc.extra != nil {
				yaml += tc.extra(t, dir, plug)
			}
			p := mustProcessor(t, eng, yaml)
			v1 := sha256File(t, plug)
			if tc.next == nil {
				if err := os.Remove(plug); err != nil {
					t.Fatal(err)
				}
			} else {
				replaceFile(t, plug, tc.next(t))
			}
			res := p.Reload(t.Context())
			if res.Result != wasm.ReloadRefused || !strings.Contains(res.Error, tc.want) {
				t.Errorf("reload: %+v, want refused with %q", res, tc.want)
			}
			if res.SHA256 != v1 || res.Plugin != plug {
				t.Errorf("reload says %s serves %s, want v1 %s", res.Plugin, res.SHA256, v1)
			}
			out := run(t, p, batchOf(`{"seq":1}`))
			if got := body(t, out[0]); got != `{"v":1,"seq":1}` {
				t.Errorf("after the refusal the step gives %s, want v1's output", got)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReloadExplicit: Engine.Reload reloads every path: step and says what
// happened to each; a file holding the running version is left alone.
func TestReloadExplicit(t *testing.T) {
	tagv1 := readFile(t, plugins["tagv1"])
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: func(string) ([]byte, bool) { return tagv1, true }})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.wasm"), filepath.Join(dir, "b.wasm")
	copyFile(t, plugins["tagv1"], a)
	copyFile(t, plugins["tagv1"], b)
	pa := mustProcessor(t, eng, "path: "+a)
	pb := mustProcessor(t, eng, "path: "+b)
	mustProcessor(t, eng, "builtin: tag") // never reloaded: not in the results
	copyFile(t, plugins["tagv2"], b)

	results := eng.Reload(t.Context())
	slices.SortFunc(results, func(x, y wasm.ReloadResult) int { return strings.Compare(x.Plugin, y.Plugin) })
	want := []wasm.ReloadResult{
		{Plugin: a, Result: wasm.ReloadUnchanged, SHA256: sha256File(t, a)},
		{Plugin: b, Result: wasm.ReloadOK, SHA256: sha256File(t, b)},
	}
	if !slices.Equal(results, want) {
		t.Errorf("Reload:\n got %+v\nwant %+v", results, want)
	}
	for p, v := range map[*wasm.Processor]int{pa: 1, pb: 2} {
		out := run(t, p, batchOf(`{}`))
		if got, w := body(t, out[0]), fmt.Sprintf(`{"v":%d}`, v); got != w {
			t.Errorf("got %s, want %s", got, w)
		}
	}
	// A closed step is no longer reloaded.
	if err := pb.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := eng.Reload(t.Context()); len(got) != 1 || got[0].Plugin != a {
		t.Errorf("after closing b, Reload gave %+v, want a only", got)
	}
}

// TestSelfTest: a step does not load a plugin that fails its declared
// self-test; when a new version changes the output, the version is refused
// until the expected output is updated, whichever of the two files is
// written first.
func TestSelfTest(t *testing.T) {
	eng := newEngine(t, "")
	dir := t.TempDir()
	plug := filepath.Join(dir, "tag.wasm")
	copyFile(t, plugins["tagv2"], plug)
	st := selfTestFiles(t, dir, 1)
	_, err := newProcessor(t, eng, "path: "+plug+"\n"+st)
	if err == nil || !strings.Contains(err.Error(), "self-test failed") || !strings.Contains(err.Error(), `"v":2`) {
		t.Fatalf("loading v2 against v1's self-test: %v, want a self-test failure showing the difference", err)
	}

	copyFile(t, plugins["tagv1"], plug)
	logs := &logBuffer{}
	conf, err := wasm.ConfigSpec().ParseYAML("path: "+plug+"\n"+st, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := wasm.NewProcessor(t.Context(), eng, conf, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	stop, err := eng.WatchFiles(t.Context(), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	version := func() string { return body(t, run(t, p, batchOf(`{}`))[0]) }
	copyFile(t, plugins["tagv2"], plug)
	waitFor(t, "v2 to be refused by the self-test", func() bool { return len(logs.lines("plugin reload refused", "self-test failed")) > 0 })
	if got := version(); got != `{"v":1}` {
		t.Fatalf("after the refusal the step gives %s, want v1's", got)
	}
	selfTestFiles(t, dir, 2) // the expected output catches up: v2 is tried again
	waitFor(t, "v2 to serve", func() bool { return version() == `{"v":2}` })
}

// TestHotReloadKeyed: a stateful step reloaded from counter v1 to v2 goes
// on from the same state: counts continue, nothing is counted twice, and a
// batch redelivered after the swap is still recognised by its offsets.
func TestHotReloadKeyed(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	eng := keyedEngine(t, st)
	plug := filepath.Join(t.TempDir(), "counter.wasm")
	copyFile(t, plugins["counter"], plug)
	p := mustProcessor(t, eng, fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: tallies}
offsets: {source: events, partition: "0", offset: '${! json("seq") }'}
`, plug))
	evAt := func(seq int) string {
		return ev("a", time.Date(2025, 1, 1, 0, 0, seq, 0, time.UTC).Format(time.RFC3339), seq)
	}
	for seq := 1; seq <= 3; seq++ {
		if got, _ := counts(t, p, evAt(seq)); got[0] != int64(seq) {
			t.Fatalf("v1 event %d: count %d", seq, got[0])
		}
	}
	copyFile(t, plugins["counterv2"], plug)
	if res := eng.Reload(t.Context()); len(res) != 1 || res[0].Result != wasm.ReloadOK {
		t.Fatalf("reload: %+v", res)
	}
	for seq := 4; seq <= 6; seq++ {
		out := run(t, p, batchOf(evAt(seq)))
		b := []byte(body(t, out[0]))
		if c, v := gjson.GetBytes(b, "event_count").Int(), gjson.GetBytes(b, "v").Int(); c != int64(seq) || v != 2 {
			t.Errorf("after the reload, event %d: count %d from v%d, want %d from v2", seq, c, v, seq)
		}
	}
	// Events 5 and 6 delivered again, with 7 behind them.
	got, replayed := counts(t, p, evAt(5), evAt(6), evAt(7))
	if fmt.Sprint(got) != "[6 6 7]" || fmt.Sprint(replayed) != "[true true false]" {
		t.Errorf("redelivery after the reload: counts %v replayed %v, want [6 6 7] [true true false]", got, replayed)
	}
}
