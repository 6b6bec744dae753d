package wasm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/internal/jsonfield"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/state"
	"github.com/sluice-dev/sluice/state/changelog"
)

// KeyedInput is the state side of one batch through a stateful plugin:
// each message's key, the distinct keys' current states, and, after the
// call, what the plugin did to each key.
type KeyedInput struct {
	// KeyIdx is, per message of the batch, the index of its key in Keys,
	// or -1 if the message failed before reaching the plugin.
	KeyIdx []int
	// Replayed marks messages already applied to state (redeliveries).
	Replayed []bool
	Keys     [][]byte
	State    [][]byte // current state per key; nil = none

	// Filled by the call: per key, abi.StateUnchanged, StateSet or
	// StateDelete, and the new value (copied out of guest memory).
	Act    []byte
	Values [][]byte

	scratch []byte

	// own is the step's namespace as the plugin names it; storeNS where
	// its keys live in the store: own, or for a changelog-backed step the
	// batch's source partition's part of it. inflight is the batches
	// before this one whose commits may not have landed. The state
	// imports read them.
	own      string
	storeNS  string
	inflight *pending
	// part is the batch's source partition, for a changelog-backed step.
	part *batchPartition
	// random holds the call's state_set and state_delete writes, in
	// order of first write; committed with the batch (mergeRandom).
	random      map[string]pendingValue
	randomOrder []string
	// randomKeys counts the keys mergeRandom appended after the batch's
	// own, which no row of the batch refers to.
	randomKeys int
}

// writeRandom records a random write of the call; value nil deletes. It
// reports false if the call has written too many keys already.
func (k *KeyedInput) writeRandom(key string, value []byte) bool {
	if k.random == nil {
		k.random = map[string]pendingValue{}
	}
	if _, ok := k.random[key]; !ok {
		if len(k.randomOrder) >= abi.MaxStateWrites {
			return false
		}
		k.randomOrder = append(k.randomOrder, key)
	}
	k.random[key] = pendingValue{value: value}
	return true
}

// readOwn returns what the step's own namespace holds for key as this
// call sees it: its own random writes, then the batches still committing.
// found false means: ask the store.
func (k *KeyedInput) readOwn(key string) (v pendingValue, found bool) {
	if v, ok := k.random[key]; ok {
		return v, true
	}
	return k.inflight.lookup(k.storeNS, []byte(key))
}

// mergeRandom folds the call's random writes into the batch's state
// changes, so they commit in the same transaction as the batch's state and
// offsets. For a key of the batch that the state section also changed, the
// section wins: it is the plugin's per-key answer.
func (k *KeyedInput) mergeRandom() {
	if len(k.randomOrder) == 0 {
		return
	}
	index := make(map[string]int, len(k.Keys))
	for j, key := range k.Keys {
		index[string(key)] = j
	}
	for _, key := range k.randomOrder {
		v := k.random[key]
		act := abi.StateSet
		if v.value == nil {
			act = abi.StateDelete
		}
		j, ok := index[key]
		if !ok {
			k.Keys = append(k.Keys, []byte(key))
			k.State = append(k.State, nil)
			k.Act = append(k.Act, act)
			k.Values = append(k.Values, v.value)
			k.randomKeys++
			continue
		}
		if k.Act[j] == abi.StateUnchanged {
			k.Act[j], k.Values[j] = act, v.value
		}
	}
}

// appendSection writes the request's state section for the rows sent.
func (k *KeyedInput) appendSection(w *abi.Writer, rows []int) {
	w.U32(uint32(len(k.Keys)))
	w.U32(0)
	for _, idx := range rows {
		w.U32(uint32(k.KeyIdx[idx]))
	}
	w.Align8()
	for _, idx := range rows {
		var f uint8
		if k.Replayed[idx] {
			f |= abi.RowReplayed
		}
		w.U8(f)
	}
	w.Align8()
	all := k.scratch[:0]
	for range k.Keys {
		all = append(all, 1)
	}
	k.scratch = all
	abi.AppendColumn(w, abi.TypeString, all, nil, k.Keys)
	valid := make([]byte, len(k.State))
	for j, v := range k.State {
		if v != nil {
			valid[j] = 1
		}
	}
	abi.AppendColumn(w, abi.TypeString, valid, nil, k.State)
}

