package grpcplugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/grpcplugin"
	"github.com/sluice-dev/sluice/state"
)

// logs records what the processor logs.
type logs struct {
	mu    sync.Mutex
	recs  []string
	attrs []slog.Attr
	root  *logs
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range l.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	root := l.root
	root.mu.Lock()
	defer root.mu.Unlock()
	root.recs = append(root.recs, b.String())
	return nil
}

func (l *logs) WithAttrs(as []slog.Attr) slog.Handler {
	return &logs{root: l.root, attrs: append(append([]slog.Attr{}, l.attrs...), as...)}
}
func (l *logs) WithGroup(string) slog.Handler { return l }

// find returns the first record containing every part, or "".
func (l *logs) find(parts ...string) string {
	l.root.mu.Lock()
	defer l.root.mu.Unlock()
next:
	for _, r := range l.root.recs {
		for _, p := range parts {
			if !strings.Contains(r, p) {
				continue next
			}
		}
		return r
	}
	return ""
}

func newLogs() *logs {
	l := &logs{}
	l.root = l
	return l
}

// newProcessor builds a grpc_plugin processor from YAML, as a pipeline
// would; it is closed when the test ends.
func newProcessor(t testing.TB, yaml string, store *state.Store) (*grpcplugin.Processor, *logs, error) {
	t.Helper()
	conf, err := grpcplugin.ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse config: %v\n%s", err, yaml)
	}
	l := newLogs()
	res := service.MockResources(service.MockResourcesOptUseLogger(service.NewLoggerFromSlog(slog.New(l))))
	p, err := grpcplugin.NewProcessor(conf, res, store)
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return p, l, err
}

func mustProcessor(t testing.TB, yaml string, store *state.Store) (*grpcplugin.Processor, *logs) {
	t.Helper()
	p, l, err := newProcessor(t, yaml, store)
	if err != nil {
		t.Fatal(err)
	}
	return p, l
}

func batchOf(bodies ...string) service.MessageBatch {
	b := make(service.MessageBatch, len(bodies))
	for i, s := range bodies {
		b[i] = service.NewMessage([]byte(s))
	}
	return b
}

func run(t testing.TB, p service.BatchProcessor, batch service.MessageBatch) service.MessageBatch {
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

func errText(m *service.Message) string {
	if err := m.GetError(); err != nil {
		return err.Error()
	}
	return ""
}

// allFailWith checks every message failed with a reason containing want.
func allFailWith(t *testing.T, out service.MessageBatch, n int, want string) {
	t.Helper()
	if len(out) != n {
		t.Fatalf("got %d messages, want all %d back", len(out), n)
	}
	for i, m := range out {
		if got := errText(m); !strings.Contains(got, want) {
			t.Errorf("message %d: error %q, want one containing %q", i, got, want)
		}
	}
}

// gone reports whether process pid has ended: no /proc entry, or a zombie
// nobody has reaped yet (in a container, PID 1 may never reap it).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs %s later", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMessages(t *testing.T) {
	for _, mode := range []string{"message", "batch"} {
		t.Run(mode, func(t *testing.T) {
			yaml := fmt.Sprintf("path: %s\nconfig: {tag: t1}\n", plugins["echo"])
			if mode == "batch" {
				yaml += "args: [batch]\n"
			}
			p, _ := mustProcessor(t, yaml, nil)
			in := batchOf("keep", "drop", "fail", "error", "upper:abc", "panic-free")
			in[0].MetaSetMut("in", "v0")
			out := run(t, p, in)
			wants := []struct{ body, err, seen string }{
				{body: "keep", seen: "v0"},
				{body: "fail", err: "told to fail"},
				{body: "error", err: "handler returned an error"},
				{body: "ABC"},
				{body: "panic-free"},
			}
			if len(out) != len(wants) {
				t.Fatalf("got %d messages, want %d (one dropped)", len(out), len(wants))
			}
			pid := strconv.Itoa(p.PID())
			for i, w := range wants {
				m := out[i]
				if got := body(t, m); got != w.body {
					t.Errorf("message %d: body %q, want %q", i, got, w.body)
				}
				got := errText(m)
				if (w.err == "") != (got == "") || !strings.Contains(got, w.err) {
					t.Errorf("message %d: error %q, want one containing %q", i, got, w.err)
				}
				if w.err != "" && !strings.HasPrefix(got, plugins["echo"]+": ") {
					t.Errorf("message %d: error %q, want it prefixed with the step (the plugin's path)", i, got)
				}
				if tag, _ := m.MetaGet("tag"); tag != "t1" {
					t.Errorf("message %d: tag %q, want t1 (from the config)", i, tag)
				}
				if got, _ := m.MetaGet("pid"); got != pid {
					t.Errorf("message %d: handled by pid %s, PID() says %s", i, got, pid)
				}
				if seen, _ := m.MetaGet("seen_in"); seen != w.seen {
					t.Errorf("message %d: the plugin saw metadata in=%q, want %q", i, seen, w.seen)
				}
			}
		})
	}
}

