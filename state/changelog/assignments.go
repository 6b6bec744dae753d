package changelog

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Assignments is an agent's record of the source partitions its Kafka
// consumers own right now. The kafka input writes it from the consumer
// group's rebalance callbacks; changelog-backed steps read it to know when
// a partition is new to them (restore its state first) and to fence their
// commits: a commit holds a lease on its partition, and a revocation waits
// for the leases to end, so a partition's old owner has finished writing
// its changelog before the group hands the partition to the next.
//
// One agent consumes a topic in one consumer group: a changelog step
// could not tell two groups' partitions apart.
type Assignments struct {
	mu     sync.Mutex
	cond   *sync.Cond
	topics map[string]*topicAssignment
}

type topicAssignment struct {
	group string
	// conn reaches the topic's cluster as its consumer does.
	conn  []kgo.Opt
	parts map[int32]*partAssignment
}

type partAssignment struct {
	// epoch counts the assignments of the partition to this agent; a step
	// restores when the epoch it restored at is not the current one.
	epoch  uint64
	owned  bool
	leases int
}

// NewAssignments returns an empty record.
func NewAssignments() *Assignments {
	a := &Assignments{topics: map[string]*topicAssignment{}}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *Assignments) topic(group, topic string) (*topicAssignment, error) {
	t, ok := a.topics[topic]
	if !ok {
		t = &topicAssignment{group: group, parts: map[int32]*partAssignment{}}
		a.topics[topic] = t
	}
	if t.group != group {
		return nil, fmt.Errorf("topic %q is consumed by groups %q and %q in one agent: keyed state following its partitions needs one", topic, t.group, group)
	}
	return t, nil
}

// Assigned records that group gave this agent partitions of topic.
func (a *Assignments) Assigned(group, topic string, parts []int32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.topic(group, topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		pa, ok := t.parts[p]
		if !ok {
			pa = &partAssignment{}
			t.parts[p] = pa
		}
		pa.owned = true
		pa.epoch++
	}
	return nil
}

// Revoked records that partitions of topic left this agent. It returns
// once no commit holds a lease on them: whatever their changelog records
// are, they are written.
func (a *Assignments) Revoked(topic string, parts []int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.topics[topic]
	if !ok {
		return
	}
	for _, p := range parts {
		pa, ok := t.parts[p]
		if !ok {
			continue
		}
		pa.owned = false
		for pa.leases > 0 {
			a.cond.Wait()
		}
	}
}

// Owner reports whether this agent owns the partition, its assignment
// epoch, and the group it is consumed in.
func (a *Assignments) Owner(topic string, p int32) (epoch uint64, owned bool, group string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.topics[topic]
	if !ok {
		return 0, false, ""
	}
	pa, ok := t.parts[p]
	if !ok {
		return 0, false, t.group
	}
	return pa.epoch, pa.owned, t.group
}

// Group returns the consumer group topic is consumed in, if this agent
// has been assigned any of its partitions.
func (a *Assignments) Group(topic string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.topics[topic]
	if !ok {
		return "", false
	}
	return t.group, true
}

// SetConnection records how the consumer of topic reaches its cluster
// (seed brokers, TLS, SASL, client ID), for changelogs of state read from
// it.
func (a *Assignments) SetConnection(group, topic string, opts []kgo.Opt) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.topic(group, topic)
	if err != nil {
		return err
	}
	t.conn = slices.Clone(opts)
	return nil
}

// Connection returns what SetConnection recorded for topic.
func (a *Assignments) Connection(topic string) ([]kgo.Opt, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.topics[topic]
	if !ok || t.conn == nil {
		return nil, false
	}
	return slices.Clone(t.conn), true
}

// Topics returns the topics this agent's consumers have joined a group
// for, sorted.
func (a *Assignments) Topics() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.topics))
	for t := range a.topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Lease holds off the partition's revocation until release is called. It
// fails if the partition is not owned, or was revoked and assigned again
// since epoch: the caller's work was computed from state it may no longer
// have.
func (a *Assignments) Lease(topic string, p int32, epoch uint64) (release func(), ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.topics[topic]
	if !ok {
		return nil, false
	}
	pa, ok := t.parts[p]
	if !ok || !pa.owned || pa.epoch != epoch {
		return nil, false
	}
	pa.leases++
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			pa.leases--
			a.cond.Broadcast()
			a.mu.Unlock()
		})
	}, true
}