// readSection decodes the response's state section, copying values out of
// guest memory.
func (k *KeyedInput) readSection(r *abi.Reader) error {
	n := int(r.U32())
	r.U32()
	if r.Err() == nil && n != len(k.Keys) {
		return fmt.Errorf("malformed result: state for %d keys, %d sent", n, len(k.Keys))
	}
	col := abi.ReadColumn(r, abi.TypeString, n)
	if err := r.Err(); err != nil {
		return fmt.Errorf("malformed result: state section: %w", err)
	}
	k.Act = append(k.Act[:0], col.Valid...)
	k.Values = make([][]byte, n)
	for j, a := range k.Act {
		switch a {
		case abi.StateUnchanged, abi.StateDelete:
		case abi.StateSet:
			v, ok := col.Str(j)
			if !ok {
				return fmt.Errorf("malformed result: state of key %d: bad string offsets", j)
			}
			k.Values[j] = append([]byte{}, v...)
		default:
			return fmt.Errorf("malformed result: state of key %d: unknown code %d", j, a)
		}
	}
	return nil
}

// ProcessKeyed runs one batch through a stateful plugin. kin carries the
// keys and their states in, and the plugin's state changes out.
func (i *Instance) ProcessKeyed(ctx context.Context, batch service.MessageBatch, kin *KeyedInput) (service.MessageBatch, error) {
	if !i.desc.Stateful {
		return nil, errors.New("the processor has key/state config but the plugin is not stateful (it never calls sdk.UseState)")
	}
	if len(batch) == 0 {
		return batch, nil
	}
	i.info.keyed = kin
	defer func() { i.info.keyed = nil }()
	return i.processColumns(ctx, batch, kin)
}

// keyedStep is a processor's state configuration, resolved.
type keyedStep struct {
	store     *state.Store
	ns        state.Namespace
	key       keyReader
	eventTime string // field path; "" if the namespace is wall-clock
	offsets   *offsetReaders
	// changelog, if set, keeps the state per source partition, backed by
	// a compacted Kafka topic (state/changelog).
	changelog *changelog.Log
	logs      *changelogSteps
	logger    *slog.Logger
}

// batchPartition is the source partition a changelog-backed step's batch
// came from, and the assignment epoch its state was made current at.
type batchPartition struct {
	pk    partitionKey
	part  int32
	epoch uint64
	// txn is the kafka input's transaction the batch is part of, in
	// exactly-once mode: the changelog is written in it.
	txn *changelog.Txn
}

type keyReader struct {
	path   string
	interp *service.InterpolatedString
}

func (k keyReader) read(msg *service.Message) ([]byte, error) {
	if k.interp != nil {
		s, err := k.interp.TryString(msg)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		if s == "" {
			return nil, errors.New("key is empty")
		}
		return []byte(s), nil
	}
	doc, err := msg.AsBytes()
	if err != nil {
		return nil, err
	}
	res := jsonfield.Get(doc, k.path)
	if !res.Exists() || res.Type == 0 { // gjson.Null
		return nil, fmt.Errorf("key field %q is missing", k.path)
	}
	if res.IsObject() || res.IsArray() {
		return nil, fmt.Errorf("key field %q is %s, want a string or number", k.path, kind(res))
	}
	return []byte(res.String()), nil
}

type offsetReaders struct {
	source, partition, offset *service.InterpolatedString
}

type partitionKey struct{ source, partition string }

