package wasm

import (
	"fmt"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// pending is a stateful step's batch whose state is computed but whose
// commit may not have landed yet. The next batch of the step may run the
// plugin while this one's commit (and its fsync) is in flight, which is
// where most of a small batch's time goes; it reads these values instead of
// the store's, and commits only after this batch has, so commits land in
// order and a batch never lands without the batches it built on.
type pending struct {
	done chan struct{} // closed when the commit returned; err is then set
	err  error

	// ns is the namespace the values belong to: a changelog-backed step
	// keeps each source partition's keys in a namespace of their own.
	ns      string
	values  map[string]pendingValue
	offsets map[partitionKey]int64
	// prev is the batch before, if its commit had not returned when this
	// one was computed: lookups go on to it.
	prev *pending
}

type pendingValue struct {
	value     []byte // nil: deleted
	lastEvent int64
}

func (p *pending) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// inFlight returns the chain of batches not yet committed, newest first,
// or nil. A finished batch's values are in the store (or it failed, and
// so will everything computed after it), so the walk stops there.
func inFlight(p *pending) *pending {
	if p == nil || p.finished() {
		return nil
	}
	return p
}

// lookup returns key's value in namespace ns from the newest in-flight
// batch that wrote it.
func (p *pending) lookup(ns string, key []byte) (pendingValue, bool) {
	for q := p; q != nil && !q.finished(); q = q.prev {
		if q.ns != ns {
			continue
		}
		if v, ok := q.values[string(key)]; ok {
			return v, true
		}
	}
	return pendingValue{}, false
}

// applied returns the highest offset of partition pk in the in-flight
// batches.
func (p *pending) applied(pk partitionKey) (int64, bool) {
	var best int64
	found := false
	for q := p; q != nil && !q.finished(); q = q.prev {
		if off, ok := q.offsets[pk]; ok && (!found || off > best) {
			best, found = off, true
		}
	}
	return best, found
}

// newPending records what batch kin will commit, chained to prev.
func newPending(prev *pending, kin *KeyedInput, eventTimes []int64, maxOffset map[partitionKey]int64) *pending {
	p := &pending{done: make(chan struct{}), prev: inFlight(prev), offsets: maxOffset, ns: kin.storeNS}
	lastEvent := kin.lastEvents(eventTimes)
	p.values = make(map[string]pendingValue, len(kin.Keys))
	for j, a := range kin.Act {
		switch a {
		case abi.StateSet:
			p.values[string(kin.Keys[j])] = pendingValue{value: kin.Values[j], lastEvent: lastEvent[j]}
		case abi.StateDelete:
			p.values[string(kin.Keys[j])] = pendingValue{}
		}
	}
	return p
}

// wait blocks until the batch before has committed, and fails if it did
// not: this batch's state was computed on top of it.
func (p *pending) waitPrev() error {
	if p.prev == nil {
		return nil
	}
	<-p.prev.done
	if p.prev.err != nil {
		return fmt.Errorf("an earlier batch this one's state builds on was not committed: %w", p.prev.err)
	}
	return nil
}
