// Package statecache provides the `sluice_state` Benthos cache: a namespace
// of the agent's state store behind the standard cache interface, so the
// `cache` and `cached` processors, `dedupe` and Bloblang's cache functions
// read and write the same durable, embedded store as stateful plugins.
package statecache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/state"
)

// ConfigSpec is the cache's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Summary("A namespace of the agent's embedded state store (Badger), as a Benthos cache.").
		Description(`Values survive restarts. Every set, add and delete is its own durable commit (sync writes), so this cache suits lookups, dedupe and occasional writes; per-event keyed updates belong in a stateful `+"`wasm`"+` step, which commits a whole batch at once.

A TTL given by the caller, or the default_ttl, is measured in wall time with one-second resolution. Use a namespace no stateful step writes to: the cache and a step writing the same keys at once could overwrite each other.`).
		Fields(
			service.NewStringField("namespace").Description("Namespace in the state store: lowercase letters, digits, _ and -."),
			service.NewDurationField("default_ttl").Description("TTL for values set without one; 0 keeps them until deleted.").Default("0s"),
		).
		Example("Dedupe on event id, across restarts", "", `
cache_resources:
  - label: seen
    sluice_state: { namespace: seen_events, default_ttl: 24h }
pipeline:
  processors:
    - dedupe: { cache: seen, key: '${! json("event_id") }' }
`)
}

// Register adds the `sluice_state` cache to env, over st.
func Register(env *service.Environment, st *state.Store) error {
	return env.RegisterCache("sluice_state", ConfigSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.Cache, error) {
		ns, err := conf.FieldString("namespace")
		if err != nil {
			return nil, err
		}
		ttl, err := conf.FieldDuration("default_ttl")
		if err != nil {
			return nil, err
		}
		return New(st, ns, ttl)
	})
}

// Cache is the `sluice_state` cache.
type Cache struct {
	st  *state.Store
	ns  string
	ttl time.Duration
	// mu makes Add's check-then-set atomic against other calls of this
	// cache.
	mu sync.Mutex
}

// New returns a cache over namespace ns of st.
func New(st *state.Store, ns string, defaultTTL time.Duration) (*Cache, error) {
	if st == nil {
		return nil, fmt.Errorf("sluice_state cache %q: the agent has no state store", ns)
	}
	if defaultTTL != 0 && defaultTTL < time.Second {
		return nil, fmt.Errorf("sluice_state cache %q: default_ttl %s is under the store's 1s resolution", ns, defaultTTL)
	}
	if err := (state.Namespace{Name: ns}).Validate(); err != nil {
		return nil, fmt.Errorf("sluice_state cache: %w", err)
	}
	// The agent opens its state dir for the first component that needs
	// it. A dir it cannot have fails the cache's construction, naming
	// the dir: Benthos then fails each operation on it with that reason.
	if err := st.Ready(context.Background()); err != nil {
		return nil, fmt.Errorf("sluice_state cache %q: %w", ns, err)
	}
	return &Cache{st: st, ns: ns, ttl: defaultTTL}, nil
}

// Get implements service.Cache.
func (c *Cache) Get(_ context.Context, key string) ([]byte, error) {
	e, ok, err := c.st.Get(c.ns, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, service.ErrKeyNotFound
	}
	return e.Value, nil
}

// Set implements service.Cache.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl *time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.set(ctx, key, value, ttl)
}

func (c *Cache) set(ctx context.Context, key string, value []byte, ttl *time.Duration) error {
	ns := state.Namespace{Name: c.ns, TTL: c.ttl}
	if ttl != nil {
		ns.TTL = *ttl
		if ns.TTL > 0 && ns.TTL < time.Second {
			ns.TTL = time.Second // the store's resolution; shorter would mean forever
		}
	}
	if value == nil {
		value = []byte{}
	}
	return c.st.Commit(ctx, ns, []state.Write{{Key: []byte(key), Value: value, LastEvent: time.Now().UnixNano()}}, nil)
}

// Add implements service.Cache: it sets key only if it has no value.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl *time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok, err := c.st.Get(c.ns, key); err != nil {
		return err
	} else if ok {
		return service.ErrKeyAlreadyExists
	}
	return c.set(ctx, key, value, ttl)
}

// Delete implements service.Cache.
func (c *Cache) Delete(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Delete(c.ns, key)
}

// Close implements service.Cache; the store belongs to the agent.
func (c *Cache) Close(context.Context) error { return nil }