func TestLabelNamesErrors(t *testing.T) {
	env := service.NewEnvironment()
	if err := grpcplugin.Register(env, nil); err != nil {
		t.Fatal(err)
	}
	// Through a stream, a labelled step prefixes its messages' failures
	// with its label.
	out := runStream(t, env, `
label: shouter
grpc_plugin:
  path: `+plugins["echo"]+`
`, []string{"fail"})
	if got := out[0].err; !strings.HasPrefix(got, "shouter: told to fail") {
		t.Errorf("error %q, want it to start with the label: shouter: told to fail", got)
	}
}

func TestBatchErrors(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nargs: [batch]", nil)
	pid := p.PID()
	for _, c := range []struct {
		name string
		in   []string
		want string
	}{
		{"whole batch refused", []string{"a", "batch-error", "b"}, "batch refused"},
		{"wrong result count", []string{"a", "batch-short", "b"}, "returned 1 results for 3 messages"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := run(t, p, batchOf(c.in...))
			allFailWith(t, out, len(c.in), c.want)
			for i, m := range out {
				if got := body(t, m); got != c.in[i] {
					t.Errorf("message %d: body %q, want it unchanged %q", i, got, c.in[i])
				}
			}
		})
	}
	if p.PID() != pid {
		t.Errorf("the process was replaced (pid %d -> %d); it is sound and should be kept", pid, p.PID())
	}
}

func TestPanicFailsBatchKeepsProcess(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"], nil)
	pid := p.PID()
	allFailWith(t, run(t, p, batchOf("a", "panic")), 2, "panic: boom")
	if out := run(t, p, batchOf("b")); errText(out[0]) != "" {
		t.Fatalf("next batch failed: %s", errText(out[0]))
	}
	if p.PID() != pid {
		t.Errorf("pid %d -> %d: a recovered panic should not cost a restart", pid, p.PID())
	}
}

