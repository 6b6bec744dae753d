package changelog

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A standby replica (Config.Standby) follows the changelog partitions this
// agent does not own and applies them to its local copies, as Kafka
// Streams' standby tasks do, so that when the group gives it one of them
// after another agent fails, Ready replays only the last moments rather
// than the partition's whole history.
//
// The follower and Ready exclude each other per partition (partMu), and
// the follower applies nothing to a partition this agent owns: there the
// owner's own commits are the local copy. A partition skipped while owned
// is marked, and when it is no longer owned the follower first seeks back
// to where the local copy stands, so it never leaves a hole in it.
type follower struct {
	l             *Log
	source, topic string
	cl            *kgo.Client
	// skipped marks partitions whose records went by while this agent
	// owned them; only the follower's goroutine touches it.
	skipped map[int32]bool
}

// partMu is partition p's lock between its restore and its standby.
func (l *Log) partMu(source string, p int32) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	sp := sourcePartition{source, p}
	m, ok := l.partMus[sp]
	if !ok {
		m = &sync.Mutex{}
		l.partMus[sp] = m
	}
	return m
}

// standbyLoop waits until this agent's consumers have joined a group for
// a source topic, then follows that topic's changelog until ctx ends.
func (l *Log) standbyLoop(ctx context.Context) {
	defer close(l.standbyDone)
	var source string
	for {
		if source, _ = l.sourceTopic(); source != "" {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	var topic string
	var n int32
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		var err error
		if topic, n, err = l.TopicFor(ctx, source); err == nil {
			break
		}
		l.cfg.Logger.Warn("changelog standby: waiting for the changelog topic", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	start := map[int32]kgo.Offset{}
	for p := range n {
		off, err := l.localOffset(topic, p)
		if err != nil {
			l.cfg.Logger.Error("changelog standby: read local offset", "error", err)
			return
		}
		start[p] = kgo.NewOffset().At(off)
	}
	opts, err := l.connOpts(source)
	if err != nil {
		l.cfg.Logger.Error("changelog standby", "error", err)
		return
	}
	cl, err := kgo.NewClient(append(opts, readCommitted(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))...)...)
	if err != nil {
		l.cfg.Logger.Error("changelog standby: client", "error", err)
		return
	}
	defer cl.Close()
	f := &follower{l: l, source: source, topic: topic, cl: cl, skipped: map[int32]bool{}}
	l.cfg.Logger.Info("changelog standby following", "topic", topic, "partitions", n)
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				l.cfg.Logger.Warn("changelog standby: fetch", "topic", t, "partition", p, "error", err)
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				f.apply(ctx, fp.Partition, fp.Records)
			}
		})
	}
}

func (f *follower) apply(ctx context.Context, p int32, recs []*kgo.Record) {
	mu := f.l.partMu(f.source, p)
	mu.Lock()
	defer mu.Unlock()
	if _, owned, _ := f.l.cfg.Assignments.Owner(f.source, p); owned {
		f.skipped[p] = true
		return
	}
	// Given up with a transaction that did not commit, the local copy
	// holds writes the changelog does not: start it again from nothing.
	discarded, err := f.l.discardUncommitted(ctx, f.topic, f.source, p)
	if err != nil {
		f.l.cfg.Logger.Error("changelog standby", "partition", p, "error", err)
		return
	}
	local, err := f.l.localOffset(f.topic, p)
	if err != nil {
		f.l.cfg.Logger.Error("changelog standby: read local offset", "partition", p, "error", err)
		return
	}
	if f.skipped[p] || discarded {
		// The owner wrote the local copy up to local; records after it
		// may have gone by unread while this agent owned the partition.
		delete(f.skipped, p)
		f.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{f.topic: {p: {Epoch: -1, Offset: local}}})
		return
	}
	ap, err := f.l.newApplier(f.topic, f.source, p, local)
	if err != nil {
		f.l.cfg.Logger.Error("changelog standby", "partition", p, "error", err)
		return
	}
	for _, rec := range recs {
		if rec.Offset < local {
			continue // already in the local copy
		}
		if err := ap.add(ctx, rec); err != nil {
			f.l.cfg.Logger.Error("changelog standby: apply", "partition", p, "error", err)
			return
		}
	}
	if err := ap.flush(ctx); err != nil {
		f.l.cfg.Logger.Error("changelog standby: apply", "partition", p, "error", err)
		return
	}
	f.l.stats.standbyRecords.Add(int64(ap.records))
}
