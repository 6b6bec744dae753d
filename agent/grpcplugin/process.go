package grpcplugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/redpanda-data/benthos/v4/public/service"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/plugins/native"
	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
)

// ErrHandshake is wrapped by start errors where the binary ran but did not
// complete go-plugin's handshake as a Sluice native plugin of this agent's
// protocol version: it is not a plugin, a plugin of another product (another
// magic cookie), or built for another protocol version. Rebuild it with
// this agent's plugins/native, or see docs/NATIVE_PLUGINS.md.
var ErrHandshake = errors.New("handshake failed")

// launch is what starting a plugin process needs.
type launch struct {
	path         string
	args         []string
	env          []string // extra "K=V", after the inherited ones so they win
	inheritEnv   bool
	startTimeout time.Duration
	maxBytes     int
	rlimitMem    uint64
	rlimitCPU    uint64
}

// proc is one running plugin process.
type proc struct {
	client *plugin.Client
	rpc    pluginv1.PluginClient
	cmd    *exec.Cmd
	pid    int
	stderr *lineLog

	killOnce sync.Once
}

// start runs the binary, completes the handshake, applies the limits and
// checks health. It does not call Init.
func start(l launch, log *service.Logger) (*proc, error) {
	cmd := exec.Command(l.path, l.args...)
	if l.inheritEnv {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, l.env...)
	cmd.Env = append(cmd.Env, native.EnvMaxMessageBytes+"="+strconv.Itoa(l.maxBytes))
	cmd.SysProcAttr = sysProcAttr()
	stderr := &lineLog{log: log, keepHead: true}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: native.Handshake(),
		Plugins:         plugin.PluginSet{native.PluginName: &native.GRPCPlugin{}},
		Cmd:             cmd,
		// go-plugin would append the agent's environment after ours, and
		// the last of two values wins: cmd.Env already holds it when
		// inherit_env is set, with the step's own env after it.
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     l.startTimeout,
		Stderr:           stderr,
		SyncStdout:       &lineLog{log: log},
		SyncStderr:       &lineLog{log: log},
		Logger:           newHclog(log),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(l.maxBytes), grpc.MaxCallSendMsgSize(l.maxBytes)),
			// A flow-control window as large as the largest message lets a
			// response arrive without window updates, and a fixed window
			// turns off gRPC's bandwidth probing pings: each costs a
			// cross-process wake-up, and a one-message call went from
			// ~260µs to ~190µs on the 2-core VM. The plugin SDK does the
			// same for requests.
			grpc.WithInitialWindowSize(window(l.maxBytes)), grpc.WithInitialConnWindowSize(window(l.maxBytes)),
		},
	})
	pr := &proc{client: client, cmd: cmd, stderr: stderr}
	rpcClient, err := client.Client()
	if err != nil {
		pr.kill()
		return nil, startError(err, stderr.head())
	}
	if rc := client.ReattachConfig(); rc != nil {
		pr.pid = rc.Pid
	}
	if err := applyRlimits(pr.pid, l.rlimitMem, l.rlimitCPU); err != nil {
		pr.kill()
		return nil, err
	}
	if err := rpcClient.Ping(); err != nil {
		pr.kill()
		return nil, fmt.Errorf("health check: %w", err)
	}
	raw, err := rpcClient.Dispense(native.PluginName)
	if err != nil {
		pr.kill()
		return nil, fmt.Errorf("%w: dispense %q: %w", ErrHandshake, native.PluginName, err)
	}
	rpc, ok := raw.(pluginv1.PluginClient)
	if !ok {
		pr.kill()
		return nil, fmt.Errorf("dispense %q: got %T, want a pluginv1.PluginClient", native.PluginName, raw)
	}
	pr.rpc = rpc
	return pr, nil
}

// window is the gRPC flow-control window for a message limit: gRPC wants
// an int32, and at least 64KiB.
func window(maxBytes int) int32 { return int32(max(min(maxBytes, 1<<30), 64<<10)) }

// startError says why a start failed, with what the plugin wrote to its
// stderr, since go-plugin's own errors ("plugin exited before we could
// connect") do not say why.
func startError(err error, stderr string) error {
	msg := err.Error()
	var hint string
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("start: %w", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("start: %w (is the file executable?)", err)
	case strings.Contains(strings.ToLower(msg), "incompatible api version"):
		hint = fmt.Sprintf("it speaks another version of the native plugin protocol than this agent's %d: rebuild it with this agent's plugins/native", native.ProtocolVersion)
	case strings.Contains(stderr, "This binary is a plugin"):
		hint = fmt.Sprintf("it did not accept the handshake cookie (%s=%s): a go-plugin plugin of another product, or built with another plugins/native", native.MagicCookieKey, native.MagicCookieValue)
	case strings.Contains(msg, "Unrecognized remote plugin message"), strings.Contains(msg, "exited before we could connect"):
		hint = "it is not a Sluice native plugin: a plugin serves with native.Serve (or speaks the protocol in docs/NATIVE_PLUGINS.md)"
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		hint = "it printed no handshake line within start_timeout"
	default:
		return fmt.Errorf("start: %w", err)
	}
	if stderr != "" {
		hint += "; its stderr: " + stderr
	}
	return fmt.Errorf("start: %w: %w (%s)", ErrHandshake, err, hint)
}

// exited reports whether the process has ended and been reaped.
func (pr *proc) exited() bool { return pr.client.Exited() }

// waitExit waits up to d for the process to end, and says how it ended.
func (pr *proc) waitExit(d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for !pr.exited() {
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(5 * time.Millisecond)
	}
	// go-plugin sets Exited under its lock after cmd.Wait returned, so
	// ProcessState is set and visible here.
	if ps := pr.cmd.ProcessState; ps != nil {
		return ps.String(), true
	}
	return "ended", true
}

// kill stops the process: go-plugin's Kill asks it to shut down, waits up
// to 2s, then kills it, and waits for its goroutines; killGroup then takes
// whatever the plugin started in its process group.
func (pr *proc) kill() {
	pr.killOnce.Do(func() {
		pr.client.Kill()
		killGroup(pr.pid)
	})
}

// killNow is kill for a process that is hung or whose connection is broken:
// there is no point asking it to shut down.
func (pr *proc) killNow() {
	killGroup(pr.pid)
	pr.kill()
}

// Check starts the plugin binary at path, completes the handshake, checks
// its health and stops it: what `agent lint` verifies of a grpc_plugin
// step without running its Init. Errors wrap ErrHandshake when the binary
// ran but is not a plugin of this agent's protocol.
func Check(ctx context.Context, path string) error {
	l := launch{path: path, inheritEnv: true, startTimeout: defaultStartTimeout, maxBytes: native.DefaultMaxMessageBytes}
	if dl, ok := ctx.Deadline(); ok {
		l.startTimeout = max(time.Until(dl), time.Millisecond)
	}
	type result struct {
		pr  *proc
		err error
	}
	done := make(chan result, 1)
	go func() {
		pr, err := start(l, service.MockResources().Logger())
		done <- result{pr, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return fmt.Errorf("plugin %s: %w", path, r.err)
		}
		r.pr.kill()
		return nil
	case <-ctx.Done():
		// The start is bounded by startTimeout; stop what it started.
		go func() {
			if r := <-done; r.pr != nil {
				r.pr.kill()
			}
		}()
		return fmt.Errorf("plugin %s: %w", path, ctx.Err())
	}
}
