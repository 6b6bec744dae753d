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

// kafkaUse is what the pipelines ask of Kafka: whether any uses a kafka
// component that relies on the agent's brokers, and the fixed topic names
// they read and write, for the dev broker to create.
type kafkaUse struct {
	used   bool
	topics []string
}

// kafkaTopics walks each pipeline's YAML for kafka inputs and outputs
// wherever they sit (broker, switch, fallback, resources).
func kafkaTopics(pls []supervisor.Pipeline) (kafkaUse, error) {
	var u kafkaUse
	for _, p := range pls {
		var doc any
		if err := yaml.Unmarshal(p.YAML, &doc); err != nil {
			return u, fmt.Errorf("pipeline %s: %w", p.Source, err)
		}
		walkKafka(doc, &u)
	}
	slices.Sort(u.topics)
	u.topics = slices.Compact(u.topics)
	return u, nil
}

func walkKafka(n any, u *kafkaUse) {
	switch v := n.(type) {
	case map[string]any:
		for k, c := range v {
			if m, ok := c.(map[string]any); ok && k == "kafka" {
				if b, _ := m["seed_brokers"].([]any); len(b) == 0 {
					u.used = true
				}
				if r, _ := m["regexp_topics"].(bool); !r {
					if ts, ok := m["topics"].([]any); ok {
						for _, t := range ts {
							addTopic(u, t)
						}
					}
				}
				addTopic(u, m["topic"])
			}
			walkKafka(c, u)
		}
	case []any:
		for _, c := range v {
			walkKafka(c, u)
		}
	}
}

// addTopic keeps fixed names; a name computed per message (an
// interpolation) is created by the broker when first written.
func addTopic(u *kafkaUse, t any) {
	if s, ok := t.(string); ok && s != "" && !strings.Contains(s, "${") {
		u.topics = append(u.topics, s)
	}
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
	if err != nil || !use.used {
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
