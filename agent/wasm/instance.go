package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/state"
)

// Grants are what a plugin may reach outside its sandbox. The zero value
// grants nothing: no files, no environment, a frozen clock. ABI v1 offers no
// network at all.
type Grants struct {
	// Clock gives the real wall and monotonic clocks; without it the guest
	// sees a fixed time, which keeps plugins deterministic on replay.
	Clock bool
	// Env lists host environment variables passed through, by name.
	Env []string
	// Mounts are host directories visible to the guest.
	Mounts []Mount
}

// Mount exposes a host directory at a guest path.
type Mount struct {
	Host     string
	Guest    string
	ReadOnly bool
}

// InstanceConfig is everything an instance needs besides its module.
type InstanceConfig struct {
	// Config is the plugin's `config:` block as JSON, handed to its init.
	Config []byte
	Grants Grants
	// LookupEnv reads host environment variables named in Grants.Env.
	LookupEnv func(string) (string, bool)
	// Timeout bounds each call into the guest.
	Timeout time.Duration
	Logger  *slog.Logger
	// Store and ReadState give the plugin's state_get and state_scan
	// imports read access to these namespaces of the store, and no others.
	Store     *state.Store
	ReadState []string
	// metrics receives the plugin's metric calls; nil drops them.
	metrics *pluginMetrics
}

// ErrTimeout means a call ran past its deadline.
var ErrTimeout = errors.New("plugin call exceeded its deadline")

// Instance is one instantiated plugin. It is not safe for concurrent use:
// the processor gives each pipeline thread its own. After any error other
// than a plugin-reported one (Broken reports true), it must be closed.
type Instance struct {
	mod       api.Module
	mem       api.Memory
	alloc     api.Function
	process   api.Function
	view      api.Function // nil unless the descriptor offers a state view
	desc      abi.Descriptor
	plan      mergePlan
	cfg       InstanceConfig
	interrupt bool
	name      string
	stderr    *tailWriter

	reqPtr, reqCap uint32
	broken         bool
	scratch        scratch
	info           callInfo
	stack          [2]uint64
	// gen is the version of the step's plugin the instance belongs to, whose
	// pool it returns to.
	gen *generation
}

