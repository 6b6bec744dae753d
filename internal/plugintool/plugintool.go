// Package plugintool is the logic behind `agent plugin`: scaffolding a new
// Wasm plugin (New), building it reproducibly (Build), running it on
// fixtures through the agent's real `wasm` processor without a pipeline
// (Run), and reporting what a module declares and asks for (Inspect).
//
// Everything goes through agent/wasm, the code a pipeline runs, so a plugin
// that passes here behaves the same way in a pipeline: the same ABI checks,
// the same host-side parsing of declared fields, the same merge of outputs.
package plugintool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/pipelines"
	"github.com/sluice-dev/sluice/plugins/builtin"
	"github.com/sluice-dev/sluice/state"
)

// BuiltinPrefix names a plugin embedded in the agent, as `builtin:transform`,
// wherever a .wasm path is expected.
const BuiltinPrefix = "builtin:"

// ReadModule returns the bytes of a plugin: a .wasm file or builtin:NAME.
func ReadModule(src string) ([]byte, error) {
	if name, ok := strings.CutPrefix(src, BuiltinPrefix); ok {
		bin, found := builtin.Lookup(name)
		if !found {
			return nil, fmt.Errorf("no builtin plugin named %q (the agent ships %s)", name, strings.Join(builtin.Names(), ", "))
		}
		return bin, nil
	}
	bin, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("read plugin: %w", err)
	}
	return bin, nil
}

// StepConfig is how a plugin is configured outside a pipeline: the body of
// the `wasm` processor it would run under (config, config_file, key, state,
// clock, env, mounts, timeout, sha256, ...), with the module and the keyed
// state settings given separately.
type StepConfig struct {
	// Plugin is a .wasm path or builtin:NAME; it replaces any path or
	// builtin in YAML.
	Plugin string
	// YAML is the processor block, as under `- wasm:` in a pipeline; a
	// document whose only key is `wasm` is unwrapped, so a step can be
	// pasted as is. Empty means defaults.
	YAML []byte
	// Key and Namespace, when set, override `key` and `state.namespace`.
	Key, Namespace string
}

// defaultNamespace is the state namespace of a stateful step whose config
// names a key but no namespace: outside a pipeline nothing else shares it.
const defaultNamespace = "plugin_test"

// processorYAML merges c into one `wasm` processor block and reports whether
// it needs a state store (a stateful step, or one that reads state).
func (c StepConfig) processorYAML() (doc []byte, needsState bool, err error) {
	m := map[string]any{}
	if len(bytes.TrimSpace(c.YAML)) > 0 {
		if err := yaml.Unmarshal(c.YAML, &m); err != nil {
			return nil, false, fmt.Errorf("config: %w", err)
		}
		if m == nil {
			m = map[string]any{}
		}
		if inner, ok := m["wasm"].(map[string]any); ok && len(m) == 1 {
			m = inner
		}
	}
	delete(m, "path")
	delete(m, "builtin")
	if name, ok := strings.CutPrefix(c.Plugin, BuiltinPrefix); ok {
		m["builtin"] = name
	} else {
		m["path"] = c.Plugin
	}
	if c.Key != "" {
		m["key"] = c.Key
	}
	st, _ := m["state"].(map[string]any)
	if c.Namespace != "" {
		if st == nil {
			st = map[string]any{}
		}
		st["namespace"] = c.Namespace
	}
	if _, hasKey := m["key"]; hasKey {
		if st == nil {
			st = map[string]any{}
		}
		if _, ok := st["namespace"]; !ok {
			st["namespace"] = defaultNamespace
		}
	}
	if st != nil {
		m["state"] = st
	}
	_, keyed := m["key"]
	reads, _ := m["read_state"].([]any)
	doc, err = yaml.Marshal(m)
	if err != nil {
		return nil, false, fmt.Errorf("config: %w", err)
	}
	return doc, keyed || len(reads) > 0, nil
}

// step is a loaded processor config with the engine (and state store) it
// runs on; close releases them.
type step struct {
	eng   *wasm.Engine
	store *state.Store
	yaml  []byte
	dir   string
}

// open parses c and builds the engine it runs on, with a state store in a
// temporary directory if the step needs one.
func open(ctx context.Context, c StepConfig, forceState bool) (*step, error) {
	doc, needsState, err := c.processorYAML()
	if err != nil {
		return nil, err
	}
	s := &step{yaml: doc}
	if needsState || forceState {
		if s.dir, err = os.MkdirTemp("", "sluice-plugin-state-"); err != nil {
			return nil, fmt.Errorf("state store: %w", err)
		}
		s.store, err = state.Open(ctx, state.Options{Dir: s.dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			s.close(ctx)
			return nil, fmt.Errorf("state store: %w", err)
		}
	}
	s.eng, err = wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, BuiltinFiles: pipelines.File, State: s.store})
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("wasm engine: %w", err)
	}
	return s, nil
}

func (s *step) close(ctx context.Context) {
	if s.eng != nil {
		_ = s.eng.Close(ctx)
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// errNoPlugin is returned for an empty plugin argument.
var errNoPlugin = errors.New("no plugin given: want a .wasm file or builtin:NAME")
