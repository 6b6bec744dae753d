package wasm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/plugins/sdk"
	"github.com/sluice-dev/sluice/state"
)

func openStore(t testing.TB, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), state.Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func keyedEngine(t testing.TB, st *state.Store) *wasm.Engine {
	t.Helper()
	eng, err := wasm.NewEngine(wasm.EngineConfig{State: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// counts runs a batch and returns each output's event_count (or -1 if the
// message failed) and replayed flag.
func counts(t testing.TB, p *wasm.Processor, bodies ...string) ([]int64, []bool) {
	t.Helper()
	out := run(t, p, batchOf(bodies...))
	c := make([]int64, len(out))
	r := make([]bool, len(out))
	for i, m := range out {
		if m.GetError() != nil {
			c[i] = -1
			continue
		}
		b, _ := m.AsBytes()
		c[i] = gjson.GetBytes(b, "event_count").Int()
		r[i] = gjson.GetBytes(b, "replayed").Bool()
	}
	return c, r
}

func ev(user string, ts string, seq int) string {
	return fmt.Sprintf(`{"user_id":%q,"timestamp":%q,"seq":%d,"event_data":{"amount":1.5}}`, user, ts, seq)
}

func TestKeyedSameUserInOneBatch(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: tallies}\n", plugins["counter"]))
	got, _ := counts(t, p, ev("a", "2025-01-01T00:00:00Z", 1), ev("b", "2025-01-01T00:00:01Z", 2), ev("a", "2025-01-01T00:00:02Z", 3), ev("a", "2025-01-01T00:00:03Z", 4))
	if fmt.Sprint(got) != "[1 1 2 3]" {
		t.Errorf("counts %v, want [1 1 2 3]: later rows of a key must see earlier rows' updates", got)
	}
	got, _ = counts(t, p, ev("a", "2025-01-01T00:01:00Z", 5), ev("b", "2025-01-01T00:01:00Z", 6))
	if fmt.Sprint(got) != "[4 2]" {
		t.Errorf("next batch counts %v, want [4 2]: state must carry across batches", got)
	}
	e, ok, err := st.Get("tallies", "a")
	if err != nil || !ok || len(e.Value) == 0 {
		t.Fatalf("state of a not stored: %v %v %v", e, ok, err)
	}
}

func TestKeyedStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: tallies}\n", plugins["counter"])
	st := openStore(t, dir)
	p := mustProcessor(t, keyedEngine(t, st), conf)
	counts(t, p, ev("a", "2025-01-01T00:00:00Z", 1), ev("a", "2025-01-01T00:00:01Z", 2))
	_ = p.Close(context.Background())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	p = mustProcessor(t, keyedEngine(t, st), conf)
	if got, _ := counts(t, p, ev("a", "2025-01-01T00:00:02Z", 3)); got[0] != 3 {
		t.Errorf("after reopening the store: count %d, want 3", got[0])
	}
}

func TestKeyedEventTimeTTL(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: sessions, ttl: 1h, ttl_clock: event, event_time: timestamp}
`, plugins["counter"]))
	for _, step := range []struct {
		ts   string
		want int64
	}{
		{"2025-01-01T00:00:00Z", 1},
		{"2025-01-01T00:30:00Z", 2}, // 30 min idle: remembered
		{"2025-01-01T01:29:59Z", 3}, // just under an hour since the last event
		{"2025-01-01T03:00:00Z", 1}, // idle 1.5h in event time: forgotten
	} {
		if got, _ := counts(t, p, ev("u", step.ts, 0)); got[0] != step.want {
			t.Errorf("event at %s: count %d, want %d", step.ts, got[0], step.want)
		}
	}
}

// TestKeyedRedeliveryNotCountedTwice replays a batch, as an at-least-once
// input does after a crash: the replayed events still get their output, but
// nothing is counted twice.
func TestKeyedRedeliveryNotCountedTwice(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: tallies}
offsets:
  source: events.jsonl
  partition: "0"
  offset: '${! json("seq") }'
`, plugins["counter"]))
	first := []string{ev("a", "2025-01-01T00:00:00Z", 1), ev("a", "2025-01-01T00:00:01Z", 2), ev("b", "2025-01-01T00:00:02Z", 3)}
	if got, _ := counts(t, p, first...); fmt.Sprint(got) != "[1 2 1]" {
		t.Fatalf("first delivery: %v", got)
	}
	// Redelivered, with one new event behind it.
	again := append(append([]string{}, first...), ev("a", "2025-01-01T00:00:03Z", 4))
	got, replayed := counts(t, p, again...)
	if fmt.Sprint(got) != "[2 2 1 3]" || fmt.Sprint(replayed) != "[true true true false]" {
		t.Errorf("redelivery: counts %v replayed %v, want [2 2 1 3] [true true true false]", got, replayed)
	}
	if off, ok, err := st.Applied("events.jsonl", "0"); err != nil || !ok || off != 4 {
		t.Errorf("applied offset %d %v %v, want 4", off, ok, err)
	}
}

