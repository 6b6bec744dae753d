package changelog

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
)

const (
	srcTopic = "user_events"
	group    = "g"
)

// cluster is a real Kafka-protocol broker in the test process with a
// source topic of three partitions.
func cluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, srcTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

type agent struct {
	store  *state.Store
	assign *Assignments
	log    *Log
}

// newAgent is one agent's side: its own store on a temp dir, its own
// assignments, and the step's changelog.
func newAgent(t testing.TB, brokers []string, dir string, opts ...func(*Config)) *agent {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{store: st, assign: NewAssignments()}
	cfg := Config{
		Namespace:         state.Namespace{Name: "feat"},
		ReplicationFactor: -1,
		Store:             st,
		Assignments:       a.assign,
		ClientOpts:        func() ([]kgo.Opt, error) { return []kgo.Opt{kgo.SeedBrokers(brokers...)}, nil },
		Logger:            slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&cfg)
	}
	a.log, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.close() })
	return a
}

func (a *agent) close() {
	if a.log != nil {
		a.log.Close()
		_ = a.store.Close()
		a.log = nil
	}
}

// apply adds n to each key's counter in partition p, as one batch whose
// last source offset is off, through Ready and Commit like the wasm step.
func (a *agent) apply(t *testing.T, p int32, off int64, keys ...string) {
	t.Helper()
	a.applyIn(t, nil, p, off, keys...)
}

// applyIn is apply inside txn (exactly-once mode); nil is apply.
func (a *agent) applyIn(t *testing.T, txn *Txn, p int32, off int64, keys ...string) {
	t.Helper()
	ctx := context.Background()
	ns, epoch, err := a.log.Ready(ctx, srcTopic, p)
	if err != nil {
		t.Fatal(err)
	}
	bkeys := make([][]byte, len(keys))
	for i, k := range keys {
		bkeys[i] = []byte(k)
	}
	entries, err := a.store.Load(ns, bkeys, 0)
	if err != nil {
		t.Fatal(err)
	}
	var writes []state.Write
	for i, k := range keys {
		n := 0
		if entries[i].Value != nil {
			n, _ = strconv.Atoi(string(entries[i].Value))
		}
		writes = append(writes, state.Write{Key: []byte(k), Value: []byte(strconv.Itoa(n + 1)), LastEvent: off})
	}
	offs := []state.Offset{{Source: srcTopic, Partition: strconv.Itoa(int(p)), Offset: off}}
	if err := a.log.CommitIn(ctx, txn, srcTopic, p, epoch, writes, offs); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) get(t *testing.T, p int32, key string) string {
	t.Helper()
	e, ok, err := a.store.Get(state.PartitionNamespace("feat", p), key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "<absent>"
	}
	return fmt.Sprintf("%s@%d", e.Value, e.LastEvent)
}

func TestRestoreMovesStateWithPartition(t *testing.T) {
	brokers := cluster(t)
	a := newAgent(t, brokers, t.TempDir())
	if err := a.assign.Assigned(group, srcTopic, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	a.apply(t, 0, 10, "u1", "u2")
	a.apply(t, 0, 20, "u1")
	a.apply(t, 1, 5, "u3")

	// Partition 0 moves to agent B, whose store is empty.
	a.assign.Revoked(srcTopic, []int32{0})
	b := newAgent(t, brokers, t.TempDir())
	if err := b.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"u1": "2@20", "u2": "1@10"} {
		if got := b.get(t, 0, key); got != want {
			t.Errorf("B partition 0 %s = %s, want %s", key, got, want)
		}
	}
	if got := b.get(t, 0, "u3"); got != "<absent>" {
		t.Errorf("B partition 0 has u3 = %s: partition 1's state leaked into it", got)
	}
	off, ok, err := b.store.Applied(srcTopic, "0")
	if err != nil || !ok || off != 20 {
		t.Errorf("B applied offset of partition 0 = %d %v %v, want 20 (from the changelog's headers)", off, ok, err)
	}
	if s := b.log.Stats(); s.RestoredRecords != 3 {
		t.Errorf("B restored %d records, want 3", s.RestoredRecords)
	}

	// B goes on; then the partition comes back to A, whose copy is stale:
	// A reads only B's record.
	b.apply(t, 0, 30, "u2")
	b.assign.Revoked(srcTopic, []int32{0})
	if err := a.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	before := a.log.Stats().RestoredRecords
	if _, _, err := a.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	if got := a.log.Stats().RestoredRecords - before; got != 1 {
		t.Errorf("A restored %d records on getting partition 0 back, want 1 (the tail B wrote)", got)
	}
	if got := a.get(t, 0, "u2"); got != "2@30" {
		t.Errorf("A partition 0 u2 = %s, want 2@30", got)
	}
}