// prepare reads every message's key, event time and offset, loads the
// distinct keys' states in one read, and marks redeliveries. Messages whose
// key cannot be read fail here and are not sent.
func (k *keyedStep) prepare(ctx context.Context, batch service.MessageBatch, inflight *pending) (*KeyedInput, []int64, map[partitionKey]int64, error) {
	kin := &KeyedInput{KeyIdx: make([]int, len(batch)), Replayed: make([]bool, len(batch)), own: k.ns.Name, storeNS: k.ns.Name, inflight: inflight}
	ns := k.ns
	index := map[string]int{}
	eventTimes := make([]int64, len(batch))
	firstEvent := []int64{}
	applied := map[partitionKey]int64{}
	known := map[partitionKey]bool{}
	maxOffset := map[partitionKey]int64{}
	for idx, msg := range batch {
		kin.KeyIdx[idx] = -1
		if k.changelog != nil && msg.GetError() != nil {
			continue // failed before the step: it touches no partition's state
		}
		key, err := k.key.read(msg)
		if err != nil {
			msg.SetError(err)
			continue
		}
		if k.eventTime != "" {
			doc, err := msg.AsBytes()
			if err != nil {
				msg.SetError(err)
				continue
			}
			res := jsonfield.Get(doc, k.eventTime)
			u, _, err := jsonfield.Convert(abi.TypeTime, res)
			if err != nil || !res.Exists() {
				msg.SetError(fmt.Errorf("event_time field %q: %v", k.eventTime, errOr(err, "missing")))
				continue
			}
			eventTimes[idx] = int64(u)
		}
		if k.offsets != nil {
			pk, off, has, err := k.offsets.read(msg)
			if err != nil {
				msg.SetError(err)
				continue
			}
			// A changelog-backed step takes one partition per batch, as
			// the kafka input delivers them; the first message's is made
			// current (restored) before any offset of it is looked up.
			if k.changelog != nil {
				switch {
				case !has:
					msg.SetError(errNoPartition)
					continue
				case kin.part == nil:
					if ns, err = k.readyPartition(ctx, pk, kin); err != nil {
						return nil, nil, nil, err
					}
					kin.part.txn = changelog.TxnFromContext(msg.Context())
				case pk != kin.part.pk:
					msg.SetError(fmt.Errorf("the batch mixes partitions %s/%s and %s/%s: a step whose state follows Kafka partitions takes one partition per batch, as the kafka input delivers them", kin.part.pk.source, kin.part.pk.partition, pk.source, pk.partition))
					continue
				}
			}
			// An event with no position (posted over HTTP beside a Kafka
			// input) has nothing to recognise a redelivery by: its update
			// is applied.
			if has {
				if !known[pk] {
					// The in-flight batches before the store, as for the
					// values below.
					b, inFlight := inflight.applied(pk)
					a, ok, err := k.store.Applied(pk.source, pk.partition)
					if err != nil {
						return nil, nil, nil, err
					}
					known[pk] = true
					if !ok {
						a = math.MinInt64
					}
					if inFlight && b > a {
						a = b
					}
					applied[pk] = a
				}
				if off <= applied[pk] {
					kin.Replayed[idx] = true
				} else if cur, ok := maxOffset[pk]; !ok || off > cur {
					maxOffset[pk] = off
				}
			}
		}
		j, ok := index[string(key)]
		if !ok {
			j = len(kin.Keys)
			index[string(key)] = j
			kin.Keys = append(kin.Keys, key)
			firstEvent = append(firstEvent, eventTimes[idx])
		}
		kin.KeyIdx[idx] = j
	}
	// The in-flight batches' values are read before the store's: a batch
	// whose commit returns between the two reads is then seen by one or
	// the other. Read the other way round, the store could be read just
	// before that commit and the batch skipped as finished just after it,
	// and its update lost (TestKeyedConcurrentBatches, under load).
	type found struct {
		v  pendingValue
		ok bool
	}
	pend := make([]found, len(kin.Keys))
	for j, key := range kin.Keys {
		pend[j].v, pend[j].ok = inflight.lookup(kin.storeNS, key)
	}
	entries, err := k.store.Load(ns, kin.Keys, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	kin.State = make([][]byte, len(kin.Keys))
	for j, e := range entries {
		if pend[j].ok {
			e = state.Entry{Value: pend[j].v.value, LastEvent: pend[j].v.lastEvent}
		}
		// Event-time TTL: the entity is forgotten if it was idle longer
		// than the TTL before its first event in this batch.
		if k.ns.EventTime && k.ns.TTL > 0 && e.Value != nil && e.LastEvent < firstEvent[j]-k.ns.TTL.Nanoseconds() {
			continue
		}
		kin.State[j] = e.Value
	}
	return kin, eventTimes, maxOffset, nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// read returns the message's position; has is false when the offset
// expression gives an empty string, for a message with no position.
func (o *offsetReaders) read(msg *service.Message) (pk partitionKey, off int64, has bool, err error) {
	offStr, err := o.offset.TryString(msg)
	if err != nil {
		return pk, 0, false, fmt.Errorf("offsets.offset: %w", err)
	}
	if offStr == "" {
		return pk, 0, false, nil
	}
	if off, err = strconv.ParseInt(offStr, 10, 64); err != nil {
		return pk, 0, false, fmt.Errorf("offsets.offset: %q is not an integer", offStr)
	}
	if pk.source, err = o.source.TryString(msg); err != nil {
		return pk, 0, false, fmt.Errorf("offsets.source: %w", err)
	}
	if pk.partition, err = o.partition.TryString(msg); err != nil {
		return pk, 0, false, fmt.Errorf("offsets.partition: %w", err)
	}
	return pk, off, true, nil
}

// lastEvents returns, per key, the latest event time of the batch's
// messages applied to it.
func (k *KeyedInput) lastEvents(eventTimes []int64) []int64 {
	lastEvent := make([]int64, len(k.Keys))
	var latest int64
	for idx, j := range k.KeyIdx {
		if j >= 0 && !k.Replayed[idx] {
			lastEvent[j] = max(lastEvent[j], eventTimes[idx])
			latest = max(latest, eventTimes[idx])
		}
	}
	// A key written at random has no rows of its own: it was last touched
	// by the batch, as of the batch's latest event.
	for j := len(k.Keys) - k.randomKeys; j < len(k.Keys); j++ {
		lastEvent[j] = latest
	}
	return lastEvent
}

// commit writes the plugin's state changes and the batch's offsets in one
// transaction. It runs before the batch goes on, so before it is acked.
func (k *keyedStep) commit(ctx context.Context, kin *KeyedInput, eventTimes []int64, maxOffset map[partitionKey]int64) error {
	lastEvent := kin.lastEvents(eventTimes)
	var writes []state.Write
	for j, a := range kin.Act {
		switch a {
		case abi.StateSet:
			le := lastEvent[j]
			if le == 0 && !k.ns.EventTime {
				le = time.Now().UnixNano()
			}
			writes = append(writes, state.Write{Key: kin.Keys[j], Value: kin.Values[j], LastEvent: le})
		case abi.StateDelete:
			writes = append(writes, state.Write{Key: kin.Keys[j], Delete: true})
		}
	}
	offsets := make([]state.Offset, 0, len(maxOffset))
	for pk, off := range maxOffset {
		offsets = append(offsets, state.Offset{Source: pk.source, Partition: pk.partition, Offset: off})
	}
	if len(writes) == 0 && len(offsets) == 0 {
		return nil
	}
	if p := kin.part; p != nil {
		if err := k.changelog.CommitIn(ctx, p.txn, p.pk.source, p.part, p.epoch, writes, offsets); err != nil {
			return fmt.Errorf("commit state of namespace %q partition %d: %w", k.ns.Name, p.part, err)
		}
		return nil
	}
	if err := k.store.Commit(ctx, k.ns, writes, offsets); err != nil {
		return fmt.Errorf("commit state of namespace %q: %w", k.ns.Name, err)
	}
	return nil
}

// errNoPartition fails a message without a position in a step whose state
// follows Kafka partitions.
var errNoPartition = errors.New("the step's state follows Kafka partitions (state.changelog), and this message has no partition and offset: send it through the Kafka topic")

// readyPartition makes the state of the batch's source partition current
// (changelog.Log.Ready) and records it in kin.
func (k *keyedStep) readyPartition(ctx context.Context, pk partitionKey, kin *KeyedInput) (state.Namespace, error) {
	p, err := strconv.ParseInt(pk.partition, 10, 32)
	if err != nil || p < 0 {
		return state.Namespace{}, fmt.Errorf("offsets.partition: %q is not a Kafka partition number", pk.partition)
	}
	// A restore that fails (broker unreachable, a changelog topic of the
	// wrong shape) is retried rather than failing the batch: failed
	// events would go to the error path and be acknowledged with their
	// state never applied.
	var ns state.Namespace
	var epoch uint64
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		if ns, epoch, err = k.changelog.Ready(ctx, pk.source, int32(p)); err == nil || errors.Is(err, changelog.ErrNotOwned) {
			break
		}
		k.logger.Error("changelog restore failed; retrying", "partition", p, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return state.Namespace{}, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(wait):
		}
	}
	if err != nil {
		return state.Namespace{}, err
	}
	kin.storeNS = ns.Name
	kin.part = &batchPartition{pk: pk, part: int32(p), epoch: epoch}
	return ns, nil
}
