package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/agent/kafka"
)

const (
	scaleoutToken     = "scaleout-token-0123456789"
	scaleoutChangelog = "sluice-realtime-scaleout-user_features-changelog"
)

// scaleoutEvents makes n valid events of users 1..users, with mixed event
// types and purchase amounts, times increasing; event_data.seq numbers them.
func scaleoutEvents(from, n, users int) []string {
	types := []string{"page_view", "click", "add_to_cart", "purchase", "search", "click", "purchase"}
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	out := make([]string, n)
	for k := range out {
		i := from + k
		out[k] = fmt.Sprintf(`{"user_id":%d,"event_type":%q,"event_data":{"amount":%d,"seq":%d},"timestamp":%q}`,
			1+i%users, types[(i/users)%len(types)], 1+i%37, i, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
	}
	return out
}

// scaleoutBroker is a Kafka-protocol broker outside the agents, with the
// given partitions per topic.
func scaleoutBroker(t testing.TB, partitions int) string {
	t.Helper()
	b, err := kafka.StartDevBroker(kafka.DevConfig{Address: "127.0.0.1:0", Partitions: partitions,
		Topics: []string{"user_events", "predictions", "dead_letters"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// scaleoutAgent runs builtin:realtime_scaleout on its own data dir and
// HTTP address, in the group with a 6s session timeout; env adds to its
// environment.
func scaleoutAgent(t *testing.T, dir, broker string, env ...string) (*agentProc, string) {
	t.Helper()
	addr := freeAddr(t)
	env = append(append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_KAFKA_BROKERS="+broker,
		"SLUICE_HTTP_ADDRESS="+addr, "SLUICE_HTTP_TOKEN="+scaleoutToken, "SCALEOUT_SESSION_TIMEOUT=6s"), env...)
	return startPipeline(t, dir, env, "--pipeline", "builtin:realtime_scaleout"), addr
}

// userState is what the state lookup shows of a user's features.
type userState struct {
	Found     bool   `json:"found"`
	ServedBy  string `json:"served_by"`
	Partition *int32 `json:"partition"`
	Value     struct {
		EventCount    int     `json:"event_count"`
		TotalValue    float64 `json:"total_value"`
		PurchaseCount int     `json:"purchase_count"`
	} `json:"value"`
}

func lookupUser(t *testing.T, addr string, user int) (userState, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/state/user_features/%d", addr, user), nil)
	req.Header.Set("Authorization", "Bearer "+scaleoutToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return userState{}, 0 // not listening yet
	}
	defer resp.Body.Close()
	var s userState
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatalf("user %d: %v", user, err)
		}
	}
	return s, resp.StatusCode
}

// scaleoutRef is each user's reference state after the events, computed
// from the input alone, and each event's running count.
type scaleoutRef struct {
	users   map[int]*seedUser
	running map[int]int // seq -> the user's event_count after it
	userOf  map[int]int
}

func scaleoutReference(t *testing.T, lines []string) scaleoutRef {
	t.Helper()
	r := scaleoutRef{users: map[int]*seedUser{}, running: map[int]int{}, userOf: map[int]int{}}
	for _, l := range lines {
		var e prediction
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		u := seedApply(r.users, e.UserID, e.EventType, e.EventData.Amount)
		r.running[e.EventData.Seq] = u.count
		r.userOf[e.EventData.Seq] = e.UserID
	}
	return r
}

func purchases(lines []string) map[int]int {
	n := map[int]int{}
	for _, l := range lines {
		var e prediction
		_ = json.Unmarshal([]byte(l), &e)
		if e.EventType == "purchase" {
			n[e.UserID]++
		}
	}
	return n
}

// checkStates asks addr for every user's state, which it answers itself or
// forwards to the agent owning the user's partition, and compares it with
// the reference. It returns how many lookups were forwarded.
func checkStates(t *testing.T, addr string, ref scaleoutRef, purchased map[int]int) (forwarded []int) {
	t.Helper()
	for u, want := range ref.users {
		var got userState
		var status int
		// A lookup during a rebalance is refused (503), and an agent just
		// started may not listen yet: ask again.
		for deadline := time.Now().Add(runTimeout); ; time.Sleep(50 * time.Millisecond) {
			if got, status = lookupUser(t, addr, u); (status != http.StatusServiceUnavailable && status != 0) || time.Now().After(deadline) {
				break
			}
		}
		if status != http.StatusOK || !got.Found {
			t.Errorf("user %d: status %d, found %v", u, status, got.Found)
			continue
		}
		if got.Value.EventCount != want.count || math.Abs(got.Value.TotalValue-want.value) > 1e-6 || got.Value.PurchaseCount != purchased[u] {
			t.Errorf("user %d: event_count %d total_value %g purchase_count %d, want %d %g %d (each event counted once)",
				u, got.Value.EventCount, got.Value.TotalValue, got.Value.PurchaseCount, want.count, want.value, purchased[u])
		}
		if got.Partition == nil {
			t.Errorf("user %d: the answer names no partition", u)
		}
		if got.ServedBy != "" {
			forwarded = append(forwarded, u)
		}
	}
	return forwarded
}

// scaledPredictions reads the predictions topic and checks every record
// against the reference: each event has one, and each carries a count
// between the user's count after that event and the user's final count (a
// prediction written again after a crash sees the state of later events,
// never an earlier one, and no count beyond the reference: nothing counted
// twice).
type scaledPredictions struct {
	mu    sync.Mutex
	seen  map[int]int
	total int
	bad   []string
}

func watchScaled(t *testing.T, broker string, ref scaleoutRef) *scaledPredictions {
	t.Helper()
	w := &scaledPredictions{seen: map[int]int{}}
	eachPrediction(t, broker, func(p prediction) {
		seq := p.EventData.Seq
		w.mu.Lock()
		defer w.mu.Unlock()
		w.seen[seq]++
		w.total++
		u := ref.users[ref.userOf[seq]]
		if c := p.Features.EventCount; u == nil || c < ref.running[seq] || c > u.count {
			w.bad = append(w.bad, fmt.Sprintf("event %d of user %d: event_count %d, want %d..%d", seq, p.UserID, c, ref.running[seq], u.count))
		}
	})
	return w
}

func (w *scaledPredictions) waitAll(t *testing.T, n int, agents ...*agentProc) {
	t.Helper()
	for deadline := time.Now().Add(2 * runTimeout); ; time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		distinct, total := len(w.seen), w.total
		w.mu.Unlock()
		if distinct == n {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for i, a := range agents {
				fmt.Fprintf(&logs, "--- agent %d\n%s\n", i, a.stderr)
			}
			t.Fatalf("%d of %d events have a prediction (%d predictions)\n%s", distinct, n, total, logs.String())
		}
	}
}

func (w *scaledPredictions) waitTotal(t *testing.T, atLeast int) {
	t.Helper()
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		total := w.total
		w.mu.Unlock()
		if total >= atLeast {
			return
		}
	}
	t.Fatalf("fewer than %d predictions in time", atLeast)
}

