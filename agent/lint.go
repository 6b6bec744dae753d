package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/wasm"
)

// Problem is one thing wrong with a pipeline, where it is.
type Problem struct {
	Source string
	Line   int
	Msg    string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.Source, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Source, p.Msg)
}

// Lint checks pipeline sources (files, directories or builtin:NAME) and
// returns every problem, sorted by source and line. Beyond Benthos' own
// lint, each `wasm` processor's plugin is loaded and initialised with its
// config, so a missing module, a wrong ABI version or a config the plugin
// rejects is caught before the pipeline runs.
func (a *Agent) Lint(ctx context.Context, sources []string) []Problem {
	var probs []Problem
	linter := a.env.FullConfigSchema("", "").NewStreamConfigLinter()
	for _, src := range sources {
		pls, err := Resolve(src)
		if err != nil {
			probs = append(probs, Problem{Source: src, Msg: err.Error()})
			continue
		}
		for _, pl := range pls {
			lints, err := linter.LintYAML(pl.YAML)
			if err != nil {
				probs = append(probs, Problem{Source: pl.Source, Msg: err.Error()})
				continue
			}
			for _, l := range lints {
				probs = append(probs, Problem{Source: pl.Source, Line: l.Line, Msg: l.What})
			}
			probs = append(probs, a.lintPlugins(ctx, pl.Source, pl.YAML)...)
			// Benthos runs such a config, so a run only warns (Agent.Run).
			probs = append(probs, memoryBufferedRun(pl.Source, pl.YAML)...)
		}
	}
	sort.SliceStable(probs, func(i, j int) bool {
		if probs[i].Source != probs[j].Source {
			return probs[i].Source < probs[j].Source
		}
		return probs[i].Line < probs[j].Line
	})
	return probs
}

// lintPlugins loads every `wasm` processor config found in the document.
func (a *Agent) lintPlugins(ctx context.Context, source string, doc []byte) []Problem {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil // Benthos' lint has reported it
	}
	var probs []Problem
	if len(root.Content) == 1 {
		if _, http := mapEntry(root.Content[0], "http"); http != nil {
			if _, en := mapEntry(http, "enabled"); en != nil && en.Value == "true" {
				probs = append(probs, Problem{Source: source, Line: en.Line, Msg: "http.enabled is true: the per-stream HTTP server is not supported when several pipelines share one agent; remove it"})
			}
		}
	}
	// A kafka component with no seed_brokers of its own connects where the
	// agent says; with nowhere, the pipeline would fail at start.
	if len(a.kafkaBrokers()) == 0 {
		for _, line := range kafkaUses(&root).needBrokers {
			probs = append(probs, Problem{Source: source, Line: line, Msg: "kafka: no seed_brokers, and the agent has no kafka_brokers and dev_kafka is off: set one of them"})
		}
	}
	walkComponent(&root, "wasm", func(_, n *yaml.Node) {
		path, _ := mapEntry(n, "path")
		builtin, _ := mapEntry(n, "builtin")
		if path == nil && builtin == nil {
			return // Benthos' lint rule has reported the missing plugin
		}
		// A config the plugin rejects is blamed on the `config:` key, not on
		// the first line inside its block, which may be a valid field.
		line := n.Line
		if k, _ := mapEntry(n, "config"); k != nil {
			line = k.Line
		}
		text, err := yaml.Marshal(n)
		if err != nil {
			probs = append(probs, Problem{Source: source, Line: n.Line, Msg: err.Error()})
			return
		}
		conf, err := wasm.ConfigSpec().ParseYAML(string(text), a.env)
		if err != nil {
			probs = append(probs, Problem{Source: source, Line: n.Line, Msg: "wasm: " + err.Error()})
			return
		}
		p, err := wasm.NewProcessor(ctx, a.engine, conf, slog.New(slog.DiscardHandler))
		if err != nil {
			src, ln := source, line
			if file, l, ok := a.blame(n, err); ok {
				ln = l
				if file != "" {
					src = file
				}
			}
			probs = append(probs, Problem{Source: src, Line: ln, Msg: "wasm: " + err.Error()})
			return
		}
		_ = p.Close(ctx)
	})
	// Native plugins are started, in builds that have them.
	probs = append(probs, a.lintNativePlugins(ctx, source, &root)...)
	return probs
}