func TestConfig(t *testing.T) {
	echo := "path: " + plugins["echo"] + "\n"
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"refused by the plugin", echo + "config: {refuse: true}", []string{"init: refused: the config says refuse"}},
		{"unknown key", echo + "config: {tagg: x}", []string{`init: config: json: unknown field "tagg"`}},
		{"config for a plugin that takes none", "path: " + plugins["counter"] + "\nkey: x\nstate: {namespace: n}\nconfig: {a: 1}", []string{"takes no config"}},
		{"bad timeout", echo + "timeout: 0s", []string{"timeout: must be positive"}},
		{"bad size", echo + "max_message_bytes: 12XB", []string{`max_message_bytes: "12XB" is not a size`}},
		{"tiny size", echo + "max_message_bytes: 12B", []string{"outside 1KiB..2GiB"}},
		{"backoff", echo + "restart_backoff: {initial: 2s, max: 1s}", []string{"want 0 < initial <= max"}},
		{"env name", echo + `env: {"A=B": x}`, []string{`env: "A=B" is not a variable name`}},
		{"every problem at once", echo + "timeout: 0s\nmax_message_bytes: x\nrlimit_cpu_seconds: -1", []string{"timeout:", "max_message_bytes:", "rlimit_cpu_seconds:"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := newProcessor(t, c.yaml, openStore(t))
			if err == nil {
				t.Fatal("the processor was built")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plugin")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		want       []string
		handshake  bool
	}{
		{"missing", filepath.Join(dir, "nope"), []string{"start:", "no such file"}, false},
		{"not executable", notExec, []string{"start:", "permission denied", "executable"}, false},
		{"not a plugin", plugins["notplugin"], []string{"handshake failed", "not a Sluice native plugin", "hello, I am not a plugin"}, true},
		{"another product's cookie", plugins["badcookie"], []string{"handshake failed", "did not accept the handshake cookie", "SLUICE_PLUGIN="}, true},
		{"another protocol version", plugins["badversion"], []string{"handshake failed", "Plugin version: 2", "rebuild it with this agent's plugins/native"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := newProcessor(t, "path: "+c.path, nil)
			if err == nil {
				t.Fatal("the processor was built")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "plugin "+c.path+": ") {
				t.Errorf("error %q does not start with the plugin's path", err)
			}
			if got := errors.Is(err, grpcplugin.ErrHandshake); got != c.handshake {
				t.Errorf("errors.Is(err, ErrHandshake) = %v, want %v", got, c.handshake)
			}
			// lint's check gives the same verdict without a config.
			cerr := grpcplugin.Check(context.Background(), c.path)
			if cerr == nil || errors.Is(cerr, grpcplugin.ErrHandshake) != c.handshake {
				t.Errorf("Check: %v, want a failure (handshake: %v)", cerr, c.handshake)
			}
		})
	}
	if err := grpcplugin.Check(context.Background(), plugins["echo"]); err != nil {
		t.Errorf("Check of a good plugin: %v", err)
	}
}

func TestCrashFailsBatchThenRestarts(t *testing.T) {
	p, l := mustProcessor(t, "path: "+plugins["echo"], nil)
	pid := p.PID()
	allFailWith(t, run(t, p, batchOf("a", "crash", "b")), 3, "plugin process exited: exit status 3")
	waitGone(t, pid, 5*time.Second)
	out := run(t, p, batchOf("c", "upper:d"))
	if len(out) != 2 || errText(out[0]) != "" || body(t, out[1]) != "D" {
		t.Fatalf("the batch after the crash: %d messages, errors %q %q", len(out), errText(out[0]), errText(out[len(out)-1]))
	}
	if p.PID() == pid || p.PID() == 0 {
		t.Errorf("pid %d after the restart, was %d", p.PID(), pid)
	}
	if l.find("plugin restarted") == "" {
		t.Error("the restart was not logged")
	}
}

func TestKilledBetweenBatches(t *testing.T) {
	p, l := mustProcessor(t, "path: "+plugins["echo"], nil)
	pid := p.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 5*time.Second)
	// The death is noticed before the next call: the batch goes through.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := run(t, p, batchOf("x"))
		if errText(out[0]) == "" {
			break
		}
		if !strings.Contains(errText(out[0]), "plugin process exited: signal: killed") || time.Now().After(deadline) {
			t.Fatalf("unexpected failure: %s", errText(out[0]))
		}
	}
	if p.PID() == pid {
		t.Error("same pid after the kill")
	}
	if l.find("exited between batches", "signal: killed") == "" && l.find("failed a batch", "plugin process exited: signal: killed") == "" {
		t.Error("the death was not logged with its cause")
	}
}

func TestTimeoutKillsHungPlugin(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\ntimeout: 300ms", nil)
	pid := p.PID()
	start := time.Now()
	allFailWith(t, run(t, p, batchOf("sleep:30s", "b")), 2, "plugin call exceeded its deadline (300ms); the process was killed")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the failed batch took %s", d)
	}
	waitGone(t, pid, 5*time.Second)
	if out := run(t, p, batchOf("c")); errText(out[0]) != "" {
		t.Fatalf("next batch: %s", errText(out[0]))
	}
}

