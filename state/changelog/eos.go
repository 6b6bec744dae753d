package changelog

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sluice-dev/sluice/state"
)

// txnMarker is the local offset record saying that a partition's local
// copy holds writes of a transaction not known to have committed (1), or
// not (0 or absent).
func txnMarker(topic string) string { return "txn:" + topic }

// inTxn notes that txn writes partition p, and on the transaction's first
// write to the log arranges for its end: a commit clears the partitions'
// markers, an abort has them restored before their next batch.
func (l *Log) inTxn(txn *Txn, source string, p int32, topic string) {
	sp := sourcePartition{source, p}
	l.mu.Lock()
	parts, ok := l.txns[txn]
	if !ok {
		parts = map[sourcePartition]string{}
		l.txns[txn] = parts
	}
	parts[sp] = topic
	l.mu.Unlock()
	if !ok {
		txn.OnEnd(func(committed bool) { l.txnEnded(txn, committed) })
	}
}

func (l *Log) txnEnded(txn *Txn, committed bool) {
	l.mu.Lock()
	parts := l.txns[txn]
	delete(l.txns, txn)
	if !committed {
		for sp := range parts {
			delete(l.restored, sp)
		}
	}
	l.mu.Unlock()
	if !committed {
		return
	}
	for sp, topic := range parts {
		// Should this fail, the mark stays and the next Ready restores
		// the partition whole: slower, still right.
		err := l.cfg.Store.Commit(context.Background(), l.Namespace(sp.part), nil,
			[]state.Offset{{Source: txnMarker(topic), Partition: strconv.Itoa(int(sp.part)), Offset: 0}})
		if err != nil {
			l.cfg.Logger.Error("changelog: clear the transaction mark; the partition will be restored whole", "topic", topic, "partition", sp.part, "error", err)
		}
	}
}

// discardUncommitted empties partition p's local copy if it may hold
// writes of a transaction that did not commit, so that it is restored
// whole from the changelog, which has only committed ones. The caller
// holds the partition's lock. It reports whether it discarded anything.
func (l *Log) discardUncommitted(ctx context.Context, topic, source string, p int32) (bool, error) {
	part := strconv.Itoa(int(p))
	mark, ok, err := l.cfg.Store.Applied(txnMarker(topic), part)
	if err != nil || !ok || mark == 0 {
		return false, err
	}
	ns := l.Namespace(p)
	dropped := 0
	for {
		keys, _, err := l.cfg.Store.Scan(ns.Name, "", "", 10_000)
		if err != nil {
			return false, fmt.Errorf("changelog: discard uncommitted local state of %s/%d: %w", topic, p, err)
		}
		if len(keys) == 0 {
			break
		}
		writes := make([]state.Write, len(keys))
		for i, k := range keys {
			writes[i] = state.Write{Key: []byte(k), Delete: true}
		}
		if err := l.cfg.Store.Commit(ctx, ns, writes, nil); err != nil {
			return false, fmt.Errorf("changelog: discard uncommitted local state of %s/%d: %w", topic, p, err)
		}
		dropped += len(keys)
	}
	// -1: nothing of the changelog or the source is in the local copy any
	// more; the restore sets both from what it reads.
	err = l.cfg.Store.Commit(ctx, ns, nil, []state.Offset{
		{Source: offsetSource(topic), Partition: part, Offset: -1},
		{Source: source, Partition: part, Offset: -1},
		{Source: txnMarker(topic), Partition: part, Offset: 0},
	})
	if err != nil {
		return false, fmt.Errorf("changelog: discard uncommitted local state of %s/%d: %w", topic, p, err)
	}
	l.cfg.Logger.Info("changelog: local copy discarded, it held writes of a transaction that did not commit; restoring it whole", "topic", topic, "partition", p, "keys", dropped)
	return true, nil
}
