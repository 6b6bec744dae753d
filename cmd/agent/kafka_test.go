package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/agent/kafka"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct free loopback addresses: each port is held
// until all are chosen, or the kernel may hand one out twice (it did, to
// a test's broker and ingest address).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// testBroker runs a Kafka-protocol broker in the test process, outside the
// agent, as a real cluster would be: it outlives an agent that is killed.
func testBroker(t *testing.T) string {
	t.Helper()
	b, err := kafka.StartDevBroker(kafka.DevConfig{Address: "127.0.0.1:0", Partitions: 3,
		Topics: []string{"user_events", "predictions", "dead_letters"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// agentProc is an agent running in the background.
type agentProc struct {
	t              testing.TB
	cmd            interface{ Wait() error }
	kill           func(syscall.Signal)
	stdout, stderr *output
	ingest         string
	done           chan struct{}
}

// startAgent runs the agent on a pipeline (builtin:realtime, or a variant
// of it) against broker, with its HTTP ingest on a free port.
func startAgent(t *testing.T, dir, broker, pipeline string, extraEnv ...string) *agentProc {
	t.Helper()
	ingest := freeAddr(t)
	env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_KAFKA_BROKERS="+broker,
		"SLUICE_HTTP_ADDRESS=", "REALTIME_HTTP_ADDRESS="+ingest)
	p := startPipeline(t, dir, append(env, extraEnv...), "--pipeline", pipeline)
	p.ingest = ingest
	return p
}

// startPipeline runs the agent in the background with env and args; it is
// killed when the test ends if it is still running.
func startPipeline(t testing.TB, dir string, env []string, args ...string) *agentProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*runTimeout)
	cmd, stdout, stderr := command(ctx, dir, env, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &agentProc{t: t, cmd: cmd, stdout: stdout, stderr: stderr, done: make(chan struct{})}
	p.kill = func(sig syscall.Signal) { _ = cmd.Process.Signal(sig) }
	go func() { _ = cmd.Wait(); cancel(); close(p.done) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

func (p *agentProc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.kill(sig)
	select {
	case <-p.done:
	case <-time.After(runTimeout):
		p.t.Errorf("agent did not stop on %v\nstderr:\n%s", sig, p.stderr)
	}
}

// produceLines writes each JSON line to user_events keyed by its user_id,
// as the seed's producer does.
func produceLines(t testing.TB, broker string, lines []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		var ev struct {
			UserID json.RawMessage `json:"user_id"`
		}
		_ = json.Unmarshal([]byte(l), &ev)
		recs[i] = &kgo.Record{Topic: "user_events", Key: bytes.Trim(ev.UserID, `"`), Value: []byte(l)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readTopic reads records of topic from the start until want have arrived
// or the deadline passes; it returns what it read.
func readTopic(t *testing.T, broker, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// prediction is what the predictions topic carries, in part.
type prediction struct {
	UserID    int    `json:"user_id"`
	EventType string `json:"event_type"`
	EventData struct {
		Amount float64 `json:"amount"`
		Seq    int     `json:"seq"`
	} `json:"event_data"`
	Features struct {
		EventCount int `json:"event_count"`
	} `json:"features"`
	Prediction struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	} `json:"prediction"`
}

// TestRealtimeOverKafka is the seed's real-time job end to end: its events,
// five of them bad, produced to user_events by a plain franz-go producer;
// the agent in a consumer group; predictions and dead letters read back
// and checked against the seed's logic applied independently. Then the
// same pipeline's HTTP ingest answers a posted event with its prediction.
func TestRealtimeOverKafka(t *testing.T) {
	broker := testBroker(t)
	dir := t.TempDir()
	agent := startAgent(t, dir, broker, "builtin:realtime")
	sample, err := os.ReadFile("../../pipelines/sample/realtime.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	produceLines(t, broker, lines)
	wantDead := map[string]string{ // the sample's bad lines -> reason
		lines[3]:  "expect_column_values_to_be_of_type(user_id)",
		lines[9]:  "expect_column_values_to_be_in_set(event_type)",
		lines[14]: "expect_column_values_to_be_between(event_data.amount)",
		lines[20]: "expect_column_values_to_not_be_null(timestamp)",
		lines[24]: "late: event time 2025-01-07T14:00:00Z",
	}
	preds := readTopic(t, broker, "predictions", len(lines)-len(wantDead), runTimeout)
	dead := readTopic(t, broker, "dead_letters", len(wantDead), runTimeout)
	checkSeedPredictions(t, lines, wantDead, preds)
	if len(dead) != len(wantDead) {
		t.Errorf("%d dead letters, want %d\nstderr:\n%s", len(dead), len(wantDead), agent.stderr)
	}
	for _, r := range dead {
		reason, ok := wantDead[string(r.Value)]
		if !ok {
			t.Errorf("dead letter %q is not one of the sample's bad events byte for byte", r.Value)
			continue
		}
		if e := header(r, "error"); !strings.Contains(e, reason) {
			t.Errorf("dead letter %s: error header %q, want it to name %q", r.Value, e, reason)
		}
		if header(r, "source_topic") != "user_events" || header(r, "source_offset") == "" {
			t.Errorf("dead letter %s: headers %v do not say where it came from", r.Value, r.Headers)
		}
	}

	// HTTP sync mode: user 1's next event comes back scored, counted after
	// the events already consumed from Kafka.
	users := seedUsers(t, lines, wantDead)
	ev := `{"user_id":1,"event_type":"purchase","event_data":{"amount":40},"timestamp":"2025-01-10T00:00:00Z"}`
	code, body := post(t, agent.ingest, ev)
	var got prediction
	if err := json.Unmarshal(body, &got); code != 200 || err != nil {
		t.Fatalf("POST event: %d %s (%v)", code, body, err)
	}
	u := seedApply(users, 1, "purchase", 40)
	if got.Features.EventCount != u.count || got.Prediction.Label != seedLabel(u, "purchase") {
		t.Errorf("POST event: count %d label %q, want %d %q", got.Features.EventCount, got.Prediction.Label, u.count, seedLabel(u, "purchase"))
	}
	// A batch in NDJSON: one array back, the bad event carrying its reason.
	code, body = post(t, agent.ingest, ev+"\n"+`{"user_id":"9","event_type":"click","event_data":{},"timestamp":"2025-01-09T00:00:00Z"}`+"\n")
	var batch []map[string]any
	if err := json.Unmarshal(body, &batch); code != 200 || err != nil || len(batch) != 2 {
		t.Fatalf("POST batch: %d %s (%v)", code, body, err)
	}
	if e, _ := batch[1]["error"].(string); !strings.Contains(e, "expect_column_values_to_be_of_type(user_id)") || batch[0]["prediction"] == nil {
		t.Errorf("POST batch: %s; want a prediction, then the bad event's reason", body)
	}
}

func post(t *testing.T, addr, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// seedUsers applies the seed's processor to the good lines.
func seedUsers(t *testing.T, lines []string, bad map[string]string) map[int]*seedUser {
	t.Helper()
	users := map[int]*seedUser{}
	for _, l := range lines {
		if _, ok := bad[l]; ok {
			continue
		}
		var e prediction
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		seedApply(users, e.UserID, e.EventType, e.EventData.Amount)
	}
	return users
}

// checkSeedPredictions: each user's predictions, in partition order (one
// user, one partition), carry the running count and the label the seed's
// logic gives after that many of the user's good events.
func checkSeedPredictions(t *testing.T, lines []string, bad map[string]string, preds []*kgo.Record) {
	t.Helper()
	perUser := map[int][]prediction{}
	for _, r := range preds {
		var p prediction
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("prediction %q: %v", r.Value, err)
		}
		if string(r.Key) != strconv.Itoa(p.UserID) {
			t.Errorf("prediction for user %d keyed %q", p.UserID, r.Key)
		}
		perUser[p.UserID] = append(perUser[p.UserID], p)
	}
	users := map[int]*seedUser{}
	n := 0
	for _, l := range lines {
		if _, ok := bad[l]; ok {
			continue
		}
		var e prediction
		_ = json.Unmarshal([]byte(l), &e)
		u := seedApply(users, e.UserID, e.EventType, e.EventData.Amount)
		got := perUser[e.UserID]
		if len(got) < u.count {
			t.Errorf("user %d: %d predictions, want at least %d", e.UserID, len(got), u.count)
			continue
		}
		p := got[u.count-1]
		if p.EventType != e.EventType || p.Features.EventCount != u.count || p.Prediction.Label != seedLabel(u, e.EventType) {
			t.Errorf("user %d event %d: %s count %d label %s, want %s %d %s", e.UserID, u.count, p.EventType, p.Features.EventCount, p.Prediction.Label, e.EventType, u.count, seedLabel(u, e.EventType))
		}
		n++
	}
	if n != len(preds) {
		t.Errorf("%d predictions for %d good events", len(preds), n)
	}
}

// genEvents makes n valid events for users 1..users with increasing times;
// event_data.seq numbers them.
func genEvents(n, users int) []string {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"user_id":%d,"event_type":"click","event_data":{"amount":1,"seq":%d},"timestamp":%q}`,
			1+i%users, i, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
	}
	return out
}

// predictionWatch reads the predictions topic for the whole test, across
// agent restarts, and counts each event (by event_data.seq) it sees.
type predictionWatch struct {
	mu    sync.Mutex
	seen  map[int]int
	total int
}

func watchPredictions(t testing.TB, broker string) *predictionWatch {
	t.Helper()
	w := &predictionWatch{seen: map[int]int{}}
	eachPrediction(t, broker, func(p prediction) {
		w.mu.Lock()
		w.seen[p.EventData.Seq]++
		w.total++
		w.mu.Unlock()
	})
	return w
}

// eachPrediction calls fn, from a goroutine, with every prediction on the
// topic from its start, for the rest of the test.
func eachPrediction(t testing.TB, broker string, fn func(prediction)) {
	t.Helper()
	// read_committed: in exactly-once mode an aborted transaction's
	// predictions are in the topic but were never delivered.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("predictions"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var p prediction
				if json.Unmarshal(r.Value, &p) == nil {
					fn(p)
				}
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
}

// waitFor polls cond until it holds or the run timeout passes.
func (w *predictionWatch) waitFor(t testing.TB, what string, cond func(total, distinct int) bool) {
	t.Helper()
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		ok := cond(w.total, len(w.seen))
		w.mu.Unlock()
		if ok {
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("timed out waiting for %s: %d predictions, %d distinct events", what, w.total, len(w.seen))
}

// quickRejoin writes the realtime pipeline with the shortest session
// timeout the broker allows: a killed agent never leaves its group, and its
// partitions wait out the session (45s by default) before the restarted
// agent gets them.
func quickRejoin(t *testing.T, dir string) string {
	t.Helper()
	y, err := os.ReadFile("../../pipelines/realtime.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const group = "consumer_group: sluice-realtime\n"
	if !bytes.Contains(y, []byte(group)) {
		t.Fatal("pipelines/realtime.yaml no longer names its consumer group as this test expects")
	}
	y = bytes.Replace(y, []byte(group), []byte(group+"          session_timeout: 6s\n"), 1)
	path := filepath.Join(dir, "realtime.yaml")
	writeFile(t, path, string(y))
	return path
}

// TestKafkaAgentKilledMidStream: the agent is SIGKILLed twice while it works
// through a topic, and restarted on the same data dir. No event is lost
// (each has a prediction), and every user's state counts each event once,
// although some predictions are written twice (at-least-once delivery).
func TestKafkaAgentKilledMidStream(t *testing.T) {
	broker := testBroker(t)
	const n, users = 20000, 50
	produceLines(t, broker, genEvents(n, users))
	w := watchPredictions(t, broker)
	dir := t.TempDir()
	pipeline := quickRejoin(t, dir)
	for kill, at := range []int{n / 10, n / 2} {
		a := startAgent(t, dir, broker, pipeline)
		w.waitFor(t, fmt.Sprintf("%d predictions before kill %d", at, kill+1), func(total, _ int) bool { return total >= at })
		a.stop(syscall.SIGKILL)
	}
	httpAddr := freeAddr(t)
	const token = "test-token-0123456789"
	a := startAgent(t, dir, broker, pipeline, "SLUICE_HTTP_ADDRESS="+httpAddr, "SLUICE_HTTP_TOKEN="+token)
	w.waitFor(t, "a prediction for every event", func(_, distinct int) bool { return distinct == n })
	for u := 1; u <= users; u++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/state/user_features/%d", httpAddr, u), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var entry struct {
			Value struct {
				EventCount int `json:"event_count"`
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&entry)
		_ = resp.Body.Close()
		if err != nil || entry.Value.EventCount != n/users {
			t.Errorf("user %d: event_count %d (%v), want %d: each event counted once", u, entry.Value.EventCount, err, n/users)
		}
	}
	a.stop(syscall.SIGTERM)
	t.Logf("%d predictions for %d events (the surplus is at-least-once redelivery after the kills)", w.total, n)
}

// currentPartitions replays an agent's assignment log: what it owns now.
func currentPartitions(stderr string) map[string]bool {
	own := map[string]bool{}
	for _, line := range strings.Split(stderr, "\n") {
		m := partitionLogRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, p := range strings.Fields(m[2]) {
			own[p] = m[1] == "assigned"
		}
	}
	for p, ok := range own {
		if !ok {
			delete(own, p)
		}
	}
	return own
}

var partitionLogRE = regexp.MustCompile(`kafka partitions (assigned|revoked): topic user_events partitions \[([0-9 ]*)\]`)

// TestTwoAgentsShareAGroup: two agents in one consumer group split the
// topic's partitions, and with neither failing every event is processed
// exactly once by the group; each agent's state holds only its own users.
func TestTwoAgentsShareAGroup(t *testing.T) {
	broker := testBroker(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startAgent(t, dirA, broker, "builtin:realtime")
	b := startAgent(t, dirB, broker, "builtin:realtime")
	var ownA, ownB map[string]bool
	for deadline := time.Now().Add(runTimeout); ; time.Sleep(20 * time.Millisecond) {
		ownA, ownB = currentPartitions(a.stderr.String()), currentPartitions(b.stderr.String())
		if len(ownA) > 0 && len(ownB) > 0 && len(ownA)+len(ownB) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions never split: A owns %v, B owns %v\nA:\n%s\nB:\n%s", ownA, ownB, a.stderr, b.stderr)
		}
	}
	for p := range ownA {
		if ownB[p] {
			t.Fatalf("partition %s owned by both agents", p)
		}
	}
	const n, users = 3000, 40
	produceLines(t, broker, genEvents(n, users))
	w := watchPredictions(t, broker)
	w.waitFor(t, "every event", func(_, distinct int) bool { return distinct == n })
	// Both leave at once, committing as they go.
	a.kill(syscall.SIGTERM)
	b.stop(syscall.SIGTERM)
	a.stop(syscall.SIGTERM)
	w.mu.Lock()
	total := w.total
	w.mu.Unlock()
	if total != n {
		t.Errorf("%d predictions for %d events: the group processed some twice with no failure", total, n)
	}
	keysA, keysB := stateKeys(t, dirA), stateKeys(t, dirB)
	if len(keysA) == 0 || len(keysB) == 0 || len(keysA)+len(keysB) != users {
		t.Errorf("users in A's state %d, in B's %d; want both some, %d in all", len(keysA), len(keysB), users)
	}
	for k := range keysA {
		if keysB[k] {
			t.Errorf("user %s in both agents' state: a user's events must stay on one partition", k)
		}
	}
}

func stateKeys(t *testing.T, dir string) map[string]bool {
	t.Helper()
	res := runAgent(t, dir, append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data")), "state", "list", "user_features")
	var page struct{ Keys []string }
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil {
		t.Fatalf("state list: %v\n%s", err, res)
	}
	keys := map[string]bool{}
	for _, k := range page.Keys {
		keys[k] = true
	}
	return keys
}

// kcat returns the path of Debian's kcat. CI installs it and sets
// KCAT_REQUIRED, so there a missing kcat fails rather than skips.
func kcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("KCAT_REQUIRED") != "" {
			t.Fatalf("kcat is required (KCAT_REQUIRED is set) but not found: %v", err)
		}
		t.Skip("kcat not installed (apt-get install kcat); .ci/run installs it")
	}
	return path
}

// runKcat runs kcat with stdin and returns its stdout.
func runKcat(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// waitLog waits until the agent's log says s.
func (p *agentProc) waitLog(s string) {
	p.t.Helper()
	for deadline := time.Now().Add(runTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.stderr.String(), s) {
			return
		}
	}
	p.t.Fatalf("agent never logged %q\nstderr:\n%s", s, p.stderr)
}

// TestMainJobWithKcat runs the agent's main job as the README shows it: no
// flags, no broker (the embedded dev broker), Debian's kcat producing the
// seed's events and reading predictions and dead letters back. Stopped and
// started again on the same data dir, the dev broker still holds the topics
// and the group's offsets, and the state still holds the users: nothing is
// processed twice, and the next posted event counts on.
func TestMainJobWithKcat(t *testing.T) {
	bin := kcat(t)
	dir := t.TempDir()
	addrs := freeAddrs(t, 2)
	broker, ingest := addrs[0], addrs[1]
	env := append(baseEnv(), "SLUICE_DEV_KAFKA_ADDRESS="+broker, "REALTIME_HTTP_ADDRESS="+ingest, "SLUICE_HTTP_ADDRESS=")
	start := func() *agentProc {
		p := startPipeline(t, dir, env) // no flags: the defaults
		p.waitLog("kafka partitions assigned")
		p.waitLog("http_ingest listening")
		return p
	}
	a := start()

	sample, err := os.ReadFile("../../pipelines/sample/realtime.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sample)), "\n")
	var keyed strings.Builder
	for _, l := range lines {
		var ev struct {
			UserID json.RawMessage `json:"user_id"`
		}
		_ = json.Unmarshal([]byte(l), &ev)
		fmt.Fprintf(&keyed, "%s\t%s\n", bytes.Trim(ev.UserID, `"`), l)
	}
	runKcat(t, bin, keyed.String(), "-b", broker, "-t", "user_events", "-P", "-K", "\t")

	bad := map[string]string{
		lines[3]:  "expect_column_values_to_be_of_type(user_id)",
		lines[9]:  "expect_column_values_to_be_in_set(event_type)",
		lines[14]: "expect_column_values_to_be_between(event_data.amount)",
		lines[20]: "expect_column_values_to_not_be_null(timestamp)",
		lines[24]: "late: event time 2025-01-07T14:00:00Z",
	}
	good := len(lines) - len(bad)
	out := runKcat(t, bin, "", "-b", broker, "-C", "-t", "predictions", "-o", "beginning", "-c", strconv.Itoa(good), "-f", "%k\t%s\n")
	var preds []*kgo.Record
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "\t")
		preds = append(preds, &kgo.Record{Key: []byte(k), Value: []byte(v)})
	}
	checkSeedPredictions(t, lines, bad, preds)
	out = runKcat(t, bin, "", "-b", broker, "-C", "-t", "dead_letters", "-o", "beginning", "-c", strconv.Itoa(len(bad)), "-f", "%h\t%s\n")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		headers, value, _ := strings.Cut(l, "\t")
		if reason, ok := bad[value]; !ok || !strings.Contains(headers, reason) {
			t.Errorf("dead letter %q with headers %q: want one of the bad events, byte for byte, with its reason", value, headers)
		}
	}

	a.stop(syscall.SIGTERM)
	if code := a.cmd.(*exec.Cmd).ProcessState.ExitCode(); code != 0 {
		t.Fatalf("agent exited %d on SIGTERM\n%s", code, a.stderr)
	}
	a = start()
	users := seedUsers(t, lines, bad)
	u := users[1]
	code, body := post(t, ingest, `{"user_id":1,"event_type":"click","event_data":{},"timestamp":"2025-01-10T00:00:00Z"}`)
	var p prediction
	if err := json.Unmarshal(body, &p); code != 200 || err != nil || p.Features.EventCount != u.count+1 {
		t.Errorf("after a restart, POST for user 1: %d %s; want event_count %d", code, body, u.count+1)
	}
	// The restarted group resumed after what it had committed: the sample
	// was not scored again, and the posted event added one prediction.
	out = runKcat(t, bin, "", "-b", broker, "-C", "-t", "predictions", "-o", "beginning", "-e", "-q", "-f", "%s\n")
	if n := strings.Count(out, "\n"); n != good+1 {
		t.Errorf("predictions topic holds %d records after the restart, want %d", n, good+1)
	}
	a.stop(syscall.SIGTERM)
}
