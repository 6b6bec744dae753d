// Package wasm runs Sluice plugins: WebAssembly modules that speak the
// plugin ABI (plugins/sdk/ABI.md), executed by wazero. It provides the
// `wasm` Benthos processor, the Engine that compiles each module once per
// process behind an on-disk compilation cache, and the sandbox each instance
// runs in (no files, environment, clock or network unless granted; a memory
// cap; a per-call deadline).
package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/state"
)

// ErrABIVersion means a module was built for another version of the plugin
// ABI than this agent speaks. Rebuild the plugin with a matching SDK.
var ErrABIVersion = errors.New("plugin ABI version mismatch")

// ErrNotPlugin means a module is valid WebAssembly but not a Sluice plugin:
// it lacks the ABI's exports or imports functions the agent does not offer.
var ErrNotPlugin = errors.New("not a Sluice plugin")

// EngineConfig configures an Engine.
type EngineConfig struct {
	// CacheDir holds wazero's compiled-code cache, so a restarted agent does
	// not compile its plugins again. Empty means an in-memory cache only.
	CacheDir string
	// Builtins resolves `builtin:` plugin names to module bytes; nil means
	// there are none.
	Builtins func(name string) ([]byte, bool)
	// BuiltinFiles resolves `config_file: builtin:NAME` to the bytes of a
	// config file shipped in the agent; nil means there are none.
	BuiltinFiles func(name string) ([]byte, bool)
	// State is the agent's state store, for stateful steps; nil means
	// stateful plugins cannot be loaded.
	State *state.Store
	// Changelog is what a step whose state follows Kafka partitions
	// (state.changelog) needs; zero means such steps cannot be loaded.
	Changelog ChangelogDeps
}

// Engine compiles plugin modules once per process and hands out instances.
// It is safe for concurrent use. One Engine serves every pipeline of an
// agent; Close it when they have all stopped.
type Engine struct {
	cfg   EngineConfig
	cache wazero.CompilationCache

	mu       sync.Mutex
	runtimes map[runtimeKey]wazero.Runtime
	modules  map[moduleKey]*Module
	// refs counts the Loads of each cached module not yet released: a
	// module replaced by a hot reload is closed when no step uses it.
	refs map[moduleKey]int
	// compiling holds the modules being compiled, closed when done: a
	// Load of the same module waits for it; other modules compile at once.
	compiling map[moduleKey]chan struct{}
	closed    bool

	views stateViews
	logs  changelogSteps

	// reloads are the live `path:` steps, for Reload and WatchFiles.
	reloads reloadRegistry
}

// runtimeKey groups modules by the runtime-wide settings wazero offers:
// memory cap and whether a call can be interrupted are properties of a
// runtime, not of an instance.
type runtimeKey struct {
	memoryPages uint32
	interrupt   bool
}

type moduleKey struct {
	runtimeKey
	sum [sha256.Size]byte
}

// NewEngine opens the compilation cache and returns an Engine.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	e := &Engine{cfg: cfg, runtimes: map[runtimeKey]wazero.Runtime{}, modules: map[moduleKey]*Module{}, refs: map[moduleKey]int{},
		compiling: map[moduleKey]chan struct{}{}}
	if cfg.CacheDir != "" {
		dir := filepath.Clean(cfg.CacheDir)
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("open wasm compilation cache %q: %w", dir, err)
		}
		e.cache = c
	} else {
		e.cache = wazero.NewCompilationCache()
	}
	return e, nil
}

// Close releases every runtime and the cache. Instances must be closed first.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	var errs []error
	for k, rt := range e.runtimes {
		errs = append(errs, rt.Close(ctx))
		delete(e.runtimes, k)
	}
	clear(e.modules)
	clear(e.refs)
	errs = append(errs, e.cache.Close(ctx))
	return errors.Join(errs...)
}

// Builtin returns the bytes of a builtin plugin.
func (e *Engine) Builtin(name string) ([]byte, bool) {
	if e.cfg.Builtins == nil {
		return nil, false
	}
	return e.cfg.Builtins(name)
}

// LoadOptions are the runtime-wide settings a module is compiled under.
type LoadOptions struct {
	// MemoryLimitPages caps each instance's linear memory, in 64 KiB pages.
	MemoryLimitPages uint32
	// Interrupt makes a call stop at its deadline, at the cost of checks
	// wazero inserts into every loop (3-10x slower on loop-heavy guests).
	Interrupt bool
}

// Module is a compiled plugin that has passed the ABI check.
type Module struct {
	name     string
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	opts     LoadOptions
	key      moduleKey
}

// Name is where the module came from, for messages.
func (m *Module) Name() string { return m.name }

