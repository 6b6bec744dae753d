package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/httpapi"
	"github.com/sluice-dev/sluice/agent/supervisor"
)

// partitionedNamespaces lists the namespaces whose state the pipelines
// keep per Kafka partition (a wasm step with state.changelog).
func partitionedNamespaces(pls []supervisor.Pipeline) map[string]bool {
	out := map[string]bool{}
	for _, p := range pls {
		var root yaml.Node
		if yaml.Unmarshal(p.YAML, &root) != nil {
			continue // the supervisor reports it
		}
		walkComponent(&root, "wasm", func(_, v *yaml.Node) {
			_, st := mapEntry(v, "state")
			if st == nil {
				return
			}
			_, ns := mapEntry(st, "namespace")
			if _, cl := mapEntry(st, "changelog"); cl != nil && ns != nil {
				out[ns.Value] = true
			}
		})
	}
	return out
}

// changelogClientOpts reach the cluster the changelog topics live on: the
// agent's kafka_brokers, or its dev broker.
func (a *Agent) changelogClientOpts() ([]kgo.Opt, error) {
	brokers := a.kafkaBrokers()
	if len(brokers) == 0 {
		return nil, errors.New("no Kafka cluster for the changelog topic: set kafka_brokers in the agent config (or run the dev broker)")
	}
	return []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("sluice-changelog")}, nil
}

// locate tells the HTTP API where a key of a namespace whose state follows
// Kafka partitions is served: here, or by the agent owning its partition.
func (a *Agent) locate(ctx context.Context, ns, key string) (httpapi.Location, bool, error) {
	l, ok := a.engine.Changelog(ns)
	if !ok {
		if a.partitioned[ns] {
			// Benthos builds a stream's processors after its input has
			// started: the step exists in the config, not yet in the agent.
			return httpapi.Location{}, true, fmt.Errorf("the step keeping namespace %s is starting", ns)
		}
		return httpapi.Location{}, false, nil
	}
	loc, err := l.Locate(ctx, []byte(key))
	return httpapi.Location{
		Partition: loc.Partition,
		Local:     loc.Local,
		Namespace: loc.Namespace,
		Owner:     loc.Owner,
		OwnerID:   loc.OwnerID,
	}, true, err
}

// isPartitioned reports whether namespace ns is kept per Kafka partition.
func (a *Agent) isPartitioned(ns string) bool {
	_, ok := a.engine.Changelog(ns)
	return ok || a.partitioned[ns]
}

// erase deletes a key of a partitioned namespace through its changelog.
func (a *Agent) erase(ctx context.Context, ns, key string) error {
	l, ok := a.engine.Changelog(ns)
	if !ok {
		return fmt.Errorf("the step keeping namespace %s is not running", ns)
	}
	return l.Erase(ctx, []byte(key))
}
