// Package sdk is the Go SDK for Sluice plugins: WebAssembly modules, built
// with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, that the agent's `wasm`
// processor calls once per batch. A plugin is one short file that registers a
// handler in init():
//
//   - HandleMessage, for the simple mode: the handler sees each message's
//     bytes and metadata and keeps, drops, replaces or fails it.
//   - HandleBatch, for the fast mode: the plugin declares the fields it reads
//     and writes (ReadTime, WriteInt, ...); the host parses each message once,
//     natively, and the handler works on typed columns for the whole batch, so
//     the plugin never parses JSON.
//
// A fast-mode plugin may also keep per-key state (UseState, or the typed
// UseStructState): the host loads each key's state for the batch and
// commits what the plugin stores, with the batch, before acknowledging it.
//
// OnConfig receives the processor's `config:` block once at load, and Log
// writes through the agent's logger. The wire format underneath is specified
// in ABI.md and implemented in package abi.
//
// Every []byte the SDK hands a handler aliases a buffer the host wrote and
// is valid only until the handler returns; copy what must outlive the call.
package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Guest-side registry. Package-level state is the norm inside a Wasm module:
// the host drives it through exported functions, one call at a time.
var (
	onConfig    func(Config) error
	msgHandler  func(*Message) error
	batchHandle func(*Batch) error
	inFields    []abi.Field
	stateful    bool
	sequential  bool
	stateView   func(dst, key, state []byte) ([]byte, error)
	viewBuf     []byte
	outFields   []abi.Field
	registered  string

	resp    abi.Writer
	message Message
	batch   Batch
)

// Config is the processor's `config:` block, as JSON.
type Config struct{ raw []byte }

// Raw returns the config as JSON; it is "null" or empty when none was given.
func (c Config) Raw() []byte { return c.raw }

// Decode unmarshals the config into v. Unknown fields are errors, so a typo
// in the pipeline fails at load (and in `agent lint`) instead of being
// ignored. An absent config leaves v untouched.
func (c Config) Decode(v any) error {
	if len(c.raw) == 0 || string(c.raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytesReader(c.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return InvalidConfig(fmt.Errorf("config: %w", err))
	}
	return nil
}

// InvalidConfig marks err, returned from the OnConfig callback, as the
// config's own fault (an unknown option, a value out of range): loading
// the plugin again with the same config cannot succeed, so the agent
// fails a scheduled run on it at once instead of retrying it. Leave
// unmarked what may change between attempts, such as a file the config
// names that is not there yet. Config.Decode's errors are marked already.
func InvalidConfig(err error) error {
	if err == nil {
		return nil
	}
	return &invalidConfigError{err}
}

type invalidConfigError struct{ err error }

func (e *invalidConfigError) Error() string { return e.err.Error() }
func (e *invalidConfigError) Unwrap() error { return e.err }

// initStatus is the status that refuses a load for err. It unwraps by
// hand: errors.As would bring reflection into every plugin (about 55 KB
// more in each builtin) for one type.
func initStatus(err error) abi.Status {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(*invalidConfigError); ok {
			return abi.StatusInvalidConfig
		}
	}
	return abi.StatusError
}

// OnConfig registers fn to run once when the plugin is loaded, before any
// batch. An error refuses the load and is shown to the user with the
// location of the processor's config. Fields may still be declared inside fn,
// so a plugin's columns can depend on its config.
func OnConfig(fn func(Config) error) { onConfig = fn }

// HandleMessage makes this a simple-mode plugin: fn runs for every message
// of each batch, in order. Returning an error fails that message with the
// error's text as its reason; the rest of the batch carries on.
func HandleMessage(fn func(*Message) error) {
	mustRegisterOnce("HandleMessage")
	msgHandler = fn
}

// HandleBatch makes this a fast-mode plugin: fn runs once per batch over the
// typed columns of the declared fields. Returning an error fails every
// message of the batch with that reason.
func HandleBatch(fn func(*Batch) error) {
	mustRegisterOnce("HandleBatch")
	batchHandle = fn
}

func mustRegisterOnce(what string) {
	if registered != "" {
		panic("sdk: " + what + " called after " + registered + ": a plugin has one handler")
	}
	registered = what
}

