//go:build !wasip1

// The tests compile this plugin and drive it from the host through the
// agent's real wasm processor, with a real state store on disk.

package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/eventgen"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/plugins/builtin/lib/features"
	statestore "github.com/sluice-dev/sluice/state"
)

var (
	pluginPath string // the compiled plugin
	cacheDir   string // wazero's compilation cache, shared by the tests' engines
)

func TestMain(m *testing.M) {
	var remove func()
	var err error
	if pluginPath, remove, err = wasmbuild.ForTestMain("features.wasm"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = filepath.Join(filepath.Dir(pluginPath), "cache")
	code := m.Run()
	remove()
	os.Exit(code)
}

// ---- driving the processor ----

type harness struct {
	t    testing.TB
	dir  string
	conf string
	st   *statestore.Store
	eng  *wasm.Engine
	proc *wasm.Processor
}

const namespace = "features"

// start opens the store in dir and a processor running the plugin with
// config (the YAML of its `config:` block, indented by 2).
func start(t testing.TB, dir, config string) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, conf: config}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) open() {
	h.t.Helper()
	st, err := statestore.Open(context.Background(), statestore.Options{Dir: h.dir, SyncWrites: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
	if h.eng, err = wasm.NewEngine(wasm.EngineConfig{State: st, CacheDir: cacheDir}); err != nil {
		h.t.Fatal(err)
	}
	proc, err := newProcessor(h.eng, h.conf)
	if err != nil {
		h.t.Fatal(err)
	}
	h.proc = proc
}

// close stops the processor, engine and store, as an agent shutting down.
func (h *harness) close() {
	ctx := context.Background()
	if h.proc != nil {
		_ = h.proc.Close(ctx)
		_ = h.eng.Close(ctx)
		if err := h.st.Close(); err != nil {
			h.t.Error(err)
		}
		h.proc = nil
	}
}

func newProcessor(eng *wasm.Engine, config string) (*wasm.Processor, error) {
	yaml := fmt.Sprintf("path: %s\nkey: user_id\nstate: {namespace: %s}\n", pluginPath, namespace)
	if config != "" {
		yaml += "config:\n" + config
	}
	conf, err := wasm.ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		return nil, fmt.Errorf("parse processor config: %w", err)
	}
	return wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
}

// run sends one batch and returns the messages that come out, in order.
func (h *harness) run(bodies ...string) service.MessageBatch {
	h.t.Helper()
	batch := make(service.MessageBatch, len(bodies))
	for i, b := range bodies {
		batch[i] = service.NewMessage([]byte(b))
	}
	out, err := h.proc.ProcessBatch(context.Background(), batch)
	if err != nil {
		h.t.Fatalf("ProcessBatch: %v", err)
	}
	if len(out) != 1 || len(out[0]) != len(bodies) {
		h.t.Fatalf("got %d batches for %d messages, want every message back in one batch", len(out), len(bodies))
	}
	return out[0]
}

func bodyOf(t testing.TB, m *service.Message) []byte {
	t.Helper()
	b, err := m.AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ev is an event of the seed's shape.
func ev(user int, ts, typ string, data string) string {
	if data == "" {
		data = "{}"
	}
	return fmt.Sprintf(`{"user_id":%d,"event_type":%q,"event_data":%s,"timestamp":%q}`, user, typ, data, ts)
}

// counts returns each message's features.event_count, or -1 if it failed.
func counts(t testing.TB, out service.MessageBatch, field string) []int64 {
	t.Helper()
	got := make([]int64, len(out))
	for i, m := range out {
		if m.GetError() != nil {
			got[i] = -1
			continue
		}
		r := gjson.GetBytes(bodyOf(t, m), field)
		if !r.Exists() {
			t.Fatalf("message %d has no %s: %s", i, field, bodyOf(t, m))
		}
		got[i] = r.Int()
	}
	return got
}

// ---- generated events (internal/eventgen, a Go gen_events.py) ----

type genEvent = eventgen.Event

func genEvents(n, users int, seed uint64) []genEvent { return eventgen.Generate(n, users, seed) }

// disorder moves about one event in 8 back by up to 100 minutes, so some
// arrive out of order and some too late, and renames one in 50 to a type
// outside the configured list.
func disorder(evs []genEvent, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range evs {
		if rng.IntN(8) == 0 {
			evs[i].Time = evs[i].Time.Add(-time.Duration(rng.IntN(100*60)) * time.Second)
		}
		if rng.IntN(50) == 0 && evs[i].Type != "purchase" {
			evs[i].Type = []string{"share", "refund", "wishlist"}[rng.IntN(3)]
		}
	}
}

// ---- the reference: every feature from the user's full event list ----

type refWindow struct {
	name, agg, field string
	width            time.Duration
	n                int64
	types            []string
	maxDistinct      int
}

const parityConfig = `
  max_other_event_types: 2
  windows:
    - {name: purchase_amount_1h, agg: sum, field: event_data.amount, window: 1h, event_types: [purchase]}
    - {name: purchase_mean_24h, agg: mean, field: event_data.amount, window: 24h, bucket: 1h}
    - {name: purchase_min_24h, agg: min, field: event_data.amount, window: 24h}
    - {name: purchase_max_72h, agg: max, field: event_data.amount, window: 72h, buckets: 72}
    - {name: events_24h, agg: count, window: 24h}
    - {name: views_6h, agg: count, field: event_data.page, type: string, window: 6h, event_types: [page_view]}
    - {name: distinct_pages_7d, agg: distinct, field: event_data.page, window: 168h, bucket: 1h, max_distinct: 8}
    - {name: distinct_products_72h, agg: distinct, field: event_data.product_id, type: int, window: 72h}
`

var refWindows = []refWindow{
	{"purchase_amount_1h", "sum", "amount", time.Minute, 60, []string{"purchase"}, 0},
	{"purchase_mean_24h", "mean", "amount", time.Hour, 24, nil, 0},
	{"purchase_min_24h", "min", "amount", 24 * time.Minute, 60, nil, 0},
	{"purchase_max_72h", "max", "amount", time.Hour, 72, nil, 0},
	{"events_24h", "count", "", 24 * time.Minute, 60, nil, 0},
	{"views_6h", "count", "page", 6 * time.Minute, 60, []string{"page_view"}, 0},
	{"distinct_pages_7d", "distinct", "page", time.Hour, 168, nil, 8},
	{"distinct_products_72h", "distinct", "product", 72 * time.Minute, 60, nil, 64},
}

var seedTypes = []string{"page_view", "click", "add_to_cart", "purchase", "search"}

const (
	lateness   = time.Hour
	sessionGap = 30 * time.Minute
	maxOther   = 2
)

// bucket is floor(t / width), counted from the Unix epoch.
func bucket(t time.Time, width time.Duration) int64 {
	ns := t.UnixNano()
	b := ns / int64(width)
	if ns%int64(width) != 0 && ns < 0 {
		b--
	}
	return b
}

// reference computes the features the plugin must write after cur was
// applied; evs is every applied event of the user, cur included.
func reference(evs []genEvent, cur genEvent) map[string]any {
	f := map[string]any{}
	n := len(evs)
	first, last := evs[0].Time, evs[0].Time
	total := 0.0
	byType := map[string]int{}
	for _, e := range evs {
		if e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
		if e.Type == "purchase" {
			total += e.Amount
		}
		byType[e.Type]++
	}
	unique, others := 0, 0
	for typ := range byType {
		if contains(seedTypes, typ) {
			unique++
		} else {
			others++
		}
	}
	f["event_count"] = n
	f["unique_event_types"] = unique + min(others, maxOther)
	f["total_value"] = total
	f["avg_value_per_event"] = total / float64(n)
	f["is_purchase_event"] = b2i(cur.Type == "purchase")
	f["hour_of_day"] = cur.Time.Hour()
	dow := (int(cur.Time.Weekday()) + 6) % 7
	f["day_of_week"] = dow
	f["is_weekend"] = dow >= 5
	for _, typ := range seedTypes {
		f[typ+"_count"] = byType[typ]
		f[typ+"_ratio"] = float64(byType[typ]) / float64(n)
	}
	times := make([]time.Time, n)
	for i, e := range evs {
		times[i] = e.Time
	}
	sort.Slice(times, func(a, b int) bool { return times[a].Before(times[b]) })
	sessions := 1
	for i := 1; i < n; i++ {
		if times[i].Sub(times[i-1]) > sessionGap {
			sessions++
		}
	}
	f["total_sessions"] = sessions
	f["avg_session_length"] = float64(n) / float64(sessions)
	recent := 0
	for _, e := range evs {
		if bucket(e.Time, time.Hour) > bucket(last, time.Hour)-168 {
			recent++
		}
	}
	f["recent_activity_7d"] = recent
	f["avg_events_per_day"] = float64(n) / float64(max(1, int(last.Sub(first)/(24*time.Hour))))
	f["last_activity"] = last
	for _, w := range refWindows {
		head := bucket(last, w.width)
		var xs []float64
		distinct := map[string]bool{}
		for _, e := range evs {
			if bucket(e.Time, w.width) <= head-w.n || (w.types != nil && !contains(w.types, e.Type)) {
				continue
			}
			switch w.field {
			case "amount", "product":
				if e.Type != "purchase" {
					continue
				}
				xs = append(xs, e.Amount)
				distinct[fmt.Sprint(e.Prod)] = true
			case "page":
				if e.Type == "purchase" {
					continue
				}
				distinct[e.Page] = true
			}
			if w.field == "" || w.field == "page" {
				xs = append(xs, 0)
			}
		}
		switch w.agg {
		case "count":
			f[w.name] = len(xs)
		case "sum":
			s := 0.0
			for _, x := range xs {
				s += x
			}
			f[w.name] = s
		case "mean", "min", "max":
			if len(xs) == 0 {
				f[w.name] = nil
				continue
			}
			s, lo, hi := 0.0, xs[0], xs[0]
			for _, x := range xs {
				s, lo, hi = s+x, math.Min(lo, x), math.Max(hi, x)
			}
			f[w.name] = map[string]float64{"mean": s / float64(len(xs)), "min": lo, "max": hi}[w.agg]
		case "distinct":
			f[w.name] = min(len(distinct), w.maxDistinct)
		}
	}
	return f
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compare checks every feature of body against want; "" prefix means top
// level.
func compare(t testing.TB, ctx string, body []byte, prefix string, want map[string]any) {
	t.Helper()
	for name, w := range want {
		r := gjson.GetBytes(body, prefix+name)
		switch w := w.(type) {
		case nil:
			if r.Exists() {
				t.Errorf("%s: %s = %s, want it absent (empty window)", ctx, name, r.Raw)
			}
		case int:
			if r.Type != gjson.Number || r.Raw != strconv.Itoa(w) {
				t.Errorf("%s: %s = %s, want %d", ctx, name, r.Raw, w)
			}
		case bool:
			if r.Type != gjson.True && r.Type != gjson.False || r.Bool() != w {
				t.Errorf("%s: %s = %s, want %v", ctx, name, r.Raw, w)
			}
		case float64:
			if r.Type != gjson.Number || !near(r.Float(), w) {
				t.Errorf("%s: %s = %s, want %v", ctx, name, r.Raw, w)
			}
		case time.Time:
			got, err := time.Parse(time.RFC3339Nano, r.Str)
			if err != nil || !got.Equal(w) {
				t.Errorf("%s: %s = %s, want %s", ctx, name, r.Raw, w.Format(time.RFC3339Nano))
			}
		}
	}
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// TestParity runs a generated stream through the compiled plugin with
// Badger state, in batches of changing sizes, and checks every feature of
// every event against the reference computed from scratch.
func TestParity(t *testing.T) {
	evs := genEvents(6000, 50, 7)
	disorder(evs, 7)
	h := start(t, t.TempDir(), parityConfig)
	applied := map[int][]genEvent{}
	latest := map[int]time.Time{}
	sizes := []int{1, 7, 100, 1024, 3, 250, 1, 1, 512, 64}
	var late, outOfOrder, joined, saturated int
	sessions := map[int]int{}
	for start, k := 0, 0; start < len(evs); k++ {
		end := min(start+sizes[k%len(sizes)], len(evs))
		bodies := make([]string, 0, end-start)
		for _, e := range evs[start:end] {
			bodies = append(bodies, string(e.AppendJSON(nil)))
		}
		out := h.run(bodies...)
		for i, m := range out {
			e := evs[start+i]
			ctx := fmt.Sprintf("event %d (batch %d, user %d, %s at %s)", start+i, k, e.User, e.Type, e.Time.Format(time.RFC3339Nano))
			if l, ok := latest[e.User]; ok && l.Sub(e.Time) > lateness {
				late++
				err := m.GetError()
				if err == nil || !strings.Contains(err.Error(), "late: event time") {
					t.Fatalf("%s: error %v, want it refused as late", ctx, err)
				}
				if got := string(bodyOf(t, m)); got != bodies[i] {
					t.Fatalf("%s: late event's body changed: %s", ctx, got)
				}
				continue
			}
			if err := m.GetError(); err != nil {
				t.Fatalf("%s: %v", ctx, err)
			}
			if e.Time.Before(latest[e.User]) {
				outOfOrder++
			}
			if e.Time.After(latest[e.User]) {
				latest[e.User] = e.Time
			}
			applied[e.User] = append(applied[e.User], e)
			want := reference(applied[e.User], e)
			if want["total_sessions"].(int) <= sessions[e.User] {
				joined++ // joined a session, or merged two
			}
			sessions[e.User] = want["total_sessions"].(int)
			if want["distinct_pages_7d"].(int) == 8 {
				saturated++
			}
			compare(t, ctx, bodyOf(t, m), "features.", want)
			if t.Failed() {
				t.FailNow()
			}
		}
		start = end
	}
	// The stream must exercise what the test claims to check.
	if late < 20 || outOfOrder < 100 || joined < 200 || saturated < 100 {
		t.Errorf("weak stream: %d late, %d out of order, %d joining a session, %d with distinct pages at max_distinct",
			late, outOfOrder, joined, saturated)
	}
	t.Logf("%d events: %d late, %d out of order, %d joining a session, %d at max_distinct", len(evs), late, outOfOrder, joined, saturated)
}

// TestSessionsAcrossBatches: a user's session continues, splits and
// merges across batch boundaries exactly as within one batch.
func TestSessionsAcrossBatches(t *testing.T) {
	steps := []struct {
		ts               string
		sessions, count  int64
		avgSessionLength float64
	}{
		{"2025-01-01T00:00:00Z", 1, 1, 1},
		{"2025-01-01T00:20:00Z", 1, 2, 2},
		{"2025-01-01T01:00:00Z", 2, 3, 1.5}, // 40m gap
		{"2025-01-01T01:30:00Z", 2, 4, 2},   // exactly 30m: same session
		{"2025-01-01T00:40:00Z", 1, 5, 5},   // out of order: joins the two
		{"2025-01-01T02:00:01Z", 2, 6, 3},
	}
	check := func(t *testing.T, splits []int) {
		h := start(t, t.TempDir(), "")
		i := 0
		for _, n := range splits {
			var bodies []string
			for _, s := range steps[i : i+n] {
				bodies = append(bodies, ev(9, s.ts, "click", ""))
			}
			out := h.run(bodies...)
			for j, m := range out {
				s, b := steps[i+j], bodyOf(t, m)
				if m.GetError() != nil {
					t.Fatalf("event at %s: %v", s.ts, m.GetError())
				}
				got := gjson.GetManyBytes(b, "features.total_sessions", "features.event_count", "features.avg_session_length")
				if got[0].Int() != s.sessions || got[1].Int() != s.count || got[2].Float() != s.avgSessionLength {
					t.Errorf("batches %v, event at %s: sessions %s, count %s, avg length %s; want %d, %d, %v",
						splits, s.ts, got[0].Raw, got[1].Raw, got[2].Raw, s.sessions, s.count, s.avgSessionLength)
				}
			}
			i += n
		}
	}
	for _, splits := range [][]int{{6}, {1, 1, 1, 1, 1, 1}, {2, 1, 3}, {1, 4, 1}} {
		t.Run(fmt.Sprint(splits), func(t *testing.T) { check(t, splits) })
	}
}

// TestLateEvents: a late event fails with its reason and original bytes,
// is marked for the dead-letter route, and leaves the state untouched.
func TestLateEvents(t *testing.T) {
	h := start(t, t.TempDir(), "")
	h.run(ev(1, "2025-01-01T02:00:00Z", "purchase", `{"amount":10}`))
	lateBody := ev(1, "2025-01-01T00:30:00Z", "purchase", `{"amount":1000}`)
	out := h.run(lateBody, ev(1, "2025-01-01T01:00:00Z", "click", `{"page":"/a"}`), ev(2, "2024-01-01T00:00:00Z", "click", ""))
	err := out[0].GetError()
	want := "late: event time 2025-01-01T00:30:00Z is 1h30m0s behind the user's latest event time 2025-01-01T02:00:00Z (allowed_lateness 1h0m0s)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("late event: error %v\nwant one containing %q", err, want)
	}
	if got := string(bodyOf(t, out[0])); got != lateBody {
		t.Errorf("late event's bytes changed: %s", got)
	}
	if r, ok := out[0].MetaGet("sluice_reason"); !ok || r != "late" {
		t.Errorf("late event: metadata sluice_reason = %q, %v; want late", r, ok)
	}
	// The next on-time event of the user proves the late one was not
	// counted; another user's first event is never late, however old.
	if got := counts(t, out, "features.event_count"); fmt.Sprint(got) != "[-1 2 1]" {
		t.Errorf("event counts %v, want [-1 2 1]", got)
	}
	if got := gjson.GetBytes(bodyOf(t, out[1]), "features.total_value").Float(); got != 10 {
		t.Errorf("total_value %v after a late purchase, want 10: it must not be applied", got)
	}
	if _, ok := out[1].MetaGet("sluice_reason"); ok {
		t.Error("an on-time event got sluice_reason")
	}
	// Lateness is configurable.
	h2 := start(t, t.TempDir(), "  allowed_lateness: 2h\n")
	h2.run(ev(1, "2025-01-01T02:00:00Z", "click", ""))
	if got := counts(t, h2.run(lateBody), "features.event_count"); got[0] != 2 {
		t.Errorf("with allowed_lateness 2h, 1h30m behind: count %d, want 2", got[0])
	}
}

// TestRestart: features continue from the stored state after the
// processor and the store are closed and reopened on the same directory.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	config := "  windows: [{name: spend_24h, agg: sum, field: event_data.amount, window: 24h}]\n"
	h := start(t, dir, config)
	h.run(ev(5, "2025-01-01T10:00:00Z", "purchase", `{"amount":20}`), ev(5, "2025-01-01T10:10:00Z", "click", `{"page":"/x"}`))
	h.close()
	h = start(t, dir, config)
	out := h.run(ev(5, "2025-01-01T10:20:00Z", "purchase", `{"amount":2.5}`))
	compare(t, "after restart", bodyOf(t, out[0]), "features.", map[string]any{
		"event_count": 3, "total_value": 22.5, "purchase_count": 2, "total_sessions": 1, "avg_session_length": 3.0,
		"spend_24h": 22.5, "unique_event_types": 2, "last_activity": time.Date(2025, 1, 1, 10, 20, 0, 0, time.UTC),
	})

	// The stored bytes are the compact binary form, and StateJSON renders
	// them as the user's online features.
	e, ok, err := h.st.Get(namespace, "5")
	if err != nil || !ok {
		t.Fatalf("state of user 5: %v %v", ok, err)
	}
	if len(e.Value) == 0 || e.Value[0] != features.Version {
		t.Fatalf("stored state %q: want the binary format, version %d", e.Value, features.Version)
	}
	cfg, err := features.Parse([]byte(`{"windows": [{"name": "spend_24h", "agg": "sum", "field": "event_data.amount", "window": "24h"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	js, err := cfg.StateJSON(nil, e.Value)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "StateJSON", js, "", map[string]any{"event_count": 3, "total_value": 22.5, "spend_24h": 22.5,
		"last_activity": time.Date(2025, 1, 1, 10, 20, 0, 0, time.UTC)})
	if gjson.GetBytes(js, "hour_of_day").Exists() {
		t.Errorf("StateJSON has per-event features: %s", js)
	}
}

// TestRedelivery: a batch replayed after a crash gets its features but is
// not counted again.
func TestRedelivery(t *testing.T) {
	st, err := statestore.Open(context.Background(), statestore.Options{Dir: t.TempDir(), SyncWrites: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := wasm.NewEngine(wasm.EngineConfig{State: st, CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	conf, err := wasm.ConfigSpec().ParseYAML(fmt.Sprintf(`
path: %s
key: user_id
state: {namespace: f}
offsets: {source: events, partition: "0", offset: '${! json("seq") }'}
`, pluginPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := wasm.NewProcessor(context.Background(), eng, conf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	h := &harness{t: t, proc: p}
	seq := func(n int, ts string) string {
		return strings.Replace(ev(1, ts, "click", ""), "{", fmt.Sprintf(`{"seq":%d,`, n), 1)
	}
	first := []string{seq(1, "2025-01-01T00:00:00Z"), seq(2, "2025-01-01T00:01:00Z")}
	if got := counts(t, h.run(first...), "features.event_count"); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("first delivery: %v", got)
	}
	got := counts(t, h.run(append(first, seq(3, "2025-01-01T00:02:00Z"))...), "features.event_count")
	if fmt.Sprint(got) != "[2 2 3]" {
		t.Errorf("redelivery: counts %v, want [2 2 3]: replayed events see the state, are not counted again", got)
	}
}

func TestIncludeAndPrefix(t *testing.T) {
	h := start(t, t.TempDir(), "  prefix: \"\"\n  include: [event_count, last_activity, is_weekend]\n")
	out := h.run(ev(1, "2025-01-04T12:00:00.5+01:00", "click", ""))
	want := `{"user_id":1,"event_type":"click","event_data":{},"timestamp":"2025-01-04T12:00:00.5+01:00","event_count":1,"is_weekend":true,"last_activity":"2025-01-04T11:00:00.5Z"}`
	if got := string(bodyOf(t, out[0])); got != want {
		t.Errorf("output:\n got %s\nwant %s", got, want)
	}
}

// TestConfigErrors: the agent refuses a bad config at load, and the
// message names the key at fault.
func TestConfigErrors(t *testing.T) {
	st, err := statestore.Open(context.Background(), statestore.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := wasm.NewEngine(wasm.EngineConfig{State: st, CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	for _, tc := range []struct{ config, want string }{
		{"  windows:\n    - {name: a, agg: count, window: 1h}\n    - {name: b, agg: median, field: x, window: 1h}\n",
			`windows[1].agg: unknown aggregation "median" (want count, sum, mean, min, max or distinct)`},
		{"  sesion_gap: 10m\n", `sesion_gap: unknown key (known: allowed_lateness,`},
		{"  session_gap: ten minutes\n", `session_gap: "ten minutes" is not a duration`},
		{"  windows: [{name: w, agg: sum, field: event_data.amount, window: 1h, bucket: 7m}]\n", `windows[0].bucket: 7m0s does not divide the window 1h0m0s`},
		{"  include: [event_count, bogus]\n", `include[1]: unknown feature "bogus"`},
		{"  event_types: [page view]\n", `event_types[0]: "page view" cannot be part of a feature name`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := newProcessor(eng, tc.config)
			if err == nil || !strings.Contains(err.Error(), "config: "+tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, "config: "+tc.want)
			}
		})
	}
}