// waitSplit waits until the agents' assignment logs cover the topic's
// partitions with each agent owning some.
func waitSplit(t *testing.T, partitions int, agents ...*agentProc) {
	t.Helper()
	for deadline := time.Now().Add(runTimeout); ; time.Sleep(20 * time.Millisecond) {
		total, each := 0, true
		for _, a := range agents {
			own := len(currentPartitions(a.stderr.String()))
			total += own
			each = each && own > 0
		}
		if each && total == partitions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions never split between %d agents", len(agents))
		}
	}
}

// TestScaleOutThreeAgentsOneKilled: three agents in one consumer group on
// six partitions; one is SIGKILLed mid-stream and a new one (empty data
// dir) joins. At the end every event has a prediction, none counts an
// event twice, and every user's state, asked of one agent that answers
// for its own partitions and forwards the others', equals the reference
// computed from the input.
func TestScaleOutThreeAgentsOneKilled(t *testing.T) {
	scaleOutOneKilled(t)
}

// TestScaleOutExactlyOnce is the same run in exactly-once mode: the
// predictions topic, read read_committed, has exactly one prediction per
// event, through the kill and the rebalances, and its count is exact.
func TestScaleOutExactlyOnce(t *testing.T) {
	scaleOutOneKilled(t, "SCALEOUT_EXACTLY_ONCE=true")
}

