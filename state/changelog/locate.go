package changelog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
)

// AdvertiseSeparator joins a Kafka client ID and the agent's advertised
// HTTP address in the client ID of a consumer-group member
// ("sluice@10.0.0.7:4195"), which the group's description shows every
// member: that is how an agent finds the one serving another partition.
const AdvertiseSeparator = "@"

// Location is where a key's state is served.
type Location struct {
	SourceTopic string
	Partition   int32
	// Local: this agent owns the partition, and its state is current in
	// Namespace.
	Local     bool
	Namespace string
	// Owner is the advertised HTTP address of the agent that owns the
	// partition, when another does; empty when the owner advertises none.
	Owner string
	// OwnerID is the owner's Kafka client ID, for messages.
	OwnerID string
}

// Locate finds the partition holding key's state, as Kafka's default
// partitioner (murmur2 of the key, as the Java client and franz-go's
// default both do) would place a record keyed by it, and the agent that
// owns it. It assumes the source topic's records are keyed by the step's
// key; a topic keyed otherwise spreads a key's events, and its state, over
// partitions.
func (l *Log) Locate(ctx context.Context, key []byte) (Location, error) {
	topic, err := l.sourceTopic()
	if err != nil {
		return Location{}, err
	}
	_, partitions, err := l.TopicFor(ctx, topic)
	if err != nil {
		return Location{}, err
	}
	p := int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, int(partitions)))
	loc := Location{SourceTopic: topic, Partition: p}
	if _, owned, _ := l.cfg.Assignments.Owner(topic, p); owned {
		ns, _, err := l.Ready(ctx, topic, p)
		if err != nil {
			return Location{}, err
		}
		loc.Local, loc.Namespace = true, ns.Name
		return loc, nil
	}
	group, _ := l.cfg.Assignments.Group(topic)
	_, adm, err := l.client(topic)
	if err != nil {
		return Location{}, err
	}
	groups, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return Location{}, fmt.Errorf("describe consumer group %q: %w", group, err)
	}
	g, ok := groups[group]
	if !ok || g.Err != nil {
		return Location{}, fmt.Errorf("describe consumer group %q: %v", group, errOr(g.Err, "not found"))
	}
	for _, m := range g.Members {
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range c.Topics {
			if t.Topic != topic {
				continue
			}
			for _, q := range t.Partitions {
				if q == p {
					loc.OwnerID = m.ClientID
					if i := strings.LastIndex(m.ClientID, AdvertiseSeparator); i >= 0 {
						loc.Owner = m.ClientID[i+len(AdvertiseSeparator):]
					}
					return loc, nil
				}
			}
		}
	}
	return loc, fmt.Errorf("partition %s/%d has no owner in consumer group %q right now (a rebalance is under way?)", topic, p, group)
}

// sourceTopic is the one source topic the step's state has come from.
func (l *Log) sourceTopic() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var topics []string
	for t := range l.sources {
		topics = append(topics, t)
	}
	if len(topics) == 0 {
		// No batch yet (a member just started, or with no partitions):
		// the topics its consumers joined the group for.
		topics = l.cfg.Assignments.Topics()
	}
	sort.Strings(topics)
	switch len(topics) {
	case 1:
		return topics[0], nil
	case 0:
		return "", errors.New("no kafka input of this agent has joined its consumer group yet, so the source topic is not known")
	default:
		return "", fmt.Errorf("the step reads several topics (%s): a key's partition is ambiguous", strings.Join(topics, ", "))
	}
}

// Erase deletes key's state for good: on the agent owning the key's
// partition, as a tombstone in the changelog and a deletion in the local
// copy, committed like a batch, so no restore anywhere brings it back. A
// key whose partition another agent owns is refused with ErrNotOwned.
func (l *Log) Erase(ctx context.Context, key []byte) error {
	loc, err := l.Locate(ctx, key)
	if err != nil {
		return err
	}
	if !loc.Local {
		return fmt.Errorf("partition %s/%d: %w (owned by %s)", loc.SourceTopic, loc.Partition, ErrNotOwned, loc.OwnerID)
	}
	epoch, _, _ := l.cfg.Assignments.Owner(loc.SourceTopic, loc.Partition)
	return l.Commit(ctx, loc.SourceTopic, loc.Partition, epoch, []state.Write{{Key: key, Delete: true}}, nil)
}