// memoryBufferedRun reports a `memory` buffer behind a `csv_file` input.
// The buffer acknowledges the input's batches as soon as it holds them, so
// the run counts as delivered whatever its outputs did, and Benthos' buffer
// drops a batch an output refuses once the input has ended: a run whose
// output failed would be logged a success with rows missing.
func memoryBufferedRun(source string, doc []byte) []Problem {
	var root yaml.Node
	if yaml.Unmarshal(doc, &root) != nil || len(root.Content) != 1 {
		return nil // Benthos' lint reports a document it cannot read
	}
	_, buf := mapEntry(root.Content[0], "buffer")
	_, in := mapEntry(root.Content[0], "input")
	if buf == nil || in == nil {
		return nil
	}
	mem, _ := mapEntry(buf, "memory")
	if mem == nil {
		return nil
	}
	var probs []Problem
	walkComponent(in, "csv_file", func(k, _ *yaml.Node) {
		probs = append(probs, Problem{Source: source, Line: mem.Line, Msg: fmt.Sprintf("buffer memory behind the csv_file input of line %d: the buffer acknowledges the file's rows as soon as it holds them, so the run would count as delivered whatever its outputs did, and a batch an output refuses at the end of the file would be dropped; for a file as one batch set the input's batch_size: 0 and remove the buffer", k.Line)})
	})
	return probs
}

// walkComponent calls fn with the key and value of every `name:` key whose
// value is a mapping: a component wherever it sits (pipeline, input or output
// processors, brokers, switch cases, branches, catch, resources).
func walkComponent(n *yaml.Node, name string, fn func(k, v *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walkComponent(c, name, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == name && v.Kind == yaml.MappingNode {
				fn(k, v)
				continue
			}
			walkComponent(v, name, fn)
		}
	}
}

// mapEntry returns the key and value nodes of key in the mapping n, or
// nils if n is not a mapping or lacks the key.
func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// configPath matches a config path at the start of a plugin's error, such
// as `expectations[3].kwargs.min_value`, which plugins put first so that
// lint can point at the line.
var configPath = regexp.MustCompile(`^[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*)*$`)

// blame finds where in the pipeline (file ""), or in the config file it
// names, the config path that a plugin's error starts with is written; ok
// is false when the error names no path it can find.
func (a *Agent) blame(proc *yaml.Node, err error) (file string, line int, ok bool) {
	var pe *wasm.PluginError
	if !errors.As(err, &pe) {
		return "", 0, false
	}
	path, _, cut := strings.Cut(strings.TrimPrefix(pe.Msg, "config: "), ": ")
	if !cut || !configPath.MatchString(path) {
		return "", 0, false
	}
	if _, inline := mapEntry(proc, "config"); inline != nil {
		if n := locate(inline, path); n != nil {
			return "", n.Line, true
		}
	}
	_, fn := mapEntry(proc, "config_file")
	if fn == nil || fn.Value == "" {
		return "", 0, false
	}
	b, rerr := a.engine.ReadConfigFile(fn.Value)
	if rerr != nil {
		return "", 0, false
	}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil || len(root.Content) != 1 {
		return "", 0, false
	}
	if n := locate(root.Content[0], path); n != nil {
		return fn.Value, n.Line, true
	}
	return "", 0, false
}

// locate walks a path of keys and [index]es from n and returns the node
// it names, or nil if the first key is not there. When a later step is
// missing it returns the deepest node found, which is still the right
// neighbourhood for a human.
func locate(n *yaml.Node, path string) *yaml.Node {
	var found *yaml.Node
	for _, seg := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		k, v := mapEntry(n, key)
		if v == nil {
			return found
		}
		// A mapping's error is about its key; a scalar's is about its value.
		found, n = k, v
		if v.Kind != yaml.MappingNode && v.Kind != yaml.SequenceNode {
			found = v
		}
		for rest != "" {
			idx, tail, _ := strings.Cut(rest, "]")
			rest = strings.TrimPrefix(tail, "[")
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return found
			}
			n = n.Content[i]
			found = n
		}
	}
	return found
}
