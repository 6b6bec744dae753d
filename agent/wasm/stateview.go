package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// StateViewer renders one stored state of its namespace as JSON, by asking
// the plugin that owns the namespace (ABI.md §8.9).
type StateViewer func(ctx context.Context, key string, state []byte) ([]byte, error)

// stateViews maps a namespace to the processors whose plugins can render
// its states. Several steps may share a namespace (two pipelines, or a
// pipeline being replaced); any of them will do, the latest first.
type stateViews struct {
	mu    sync.Mutex
	views map[string][]*Processor
}

func (v *stateViews) add(ns string, p *Processor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.views == nil {
		v.views = map[string][]*Processor{}
	}
	v.views[ns] = append(v.views[ns], p)
}

func (v *stateViews) remove(ns string, p *Processor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ps := v.views[ns]
	for i, q := range ps {
		if q == p {
			v.views[ns] = append(ps[:i:i], ps[i+1:]...)
			break
		}
	}
	if len(v.views[ns]) == 0 {
		delete(v.views, ns)
	}
}

// StateView returns a viewer for namespace ns if a running step's plugin
// can render its states.
func (e *Engine) StateView(ns string) (StateViewer, bool) {
	e.views.mu.Lock()
	defer e.views.mu.Unlock()
	ps := e.views.views[ns]
	if len(ps) == 0 {
		return nil, false
	}
	return ps[len(ps)-1].ViewState, true
}

// ViewState asks the plugin to render a stored state of its namespace as
// JSON. It borrows an instance from the pool like a batch does, so it waits
// for a free one rather than run beside a batch on the same instance.
func (p *Processor) ViewState(ctx context.Context, key string, state []byte) ([]byte, error) {
	inst, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	out, err := inst.viewState(ctx, key, state)
	p.release(ctx, inst, err)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: state view: %w", p.mod.Name(), err)
	}
	return out, nil
}

func (i *Instance) viewState(ctx context.Context, key string, state []byte) ([]byte, error) {
	if i.view == nil {
		return nil, errors.New("the plugin has no state view")
	}
	w := &i.scratch.req
	w.Reset()
	w.String(key)
	w.Bytes(state)
	out, err := i.call(ctx, i.view, w.Buf)
	if err != nil {
		return nil, err
	}
	r := abi.NewReader(out)
	r.U32()
	js := r.Bytes()
	if r.Err() != nil {
		i.broken = true
		return nil, fmt.Errorf("malformed result: %w", r.Err())
	}
	// The guest's buffer is reused by its next call: copy.
	return append([]byte(nil), js...), nil
}
