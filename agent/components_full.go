//go:build !sluice_lean

package agent

import (
	"context"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/grpcplugin"
	"github.com/sluice-dev/sluice/agent/parquetout"
	"github.com/sluice-dev/sluice/agent/sqliteout"
	"github.com/sluice-dev/sluice/state"
)

// LeanBuild reports whether the agent was built with -tags sluice_lean,
// without the optional components (see components_lean.go).
const LeanBuild = false

// registerOptional adds the components the lean build leaves out: they
// weigh a quarter of the binary (SQLite compiled to Wasm, parquet-go, and
// gRPC with go-plugin) and the main job uses none of them.
func registerOptional(env *service.Environment, st *state.Store) error {
	if err := grpcplugin.Register(env, st); err != nil {
		return fmt.Errorf("register grpc_plugin processor: %w", err)
	}
	if err := parquetout.Register(env); err != nil {
		return fmt.Errorf("register parquet output: %w", err)
	}
	if err := sqliteout.Register(env); err != nil {
		return fmt.Errorf("register sqlite output: %w", err)
	}
	return nil
}

// lintNativePlugins starts every native plugin as the pipeline would: the
// binary exists and is executable, answers the handshake, and its Init
// accepts the step's config.
func (a *Agent) lintNativePlugins(ctx context.Context, source string, root *yaml.Node) []Problem {
	var probs []Problem
	walkComponent(root, "grpc_plugin", func(_, n *yaml.Node) {
		text, err := yaml.Marshal(n)
		if err != nil {
			probs = append(probs, Problem{Source: source, Line: n.Line, Msg: err.Error()})
			return
		}
		conf, err := grpcplugin.ConfigSpec().ParseYAML(string(text), a.env)
		if err != nil {
			probs = append(probs, Problem{Source: source, Line: n.Line, Msg: "grpc_plugin: " + err.Error()})
			return
		}
		p, err := grpcplugin.NewProcessor(conf, service.MockResources(), a.store)
		if err != nil {
			probs = append(probs, Problem{Source: source, Line: n.Line, Msg: "grpc_plugin: " + err.Error()})
			return
		}
		_ = p.Close(ctx)
	})
	return probs
}