func TestRestartBackoff(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nrestart_backoff: {initial: 500ms, max: 1s}", nil)
	// Each batch crashes the process; the next waits the back-off of the
	// failures so far before restarting it: none, 500ms, then doubling to
	// the 1s cap. Each bound leaves 500ms for the restart itself, and
	// tells the expected wait from its double.
	const ms = time.Millisecond
	for i, c := range []struct {
		body     string
		min, max time.Duration
	}{
		{"crash", 0, 500 * ms},
		{"crash", 500 * ms, 1000 * ms},
		{"crash", 1000 * ms, 1500 * ms},
		{"ok", 1000 * ms, 1500 * ms}, // capped: 2s without the cap
		// The success reset the count.
		{"crash", 0, 500 * ms},
		{"ok", 500 * ms, 1000 * ms},
	} {
		start := time.Now()
		out := run(t, p, batchOf(c.body))
		took := time.Since(start)
		if (c.body == "ok") != (errText(out[0]) == "") {
			t.Fatalf("batch %d (%s): error %q", i, c.body, errText(out[0]))
		}
		if took < c.min || took > c.max {
			t.Errorf("batch %d (%s) took %s, want %s..%s", i, c.body, took, c.min, c.max)
		}
	}
}

func TestCloseLeavesNoProcess(t *testing.T) {
	p, _, err := newProcessor(t, "path: "+plugins["echo"], nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if gone(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 3*time.Second)
	allFailWith(t, run(t, p, batchOf("late")), 1, "the processor is closed")
}

// TestAgentKilledLeavesNoOrphan SIGKILLs an agent (this test binary,
// re-executed as one) that runs a plugin: the kernel must kill the plugin.
func TestAgentKilledLeavesNoOrphan(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelperAgent+"="+plugins["echo"])
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper agent: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper agent said %q", line)
	}
	if gone(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, pid, 5*time.Second)
}

func TestMessageLimits(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nmax_message_bytes: 1KiB", nil)
	pid := p.PID()

	t.Run("one message too large fails alone", func(t *testing.T) {
		in := batchOf("a", strings.Repeat("x", 2000), "upper:b")
		out := run(t, p, in)
		if len(out) != 3 {
			t.Fatalf("got %d messages", len(out))
		}
		if got := errText(out[1]); !strings.Contains(got, "over max_message_bytes (1024)") || !strings.Contains(got, "body 2000 bytes") {
			t.Errorf("large message: error %q, want its size and the limit", got)
		}
		if errText(out[0]) != "" || errText(out[2]) != "" || body(t, out[2]) != "B" {
			t.Errorf("the rest of the batch: errors %q, %q, body %q", errText(out[0]), errText(out[2]), body(t, out[2]))
		}
	})
	t.Run("a large batch is split, in order", func(t *testing.T) {
		var bodies []string
		for i := range 20 {
			bodies = append(bodies, fmt.Sprintf("upper:%03d-%s", i, strings.Repeat("y", 200)))
		}
		out := run(t, p, batchOf(bodies...))
		if len(out) != 20 {
			t.Fatalf("got %d messages", len(out))
		}
		for i, m := range out {
			want := strings.ToUpper(bodies[i][len("upper:"):])
			if errText(m) != "" || body(t, m) != want {
				t.Fatalf("message %d: %q (error %q), want %q", i, body(t, m), errText(m), want)
			}
		}
	})
	t.Run("a response too large fails its batch", func(t *testing.T) {
		allFailWith(t, run(t, p, batchOf("big:5000")), 1, "ResourceExhausted")
	})
	if p.PID() != pid {
		t.Errorf("pid %d -> %d: size failures should not cost a restart", pid, p.PID())
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("GRPCPLUGIN_TEST_INHERITED", "from-agent")
	for _, c := range []struct {
		name, yaml, msg, want string
	}{
		{"inherited", "", "env:GRPCPLUGIN_TEST_INHERITED", "from-agent"},
		{"set", "env: {GRPCPLUGIN_TEST_SET: hello}", "env:GRPCPLUGIN_TEST_SET", "hello"},
		{"set overrides inherited", "env: {GRPCPLUGIN_TEST_INHERITED: mine}", "env:GRPCPLUGIN_TEST_INHERITED", "mine"},
		{"not inherited", "inherit_env: false", "env:GRPCPLUGIN_TEST_INHERITED", ""},
		{"limit announced", "max_message_bytes: 2MiB", "env:SLUICE_PLUGIN_MAX_MESSAGE_BYTES", "2097152"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\n"+c.yaml, nil)
			out := run(t, p, batchOf(c.msg))
			if got := body(t, out[0]); got != c.want || errText(out[0]) != "" {
				t.Errorf("got %q (error %q), want %q", got, errText(out[0]), c.want)
			}
		})
	}
}

