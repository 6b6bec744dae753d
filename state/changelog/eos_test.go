package changelog

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
)

// txnClient is a transactional producer like the kafka input's in
// exactly-once mode.
func txnClient(t *testing.T, brokers []string, id string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(id), kgo.RecordPartitioner(TxnPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func begin(t *testing.T, cl *kgo.Client) *Txn {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	return NewTxn(cl)
}

func end(t *testing.T, txn *Txn, commit bool) {
	t.Helper()
	if err := txn.Client().EndTransaction(context.Background(), kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
	txn.Ended(commit)
}

func (a *agent) marker(t *testing.T, p int32) int64 {
	t.Helper()
	topic, _, err := a.log.TopicFor(context.Background(), srcTopic)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := a.store.Applied(txnMarker(topic), "0")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// In exactly-once mode the changelog is written in the input's
// transactions: a restore sees committed ones only, and an owner whose
// transaction aborted, or who died inside one, rebuilds its local copy,
// which held the uncommitted writes, from the changelog.
func TestExactlyOnceChangelog(t *testing.T) {
	brokers := cluster(t)
	dirA := t.TempDir()
	a := newAgent(t, brokers, dirA)
	if err := a.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	cl := txnClient(t, brokers, "agent-a")

	txn := begin(t, cl)
	a.applyIn(t, txn, 0, 10, "u1", "u2")
	a.applyIn(t, txn, 0, 11, "u1")
	if m := a.marker(t, 0); m != 1 {
		t.Fatalf("marker inside a transaction = %d, want 1", m)
	}
	end(t, txn, true)
	if m := a.marker(t, 0); m != 0 {
		t.Fatalf("marker after the commit = %d, want 0", m)
	}

	// An aborted transaction: the owner's local copy had its writes (a
	// later batch of the same transaction reads them), the changelog
	// hides them, and the owner's next batch sees the committed state.
	txn = begin(t, cl)
	a.applyIn(t, txn, 0, 12, "u1", "u3")
	if got := a.get(t, 0, "u1"); got != "3@12" {
		t.Fatalf("u1 inside the transaction = %s, want 3@12", got)
	}
	end(t, txn, false)
	if _, _, err := a.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"u1": "2@11", "u2": "1@10", "u3": "<absent>"} {
		if got := a.get(t, 0, key); got != want {
			t.Errorf("A after the abort: %s = %s, want %s", key, got, want)
		}
	}
	if off, _, _ := a.store.Applied(srcTopic, "0"); off != 11 {
		t.Errorf("A applied offset after the abort = %d, want 11: offset 12 must be processed again", off)
	}

	// A committed transaction after the abort, then one left open when A
	// dies (its store closed in the middle).
	txn = begin(t, cl)
	a.applyIn(t, txn, 0, 12, "u1", "u3")
	end(t, txn, true)
	txn = begin(t, cl)
	a.applyIn(t, txn, 0, 13, "u3", "u4")
	a.close()

	// B, a fresh agent, restores while A's transaction is still open: it
	// reads up to the last stable offset, and only committed records.
	b := newAgent(t, brokers, t.TempDir())
	if err := b.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"u1": "3@12", "u2": "1@10", "u3": "1@12", "u4": "<absent>"}
	for key, w := range want {
		if got := b.get(t, 0, key); got != w {
			t.Errorf("B restored %s = %s, want %s", key, got, w)
		}
	}

	// The broker aborts the dead agent's transaction (here: its
	// producer does); A restarts on its own directory, whose copy holds
	// the aborted writes and the mark, and restores whole.
	end(t, txn, false)
	a2 := newAgent(t, brokers, dirA)
	if err := a2.assign.Assigned(group, srcTopic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if m := a2.marker(t, 0); m != 1 {
		t.Fatalf("marker after the crash = %d, want 1", m)
	}
	if _, _, err := a2.log.Ready(context.Background(), srcTopic, 0); err != nil {
		t.Fatal(err)
	}
	for key, w := range want {
		if got := a2.get(t, 0, key); got != w {
			t.Errorf("A after restart: %s = %s, want %s", key, got, w)
		}
	}
	if m := a2.marker(t, 0); m != 0 {
		t.Errorf("marker after the restore = %d, want 0", m)
	}
	if s := a2.log.Stats(); s.LastRestoreRecords != 5 {
		t.Errorf("A's restore read %d records, want the 5 committed ones (whole, not the tail)", s.LastRestoreRecords)
	}

	// A failed transaction refuses further commits with ErrTxnFailed.
	txn = begin(t, cl)
	txn.Fail(context.Canceled)
	ns, epoch, err := a2.log.Ready(context.Background(), srcTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = a2.log.CommitIn(context.Background(), txn, srcTopic, 0, epoch, []state.Write{{Key: []byte("u9"), Value: []byte("1")}}, nil)
	if !errors.Is(err, ErrTxnFailed) {
		t.Errorf("commit in a failed transaction: %v, want ErrTxnFailed", err)
	}
	if got := a2.get(t, 0, "u9"); got != "<absent>" || ns.Name == "" {
		t.Errorf("a refused commit wrote u9 = %s", got)
	}
	end(t, txn, false)
}
