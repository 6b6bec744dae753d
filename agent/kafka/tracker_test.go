package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestPartitionTrackerCommitsOnlyContiguousAcks(t *testing.T) {
	rec := func(off int64) *kgo.Record { return &kgo.Record{Offset: off} }
	type step struct {
		ack  int   // index of the batch acked
		want int64 // offset now committable, -1 for none
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, 9}, {1, 19}, {2, 29}}},
		{"later first waits", []step{{1, -1}, {2, -1}, {0, 29}}},
		{"middle gap", []step{{0, 9}, {2, -1}, {1, 29}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr partitionTracker
			bs := []*pendingBatch{tr.add(rec(9)), tr.add(rec(19)), tr.add(rec(29))}
			for i, s := range tc.steps {
				got := tr.ack(bs[s.ack])
				switch {
				case s.want < 0 && got != nil:
					t.Fatalf("step %d: ack of batch %d made offset %d committable while an earlier batch is in flight", i, s.ack, got.Offset)
				case s.want >= 0 && (got == nil || got.Offset != s.want):
					t.Fatalf("step %d: ack of batch %d: committable %v, want offset %d", i, s.ack, got, s.want)
				}
			}
		})
	}
}

func TestPartitionTrackerRevokedCommitsNothing(t *testing.T) {
	var tr partitionTracker
	a := tr.add(&kgo.Record{Offset: 1})
	b := tr.add(&kgo.Record{Offset: 2})
	if got := tr.ack(a); got == nil || got.Offset != 1 {
		t.Fatalf("first ack: %v", got)
	}
	if n := tr.revoke(); n != 1 {
		t.Fatalf("revoke reported %d batches in flight, want 1", n)
	}
	if got := tr.ack(b); got != nil {
		t.Fatalf("ack after revoke made offset %d committable", got.Offset)
	}
}
