package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
)

// Serve runs p as a plugin process: it checks p, does go-plugin's handshake
// and serves the host until the host stops it, then exits the process. A
// binary started by hand, without the host's cookie, prints that it is a
// plugin and exits with status 1; so does a Plugin with no handler.
func Serve(p Plugin) {
	if err := p.check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	limit, err := MaxMessageBytes()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: NewServer(p)}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			// gRPC's default receive limit is 4 MiB; the host sends up to
			// its max_message_bytes per request. A window that holds a
			// whole request needs no flow-control round trips, and a fixed
			// one stops gRPC's bandwidth-probing pings: both cost
			// cross-process wake-ups on every call.
			window := int32(max(min(limit, 1<<30), 64<<10))
			return grpc.NewServer(append(opts,
				grpc.MaxRecvMsgSize(limit), grpc.MaxSendMsgSize(limit),
				grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window))...)
		},
		// go-plugin's own lines (listening address, stdio streams) at
		// debug would fill the agent's log on every start; warnings and
		// errors still reach it.
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr, JSONFormat: true}),
	})
}

// MaxMessageBytes returns the message size limit the host announced in
// EnvMaxMessageBytes, or DefaultMaxMessageBytes.
func MaxMessageBytes() (int, error) {
	s := os.Getenv(EnvMaxMessageBytes)
	if s == "" {
		return DefaultMaxMessageBytes, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("native: %s=%q is not a positive number of bytes", EnvMaxMessageBytes, s)
	}
	return n, nil
}

// Logger returns a logger whose lines reach the agent's log at their level,
// tagged with the step. It writes go-plugin's JSON log lines (the shape
// hclog writes: "@level", "@message", "@timestamp", then the attributes)
// to the process's standard error, which the agent reads. Plain lines on
// standard error reach the agent's log too, at info level.
func Logger() *slog.Logger { return newLogger(os.Stderr) }

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

func hclogLevel(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// GRPCPlugin is the go-plugin glue of the protocol: on the plugin side it
// registers Impl on go-plugin's gRPC server; on the host side it hands
// out a pluginv1.PluginClient. The host uses it with a nil Impl.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pluginv1.PluginServer
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("native: GRPCPlugin has no Impl")
	}
	pluginv1.RegisterPluginServer(s, p.Impl)
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pluginv1.NewPluginClient(c), nil
}

// server serves a Plugin over the protocol.
type server struct {
	pluginv1.UnimplementedPluginServer
	p     Plugin
	keyed bool // set by Init, before any Process call
}

// NewServer returns the gRPC service that Serve registers for p. It is
// exported so a plugin's tests can drive its handlers through the exact
// encoding the host uses, without starting a process.
func NewServer(p Plugin) pluginv1.PluginServer { return &server{p: p} }

func (s *server) Init(_ context.Context, req *pluginv1.InitRequest) (resp *pluginv1.InitResponse, _ error) {
	if err := s.p.check(); err != nil {
		return &pluginv1.InitResponse{Error: err.Error()}, nil
	}
	defer recoverInto(func(msg string) { resp = &pluginv1.InitResponse{Error: msg} })
	s.keyed = req.GetKeyed()
	cfg := Config{JSON: req.GetConfigJson(), Step: req.GetStep(), Keyed: req.GetKeyed()}
	if s.p.Init != nil {
		if err := s.p.Init(cfg); err != nil {
			return &pluginv1.InitResponse{Error: err.Error()}, nil
		}
	} else if hasConfig(cfg.JSON) {
		return &pluginv1.InitResponse{Error: "this plugin takes no config, but the processor's config block is set: remove it"}, nil
	}
	return &pluginv1.InitResponse{Stateful: s.p.Stateful}, nil
}

func (s *server) Process(ctx context.Context, req *pluginv1.ProcessRequest) (resp *pluginv1.ProcessResponse, _ error) {
	defer recoverInto(func(msg string) { resp = &pluginv1.ProcessResponse{Error: msg} })
	in := req.GetMessages()
	batch := make([]Message, len(in))
	for i, m := range in {
		batch[i] = Message{Value: m.GetValue(), Metadata: m.GetMetadata(), Key: m.GetKey(), State: m.State}
	}
	var results []Result
	if s.p.Process != nil {
		var err error
		if results, err = s.p.Process(ctx, batch); err != nil {
			return &pluginv1.ProcessResponse{Error: err.Error()}, nil
		}
		if len(results) != len(batch) {
			return &pluginv1.ProcessResponse{Error: fmt.Sprintf("the plugin returned %d results for %d messages", len(results), len(batch))}, nil
		}
	} else {
		results = s.eachMessage(ctx, batch)
	}
	out := &pluginv1.ProcessResponse{Results: make([]*pluginv1.Result, len(results))}
	for i, r := range results {
		out.Results[i] = r.proto()
	}
	return out, nil
}

// eachMessage runs ProcessMessage over the batch in order. On a keyed step
// it carries each key's state from one message to the next, since the host
// sends every message of a key the state as of the start of the request.
func (s *server) eachMessage(ctx context.Context, batch []Message) []Result {
	results := make([]Result, len(batch))
	var cur map[string][]byte
	if s.keyed {
		cur = map[string][]byte{}
	}
	for i, m := range batch {
		if cur != nil {
			if st, seen := cur[m.Key]; seen {
				m.State = st
			}
		}
		r, err := s.p.ProcessMessage(ctx, m)
		if err != nil {
			// The state change is kept: the handler asked for it, and an
			// error is only this message's outcome.
			r.outcome, r.reason, r.value = OutcomeError, err.Error(), nil
		}
		results[i] = r
		if cur != nil {
			switch r.action {
			case stateSet:
				cur[m.Key] = r.state
			case stateDelete:
				cur[m.Key] = nil
			}
		}
	}
	return results
}

func (r Result) proto() *pluginv1.Result {
	out := &pluginv1.Result{Outcome: pluginv1.Outcome(r.outcome), Error: r.reason}
	if r.outcome == OutcomeReplace {
		out.Value = r.value
	}
	if len(r.meta) > 0 {
		out.Metadata = make(map[string]string, len(r.meta)/2)
		for i := 0; i+1 < len(r.meta); i += 2 {
			out.Metadata[r.meta[i]] = r.meta[i+1]
		}
	}
	switch r.action {
	case stateSet:
		out.StateSet = r.state
	case stateDelete:
		out.StateDelete = true
	}
	return out
}

// recoverInto turns a panic in plugin code into the call's error response,
// with the stack, so the batch fails with the reason instead of the process
// dying: the host fails the batch and keeps the process, as for any error
// the handler returns. A plugin that is unsound after a panic can exit
// instead; the host then restarts it.
func recoverInto(respond func(msg string)) {
	if r := recover(); r != nil {
		respond(fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
	}
}