func scaleOutOneKilled(t *testing.T, env ...string) {
	exactlyOnce := len(env) > 0
	const partitions, n, users = 6, 24000, 120
	broker := scaleoutBroker(t, partitions)
	lines := scaleoutEvents(0, n, users)
	ref := scaleoutReference(t, lines)
	w := watchScaled(t, broker, ref)

	a, addrA := scaleoutAgent(t, t.TempDir(), broker, env...)
	b, _ := scaleoutAgent(t, t.TempDir(), broker, env...)
	c, _ := scaleoutAgent(t, t.TempDir(), broker, env...)
	waitSplit(t, partitions, a, b, c)
	// Events arrive over time, as a live topic's do, so the kill lands
	// mid-stream: a third of them before it, the rest while the group
	// moves B's partitions to A and C and then shares them with D.
	const chunks = 30
	produceLines(t, broker, lines[:n/3])
	w.waitTotal(t, n/4)
	b.stop(syscall.SIGKILL)
	var d *agentProc
	for i := range chunks {
		lo, hi := n/3+i*(n-n/3)/chunks, n/3+(i+1)*(n-n/3)/chunks
		produceLines(t, broker, lines[lo:hi])
		if i == chunks/3 {
			d, _ = scaleoutAgent(t, t.TempDir(), broker, env...)
		}
		time.Sleep(300 * time.Millisecond)
	}

	w.waitAll(t, n, a, b, c, d)
	w.mu.Lock()
	for _, s := range w.bad {
		t.Error(s)
	}
	total := w.total
	w.mu.Unlock()
	if exactlyOnce && total != n {
		t.Errorf("exactly-once: %d predictions for %d events, want one each", total, n)
	}
	fw := checkStates(t, addrA, ref, purchases(lines))
	forwarded := len(fw)
	if forwarded == 0 || forwarded == users {
		t.Fatalf("agent A forwarded %d of %d lookups; with the partitions split, some users are its own and some are others'", forwarded, users)
	}
	// Erasing a user whose partition another agent owns, asked of A.
	if status := httpDo(t, "DELETE", addrA, fmt.Sprintf("/v1/state/user_features/%d", fw[0])); status != http.StatusNoContent {
		t.Errorf("erase of user %d through A: status %d, want 204", fw[0], status)
	}
	if _, status := lookupUser(t, addrA, fw[0]); status != http.StatusNotFound {
		t.Errorf("user %d after its erase: status %d, want 404", fw[0], status)
	}
	if restored := restoredRecords(d.stderr.String()); restored == 0 {
		t.Errorf("the agent that joined restored no changelog records, but it took over partitions with state\n%s", d.stderr)
	}
	if exactlyOnce {
		// Later than waitAll: a duplicate committed after all events had
		// one would show now.
		w.mu.Lock()
		if w.total != n {
			t.Errorf("exactly-once: %d predictions for %d events at the end, want one each", w.total, n)
		}
		w.mu.Unlock()
	}
	t.Logf("%d predictions for %d events (in at-least-once mode the surplus is redelivery after the kill); A forwarded %d of %d lookups", total, n, forwarded, users)
	for _, p := range []*agentProc{a, c, d} {
		p.kill(syscall.SIGTERM)
	}
	for _, p := range []*agentProc{a, c, d} {
		p.stop(syscall.SIGTERM)
	}
}

var restoredRE = regexp.MustCompile(`changelog restored.* records=(\d+)`)