func TestCommitFencedAfterRevoke(t *testing.T) {
	brokers := cluster(t)
	a := newAgent(t, brokers, t.TempDir())
	if err := a.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, epoch, err := a.log.Ready(ctx, srcTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	a.assign.Revoked(srcTopic, []int32{0})
	w := []state.Write{{Key: []byte("u1"), Value: []byte("1")}}
	err = a.log.Commit(ctx, srcTopic, 0, epoch, w, nil)
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("commit after revoke: %v, want a revoked error", err)
	}
	// Assigned again: the old epoch's batch is still refused.
	if err := a.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if err := a.log.Commit(ctx, srcTopic, 0, epoch, w, nil); err == nil {
		t.Fatal("a batch made ready before a revoke-and-assign committed")
	}
	if got := a.get(t, 0, "u1"); got != "<absent>" {
		t.Errorf("u1 = %s after refused commits", got)
	}
	if s := a.log.Stats(); s.Produced != 0 {
		t.Errorf("%d changelog records produced by refused commits", s.Produced)
	}
}

// TestRevokeWaitsForCommit: a revocation returns only after a commit
// holding the partition's lease has written its changelog.
func TestRevokeWaitsForCommit(t *testing.T) {
	as := NewAssignments()
	if err := as.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	epoch, _, _ := as.Owner(srcTopic, 0)
	release, ok := as.Lease(srcTopic, 0, epoch)
	if !ok {
		t.Fatal("no lease on an owned partition")
	}
	revoked := make(chan struct{})
	go func() { as.Revoked(srcTopic, []int32{0}); close(revoked) }()
	select {
	case <-revoked:
		t.Fatal("revoke returned while a commit held the partition")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	<-revoked
	if _, ok := as.Lease(srcTopic, 0, epoch); ok {
		t.Fatal("lease granted on a revoked partition")
	}
}

func TestChangelogTopicChecked(t *testing.T) {
	brokers := cluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "wrong-partitions"); err != nil {
		t.Fatal(err)
	}
	del := "delete"
	if _, err := adm.CreateTopic(ctx, 3, -1, map[string]*string{"cleanup.policy": &del}, "wrong-policy"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ topic, want string }{
		{"wrong-partitions", "has 2 partitions, its source topic 3"},
		{"wrong-policy", `cleanup.policy "delete"`},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			a := newAgent(t, brokers, t.TempDir())
			a.log.cfg.Topic = tc.topic
			_ = a.assign.Assigned(group, srcTopic, []int32{0})
			_, _, err := a.log.TopicFor(ctx, srcTopic)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("TopicFor: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// The default topic is created compacted, with the source's partitions.
	a := newAgent(t, brokers, t.TempDir())
	_ = a.assign.Assigned(group, srcTopic, []int32{0})
	topic, n, err := a.log.TopicFor(ctx, srcTopic)
	if err != nil || topic != "g-feat-changelog" || n != 3 {
		t.Fatalf("TopicFor = %q %d %v, want g-feat-changelog 3", topic, n, err)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := cfgs.On(topic, nil)
	found := false
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			found = c.MaybeValue() == "compact"
		}
	}
	if !found {
		t.Errorf("created changelog topic is not compacted: %+v", rc.Configs)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestStandby: B follows the partitions it does not own, so when it takes
// one over its restore reads nothing; a partition B owned and gave up is
// followed again from where B's own commits left it, with no hole.
func TestStandby(t *testing.T) {
	brokers := cluster(t)
	a := newAgent(t, brokers, t.TempDir())
	if err := a.assign.Assigned(group, srcTopic, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	a.apply(t, 0, 10, "u1", "u2")
	a.apply(t, 0, 20, "u1")

	b := newAgent(t, brokers, t.TempDir(), func(c *Config) { c.Standby = true })
	if err := b.assign.Assigned(group, srcTopic, nil); err != nil { // in the group, no partitions
		t.Fatal(err)
	}
	waitFor(t, "B to follow partition 0", func() bool { return b.get(t, 0, "u1") == "2@20" && b.get(t, 0, "u2") == "1@10" })

	// Partition 1 moves to B, which writes to it, then back to A.
	a.assign.Revoked(srcTopic, []int32{1})
	if err := b.assign.Assigned(group, srcTopic, []int32{1}); err != nil {
		t.Fatal(err)
	}
	b.apply(t, 1, 5, "u3")
	b.assign.Revoked(srcTopic, []int32{1})
	if err := a.assign.Assigned(group, srcTopic, []int32{1}); err != nil {
		t.Fatal(err)
	}
	a.apply(t, 1, 6, "u3")
	a.apply(t, 1, 7, "u4")
	waitFor(t, "B to follow partition 1 after giving it up", func() bool { return b.get(t, 1, "u3") == "2@6" && b.get(t, 1, "u4") == "1@7" })

	// A fails; B takes partition 0 and has nothing left to restore.
	a.assign.Revoked(srcTopic, []int32{0})
	if err := b.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	before := b.log.Stats().RestoredRecords
	if _, _, err := b.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	if got := b.log.Stats().RestoredRecords - before; got != 0 {
		t.Errorf("B restored %d records taking over a partition it followed, want 0", got)
	}
	b.apply(t, 0, 30, "u1")
	if got := b.get(t, 0, "u1"); got != "3@30" {
		t.Errorf("B partition 0 u1 = %s, want 3@30", got)
	}
	off, _, _ := b.store.Applied(srcTopic, "0")
	if off != 30 {
		t.Errorf("B applied offset of partition 0 = %d, want 30", off)
	}
}

// TestEraseSurvivesRestore: a key erased on its partition's owner stays
// erased on the agent that restores the partition next.
func TestEraseSurvivesRestore(t *testing.T) {
	brokers := cluster(t)
	a := newAgent(t, brokers, t.TempDir())
	if err := a.assign.Assigned(group, srcTopic, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	p := int32(kgo.StickyKeyPartitioner(nil).ForTopic(srcTopic).Partition(&kgo.Record{Key: []byte("u1")}, 3))
	a.apply(t, p, 10, "u1", "u2")
	if err := a.log.Erase(context.Background(), []byte("u1")); err != nil {
		t.Fatal(err)
	}
	if got := a.get(t, p, "u1"); got != "<absent>" {
		t.Errorf("after erase, A has u1 = %s", got)
	}
	a.assign.Revoked(srcTopic, []int32{p})
	b := newAgent(t, brokers, t.TempDir())
	if err := b.assign.Assigned(group, srcTopic, []int32{p}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.log.Ready(context.Background(), srcTopic, p); err != nil {
		t.Fatal(err)
	}
	if got := b.get(t, p, "u1"); got != "<absent>" {
		t.Errorf("B restored the erased u1 = %s", got)
	}
	if got := b.get(t, p, "u2"); got != "1@10" {
		t.Errorf("B u2 = %s, want 1@10", got)
	}
	// A no longer owns the partition: its erase is refused.
	if err := a.log.Erase(context.Background(), []byte("u1")); err == nil {
		t.Error("an erase on an agent that does not own the key's partition was accepted")
	}
}
