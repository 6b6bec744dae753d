package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/plugins/native"
	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
)

// The server is driven as the host drives it, with the protocol's own
// messages; agent/grpcplugin tests the same through real processes.

func initServer(t *testing.T, p native.Plugin, req *pluginv1.InitRequest) pluginv1.PluginServer {
	t.Helper()
	s := native.NewServer(p)
	resp, err := s.Init(context.Background(), req)
	if err != nil || resp.GetError() != "" {
		t.Fatalf("Init: %v %q", err, resp.GetError())
	}
	return s
}

func TestInit(t *testing.T) {
	type cfg struct {
		Threshold float64 `json:"threshold"`
	}
	withInit := native.Plugin{
		Init: func(c native.Config) error {
			var v cfg
			if err := c.Decode(&v); err != nil {
				return err
			}
			if v.Threshold < 0 {
				return errors.New("threshold: must not be negative")
			}
			return nil
		},
		ProcessMessage: func(context.Context, native.Message) (native.Result, error) { return native.Keep(), nil },
	}
	noInit := withInit
	noInit.Init = nil
	for _, c := range []struct {
		name   string
		p      native.Plugin
		config string
		want   string
	}{
		{"accepted", withInit, `{"threshold": 1}`, ""},
		{"absent config", withInit, ``, ""},
		{"refused", withInit, `{"threshold": -1}`, "threshold: must not be negative"},
		{"unknown key", withInit, `{"threshhold": 1}`, `config: json: unknown field "threshhold"`},
		{"no Init, no config", noInit, `null`, ""},
		{"no Init, empty config", noInit, `{}`, ""},
		{"no Init, a config", noInit, `{"a": 1}`, "takes no config"},
		{"no handler", native.Plugin{}, ``, "neither Process nor ProcessMessage"},
		{"two handlers", native.Plugin{Process: noopBatch, ProcessMessage: noInit.ProcessMessage}, ``, "both Process and ProcessMessage"},
		{"panic", native.Plugin{Init: func(native.Config) error { panic("oops") }, Process: noopBatch}, ``, "panic: oops"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := native.NewServer(c.p).Init(context.Background(), &pluginv1.InitRequest{ConfigJson: []byte(c.config)})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetError(); (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Errorf("error %q, want %q", got, c.want)
			}
		})
	}
}

func noopBatch(_ context.Context, b []native.Message) ([]native.Result, error) {
	return make([]native.Result, len(b)), nil
}

func TestResults(t *testing.T) {
	s := initServer(t, native.Plugin{
		ProcessMessage: func(_ context.Context, m native.Message) (native.Result, error) {
			switch string(m.Value) {
			case "drop":
				return native.Drop(), nil
			case "fail":
				return native.Fail("why").WithMetadata("k", "v"), nil
			case "err":
				return native.Keep().WithMetadata("k", "v"), errors.New("handler error")
			case "replace":
				return native.Replace([]byte("new")).WithMetadata("a", "1").WithMetadata("a", "2"), nil
			case "panic":
				panic("boom")
			}
			return native.Keep().WithMetadata("saw", m.Metadata["in"]), nil
		},
	}, &pluginv1.InitRequest{})
	req := &pluginv1.ProcessRequest{}
	for _, b := range []string{"keep", "drop", "fail", "err", "replace"} {
		req.Messages = append(req.Messages, &pluginv1.Message{Value: []byte(b), Metadata: map[string]string{"in": b}})
	}
	resp, err := s.Process(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(resp.GetResults())
	for _, want := range []string{
		`metadata:{key:"saw" value:"keep"}`,
		`outcome:OUTCOME_DROP`,
		`outcome:OUTCOME_ERROR metadata:{key:"k" value:"v"} error:"why"`,
		`outcome:OUTCOME_ERROR metadata:{key:"k" value:"v"} error:"handler error"`,
		`outcome:OUTCOME_REPLACE value:"new" metadata:{key:"a" value:"2"}`,
	} {
		if !strings.Contains(strings.Join(strings.Fields(got), " "), want) {
			t.Errorf("results %s lack %s", got, want)
		}
	}
	if len(resp.GetResults()) != 5 {
		t.Fatalf("%d results for 5 messages", len(resp.GetResults()))
	}

	resp, err = s.Process(context.Background(), &pluginv1.ProcessRequest{Messages: []*pluginv1.Message{{Value: []byte("panic")}}})
	if err != nil || !strings.HasPrefix(resp.GetError(), "panic: boom") {
		t.Errorf("a panic: error %v, response error %q; want the call to fail with the panic", err, resp.GetError())
	}
}

func TestBatchHandler(t *testing.T) {
	for _, c := range []struct {
		name string
		fn   func(context.Context, []native.Message) ([]native.Result, error)
		want string
	}{
		{"error", func(context.Context, []native.Message) ([]native.Result, error) { return nil, errors.New("no") }, "no"},
		{"short", func(context.Context, []native.Message) ([]native.Result, error) { return []native.Result{{}}, nil }, "the plugin returned 1 results for 2 messages"},
		{"ok", noopBatch, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := initServer(t, native.Plugin{Process: c.fn}, &pluginv1.InitRequest{})
			resp, err := s.Process(context.Background(), &pluginv1.ProcessRequest{Messages: []*pluginv1.Message{{}, {}}})
			if err != nil || resp.GetError() != c.want {
				t.Errorf("error %v, response error %q, want %q", err, resp.GetError(), c.want)
			}
		})
	}
}

