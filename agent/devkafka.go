package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent/kafka"
	"github.com/sluice-dev/sluice/agent/supervisor"
)

// kafkaUse is what the pipelines ask of Kafka: the kafka components that
// name no seed_brokers (they rely on the agent's brokers), by the line of
// their `kafka:` key, and the fixed topic names they read and write, for
// the dev broker to create.
type kafkaUse struct {
	needBrokers []int
	topics      []string
}

// kafkaUses walks a pipeline's YAML for kafka inputs and outputs wherever
// they sit (broker, switch, fallback, resources), as lint walks for wasm.
func kafkaUses(root *yaml.Node) kafkaUse {
	var u kafkaUse
	walkComponent(root, "kafka", func(k, v *yaml.Node) {
		if _, b := mapEntry(v, "seed_brokers"); b == nil || len(b.Content) == 0 {
			u.needBrokers = append(u.needBrokers, k.Line)
		}
		if _, r := mapEntry(v, "regexp_topics"); r == nil || r.Value != "true" {
			if _, ts := mapEntry(v, "topics"); ts != nil {
				for _, t := range ts.Content {
					u.addTopic(t)
				}
			}
		}
		if _, t := mapEntry(v, "topic"); t != nil {
			u.addTopic(t)
		}
	})
	return u
}

// addTopic keeps fixed names; a name computed per message (an
// interpolation) is created by the broker when first written.
func (u *kafkaUse) addTopic(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Value != "" && !strings.Contains(n.Value, "${") {
		u.topics = append(u.topics, n.Value)
	}
}

// kafkaTopics is what all the pipelines ask of Kafka.
func kafkaTopics(pls []supervisor.Pipeline) (kafkaUse, error) {
	var all kafkaUse
	for _, p := range pls {
		var root yaml.Node
		if err := yaml.Unmarshal(p.YAML, &root); err != nil {
			return all, fmt.Errorf("pipeline %s: %w", p.Source, err)
		}
		u := kafkaUses(&root)
		all.needBrokers = append(all.needBrokers, u.needBrokers...)
		all.topics = append(all.topics, u.topics...)
	}
	slices.Sort(all.topics)
	all.topics = slices.Compact(all.topics)
	return all, nil
}

// devKafka holds the dev broker once started, so components built after
// it can find its address.
type devKafka struct {
	mu     sync.Mutex
	broker *kafka.DevBroker
}

func (d *devKafka) addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broker == nil {
		return ""
	}
	return d.broker.Addr()
}

// kafkaBrokers is where kafka components with no seed_brokers connect: the
// configured cluster, else the running dev broker, else (for lint, which
// starts nothing) where the dev broker would listen.
func (a *Agent) kafkaBrokers() []string {
	if len(a.cfg.KafkaBrokers) > 0 {
		return a.cfg.KafkaBrokers
	}
	if addr := a.dev.addr(); addr != "" {
		return []string{addr}
	}
	if a.cfg.DevKafka {
		return []string{a.cfg.DevKafkaAddress}
	}
	return nil
}

// startDevKafka starts the dev broker if the config asks for it and a
// pipeline needs it; stop is never nil.
func (a *Agent) startDevKafka(pls []supervisor.Pipeline) (stop func(), err error) {
	stop = func() {}
	if !a.cfg.DevKafka || len(a.cfg.KafkaBrokers) > 0 {
		return stop, nil
	}
	use, err := kafkaTopics(pls)
	if err != nil || len(use.needBrokers) == 0 {
		return stop, err
	}
	b, err := kafka.StartDevBroker(kafka.DevConfig{
		Address:    a.cfg.DevKafkaAddress,
		DataDir:    filepath.Join(a.cfg.DataDir, "kafka"),
		Partitions: a.cfg.DevKafkaPartitions,
		Topics:     use.topics,
		Logger:     a.logger,
	})
	if err != nil {
		return stop, fmt.Errorf("%w (set dev_kafka_address to another port, or kafka_brokers to use a running cluster)", err)
	}
	a.dev.mu.Lock()
	a.dev.broker = b
	a.dev.mu.Unlock()
	return func() {
		a.dev.mu.Lock()
		a.dev.broker = nil
		a.dev.mu.Unlock()
		b.Close()
	}, nil
}
