package wasm

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
	"github.com/sluice-dev/sluice/state/changelog"
)

const fChangelog = "changelog"

// Metrics of a changelog-backed step, labelled like the step's others.
const (
	MetricChangelogRestoredRecords = "sluice_changelog_restored_records_total"
	MetricChangelogRestoredBytes   = "sluice_changelog_restored_bytes_total"
	MetricChangelogRestoreLatency  = "sluice_changelog_restore_latency"
	MetricChangelogProduced        = "sluice_changelog_records_produced_total"
)

// observeChangelog exports the log's restores and writes as metrics.
func observeChangelog(l *changelog.Log, m *service.Metrics) {
	if m == nil {
		return
	}
	recs, bytes := m.NewCounter(MetricChangelogRestoredRecords), m.NewCounter(MetricChangelogRestoredBytes)
	lat, prod := m.NewTimer(MetricChangelogRestoreLatency), m.NewCounter(MetricChangelogProduced)
	l.Observe(changelog.Observer{
		Restored: func(r, b int64, took time.Duration) {
			recs.Incr(r)
			bytes.Incr(b)
			lat.Timing(took.Nanoseconds())
		},
		Produced: func(n int64) { prod.Incr(n) },
	})
}

// ChangelogDeps are the agent's parts a changelog-backed step uses.
type ChangelogDeps struct {
	// Assignments is the agent's record of the partitions its kafka
	// inputs own.
	Assignments *changelog.Assignments
	// ClientOpts reach the agent's Kafka cluster (its kafka_brokers or
	// the dev broker).
	ClientOpts func() ([]kgo.Opt, error)
	Logger     *slog.Logger
}

func changelogField() *service.ConfigField {
	return service.NewObjectField(fChangelog,
		service.NewStringField("topic").
			Description("The changelog topic. Unset: `<consumer group>-<namespace>-changelog`, with the group the source topic is consumed in.").
			Optional(),
		service.NewBoolField("standby").
			Description("Standby replica: follow the changelog partitions this agent does not own and keep their local copies current, so that when the group gives this agent a failed agent's partition, it restores only the last moments instead of the whole history (Kafka Streams' standby tasks). Costs reading every other agent's changelog writes.").
			Optional().
			Advanced(),
		service.NewIntField("replication_factor").
			Description("Replication factor of the changelog topic when the agent creates it; unset or -1: the cluster's default.").
			Optional().
			Advanced(),
	).
		Description("Scale-out on a Kafka consumer group: keep the state per source partition, backed by a compacted changelog topic with the source topic's partitions (created on first use, or checked), so a partition's state moves with it to whichever agent the group assigns it. Needs `offsets` (the source topic and partition of each message). Each commit is produced to the changelog and acknowledged before it is committed locally; a partition newly assigned here is restored from the local copy plus the changelog's tail before its first batch. docs/SCALEOUT.md explains the guarantees.").
		Optional()
}

// newChangelog builds the changelog of a step's namespace.
func (e *Engine) newChangelog(ns state.Namespace, conf *service.ParsedConfig) (_ *changelog.Log, err error) {
	// Optional fields rather than defaults: an object whose fields all
	// have defaults is present in every parsed config, set or not.
	var topic string
	if conf.Contains("topic") {
		if topic, err = conf.FieldString("topic"); err != nil {
			return nil, err
		}
	}
	rf := -1
	if conf.Contains("replication_factor") {
		if rf, err = conf.FieldInt("replication_factor"); err != nil {
			return nil, err
		}
	}
	if rf == 0 || rf < -1 || rf > 32767 {
		return nil, errors.New("replication_factor: -1 (the cluster's default) or a positive count")
	}
	standby := false
	if conf.Contains("standby") {
		if standby, err = conf.FieldBool("standby"); err != nil {
			return nil, err
		}
	}
	d := e.cfg.Changelog
	if d.Assignments == nil || d.ClientOpts == nil {
		return nil, errors.New("this agent has no Kafka connection for changelogs")
	}
	return changelog.New(changelog.Config{
		Namespace:         ns,
		Topic:             topic,
		ReplicationFactor: int16(rf),
		Store:             e.cfg.State,
		Assignments:       d.Assignments,
		ClientOpts:        d.ClientOpts,
		Logger:            d.Logger,
		Standby:           standby,
	})
}

// dropRevoked reports whether err means the batch's partition left this
// agent, or its Kafka transaction will abort, and logs it. Such a batch is
// dropped, not failed: its offsets will not be committed, the partition's
// owner processes it again, and a dead letter for it would be false.
func dropRevoked(l *slog.Logger, err error) bool {
	switch {
	case errors.Is(err, changelog.ErrNotOwned):
		l.Info("batch dropped: its partition was revoked from this agent; its new owner processes it", "reason", err)
	case errors.Is(err, changelog.ErrTxnFailed):
		l.Info("batch dropped: its Kafka transaction will abort; the records are read again", "reason", err)
	default:
		return false
	}
	return true
}

// closeChangelog unregisters and closes the step's changelog.
func (k *keyedStep) closeChangelog() {
	if k.logs != nil {
		k.logs.remove(k.ns.Name, k.changelog)
	}
	k.changelog.Close()
}

// changelogSteps maps a namespace to the changelogs of the running steps
// that own it, for the HTTP lookup: a key's state may be on another agent.
type changelogSteps struct {
	mu   sync.Mutex
	logs map[string][]*changelog.Log
}

func (c *changelogSteps) add(ns string, l *changelog.Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logs == nil {
		c.logs = map[string][]*changelog.Log{}
	}
	c.logs[ns] = append(c.logs[ns], l)
}

func (c *changelogSteps) remove(ns string, l *changelog.Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.logs[ns]
	for i, q := range ls {
		if q == l {
			c.logs[ns] = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(c.logs[ns]) == 0 {
		delete(c.logs, ns)
	}
}

// Changelog returns the changelog of namespace ns, if a running step keeps
// that namespace's state per Kafka partition.
func (e *Engine) Changelog(ns string) (*changelog.Log, bool) {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	ls := e.logs.logs[ns]
	if len(ls) == 0 {
		return nil, false
	}
	return ls[len(ls)-1], true
}
