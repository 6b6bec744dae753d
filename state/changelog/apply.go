package changelog

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state"
)

// applier writes changelog records of one partition into the local store,
// a chunk at a time, each chunk's commit carrying the changelog offset it
// reached and the largest source offset its records include: a restore or
// a standby that stops between two chunks resumes from the last.
type applier struct {
	store         *state.Store
	ns            state.Namespace
	topic, source string
	part          string
	p             int32

	chunk  map[string]int
	writes []state.Write
	srcMax int64
	// next is the offset after the last record added; flushed the one
	// the store has.
	next, flushed int64
	localSrc      int64
	hasLocal      bool

	records int
	bytes   int64
}

func (l *Log) newApplier(topic, source string, p int32, from int64) (*applier, error) {
	a := &applier{store: l.cfg.Store, ns: l.Namespace(p), topic: topic, source: source, part: strconv.Itoa(int(p)), p: p,
		chunk: map[string]int{}, srcMax: -1, next: from, flushed: from}
	var err error
	if a.localSrc, a.hasLocal, err = l.cfg.Store.Applied(source, a.part); err != nil {
		return nil, err
	}
	return a, nil
}

// localOffset is where the local copy of changelog partition p stands:
// the offset of the next record it lacks.
func (l *Log) localOffset(topic string, p int32) (int64, error) {
	off, ok, err := l.cfg.Store.Applied(offsetSource(topic), strconv.Itoa(int(p)))
	if err != nil || !ok {
		return 0, err
	}
	return off + 1, nil
}

func (a *applier) add(ctx context.Context, rec *kgo.Record) error {
	if rec.Attrs.IsControl() {
		// A transaction's commit or abort marker: no state, but the local
		// copy has read past it.
		a.next = rec.Offset + 1
		return nil
	}
	w := state.Write{Key: rec.Key}
	if rec.Value == nil {
		w.Delete = true
	} else {
		if len(rec.Value) < 8 {
			return fmt.Errorf("changelog %s/%d offset %d: value of %d bytes, want at least 8 (last event time)", a.topic, a.p, rec.Offset, len(rec.Value))
		}
		w.LastEvent = int64(binary.BigEndian.Uint64(rec.Value))
		w.Value = rec.Value[8:]
	}
	for _, h := range rec.Headers {
		if h.Key == HeaderSourceOffset {
			if off, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && off > a.srcMax {
				a.srcMax = off
			}
		}
	}
	if i, ok := a.chunk[string(rec.Key)]; ok {
		a.writes[i] = w
	} else {
		a.chunk[string(rec.Key)] = len(a.writes)
		a.writes = append(a.writes, w)
	}
	a.next = rec.Offset + 1
	a.records++
	a.bytes += int64(len(rec.Key) + len(rec.Value))
	if len(a.writes) >= restoreChunk {
		return a.flush(ctx)
	}
	return nil
}

func (a *applier) flush(ctx context.Context) error {
	if a.next == a.flushed {
		return nil
	}
	offsets := []state.Offset{{Source: offsetSource(a.topic), Partition: a.part, Offset: a.next - 1}}
	if a.srcMax >= 0 && (!a.hasLocal || a.srcMax > a.localSrc) {
		offsets = append(offsets, state.Offset{Source: a.source, Partition: a.part, Offset: a.srcMax})
		a.localSrc, a.hasLocal = a.srcMax, true
	}
	if err := a.store.Commit(ctx, a.ns, a.writes, offsets); err != nil {
		return fmt.Errorf("changelog: apply %s/%d: %w", a.topic, a.p, err)
	}
	clear(a.chunk)
	a.writes = a.writes[:0]
	a.flushed = a.next
	return nil
}
