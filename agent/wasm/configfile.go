package wasm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"gopkg.in/yaml.v3"
)

// BuiltinFilePrefix names a config file shipped inside the agent.
const BuiltinFilePrefix = "builtin:"

// ReadConfigFile returns the bytes of a `config_file`: a path on disk, or
// builtin:NAME resolved by the engine's BuiltinFiles.
func (e *Engine) ReadConfigFile(name string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(name, BuiltinFilePrefix); ok {
		if e.cfg.BuiltinFiles != nil {
			if b, ok := e.cfg.BuiltinFiles(rest); ok {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%s: no builtin file %q", fConfigFile, rest)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fConfigFile, err)
	}
	return b, nil
}

// pluginConfig builds the JSON handed to the plugin's init: the config
// file's mapping, with the inline `config` block's top-level keys on top,
// so a pipeline can reuse a shared suite and change one setting.
func pluginConfig(eng *Engine, conf *service.ParsedConfig) ([]byte, error) {
	var merged map[string]any
	file, _ := conf.FieldString(fConfigFile)
	if file != "" {
		b, err := eng.ReadConfigFile(file)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(b, &merged); err != nil {
			return nil, fmt.Errorf("%s %q: %w", fConfigFile, file, err)
		}
		if merged == nil {
			return nil, fmt.Errorf("%s %q: empty, want a mapping", fConfigFile, file)
		}
	}
	if !conf.Contains(fConfig) {
		if merged == nil {
			return nil, nil
		}
		return marshalConfig(merged)
	}
	v, err := conf.FieldAny(fConfig)
	if err != nil {
		return nil, err
	}
	if merged == nil {
		return marshalConfig(v)
	}
	inline, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("config: must be a mapping when config_file is set, so its keys can override the file's")
	}
	for k, v := range inline {
		merged[k] = v
	}
	return marshalConfig(merged)
}

func marshalConfig(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fConfig, err)
	}
	return b, nil
}
