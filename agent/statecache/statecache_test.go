package statecache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/statecache"
	"github.com/sluice-dev/sluice/state"
)

func openStore(t *testing.T, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCacheOperations(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	defer st.Close()
	c, err := statecache.New(st, "lookups", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, service.ErrKeyNotFound) {
		t.Errorf("get of a missing key: %v, want ErrKeyNotFound", err)
	}
	if err := c.Set(ctx, "k", []byte("v1"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v1" {
		t.Errorf("get after set: %q %v", v, err)
	}
	if err := c.Add(ctx, "k", []byte("v2"), nil); !errors.Is(err, service.ErrKeyAlreadyExists) {
		t.Errorf("add over an existing key: %v, want ErrKeyAlreadyExists", err)
	}
	if err := c.Add(ctx, "k2", []byte("new"), nil); err != nil {
		t.Errorf("add of a new key: %v", err)
	}
	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, service.ErrKeyNotFound) {
		t.Errorf("get after delete: %v, want ErrKeyNotFound", err)
	}
	if _, err := statecache.New(st, "Bad/Name", 0); err == nil {
		t.Error("accepted a bad namespace name")
	}
	if _, err := statecache.New(st, "ok", 10*time.Millisecond); err == nil {
		t.Error("accepted a default_ttl under the store's 1s resolution")
	}
}

// TestDedupeAcrossRestart runs the same input twice through a `dedupe`
// backed by sluice_state, reopening the store in between: the second run
// must pass nothing, since every id was seen in the first.
func TestDedupeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "state")
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte("{\"id\":1}\n{\"id\":2}\n{\"id\":1}\n{\"id\":3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runOnce := func(out string) []string {
		st := openStore(t, storeDir)
		defer st.Close()
		env := service.NewEnvironment()
		if err := statecache.Register(env, st); err != nil {
			t.Fatal(err)
		}
		b := env.NewStreamBuilder()
		err := b.SetYAML(`
input:
  file: { paths: [ ` + in + ` ], scanner: { lines: {} } }
cache_resources:
  - label: seen
    sluice_state: { namespace: seen_ids }
pipeline:
  threads: 1
  processors:
    - dedupe: { cache: seen, key: '${! json("id") }' }
output:
  file: { path: ` + out + `, codec: lines }
logger: { level: off }
`)
		if err != nil {
			t.Fatal(err)
		}
		strm, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := strm.Run(ctx); err != nil {
			t.Fatal(err)
		}
		b2, _ := os.ReadFile(out)
		return strings.Fields(string(b2))
	}
	if got := runOnce(filepath.Join(dir, "out1.jsonl")); strings.Join(got, " ") != `{"id":1} {"id":2} {"id":3}` {
		t.Errorf("first run passed %v, want ids 1, 2, 3", got)
	}
	if got := runOnce(filepath.Join(dir, "out2.jsonl")); len(got) != 0 {
		t.Errorf("second run passed %v, want nothing: the ids were stored", got)
	}
}