func TestPluginLogs(t *testing.T) {
	p, l := mustProcessor(t, "path: "+plugins["echo"], nil)
	run(t, p, batchOf("log:hello"))
	step := "step=" + plugins["echo"]
	deadline := time.Now().Add(5 * time.Second)
	for l.find("WARN hello", "source=json", step) == "" || l.find("INFO plain hello", step) == "" {
		if time.Now().After(deadline) {
			l.mu.Lock()
			t.Fatalf("plugin lines not logged at their level with the step; got:\n%s", strings.Join(l.recs, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRlimitMemory(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nrlimit_memory_bytes: 200MiB", nil)
	if out := run(t, p, batchOf("alloc:10000000")); errText(out[0]) != "" {
		t.Fatalf("10 MB under a 200 MiB limit: %s", errText(out[0]))
	}
	allFailWith(t, run(t, p, batchOf("alloc:400000000")), 1, "plugin process exited: exit status 2")
	if out := run(t, p, batchOf("after")); errText(out[0]) != "" {
		t.Fatalf("after the restart: %s", errText(out[0]))
	}
}

func TestRlimitCPU(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nrlimit_cpu_seconds: 1\ntimeout: 20s", nil)
	// The soft limit's SIGXCPU is ignored by Go programs that do not ask
	// for it; the hard limit's SIGKILL follows a CPU second later.
	allFailWith(t, run(t, p, batchOf("spin:10s")), 1, "plugin process exited: signal: killed")
}

func openStore(t testing.TB) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), SyncWrites: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestKeyedState(t *testing.T) {
	st := openStore(t)
	yaml := "path: " + plugins["counter"] + "\nkey: '${! json(\"user\").not_null() }'\nstate: {namespace: counts}\nmax_message_bytes: 1KiB"
	p, _ := mustProcessor(t, yaml, st)
	ev := func(user string) string { return fmt.Sprintf(`{"user":%q,"pad":%q}`, user, strings.Repeat("p", 300)) }

	check := func(out service.MessageBatch, want ...string) {
		t.Helper()
		if len(out) != len(want) {
			t.Fatalf("got %d messages, want %d", len(out), len(want))
		}
		for i, m := range out {
			if got := body(t, m); got != want[i] || errText(m) != "" {
				t.Errorf("message %d: %s (error %q), want %s", i, got, errText(m), want[i])
			}
		}
	}
	// Several messages of one key in a batch see each other's updates,
	// also across the calls of a batch split by max_message_bytes.
	check(run(t, p, batchOf(ev("a"), ev("b"), ev("a"), ev("a"), ev("b"))),
		`{"key":"a","count":1}`, `{"key":"b","count":1}`, `{"key":"a","count":2}`, `{"key":"a","count":3}`, `{"key":"b","count":2}`)
	check(run(t, p, batchOf(ev("b"), ev("c"))), `{"key":"b","count":3}`, `{"key":"c","count":1}`)

	got, ok, err := st.Get("counts", "a")
	if err != nil || !ok || string(got.Value) != "3" {
		t.Errorf("store: a = %q (found %v, %v), want 3", got.Value, ok, err)
	}

	// A message without a key fails alone, before the plugin.
	out := run(t, p, batchOf(`{"nouser":1}`, ev("a")))
	if !strings.Contains(errText(out[0]), "key:") || body(t, out[1]) != `{"key":"a","count":4}` {
		t.Errorf("keyless message: error %q; next %s", errText(out[0]), body(t, out[1]))
	}

	// Delete, and state outlives the process: a new processor on the same
	// store (a restarted agent) carries on.
	check(run(t, p, batchOf(`{"user":"b","reset":true}`)), `{"key":"b","count":0}`)
	_ = p.Close(context.Background())
	p2, _ := mustProcessor(t, yaml, st)
	check(run(t, p2, batchOf(ev("a"), ev("c"))), `{"key":"a","count":5}`, `{"key":"c","count":2}`)

	// A batch that fails commits nothing.
	pid := p2.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 5*time.Second)
	for try := 0; ; try++ {
		out := run(t, p2, batchOf(ev("a")))
		if errText(out[0]) == "" {
			check(out, `{"key":"a","count":6}`)
			break
		}
		if try == 10 {
			t.Fatalf("no success after the kill: %s", errText(out[0]))
		}
	}
}

func TestKeyedDelete(t *testing.T) {
	st := openStore(t)
	p, _ := mustProcessor(t, "path: "+plugins["counter"]+"\nkey: '${! meta(\"user\") }'\nstate: {namespace: del}", st)
	msg := func(user, body string) *service.Message {
		m := service.NewMessage([]byte(body))
		m.MetaSetMut("user", user)
		return m
	}
	run(t, p, service.MessageBatch{msg("a", "x"), msg("a", "x")})
	out := run(t, p, service.MessageBatch{msg("a", "reset"), msg("a", "x")})
	if got := body(t, out[1]); got != `{"key":"a","count":1}` {
		t.Errorf("after a delete in the same batch: %s, want count 1", got)
	}
	run(t, p, service.MessageBatch{msg("a", "reset")})
	if _, ok, err := st.Get("del", "a"); ok || err != nil {
		t.Errorf("a is still stored after its delete (err %v)", err)
	}
}

func TestKeyedConfig(t *testing.T) {
	st := openStore(t)
	for _, c := range []struct {
		name, yaml string
		store      *state.Store
		want       string
	}{
		{"stateful plugin without key", "path: " + plugins["counter"], st, "keeps per-key state: configure key and state.namespace"},
		{"key on a stateless plugin", "path: " + plugins["echo"] + "\nkey: x\nstate: {namespace: n}", st, "keeps no state"},
		{"key without a store", "path: " + plugins["counter"] + "\nkey: x\nstate: {namespace: n}", nil, "no state store"},
		{"key without state", "path: " + plugins["counter"] + "\nkey: x", st, "key and state go together"},
		{"bad namespace", "path: " + plugins["counter"] + "\nkey: x\nstate: {namespace: 'A B'}", st, "state:"},
		{"short wall ttl", "path: " + plugins["counter"] + "\nkey: x\nstate: {namespace: n, ttl: 10ms}", st, "whole seconds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := newProcessor(t, c.yaml, c.store)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestLintRule: the spec's cross-field rule, as `agent lint` reports it.
func TestLintRule(t *testing.T) {
	env := testEnv(t)
	for _, c := range []struct {
		fields, want string
	}{
		{"key: '${! json(\"a\") }'", "key and state go together"},
		{"state: {namespace: n}", "key and state go together"},
		{"key: '${! json(\"a\") }'\n        state: {namespace: n}", ""},
		{"", ""},
	} {
		err := env.NewStreamBuilder().SetYAML("pipeline:\n  processors:\n    - grpc_plugin:\n        path: x\n        " + c.fields + "\n")
		if got := fmt.Sprint(err); (c.want == "") != (err == nil) || !strings.Contains(got, c.want) {
			t.Errorf("%s: lint %v, want %q", c.fields, err, c.want)
		}
	}
}