// Instantiate creates an instance, runs the guest's init with cfg.Config and
// reads its descriptor.
func (m *Module) Instantiate(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	stderr := newTailWriter(cfg.Logger, slog.LevelWarn, "stderr")
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions("_initialize").
		WithStdout(newTailWriter(cfg.Logger, slog.LevelInfo, "stdout")).
		WithStderr(stderr)
	if cfg.Grants.Clock {
		mc = mc.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	for _, name := range cfg.Grants.Env {
		if cfg.LookupEnv == nil {
			break
		}
		if v, ok := cfg.LookupEnv(name); ok {
			mc = mc.WithEnv(name, v)
		}
	}
	if len(cfg.Grants.Mounts) > 0 {
		fsc := wazero.NewFSConfig()
		for _, mt := range cfg.Grants.Mounts {
			if mt.ReadOnly {
				fsc = fsc.WithReadOnlyDirMount(mt.Host, mt.Guest)
			} else {
				fsc = fsc.WithDirMount(mt.Host, mt.Guest)
			}
		}
		mc = mc.WithFSConfig(fsc)
	}

	inst := &Instance{cfg: cfg, interrupt: m.opts.Interrupt, name: m.name, stderr: stderr}
	inst.info = callInfo{logger: cfg.Logger, store: cfg.Store, readable: map[string]bool{}, metrics: cfg.metrics}
	for _, ns := range cfg.ReadState {
		inst.info.readable[ns] = true
	}
	callCtx, cancel := inst.callContext(experimental.WithMemoryAllocator(ctx, memoryAllocator{}))
	defer cancel()
	mod, err := m.rt.InstantiateModule(callCtx, m.compiled, mc)
	if err != nil {
		return nil, inst.explain(callCtx, "instantiate", err)
	}
	inst.mod = mod
	inst.mem = mod.Memory()
	inst.alloc = mod.ExportedFunction(abi.ExportAlloc)
	inst.process = mod.ExportedFunction(abi.ExportProcess)

	out, err := inst.call(ctx, mod.ExportedFunction(abi.ExportInit), cfg.Config)
	if err != nil {
		_ = inst.Close(ctx)
		return nil, fmt.Errorf("init: %w", err)
	}
	r := abi.NewReader(out)
	r.U32()
	desc, err := abi.ReadDescriptor(r)
	if err != nil {
		_ = inst.Close(ctx)
		return nil, fmt.Errorf("init: malformed descriptor: %w", err)
	}
	for _, f := range append(append([]abi.Field(nil), desc.In...), desc.Out...) {
		if f.Type == abi.TypeValue && f.Name == abi.BodyPath {
			continue
		}
		if err := checkPath(f.Name); err != nil {
			_ = inst.Close(ctx)
			return nil, fmt.Errorf("init: declared field: %w", err)
		}
	}
	inst.desc = desc
	inst.plan = newMergePlan(desc.Out)
	if desc.StateView {
		if inst.view = mod.ExportedFunction(abi.ExportStateView); inst.view == nil {
			_ = inst.Close(ctx)
			return nil, fmt.Errorf("init: the descriptor offers a state view but the module does not export %s", abi.ExportStateView)
		}
	}
	return inst, nil
}

// Descriptor is how the plugin asked for batches.
func (i *Instance) Descriptor() abi.Descriptor { return i.desc }

// Broken reports whether the instance failed in a way that leaves it unsound.
func (i *Instance) Broken() bool { return i.broken }

// MemoryPages is the size of the instance's linear memory, in 64 KiB pages.
func (i *Instance) MemoryPages() uint32 {
	if i.mem == nil {
		return 0
	}
	return i.mem.Size() / 65536
}

// Close releases the instance.
func (i *Instance) Close(ctx context.Context) error {
	if i.mod == nil {
		return nil
	}
	return i.mod.Close(ctx)
}

// PluginError is an error the plugin itself reported for a whole call.
type PluginError struct {
	Msg   string
	Fatal bool
	// InvalidConfig: the plugin refused its config for good (status 3,
	// meant for init; a process call that returns it fails its batch as
	// with 1), so loading it again with the same config cannot succeed.
	InvalidConfig bool
}

func (e *PluginError) Error() string { return e.Msg }

// Permanent says whether trying again cannot help: a scheduled run that
// fails on a plugin refusing its config is not retried.
func (e *PluginError) Permanent() bool { return e.InvalidConfig }

func (i *Instance) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithValue(ctx, callInfoKey{}, &i.info)
	return context.WithTimeout(ctx, i.cfg.Timeout)
}

