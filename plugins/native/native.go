// Package native is the Go helper SDK for Sluice native plugins: ordinary
// executables that the agent's `grpc_plugin` processor starts as child
// processes and calls over gRPC, through hashicorp/go-plugin. Use one when
// a step needs what the Wasm sandbox does not give (a native ML runtime,
// cgo, a GPU library, a model loaded from anywhere on disk); otherwise the
// `wasm` processor (plugins/sdk) is cheaper per call and sandboxed.
//
// A plugin is one short main:
//
//	func main() {
//		native.Serve(native.Plugin{
//			ProcessMessage: func(ctx context.Context, m native.Message) (native.Result, error) {
//				return native.Replace(bytes.ToUpper(m.Value)), nil
//			},
//		})
//	}
//
// Serve does go-plugin's handshake ([Handshake]: the magic cookie in the
// environment, the address line on stdout), serves the protocol of
// plugins/native/proto/sluice/plugin/v1/plugin.proto and go-plugin's health
// service, and returns only when the agent stops the plugin.
//
// Ownership: everything a handler receives ([Message.Value], Metadata,
// State) was decoded for that call alone and belongs to the handler, which
// may keep it. Bytes handed back in a [Result] must not be modified after
// the handler returns, until the response has been sent.
//
// docs/NATIVE_PLUGINS.md covers the process side (logging, limits, the
// protocol for plugins in other languages).
package native

//go:generate bash gen.sh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hashicorp/go-plugin"
)

// The handshake both sides must agree on. go-plugin passes the cookie to the
// child in its environment; a binary started without it (by hand, or by a
// host of another product) refuses to run, and a binary built for another
// protocol version is refused by the host with both versions named.
const (
	// ProtocolVersion is the native plugin protocol's version: the v1 in
	// sluice.plugin.v1. It changes only with an incompatible proto.
	ProtocolVersion = 1
	// MagicCookieKey is the environment variable carrying the cookie.
	MagicCookieKey = "SLUICE_PLUGIN"
	// MagicCookieValue is the cookie's value. It is not a secret: it only
	// tells a plugin that a Sluice agent started it.
	MagicCookieValue = "b3f1c6e2-sluice-native-plugin"
	// PluginName is the name the plugin is served and dispensed under in
	// go-plugin's plugin set.
	PluginName = "processor"
	// EnvMaxMessageBytes is the environment variable through which the
	// host tells the plugin its max_message_bytes, so both ends of the gRPC
	// connection accept the same message sizes. Serve reads it.
	EnvMaxMessageBytes = "SLUICE_PLUGIN_MAX_MESSAGE_BYTES"
	// DefaultMaxMessageBytes is the limit when EnvMaxMessageBytes is unset:
	// the processor's default max_message_bytes.
	DefaultMaxMessageBytes = 64 << 20
)

// Handshake returns the go-plugin handshake of protocol version 1. It is a
// function, not a variable, so nothing can change what both sides use.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// Config is what Init receives: the processor's `config:` block and the
// step it configures.
type Config struct {
	// JSON is the `config:` block as JSON; empty when the processor has
	// none.
	JSON []byte
	// Step names the step, for logs: the processor's label, or the
	// plugin's path.
	Step string
	// Keyed reports that the processor sets `key`: messages carry a key and
	// its state.
	Keyed bool
}

