// Package kafka provides Sluice's `kafka` input and output, built on
// franz-go, and an embedded development broker (franz-go's kfake) so the
// real-time pipeline runs with no cluster at all.
//
// Benthos' open core ships no Kafka components. These follow the field
// names Benthos users know from `kafka_franz` (seed_brokers, topics,
// regexp_topics, consumer_group, tls, sasl, ...) and add what Sluice's
// keyed state needs: at-least-once delivery where a batch's offsets are
// committed to the group only after the batch is acknowledged downstream,
// and metadata (kafka_topic, kafka_partition, kafka_offset) a stateful
// `wasm` step records with its state, so a record redelivered after a crash
// or rebalance is not counted twice.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-dev/sluice/state/changelog"
)

// Defaults are the agent-wide settings a pipeline's kafka components fall
// back on: the agent config's kafka_brokers, or the embedded dev broker.
type Defaults struct {
	// Brokers returns the seed brokers for a component that names none. It
	// is a function because the dev broker's address is known only once it
	// listens, after the components are registered.
	Brokers func() []string
	// Assignments, if set, is told which partitions the kafka inputs'
	// consumer groups give this agent, for state that follows them
	// (state/changelog).
	Assignments *changelog.Assignments
	// Advertise, if set, is this agent's HTTP address as other agents
	// reach it. Inputs append it to their client ID (client_id@address),
	// which the consumer group shows every member, so an agent can send a
	// state lookup to the one owning the key's partition.
	Advertise string
}

// Register adds the `kafka` input and output to env.
func Register(env *service.Environment, d Defaults) error {
	if err := env.RegisterBatchInput("kafka", inputSpec(), func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
		in, err := newInput(conf, mgr, d)
		if err != nil {
			return nil, err
		}
		if in.eos {
			// A nack must reach the input and abort the transaction:
			// retried into the same transaction, a batch's Kafka writes
			// would commit twice. The records are read again after the
			// abort.
			return in, nil
		}
		// A nacked batch goes back downstream, and its partition waits.
		return service.AutoRetryNacksBatched(in), nil
	}); err != nil {
		return fmt.Errorf("register kafka input: %w", err)
	}
	if err := env.RegisterBatchOutput("kafka", outputSpec(), func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		return newOutput(conf, mgr, d)
	}); err != nil {
		return fmt.Errorf("register kafka output: %w", err)
	}
	return nil
}

const (
	fSeedBrokers = "seed_brokers"
	fClientID    = "client_id"
	fTLS         = "tls"
	fSASL        = "sasl"
)

// connectionFields are the fields the input and output share.
func connectionFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewStringListField(fSeedBrokers).
			Description("Brokers to bootstrap from; a list, and each entry may hold several comma-separated addresses. Empty: the agent's `kafka_brokers`, or its embedded dev broker (`dev_kafka`).").
			Example([]string{"localhost:9092"}).
			Example([]string{"broker-1:9092,broker-2:9092"}).
			Default([]string{}),
		service.NewStringField(fClientID).Description("Client ID the brokers see in their logs and quotas.").Default("sluice"),
		service.NewTLSToggledField(fTLS),
		service.NewObjectListField(fSASL,
			service.NewStringEnumField("mechanism", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512").Description("SASL mechanism."),
			service.NewStringField("username").Description("User name.").Default(""),
			service.NewStringField("password").Description("Password.").Secret().Default(""),
		).Description("SASL authentication; the first mechanism the broker accepts is used.").Optional().Advanced(),
	}
}

// clientOpts turns the shared fields into franz-go options, and returns
// the brokers for error messages.
func clientOpts(conf *service.ParsedConfig, d Defaults) ([]kgo.Opt, []string, error) {
	listed, err := conf.FieldStringList(fSeedBrokers)
	if err != nil {
		return nil, nil, err
	}
	var brokers []string
	for _, l := range listed {
		for _, b := range strings.Split(l, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
	}
	if len(brokers) == 0 && d.Brokers != nil {
		brokers = d.Brokers()
	}
	if len(brokers) == 0 {
		return nil, nil, errors.New("seed_brokers: none given, and the agent has no kafka_brokers and no dev broker running (set kafka_brokers in the agent config, or run with --dev-kafka)")
	}
	clientID, err := conf.FieldString(fClientID)
	if err != nil {
		return nil, nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID)}
	tlsConf, tlsOn, err := conf.FieldTLSToggled(fTLS)
	if err != nil {
		return nil, nil, err
	}
	if tlsOn {
		opts = append(opts, kgo.DialTLSConfig(tlsConf.Clone()))
	}
	if conf.Contains(fSASL) {
		mechs, err := saslMechanisms(conf)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, kgo.SASL(mechs...))
	}
	return opts, brokers, nil
}

func saslMechanisms(conf *service.ParsedConfig) ([]sasl.Mechanism, error) {
	list, err := conf.FieldObjectList(fSASL)
	if err != nil {
		return nil, err
	}
	var mechs []sasl.Mechanism
	for i, c := range list {
		mech, err := c.FieldString("mechanism")
		if err != nil {
			return nil, fmt.Errorf("sasl[%d]: %w", i, err)
		}
		user, err := c.FieldString("username")
		if err != nil {
			return nil, fmt.Errorf("sasl[%d]: %w", i, err)
		}
		pass, err := c.FieldString("password")
		if err != nil {
			return nil, fmt.Errorf("sasl[%d]: %w", i, err)
		}
		if user == "" {
			return nil, fmt.Errorf("sasl[%d]: %s needs a username", i, mech)
		}
		switch mech {
		case "PLAIN":
			mechs = append(mechs, plain.Auth{User: user, Pass: pass}.AsMechanism())
		case "SCRAM-SHA-256":
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
		case "SCRAM-SHA-512":
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
		default:
			return nil, fmt.Errorf("sasl[%d]: unknown mechanism %q", i, mech)
		}
	}
	return mechs, nil
}

// ping fails fast, with the brokers named, when none can be reached, rather
// than leaving Benthos to retry a client that never connects.
func ping(ctx context.Context, cl *kgo.Client, brokers []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("reach kafka brokers %s: %w (check seed_brokers, and tls and sasl if the cluster needs them)", strings.Join(brokers, ","), err)
	}
	return nil
}
