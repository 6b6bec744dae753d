package agent

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/supervisor"
	"github.com/sluice-dev/sluice/agent/wasm"
)

// prefetchPlugins starts loading the builtin module of every `wasm` step
// of the pipelines before they are built: Benthos builds a pipeline's steps
// one after another, and each builtin's load from the compilation cache
// (decoding and validating some MB of Wasm) is a tenth of a second or more
// of a run-once job's start (docs/BENCHMARKS.md, session 10). A config that
// does not parse is left to the pipeline's build to report. The channels
// returned are closed as each load ends.
func (a *Agent) prefetchPlugins(ctx context.Context, pls []supervisor.Pipeline) (loads []<-chan struct{}) {
	for _, p := range pls {
		var root yaml.Node
		if yaml.Unmarshal(p.YAML, &root) != nil {
			continue
		}
		walkComponent(&root, "wasm", func(_, n *yaml.Node) {
			text, err := yaml.Marshal(n)
			if err != nil {
				return
			}
			if conf, err := wasm.ConfigSpec().ParseYAML(string(text), a.env); err == nil {
				if done := a.engine.Prefetch(ctx, conf); done != nil {
					loads = append(loads, done)
				}
			}
		})
	}
	return loads
}