// An event posted over HTTP into a pipeline that also reads Kafka has no
// offset: it is applied every time, and the Kafka events beside it in the
// batch are still deduplicated.
func TestKeyedEventsWithoutOffsetAreApplied(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: tallies}
offsets:
  source: events
  partition: "0"
  offset: '${! json("seq").or("") }'
`, plugins["counter"]))
	noSeq := `{"user_id":"a","timestamp":"2025-01-01T00:00:05Z","event_data":{"amount":1}}`
	if got, _ := counts(t, p, ev("a", "2025-01-01T00:00:00Z", 1), noSeq); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("first batch: %v, want [1 2]", got)
	}
	got, replayed := counts(t, p, ev("a", "2025-01-01T00:00:00Z", 1), noSeq)
	if fmt.Sprint(got) != "[2 3]" || fmt.Sprint(replayed) != "[true false]" {
		t.Errorf("second batch: counts %v replayed %v, want [2 3] [true false]: the redelivered Kafka event is recognised, the one without offset applied", got, replayed)
	}
	if off, ok, err := st.Applied("events", "0"); err != nil || !ok || off != 1 {
		t.Errorf("applied offset %d %v %v, want 1", off, ok, err)
	}
}

func TestKeyedNamespacesAreIsolated(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	eng := keyedEngine(t, st)
	a := mustProcessor(t, eng, fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: step_a}\n", plugins["counter"]))
	b := mustProcessor(t, eng, fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: step_b}\n", plugins["counter"]))
	counts(t, a, ev("u", "2025-01-01T00:00:00Z", 0), ev("u", "2025-01-01T00:00:01Z", 0))
	if got, _ := counts(t, b, ev("u", "2025-01-01T00:00:02Z", 0)); got[0] != 1 {
		t.Errorf("namespace step_b saw step_a's state: count %d, want 1", got[0])
	}
}

func TestKeyedConfigErrors(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	eng := keyedEngine(t, st)
	for _, tc := range []struct{ name, yaml, want string }{
		{"stateful plugin without key", "path: " + plugins["counter"], "keeps per-key state: configure key"},
		{"key on a stateless plugin", "path: " + plugins["columns"] + "\nkey: n\nstate: {namespace: x}", "keeps no state"},
		{"key without state", "path: " + plugins["counter"] + "\nkey: user_id", "key and state go together"},
		{"event ttl without event_time", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: x, ttl: 1h}", "needs event_time"},
		{"bad namespace", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: 'a/b'}", "namespace"},
		{"a partition's namespace", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: 'a.p1'}", "lowercase letters, digits"},
		{"changelog without offsets", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: x, changelog: {}}", "state.changelog needs offsets"},
		{"changelog without kafka", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: x, changelog: {}}\noffsets: {source: a, partition: '0', offset: '1'}", "no Kafka connection"},
		{"changelog replication 0", "path: " + plugins["counter"] + "\nkey: user_id\nstate: {namespace: x, changelog: {replication_factor: 0}}\noffsets: {source: a, partition: '0', offset: '1'}", "replication_factor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProcessor(t, eng, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKeyedMissingKeyFailsOnlyThatMessage(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: tallies}\n", plugins["counter"]))
	out := run(t, p, service.MessageBatch{service.NewMessage([]byte(`{"no_user":1}`)), service.NewMessage([]byte(ev("a", "2025-01-01T00:00:00Z", 1)))})
	if err := out[0].GetError(); err == nil || !strings.Contains(err.Error(), `key field "user_id" is missing`) {
		t.Errorf("message without a key: error %v", err)
	}
	if err := out[1].GetError(); err != nil {
		t.Errorf("the other message failed too: %v", err)
	}
}

// TestReadStateGrants reads state at random from a plugin: granted
// namespaces are readable, others are refused with a reason.
func TestReadStateGrants(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	ctx := context.Background()
	big := strings.Repeat("x", 1000) // larger than the SDK's first buffer
	for _, ns := range []string{"profiles", "secrets"} {
		if err := st.Commit(ctx, state.Namespace{Name: ns}, []state.Write{
			{Key: []byte("u1"), Value: []byte(ns + "-of-u1")},
			{Key: []byte("u2"), Value: []byte(big)},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := mustProcessor(t, keyedEngine(t, st), fmt.Sprintf("path: %s\nread_state: [profiles]\n", plugins["reader"]))
	out := run(t, p, batchOf("get profiles u1", "get profiles nobody", "get profiles u2", "scan profiles u", "get secrets u1", "scan secrets u", "set u1 x"))
	want := []struct{ body, err string }{
		{"profiles-of-u1", ""},
		{"missing", ""},
		{big, ""},
		{"u1,u2", ""},
		{"get secrets u1", "not granted"},
		{"scan secrets u", "not granted"},
		{sdk.ErrNotWritable.Error(), ""}, // a step with no state writes nothing
	}
	for i, w := range want {
		gotErr := ""
		if err := out[i].GetError(); err != nil {
			gotErr = err.Error()
		}
		if got := body(t, out[i]); got != w.body || (w.err == "") != (gotErr == "") || !strings.Contains(gotErr, w.err) {
			t.Errorf("message %d: body %.40q error %q; want %.40q, error containing %q", i, got, gotErr, w.body, w.err)
		}
	}
}

// TestStateWritesAtRandom: a stateful plugin writes and deletes keys of its
// own namespace beside the ones its batch is keyed by. The writes commit
// with the batch and its offsets (a redelivered batch changes nothing), a
// later row of the same call and the next batch read them, and they
// survive a restart.
func TestStateWritesAtRandom(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: users}
offsets: {source: events, partition: "0", offset: '${! json("seq") }'}
`, plugins["indexer"])
	p := mustProcessor(t, keyedEngine(t, st), cfg)
	e := func(user int, typ string, seq int) string {
		return fmt.Sprintf(`{"user_id":%d,"event_type":%q,"seq":%d}`, user, typ, seq)
	}
	field := func(out service.MessageBatch, name string) []string {
		var got []string
		for _, m := range out {
			if err := m.GetError(); err != nil {
				t.Fatalf("message failed: %v", err)
			}
			got = append(got, gjson.GetBytes([]byte(body(t, m)), name).String())
		}
		return got
	}
	out := run(t, p, batchOf(e(1, "click", 1), e(2, "click", 2), e(3, "view", 3)))
	if got := field(out, "previous"); fmt.Sprint(got) != "[none 1 none]" {
		t.Errorf("first batch saw %v before each write, want [none 1 none]: a later row reads the call's own writes", got)
	}
	out = run(t, p, batchOf(e(4, "click", 4), e(5, "forget", 5), e(6, "view", 6)))
	if got := field(out, "previous"); fmt.Sprint(got) != "[2 none 3]" {
		t.Errorf("second batch saw %v, want [2 none 3]: the batch before's writes", got)
	}
	// Redelivered: outputs again, writes not applied again.
	run(t, p, batchOf(e(7, "click", 4)))
	want := map[string]string{"last:click": "", "last:view": "6", "last:forget": "5"}
	check := func(when string, st *state.Store) {
		for key, v := range want {
			e, ok, err := st.Get("users", key)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(e.Value); ok != (v != "") || got != v {
				t.Errorf("%s: %s = %q (found %v), want %q", when, key, got, ok, v)
			}
		}
		if e, ok, _ := st.Get("users", "4"); !ok || len(e.Value) == 0 {
			t.Errorf("%s: the keyed state of user 4 is missing beside the random writes", when)
		}
	}
	check("committed", st)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	check("after a restart", st)
}

