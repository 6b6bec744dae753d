package grpcplugin

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
)

// The Go SDK never sends these responses, so the host's checks of them are
// driven directly.
func TestCheckResponse(t *testing.T) {
	keep := &pluginv1.Result{}
	for _, c := range []struct {
		name  string
		rs    []*pluginv1.Result
		keyed bool
		want  string
	}{
		{"ok", []*pluginv1.Result{keep, keep}, false, ""},
		{"too few", []*pluginv1.Result{keep}, false, "malformed response: 1 results for 2 messages"},
		{"too many", []*pluginv1.Result{keep, keep, keep}, false, "malformed response: 3 results for 2 messages"},
		{"unknown outcome", []*pluginv1.Result{keep, {Outcome: 9}}, false, "result 1: unknown outcome 9"},
		{"set and delete", []*pluginv1.Result{keep, {StateSet: []byte("x"), StateDelete: true}}, true, "result 1 both sets and deletes state"},
		{"state without key", []*pluginv1.Result{{StateSet: []byte{}}, keep}, false, "result 0 changes state, but the step has no key"},
		{"state with key", []*pluginv1.Result{{StateSet: []byte{}}, {StateDelete: true}}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := (&Processor{}).check(&pluginv1.ProcessResponse{Results: c.rs}, 2, c.keyed)
			if got := errString(err); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"64MiB", 64 << 20, false},
		{"1 KiB", 1 << 10, false},
		{"2GiB", 2 << 30, false},
		{"100B", 100, false},
		{"65536", 65536, false},
		{"-1", 0, true},
		{"12XB", 0, true},
		{"99999999999999999GiB", 0, true},
	} {
		got, err := parseBytes(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d (error: %v)", c.in, got, err, c.want, c.err)
		}
	}
}

// recorder records log lines with their attributes; children made by
// WithAttrs record into the root.
type recorder struct {
	mu    sync.Mutex
	recs  []string
	attrs []slog.Attr
	root  *recorder
}

func newRecorder() *recorder {
	r := &recorder{}
	r.root = r
	return r
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	s := rec.Level.String() + " " + rec.Message
	for _, a := range r.attrs {
		s += " " + a.String()
	}
	rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	r.root.mu.Lock()
	r.root.recs = append(r.root.recs, s)
	r.root.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{root: r.root, attrs: append(append([]slog.Attr{}, r.attrs...), as...)}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }

func TestLineLog(t *testing.T) {
	rec := newRecorder()
	w := &lineLog{log: service.NewLoggerFromSlog(slog.New(rec)), keepHead: true}
	// Lines arrive split anywhere: go-plugin writes a line, then its "\n".
	for _, chunk := range []string{
		"plain one\n",
		`{"@level":"warn","@message":"json two","@timestamp":"2026-01-02T03:04:05.000000Z","k":"v"}`, "\n",
		"par", "tial three\r\n",
		"\n",
		`{"not":"a log line"}` + "\n",
		"panic: boom\n", "goroutine 1 [running]:\n",
	} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	want := []string{
		"INFO plain one",
		"WARN json two k=v",
		"INFO partial three",
		`INFO {"not":"a log line"}`,
		"ERROR panic: boom",
		"ERROR goroutine 1 [running]:",
	}
	if strings.Join(rec.recs, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(rec.recs, "\n"), strings.Join(want, "\n"))
	}
	if h := w.head(); !strings.HasPrefix(h, "plain one / ") {
		t.Errorf("head %q", h)
	}
}