// TestStateThreading: messages of one key in a request all carry the
// key's state from the start of the request; ProcessMessage handlers see
// it as earlier messages of the request left it.
func TestStateThreading(t *testing.T) {
	s := initServer(t, native.Plugin{
		Stateful: true,
		ProcessMessage: func(_ context.Context, m native.Message) (native.Result, error) {
			if string(m.Value) == "delete" {
				return native.Keep().WithMetadata("state", fmt.Sprintf("%q", m.State)).DeleteState(), nil
			}
			if string(m.Value) == "read" {
				return native.Keep().WithMetadata("state", fmt.Sprintf("%q", m.State)), nil
			}
			n, _ := strconv.Atoi(string(m.State))
			return native.Keep().WithMetadata("state", fmt.Sprintf("%q", m.State)).SetState(strconv.AppendInt(nil, int64(n+1), 10)), nil
		},
	}, &pluginv1.InitRequest{Keyed: true})
	msg := func(key, body string, st []byte) *pluginv1.Message {
		return &pluginv1.Message{Key: key, Value: []byte(body), State: st}
	}
	req := &pluginv1.ProcessRequest{Messages: []*pluginv1.Message{
		msg("a", "inc", []byte("5")), msg("b", "read", nil), msg("a", "inc", []byte("5")),
		msg("b", "inc", nil), msg("a", "delete", []byte("5")), msg("a", "read", []byte("5")),
	}}
	resp, err := s.Process(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var saw, sets []string
	for _, r := range resp.GetResults() {
		saw = append(saw, r.GetMetadata()["state"])
		switch {
		case r.GetStateDelete():
			sets = append(sets, "delete")
		case r.StateSet != nil:
			sets = append(sets, string(r.StateSet))
		default:
			sets = append(sets, "-")
		}
	}
	if got, want := strings.Join(saw, " "), `"5" "" "6" "" "7" ""`; got != want {
		t.Errorf("states seen %s, want %s", got, want)
	}
	if got, want := strings.Join(sets, " "), `6 - 7 1 delete -`; got != want {
		t.Errorf("state changes %s, want %s", got, want)
	}
}

func TestResultChainsDoNotShare(t *testing.T) {
	base := native.Keep().WithMetadata("a", "1")
	x := base.WithMetadata("b", "x")
	y := base.WithMetadata("b", "y")
	for r, want := range map[*native.Result]string{&x: "x", &y: "y"} {
		s := initServer(t, native.Plugin{ProcessMessage: func(context.Context, native.Message) (native.Result, error) { return *r, nil }}, &pluginv1.InitRequest{})
		resp, _ := s.Process(context.Background(), &pluginv1.ProcessRequest{Messages: []*pluginv1.Message{{}}})
		if got := resp.GetResults()[0].GetMetadata()["b"]; got != want {
			t.Errorf("b = %q, want %q: results derived from one share metadata", got, want)
		}
	}
	if native.Keep().SetState(nil).Outcome() != native.OutcomeKeep {
		t.Error("SetState changed the outcome")
	}
}

func TestMaxMessageBytes(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
		err  bool
	}{
		{"", native.DefaultMaxMessageBytes, false},
		{"1048576", 1 << 20, false},
		{"0", 0, true},
		{"lots", 0, true},
	} {
		t.Setenv(native.EnvMaxMessageBytes, c.env)
		got, err := native.MaxMessageBytes()
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%s=%q: %d, %v; want %d (error %v)", native.EnvMaxMessageBytes, c.env, got, err, c.want, c.err)
		}
	}
}

// TestLoggerShape checks the log lines have the shape go-plugin's host
// parses ("@level", "@message", "@timestamp" with microseconds).
func TestLoggerShape(t *testing.T) {
	var buf bytes.Buffer
	native.LoggerTo(&buf).Warn("hello", "n", 3)
	var entry map[string]any
	if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if entry["@level"] != "warn" || entry["@message"] != "hello" || entry["n"] != 3.0 {
		t.Errorf("entry %v", entry)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", fmt.Sprint(entry["@timestamp"])); err != nil {
		t.Errorf("timestamp: %v", err)
	}
}