// restoredRecords sums the changelog records an agent's log says it
// restored.
func restoredRecords(stderr string) int {
	n := 0
	for _, m := range restoredRE.FindAllStringSubmatch(stderr, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// changelogEnd is the changelog topic's total end offset: how many records
// were ever written to it.
func changelogEnd(t *testing.T, broker string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, scaleoutChangelog)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

// TestScaleOutRestartReadsOnlyTheTail: agent A processes the first events
// and stops; B, with an empty data dir, restores all of A's changelog and
// processes more; A restarts on its own data dir and restores only the
// records B wrote, not the whole changelog; its state is then complete.
func TestScaleOutRestartReadsOnlyTheTail(t *testing.T) {
	const partitions, users = 3, 30
	broker := scaleoutBroker(t, partitions)
	first, second := scaleoutEvents(0, 3000, users), scaleoutEvents(3000, 2000, users)
	ref := scaleoutReference(t, append(append([]string{}, first...), second...))
	w := watchScaled(t, broker, ref)
	dirA := t.TempDir()

	a, _ := scaleoutAgent(t, dirA, broker)
	produceLines(t, broker, first)
	w.waitAll(t, len(first), a)
	a.stop(syscall.SIGTERM)
	afterA := changelogEnd(t, broker)

	dirB := t.TempDir()
	b, _ := scaleoutAgent(t, dirB, broker)
	produceLines(t, broker, second)
	w.waitAll(t, len(first)+len(second), b)
	b.stop(syscall.SIGTERM)
	afterB := changelogEnd(t, broker)
	if got := restoredRecords(b.stderr.String()); int64(got) != afterA {
		t.Errorf("B (empty data dir) restored %d changelog records, want all %d", got, afterA)
	}

	a, addrA := scaleoutAgent(t, dirA, broker)
	// Lookups find the namespace's partitions once the pipeline is built.
	a.waitLog("kafka partitions assigned")
	checkStates(t, addrA, ref, purchases(append(append([]string{}, first...), second...)))

	// A user erased on A (GDPR) stays erased on B, which restores the
	// partition from its own older copy plus the changelog's tail.
	if status := httpDo(t, "DELETE", addrA, "/v1/state/user_features/7"); status != http.StatusNoContent {
		t.Fatalf("erase user 7: status %d", status)
	}
	if _, status := lookupUser(t, addrA, 7); status != http.StatusNotFound {
		t.Errorf("user 7 after erase on A: status %d, want 404", status)
	}
	// Listing is per partition: this agent's copy of one.
	if status := httpDo(t, "GET", addrA, "/v1/state/user_features"); status != http.StatusBadRequest {
		t.Errorf("listing a partitioned namespace without ?partition: status %d, want 400", status)
	}
	if status := httpDo(t, "GET", addrA, "/v1/state/user_features?partition=0"); status != http.StatusOK {
		t.Errorf("listing partition 0: status %d, want 200", status)
	}
	restoredA := restoredRecords(a.stderr.String())
	a.stop(syscall.SIGTERM)
	b, addrB := scaleoutAgent(t, dirB, broker)
	b.waitLog("kafka partitions assigned")
	var status int
	for deadline := time.Now().Add(runTimeout); ; time.Sleep(50 * time.Millisecond) {
		if _, status = lookupUser(t, addrB, 7); (status != http.StatusServiceUnavailable && status != 0) || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusNotFound {
		t.Errorf("user 7, erased on A, on B after its restore: status %d, want 404", status)
	}
	if _, status := lookupUser(t, addrB, 8); status != http.StatusOK {
		t.Errorf("user 8 on B: status %d, want 200", status)
	}
	b.stop(syscall.SIGTERM)
	if got := restoredA; int64(got) != afterB-afterA {
		t.Errorf("A restarted restored %d changelog records, want the %d B wrote (its local copy has the first %d)\n%s", got, afterB-afterA, afterA, a.stderr)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.bad {
		t.Error(s)
	}
	if w.total != len(first)+len(second) {
		t.Errorf("%d predictions for %d events: with graceful hand-overs nothing is processed twice", w.total, len(first)+len(second))
	}
}

func httpDo(t *testing.T, method, addr, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+scaleoutToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