// Load compiles bin (once per process for the same bytes and options) and
// checks it speaks ABI v1. name says where it came from, for errors.
func (e *Engine) Load(ctx context.Context, name string, bin []byte, opts LoadOptions) (*Module, error) {
	key := moduleKey{runtimeKey{opts.MemoryLimitPages, opts.Interrupt}, sha256.Sum256(bin)}
	e.mu.Lock()
	for {
		if e.closed {
			e.mu.Unlock()
			return nil, fmt.Errorf("plugin %s: the wasm engine is closed", name)
		}
		if m, ok := e.modules[key]; ok {
			e.refs[key]++
			e.mu.Unlock()
			return &Module{name: name, rt: m.rt, compiled: m.compiled, opts: opts, key: key}, nil
		}
		done, ok := e.compiling[key]
		if !ok {
			break
		}
		// The same bytes are being compiled: wait, then take the module,
		// or, if that compile failed, compile again for this Load's error.
		e.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		e.mu.Lock()
	}
	rt, err := e.runtime(ctx, key.runtimeKey)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	done := make(chan struct{})
	e.compiling[key] = done
	e.mu.Unlock()
	// Outside the lock, so that a pipeline's modules (Prefetch) and those
	// of pipelines starting together compile at once.
	compiled, err := rt.CompileModule(ctx, bin)
	if err == nil {
		if err = checkABI(compiled); err != nil {
			_ = compiled.Close(ctx)
			err = fmt.Errorf("plugin %s: %w", name, err)
		}
	} else {
		err = fmt.Errorf("plugin %s: compile: %w", name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.compiling, key)
	close(done)
	if err != nil {
		return nil, err
	}
	if e.closed {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("plugin %s: the wasm engine is closed", name)
	}
	m := &Module{name: name, rt: rt, compiled: compiled, opts: opts, key: key}
	e.modules[key] = m
	e.refs[key]++
	return m, nil
}

// releaseModule gives back one Load of m; the compiled module is closed
// when every Load of it has been released. A step stopped with its pipeline
// does not release its module, so a restarted pipeline finds it compiled;
// a version replaced by a hot reload does, so reloads do not pile up
// compiled code.
func (e *Engine) releaseModule(ctx context.Context, m *Module) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.modules[m.key]; !ok {
		return nil // the engine is closed
	}
	if e.refs[m.key]--; e.refs[m.key] > 0 {
		return nil
	}
	delete(e.refs, m.key)
	delete(e.modules, m.key)
	if err := m.compiled.Close(ctx); err != nil {
		return fmt.Errorf("plugin %s: close compiled module: %w", m.name, err)
	}
	return nil
}

func (e *Engine) runtime(ctx context.Context, k runtimeKey) (wazero.Runtime, error) {
	if rt, ok := e.runtimes[k]; ok {
		return rt, nil
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(e.cache).
		WithCloseOnContextDone(k.interrupt).
		WithMemoryLimitPages(k.memoryPages)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	_, err := rt.NewHostModuleBuilder(abi.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export(abi.ImportLog).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostStateGet), i32s(6), []api.ValueType{api.ValueTypeI64}).
		WithParameterNames("ns_ptr", "ns_len", "key_ptr", "key_len", "buf_ptr", "buf_cap").
		Export(abi.ImportStateGet).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostStateScan), i32s(9), []api.ValueType{api.ValueTypeI64}).
		WithParameterNames("ns_ptr", "ns_len", "prefix_ptr", "prefix_len", "after_ptr", "after_len", "limit", "buf_ptr", "buf_cap").
		Export(abi.ImportStateScan).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostStateSet), i32s(6), []api.ValueType{api.ValueTypeI64}).
		WithParameterNames("ns_ptr", "ns_len", "key_ptr", "key_len", "val_ptr", "val_len").
		Export(abi.ImportStateSet).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostStateDelete), i32s(4), []api.ValueType{api.ValueTypeI64}).
		WithParameterNames("ns_ptr", "ns_len", "key_ptr", "key_len").
		Export(abi.ImportStateDelete).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostMetric), append(i32s(5), api.ValueTypeI64), nil).
		WithParameterNames("kind", "name_ptr", "name_len", "labels_ptr", "labels_len", "value").
		Export(abi.ImportMetric).
		Instantiate(ctx)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate host module %s: %w", abi.ImportModule, err)
	}
	e.runtimes[k] = rt
	return rt, nil
}

// callInfoKey carries the calling instance's logger and state access into
// host functions, which wazero gives only the call's context and the guest
// module.
type callInfoKey struct{}