// TestStateView: a stateful plugin that offers a state view renders stored
// states as JSON through the engine, for as long as its step runs.
func TestStateView(t *testing.T) {
	st := openStore(t, t.TempDir())
	eng := keyedEngine(t, st)
	p := mustProcessor(t, eng, "path: "+plugins["counter"]+"\nkey: user_id\nstate: {namespace: tallies}")
	counts(t, p, ev("u1", "2025-01-01T00:00:00Z", 1), ev("u1", "2025-01-01T00:01:00Z", 2))
	e, ok, err := st.Get("tallies", "u1")
	if err != nil || !ok {
		t.Fatalf("u1 has no state: %v", err)
	}
	view, ok := eng.StateView("tallies")
	if !ok {
		t.Fatal("no state view for the step's namespace")
	}
	js, err := view(context.Background(), "u1", e.Value)
	if err != nil {
		t.Fatal(err)
	}
	var tally struct{ Events, Amount float64 }
	if err := json.Unmarshal(js, &tally); err != nil || tally.Events != 2 || tally.Amount != 3 {
		t.Errorf("view of u1 = %s (%v), want 2 events and amount 3", js, err)
	}
	if _, err := view(context.Background(), "u1", []byte{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "3 bytes, want 16") {
		t.Errorf("view of a state of the wrong size: %v, want the size named", err)
	}
	if _, ok := eng.StateView("other"); ok {
		t.Error("a namespace no step owns has a view")
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := eng.StateView("tallies"); ok {
		t.Error("the view outlived its step")
	}
}

// TestKeyedConcurrentBatches runs batches of the same users from several
// goroutines at once, as a pipeline's threads do, so that one batch's
// commit is in flight while the next computes on its state. No update may
// be lost or applied twice: each user's counts over all outputs are exactly
// 1..n, and the stored count is n, also after a restart.
func TestKeyedConcurrentBatches(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	eng := keyedEngine(t, st)
	p := mustProcessor(t, eng, "path: "+plugins["counter"]+"\nkey: user_id\nstate: {namespace: tallies}")
	const workers, batches, users, perBatch = 4, 40, 5, 15
	seen := make([]map[int64]int, users)
	for u := range seen {
		seen[u] = map[int64]int{}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				bodies := make([]string, perBatch)
				for i := range bodies {
					bodies[i] = ev(fmt.Sprintf("u%d", (i+w)%users), "2025-01-01T00:00:00Z", 0)
				}
				out, err := p.ProcessBatch(context.Background(), batchOf(bodies...))
				if err != nil || len(out) != 1 {
					t.Errorf("batch: %v", err)
					return
				}
				mu.Lock()
				for _, m := range out[0] {
					if m.GetError() != nil {
						t.Errorf("message failed: %v", m.GetError())
						continue
					}
					b, _ := m.AsBytes()
					u := int(gjson.GetBytes(b, "user_id").String()[1] - '0')
					seen[u][gjson.GetBytes(b, "event_count").Int()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	want := workers * batches * perBatch / users
	for u, counts := range seen {
		for c := 1; c <= want; c++ {
			if counts[int64(c)] != 1 {
				t.Fatalf("user u%d: count %d was output %d times, want once (an update was lost or doubled)", u, c, counts[int64(c)])
			}
		}
		if len(counts) != want {
			t.Fatalf("user u%d: %d distinct counts, want %d", u, len(counts), want)
		}
	}
	_ = p.Close(context.Background())
	_ = eng.Close(context.Background())
	_ = st.Close()
	st = openStore(t, dir)
	p = mustProcessor(t, keyedEngine(t, st), "path: "+plugins["counter"]+"\nkey: user_id\nstate: {namespace: tallies}")
	if got, _ := counts(t, p, ev("u0", "2025-01-01T00:00:00Z", 0)); got[0] != int64(want+1) {
		t.Errorf("after restart u0 counts %d, want %d", got[0], want+1)
	}
}