// Sequential declares that the plugin keeps what it saw between calls in
// its own memory (a window, a running count, the last row of the previous
// batch), so every call must go to one instance, in order. The host then
// refuses `parallel_calls` other than 1, which would spread a frame's rows
// over instances that each see only part of them. Call it in init() or in
// the OnConfig callback (a plugin whose config decides, as validate's
// `window` does).
func Sequential() { sequential = true }

// Level is a log level understood by the host.
type Level int32

const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// Log writes msg through the agent's logger, labelled with the plugin.
func Log(level Level, msg string) { hostLog(level, msg) }

// Logf formats and logs; it is a convenience for cold paths.
func Logf(level Level, format string, args ...any) { hostLog(level, fmt.Sprintf(format, args...)) }

// Init runs the plugin's init step on cfg and returns the response buffer.
// The exported sluice_v1_init calls it; it is exported so a plugin's own
// tests can drive the plugin on the host exactly as the agent does.
func Init(cfg []byte) (out []byte) {
	resp.Reset()
	defer recoverInto(&out)
	if onConfig != nil {
		if err := onConfig(Config{raw: cfg}); err != nil {
			return errorResponse(initStatus(err), err.Error())
		}
	} else if hasConfig(cfg) {
		// A plugin that reads no config would silently ignore a typo'd
		// one; refusing it keeps "unknown keys are errors" true everywhere.
		return errorResponse(abi.StatusInvalidConfig, "this plugin takes no config, but the processor's config block is set: remove it")
	}
	d := abi.Descriptor{Mode: abi.ModeBytes, Sequential: sequential}
	switch {
	case batchHandle != nil:
		d.Mode, d.In, d.Out, d.Stateful = abi.ModeColumns, inFields, outFields, stateful
		d.StateView = stateful && stateView != nil
	case msgHandler != nil:
		if stateful {
			return errorResponse(abi.StatusError, "state is declared but the handler is HandleMessage: state needs HandleBatch")
		}
		if len(inFields)+len(outFields) > 0 {
			return errorResponse(abi.StatusError, "fields are declared but the handler is HandleMessage: declared fields need HandleBatch")
		}
	default:
		return errorResponse(abi.StatusError, "no handler registered: call sdk.HandleMessage or sdk.HandleBatch in init()")
	}
	resp.U32(uint32(abi.StatusOK))
	abi.AppendDescriptor(&resp, d)
	return resp.Buf
}

func hasConfig(cfg []byte) bool {
	s := strings.TrimSpace(string(cfg))
	return s != "" && s != "null" && s != "{}"
}

// Process runs the handler on one request buffer and returns the response
// buffer, which stays valid until the next call. The exported
// sluice_v1_process calls it; plugin tests may call it directly.
func Process(req []byte) (out []byte) {
	// Let the runtime's other goroutines run before the batch: in a wasip1
	// reactor they run only while an export is executing, and the garbage
	// collector's mark workers are among them. Without this, a plugin called
	// with many small batches can leave a GC cycle unfinished for good and
	// grow until it hits the memory cap.
	runtime.Gosched()
	resp.Reset()
	defer recoverInto(&out)
	switch {
	case batchHandle != nil:
		return processColumns(req)
	case msgHandler != nil:
		return processMessages(req)
	}
	return errorResponse(abi.StatusError, "no handler registered")
}

// StateView renders one stored state as JSON (ABI.md §8.9). The exported
// sluice_v1_state_view calls it; plugin tests may call it directly.
func StateView(req []byte) (out []byte) {
	runtime.Gosched()
	resp.Reset()
	defer recoverInto(&out)
	return stateViewCall(req)
}

// recoverInto turns a panic in plugin code into a fatal response, so the
// host gets the reason and stack instead of a bare trap, and replaces the
// instance whose heap may now be inconsistent.
func recoverInto(out *[]byte) {
	if r := recover(); r != nil {
		*out = errorResponse(abi.StatusFatal, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
	}
}

func errorResponse(s abi.Status, msg string) []byte {
	resp.Reset()
	resp.U32(uint32(s))
	resp.String(msg)
	return resp.Buf
}

var errMalformed = errors.New("sdk: malformed request from host")