// call writes req into guest memory, calls fn and returns an OK response,
// status word included. The returned slice aliases guest memory: it is valid
// only until the next call into the instance.
func (i *Instance) call(ctx context.Context, fn api.Function, req []byte) ([]byte, error) {
	callCtx, cancel := i.callContext(ctx)
	defer cancel()
	start := time.Now()
	i.stderr.Reset()
	n := uint32(len(req))
	if n > i.reqCap { // an empty request (no config) needs no buffer: it is passed as (0, 0)
		i.stack[0] = uint64(n)
		if err := i.alloc.CallWithStack(callCtx, i.stack[:]); err != nil {
			i.broken = true
			return nil, i.explain(callCtx, "alloc", err)
		}
		ptr := api.DecodeU32(i.stack[0])
		if ptr == 0 || ptr%8 != 0 {
			// Columns are read in place, so the buffer must be 8-aligned;
			// 0 is how a guest that cannot allocate says so.
			i.broken = true
			return nil, fmt.Errorf("malformed result: alloc(%d) returned address %d, want a non-zero multiple of 8", n, ptr)
		}
		i.reqPtr, i.reqCap = ptr, n
	}
	ptr := i.reqPtr
	if n == 0 {
		ptr = 0
	} else if !i.mem.Write(i.reqPtr, req) {
		i.broken = true
		return nil, fmt.Errorf("malformed result: alloc returned %d, which cannot hold %d bytes in %d bytes of memory", i.reqPtr, n, i.mem.Size())
	}
	i.stack[0], i.stack[1] = uint64(ptr), uint64(n)
	if err := fn.CallWithStack(callCtx, i.stack[:]); err != nil {
		i.broken = true
		return nil, i.explain(callCtx, fn.Definition().Name(), err)
	}
	if !i.interrupt && callCtx.Err() != nil {
		// The guest could not be stopped, but its answer is complete; the
		// overrun is reported so the operator can tighten or relax it.
		i.cfg.Logger.Warn("plugin call overran its deadline", "plugin", i.name, "timeout", i.cfg.Timeout, "took", time.Since(start))
	}
	packed := i.stack[0]
	ptr, size := uint32(packed>>32), uint32(packed)
	out, ok := i.mem.Read(ptr, size)
	if ok && size < 4 {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %s returned %d bytes, shorter than the 4-byte status", fn.Definition().Name(), size)
	}
	if !ok {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %s returned buffer [%d, +%d) outside its %d bytes of memory", fn.Definition().Name(), ptr, size, i.mem.Size())
	}
	r := abi.NewReader(out)
	switch st := abi.Status(r.U32()); st {
	case abi.StatusOK:
		// The whole buffer goes back, status included: column alignment is
		// counted from its first byte.
		return out, nil
	case abi.StatusError, abi.StatusFatal, abi.StatusInvalidConfig:
		msg := r.Bytes()
		if r.Err() != nil {
			i.broken = true
			return nil, fmt.Errorf("malformed result: error status without a message: %w", r.Err())
		}
		if st == abi.StatusFatal {
			i.broken = true
		}
		return nil, &PluginError{Msg: string(msg), Fatal: st == abi.StatusFatal, InvalidConfig: st == abi.StatusInvalidConfig}
	default:
		i.broken = true
		return nil, fmt.Errorf("malformed result: unknown status %d", st)
	}
}

// explain turns a wazero failure into a reason a user can act on, using
// what the guest wrote to stderr (a Go guest's panic or out-of-memory
// message lands there before it exits).
func (i *Instance) explain(ctx context.Context, what string, err error) error {
	tail := i.stderr.Tail()
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded,
		errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return fmt.Errorf("%s: %w (%s); the instance was stopped", what, ErrTimeout, i.cfg.Timeout)
	case errors.As(err, &exit):
		if tail != "" {
			return fmt.Errorf("%s: plugin exited with code %d: %s", what, exit.ExitCode(), tail)
		}
		return fmt.Errorf("%s: plugin exited with code %d", what, exit.ExitCode())
	}
	if tail != "" {
		return fmt.Errorf("%s: %s: %w", what, tail, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// tailWriter forwards guest output to the logger a line at a time and keeps
// the first lines written during the current call, so a trap can say what
// the guest printed before dying: a Go guest's "fatal error: out of memory"
// comes first, ahead of pages of goroutine dump.
type tailWriter struct {
	logger *slog.Logger
	level  slog.Level
	stream string

	mu   sync.Mutex
	line []byte
	tail []string
}

func newTailWriter(l *slog.Logger, level slog.Level, stream string) *tailWriter {
	return &tailWriter{logger: l, level: level, stream: stream}
}

const tailLines = 3

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = append(w.line, p...)
	for {
		nl := bytes.IndexByte(w.line, '\n')
		if nl < 0 {
			break
		}
		w.emit(string(w.line[:nl]))
		w.line = w.line[nl+1:]
	}
	if len(w.line) > 4096 {
		w.emit(string(w.line))
		w.line = w.line[:0]
	}
	return len(p), nil
}

func (w *tailWriter) emit(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	w.logger.Log(context.Background(), w.level, line, "stream", w.stream)
	if len(w.tail) < tailLines {
		w.tail = append(w.tail, line)
	}
}

// Reset forgets what earlier calls wrote.
func (w *tailWriter) Reset() {
	w.mu.Lock()
	w.tail = w.tail[:0]
	w.mu.Unlock()
}

// Tail returns the first lines of the current call, joined.
func (w *tailWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) > 0 {
		w.emit(string(w.line))
		w.line = w.line[:0]
	}
	return strings.Join(w.tail, " | ")
}