// Decode unmarshals the config into v. Unknown fields are errors, so a typo
// in the pipeline fails at load (and in `agent lint`) instead of being
// ignored, as the Wasm SDK's Config.Decode does. An absent config leaves v
// untouched.
func (c Config) Decode(v any) error {
	if !hasConfig(c.JSON) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(c.JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func hasConfig(cfg []byte) bool {
	s := bytes.TrimSpace(cfg)
	return len(s) > 0 && string(s) != "null" && string(s) != "{}"
}

// Message is one message of a batch.
type Message struct {
	// Value is the message's body.
	Value []byte
	// Metadata is all of the message's metadata.
	Metadata map[string]string
	// Key is the message's entity key, on keyed steps; "" otherwise.
	Key string
	// State is the key's current state on keyed steps, nil when it has
	// none. For ProcessMessage it includes the changes made by earlier
	// messages of the same key in the batch; for Process it is the state
	// at the start of the request for every message of the key.
	State []byte
}

// Outcome is what happens to a message.
type Outcome uint8

// The outcomes, as in the Wasm ABI's bytes mode.
const (
	OutcomeKeep Outcome = iota
	OutcomeDrop
	OutcomeReplace
	OutcomeError
)

// stateAction is what a result does to its key's state.
type stateAction uint8

const (
	stateUnchanged stateAction = iota
	stateSet
	stateDelete
)

// Result is the answer for one message. Build one with Keep, Drop, Replace
// or Fail, then add metadata or a state change:
//
//	native.Keep().WithMetadata("score", "0.9").SetState(next)
//
// The zero Result keeps the message.
type Result struct {
	outcome Outcome
	value   []byte
	reason  string
	meta    []string // key, value, key, value...
	action  stateAction
	state   []byte
}

// Keep passes the message on unchanged (apart from metadata).
func Keep() Result { return Result{} }

// Drop removes the message from the batch.
func Drop() Result { return Result{outcome: OutcomeDrop} }

// Replace makes value the message's body.
func Replace(value []byte) Result { return Result{outcome: OutcomeReplace, value: value} }

// Fail marks the message errored with reason; it keeps its body, and the
// pipeline's catch, try or switch on errored() handles it.
func Fail(reason string) Result { return Result{outcome: OutcomeError, reason: reason} }

// WithMetadata sets a metadata key on the message (overwriting it); it
// applies to every outcome but Drop.
func (r Result) WithMetadata(key, value string) Result {
	// Clip so that two results derived from one never share a backing array.
	r.meta = append(slices.Clip(r.meta), key, value)
	return r
}

// SetState stores state as the message's key's new state (keyed steps).
// The host commits it with the batch, before the batch goes on.
func (r Result) SetState(state []byte) Result {
	if state == nil {
		state = []byte{} // nil would read as "no state"
	}
	r.action, r.state = stateSet, state
	return r
}

// DeleteState forgets the message's key's state (keyed steps).
func (r Result) DeleteState() Result {
	r.action, r.state = stateDelete, nil
	return r
}

// Outcome reports the result's outcome, for a plugin's own tests.
func (r Result) Outcome() Outcome { return r.outcome }

// Plugin is a native plugin's code. Set exactly one of Process and
// ProcessMessage.
type Plugin struct {
	// Init receives the processor's config when the process starts, before
	// any batch. An error refuses the config: the pipeline fails to build,
	// and `agent lint` reports it, with the error's text. Nil accepts no
	// config: a config block given anyway is refused, so a typo'd key is
	// never silently ignored.
	Init func(Config) error

	// Process handles one batch (or one chunk of a batch too large for one
	// gRPC message) and returns one Result per message, in order. An error
	// fails every message of the batch with its text; the process is kept.
	// It may run concurrently for batches of different pipeline threads
	// (never on a keyed step): guard shared mutable state.
	Process func(ctx context.Context, batch []Message) ([]Result, error)

	// ProcessMessage handles one message; an error fails that message
	// with its text. Messages of a batch are handled in order, and on a
	// keyed step each sees its key's state as earlier messages of the
	// batch left it. It may run concurrently for different batches, as
	// Process.
	ProcessMessage func(ctx context.Context, m Message) (Result, error)

	// Stateful declares that the plugin keeps per-key state. The host then
	// requires the processor's `key` and `state.namespace`, and refuses
	// them for a plugin that does not declare it.
	Stateful bool
}

func (p Plugin) check() error {
	switch {
	case p.Process == nil && p.ProcessMessage == nil:
		return fmt.Errorf("native: Plugin has neither Process nor ProcessMessage: set one of them")
	case p.Process != nil && p.ProcessMessage != nil:
		return fmt.Errorf("native: Plugin has both Process and ProcessMessage: set one of them")
	}
	return nil
}
