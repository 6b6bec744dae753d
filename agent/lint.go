package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

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
	walkWasm(&root, func(n *yaml.Node) {
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
			probs = append(probs, Problem{Source: source, Line: line, Msg: "wasm: " + err.Error()})
			return
		}
		_ = p.Close(ctx)
	})
	return probs
}

// walkWasm calls fn with the value of every `wasm:` key whose value is a
// mapping: a wasm processor wherever it sits (pipeline, input or output
// processors, branches, catch, resources).
func walkWasm(n *yaml.Node, fn func(*yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walkWasm(c, fn)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "wasm" && v.Kind == yaml.MappingNode {
				fn(v)
				continue
			}
			walkWasm(v, fn)
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