type callInfo struct {
	logger   *slog.Logger
	store    *state.Store
	readable map[string]bool
	metrics  *pluginMetrics
	// keyed is the batch of a stateful step during its call: random
	// writes go into it, and reads of the step's own namespace see them.
	keyed *KeyedInput
}

func i32s(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = api.ValueTypeI32
	}
	return t
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	level, ptr, n := int32(api.DecodeI32(stack[0])), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	if info == nil {
		return
	}
	logger := info.logger
	msg, ok := mod.Memory().Read(ptr, n)
	if !ok {
		logger.Warn("plugin log call out of memory range", "ptr", ptr, "len", n)
		return
	}
	logger.Log(ctx, slog.Level(level), string(msg))
}

var versionedExport = regexp.MustCompile(`^sluice_v(\d+)_process$`)

// checkABI refuses, before instantiation, a module that was built for
// another ABI version or that imports what the agent does not provide, so
// the user gets a clear reason rather than a link error.
func checkABI(c wazero.CompiledModule) error {
	exports := c.ExportedFunctions()
	if _, ok := exports[abi.ExportProcess]; !ok {
		var found []string
		for name := range exports {
			if m := versionedExport.FindStringSubmatch(name); m != nil {
				found = append(found, m[1])
			}
		}
		sort.Slice(found, func(a, b int) bool {
			x, _ := strconv.Atoi(found[a])
			y, _ := strconv.Atoi(found[b])
			return x < y
		})
		if len(found) > 0 {
			return fmt.Errorf("%w: the module was built for ABI v%s but this agent speaks v%d; rebuild it with a plugins/sdk that speaks v%d", ErrABIVersion, found[0], abi.Version, abi.Version)
		}
		return fmt.Errorf("%w: it exports no %s (build Go plugins with -buildmode=c-shared and plugins/sdk)", ErrNotPlugin, abi.ExportProcess)
	}
	want := map[string]struct{ params, results []api.ValueType }{
		abi.ExportAlloc:   {[]api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
		abi.ExportInit:    {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
		abi.ExportProcess: {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
	}
	for _, name := range []string{abi.ExportAlloc, abi.ExportInit, abi.ExportProcess} {
		def, ok := exports[name]
		if !ok {
			return fmt.Errorf("%w: missing export %s", ErrNotPlugin, name)
		}
		w := want[name]
		if !slices.Equal(def.ParamTypes(), w.params) || !slices.Equal(def.ResultTypes(), w.results) {
			return fmt.Errorf("%w: export %s has signature %s, want %s", ErrNotPlugin, name, signature(def.ParamTypes(), def.ResultTypes()), signature(w.params, w.results))
		}
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("%w: it exports no memory named \"memory\"", ErrNotPlugin)
	}
	for _, def := range c.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch {
		case mod == wasi_snapshot_preview1.ModuleName:
		case mod == abi.ImportModule && (name == abi.ImportLog || name == abi.ImportStateGet || name == abi.ImportStateScan || name == abi.ImportStateSet || name == abi.ImportStateDelete || name == abi.ImportMetric):
		case mod == abi.ImportModule:
			return fmt.Errorf("%w: it imports %s.%s, which ABI v%d does not have (is the SDK newer than the agent?)", ErrNotPlugin, mod, name, abi.Version)
		case strings.HasPrefix(mod, "sluice_v"):
			return fmt.Errorf("%w: the module imports from %s but this agent provides %s; rebuild it with a plugins/sdk that speaks v%d", ErrABIVersion, mod, abi.ImportModule, abi.Version)
		default:
			return fmt.Errorf("%w: it imports %s.%s, which this agent does not provide (ABI v%d offers %s.{%s,%s,%s,%s,%s,%s} and WASI preview 1)", ErrNotPlugin, mod, name, abi.Version, abi.ImportModule, abi.ImportLog, abi.ImportStateGet, abi.ImportStateScan, abi.ImportStateSet, abi.ImportStateDelete, abi.ImportMetric)
		}
	}
	return nil
}

func signature(params, results []api.ValueType) string {
	s := "("
	for i, p := range params {
		if i > 0 {
			s += ","
		}
		s += api.ValueTypeName(p)
	}
	s += ")->("
	for i, r := range results {
		if i > 0 {
			s += ","
		}
		s += api.ValueTypeName(r)
	}
	return s + ")"
}

// pagesFor converts a byte limit to whole 64 KiB pages, at least one.
func pagesFor(bytes int64) (uint32, error) {
	const page = 64 << 10
	if bytes < page || bytes > 4<<30 {
		return 0, fmt.Errorf("memory limit %s is outside 64KiB..4GiB", strconv.FormatInt(bytes, 10))
	}
	return uint32(bytes / page), nil
}
