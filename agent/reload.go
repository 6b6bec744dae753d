package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/agent/supervisor"
	"github.com/sluice-dev/sluice/agent/wasm"
)

// ReloadReport is what a reload did: per pipeline read from a file, and
// per `wasm` step loading its plugin by path.
type ReloadReport struct {
	Pipelines []supervisor.PipelineReload `json:"pipelines"`
	Plugins   []wasm.ReloadResult         `json:"plugins"`
}

// Refused counts the new versions refused (the old ones keep running).
func (r ReloadReport) Refused() int {
	n := 0
	for _, p := range r.Pipelines {
		if p.Result == supervisor.ReloadRefused {
			n++
		}
	}
	for _, p := range r.Plugins {
		if p.Result == wasm.ReloadRefused {
			n++
		}
	}
	return n
}

// Reload loads every changed pipeline file and plugin file now, as a file
// change would (SIGHUP and POST /admin/reload call it). Pipelines go first:
// a pipeline restarted for its new config loads its plugins afresh, and
// the plugin pass then finds them current.
func (a *Agent) Reload(ctx context.Context) ReloadReport {
	rep := ReloadReport{Pipelines: a.reloads.Reload(ctx), Plugins: a.engine.Reload(ctx)}
	if rep.Pipelines == nil {
		rep.Pipelines = []supervisor.PipelineReload{}
	}
	count := func(result string) int {
		n := 0
		for _, p := range rep.Pipelines {
			if p.Result == result {
				n++
			}
		}
		for _, p := range rep.Plugins {
			if p.Result == result {
				n++
			}
		}
		return n
	}
	a.logger.Info("reload done", "reloaded", count(wasm.ReloadOK), "unchanged", count(wasm.ReloadUnchanged), "refused", rep.Refused())
	return rep
}

// reloadHTTP is Reload for POST /admin/reload.
func (a *Agent) reloadHTTP(ctx context.Context) (any, bool) {
	rep := a.Reload(ctx)
	return rep, rep.Refused() > 0
}

// watch reloads pipeline and plugin files when they change, until the
// returned stop is called. A file that cannot be watched is logged; SIGHUP
// and /admin/reload still reach it.
func (a *Agent) watch(ctx context.Context) (stop func()) {
	stopPlugins, err := a.engine.WatchFiles(ctx, a.logger)
	if err != nil {
		a.logger.Warn("plugin files are not watched; reload with SIGHUP or POST /admin/reload", "error", err)
		stopPlugins = func() {}
	}
	stopPipelines, err := a.reloads.Watch(ctx, a.logger)
	if err != nil {
		a.logger.Warn("pipeline files are not watched; reload with SIGHUP or POST /admin/reload", "error", err)
		stopPipelines = func() {}
	}
	return func() {
		stopPipelines()
		stopPlugins()
	}
}

// checkPipeline loads a reloaded pipeline's plugins as lint does, so a
// config whose plugin does not load, or fails its self-test, is refused
// before the running stream is stopped for it.
func (a *Agent) checkPipeline(ctx context.Context, p supervisor.Pipeline) error {
	probs := a.lintPlugins(ctx, p.Source, p.YAML)
	if len(probs) == 0 {
		return nil
	}
	errs := make([]error, len(probs))
	for i, pr := range probs {
		errs[i] = errors.New(pr.String())
	}
	return fmt.Errorf("plugins: %w", errors.Join(errs...))
}
