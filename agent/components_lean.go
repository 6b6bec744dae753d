//go:build sluice_lean

package agent

import (
	"context"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/state"
)

// LeanBuild reports whether the agent was built with -tags sluice_lean,
// without the optional components.
const LeanBuild = true

// leftOut are the components a lean build does not have, by kind.
var leftOut = []struct{ kind, name string }{
	{"processor", "grpc_plugin"},
	{"output", "parquet"},
	{"output", "sqlite"},
}

// notInBuild is what a pipeline naming a left-out component is told.
func notInBuild(name string) string {
	return fmt.Sprintf("%s is not in this build: the agent was built with -tags sluice_lean, which leaves out grpc_plugin, parquet and sqlite; use the full build (go build ./cmd/agent)", name)
}

// registerOptional registers, in place of each left-out component, one
// that accepts any config and fails lint and construction saying so:
// Benthos alone would say "unable to infer component type", which reads
// like a typo in the pipeline rather than a property of the binary.
func registerOptional(env *service.Environment, _ *state.Store) error {
	for _, c := range leftOut {
		msg := notInBuild(c.name)
		spec := service.NewConfigSpec().
			Summary("Not in this build: the agent was built with -tags sluice_lean.").
			Field(service.NewAnyField("").Optional()).
			LintRule(fmt.Sprintf("root = [%q]", msg))
		var err error
		switch c.kind {
		case "processor":
			err = env.RegisterBatchProcessor(c.name, spec, func(*service.ParsedConfig, *service.Resources) (service.BatchProcessor, error) {
				return nil, fmt.Errorf("%s", msg)
			})
		case "output":
			err = env.RegisterBatchOutput(c.name, spec, func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
				return nil, service.BatchPolicy{}, 0, fmt.Errorf("%s", msg)
			})
		}
		if err != nil {
			return fmt.Errorf("register the %s placeholder: %w", c.name, err)
		}
	}
	return nil
}

// lintNativePlugins has nothing to start: grpc_plugin is refused by its
// lint rule.
func (a *Agent) lintNativePlugins(context.Context, string, *yaml.Node) []Problem { return nil }
