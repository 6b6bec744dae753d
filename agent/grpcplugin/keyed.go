package grpcplugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
	"github.com/sluice-dev/sluice/state"
)

// keyedStep is a processor's key and state configuration, resolved.
type keyedStep struct {
	store *state.Store
	ns    state.Namespace
	key   *service.InterpolatedString
}

func parseKeyed(conf *service.ParsedConfig, store *state.Store) (*keyedStep, error) {
	hasKey, hasState := conf.Contains(fKey), conf.Contains(fState)
	switch {
	case !hasKey && !hasState:
		return nil, nil
	case hasKey != hasState:
		return nil, errors.New("key and state go together: a keyed step needs both")
	case store == nil:
		return nil, errors.New("key: this agent has no state store, so no step can be keyed")
	}
	k := &keyedStep{store: store}
	var errs []error
	var err error
	if k.key, err = conf.FieldInterpolatedString(fKey); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", fKey, err))
	}
	sc := conf.Namespace(fState)
	if k.ns.Name, err = sc.FieldString("namespace"); err != nil {
		errs = append(errs, fmt.Errorf("state.namespace: %w", err))
	}
	if k.ns.TTL, err = sc.FieldDuration("ttl"); err != nil {
		errs = append(errs, fmt.Errorf("state.ttl: %w", err))
	}
	if len(errs) == 0 {
		if err := k.ns.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("state: %w", err))
		}
	}
	return k, errors.Join(errs...)
}

// keyedBatch is the state side of one batch: each message's key, the
// distinct keys' states, and what the plugin did to them.
type keyedBatch struct {
	// keyIdx is, per message, the index of its key in keys, or -1 if the
	// message failed before it was sent.
	keyIdx []int
	keys   [][]byte
	// cur is each key's state as the calls so far left it (nil: none):
	// what the next call of a batch split by max_message_bytes is sent.
	// Values loaded from the store are shared with its cache and only read.
	cur [][]byte
	// changed marks the keys whose state the plugin set or deleted.
	changed []bool
}

// prepare reads every message's key and loads the distinct keys' states in
// one read. A message whose key cannot be read fails here and is not sent.
func (k *keyedStep) prepare(batch service.MessageBatch) (*keyedBatch, error) {
	kb := &keyedBatch{keyIdx: make([]int, len(batch))}
	index := map[string]int{}
	for i, m := range batch {
		kb.keyIdx[i] = -1
		key, err := k.key.TryString(m)
		if err == nil && key == "" {
			err = errors.New("it is empty")
		}
		if err == nil {
			err = state.ValidateKey(k.ns.Name, []byte(key))
		}
		if err != nil {
			m.SetError(fmt.Errorf("key: %w", err))
			continue
		}
		j, ok := index[key]
		if !ok {
			j = len(kb.keys)
			index[key] = j
			kb.keys = append(kb.keys, []byte(key))
		}
		kb.keyIdx[i] = j
	}
	entries, err := k.store.Load(k.ns, kb.keys, 0)
	if err != nil {
		return nil, err
	}
	kb.cur = make([][]byte, len(kb.keys))
	for j, e := range entries {
		kb.cur[j] = e.Value
	}
	kb.changed = make([]bool, len(kb.keys))
	return kb, nil
}

// apply records one result's state change to key j; results are applied
// in order, so a key's last change wins.
func (kb *keyedBatch) apply(j int, r *pluginv1.Result) {
	switch {
	case r.GetStateDelete():
		kb.cur[j], kb.changed[j] = nil, true
	case r.StateSet != nil:
		kb.cur[j], kb.changed[j] = r.StateSet, true
	}
}

// commit writes the batch's state changes in one transaction. It runs
// before the batch goes on, so before it is acknowledged.
func (k *keyedStep) commit(ctx context.Context, kb *keyedBatch) error {
	var writes []state.Write
	now := time.Now().UnixNano()
	for j, ch := range kb.changed {
		switch {
		case !ch:
		case kb.cur[j] == nil:
			writes = append(writes, state.Write{Key: kb.keys[j], Delete: true})
		default:
			writes = append(writes, state.Write{Key: kb.keys[j], Value: kb.cur[j], LastEvent: now})
		}
	}
	if len(writes) == 0 {
		return nil
	}
	if err := k.store.Commit(ctx, k.ns, writes, nil); err != nil {
		return fmt.Errorf("commit state of namespace %q: %w", k.ns.Name, err)
	}
	return nil
}
