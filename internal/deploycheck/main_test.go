package deploycheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// requiredEnv makes a missing tool (systemd-analyze, strace) fail the tests
// that need it instead of skipping them; CI sets it.
const requiredEnv = "DEPLOY_CHECK_REQUIRED"

// mdweEnv, when set in the environment of this test binary, makes it turn
// on memory-deny-write-execute for itself and exec the program named by
// its arguments; see TestMemoryDenyWriteExecuteBreaksWazero.
const mdweEnv = "DEPLOYCHECK_MDWE_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(mdweEnv) != "" {
		mdweExec()
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// repoRoot is the checkout this module sits in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readRepoFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// agentBinary builds the agent from this checkout once per test run, with
// the flags the rest of CI builds with, so the build cache serves it.
// (deploy/container/Dockerfile builds with CGO_ENABLED=0; the agent has no
// cgo code, so the binaries behave alike.)
func agentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "deploycheck-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sluice-agent")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/agent")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build the agent: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// needTool returns the path of a command, or skips the test without it
// (fails it if DEPLOY_CHECK_REQUIRED=1).
func needTool(t *testing.T, name, apt string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed (Debian package %s); this check needs it", name, apt)
	if os.Getenv(requiredEnv) == "1" {
		t.Fatalf("%s, and %s=1", msg, requiredEnv)
	}
	t.Skip(msg + "; set " + requiredEnv + "=1 to make that a failure")
	return ""
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, so the agents started here do not collide with other tests' or a
// developer's agent on the default ports.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running agent.
type proc struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
	// pid is the agent's own pid; it differs from cmd's when the agent runs
	// under a tracer.
	pid int
}

// start runs argv in dir with exactly env (no inherited variables, as in a
// container or a systemd service) and returns once it is started.
func start(t *testing.T, argv, env []string, dir string) *proc {
	t.Helper()
	p := &proc{output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Dir = dir
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	// An agent that outlives its parent (under strace) would otherwise
	// hold the output pipe open and make Wait wait for it.
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.pid != p.cmd.Process.Pid {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(argv, " "), p.output.String())
		}
	})
	return p
}

// stop sends SIGTERM, as systemd and the kubelet do, and returns how long
// the agent took to exit; it fails the test if the agent did not exit 0
// within limit.
func (p *proc) stop(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("the agent did not exit within %v of SIGTERM", limit)
	}
	took := time.Since(began)
	if p.err != nil {
		t.Fatalf("the agent exited with %v after SIGTERM; want a clean exit 0", p.err)
	}
	return took
}

// waitReady polls /readyz until it answers 200, and fails if the process
// exits first or it takes longer than limit.
func (p *proc) waitReady(t *testing.T, base string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.done:
			t.Fatalf("the agent exited (%v) before it was ready", p.err)
		default:
		}
		if code, _ := get(base+"/readyz", ""); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent was not ready within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitListening waits until addr (host:port) accepts TCP connections. The
// agent answers /readyz 200 as soon as it hands its pipelines to the
// supervisor, before they have built their processors (compiling Wasm
// plugins takes seconds on a first start) and before http_ingest listens,
// so clients must retry a refused connection; this measures that gap.
func (p *proc) waitListening(t *testing.T, addr string, limit time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		select {
		case <-p.done:
			t.Fatalf("the agent exited (%v) before %s listened", p.err, addr)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return time.Since(began)
		}
		if time.Since(began) > limit {
			t.Fatalf("%s did not listen within %v", addr, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

func get(url, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(req)
}

func post(url, token, body string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(req)
}

func do(req *http.Request) (int, string) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// kafkaCluster is an in-process Kafka-protocol cluster standing in for the
// deployments' real one, with the topics the pipelines write.
func kafkaCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "predictions", "dead_letters"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// record is one Kafka record as the checks need it.
type record struct {
	key, value string
	headers    map[string]string
}

// consume reads want records from topic, or fails after a while.
func consume(t *testing.T, c *kfake.Cluster, topic string, want int) []record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s: got %d records, want %d", topic, len(out), want)
		}
		if err := errors.Join(fetchErrors(fs)...); err != nil {
			t.Fatalf("consume %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			out = append(out, record{key: string(r.Key), value: string(r.Value), headers: h})
		})
	}
	return out
}

func fetchErrors(fs kgo.Fetches) []error {
	var errs []error
	for _, e := range fs.Errors() {
		errs = append(errs, fmt.Errorf("%s/%d: %w", e.Topic, e.Partition, e.Err))
	}
	return errs
}

// deployment is a running agent as a deployment file set it up, and what
// its clients need to reach it.
type deployment struct {
	agent      *proc
	httpBase   string // the agent's HTTP server, http://host:port
	httpToken  string // SLUICE_HTTP_TOKEN, for /metrics
	ingestURL  string // http_ingest, http://host:port/path
	ingestTok  string // the token the application sends
	kafka      *kfake.Cluster
	sourceHead string // how the pipeline marks a dead letter's source
	stopLimit  time.Duration
}

// exercise is what a user checks after deploying (check), then a clean
// stop within the deployment's grace period.
func (d *deployment) exercise(t *testing.T) {
	t.Helper()
	d.check(t)
	took := d.agent.stop(t, d.stopLimit)
	t.Logf("stopped cleanly in %v (limit %v)", took.Round(time.Millisecond), d.stopLimit)
}

// check is what a user checks after deploying: the probes, an event in
// with the deployment's token and its prediction back, a bad one rejected
// with the reason, both on their Kafka topics, and the metrics endpoint
// with its token.
func (d *deployment) check(t *testing.T) {
	t.Helper()
	gap := d.agent.waitListening(t, hostOf(t, d.ingestURL), 2*time.Minute)
	t.Logf("http_ingest listened %v after /readyz first answered 200", gap.Round(time.Millisecond))
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(d.httpBase+path, ""); code != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, code, body)
		}
	}
	if code, body := get(d.httpBase+"/metrics", d.httpToken); code != http.StatusOK || !strings.Contains(body, "sluice_") {
		t.Errorf("GET /metrics with the deployment's http token: %d, want 200 with sluice_ metrics; body starts %.200q", code, body)
	}

	good := `{"user_id":7,"event_type":"purchase","event_data":{"amount":120},"timestamp":"2025-01-01T10:00:00Z"}`
	if code, body := post(d.ingestURL, "", good); code != http.StatusUnauthorized {
		t.Errorf("POST without a token: %d %s, want 401", code, body)
	}
	if code, body := post(d.ingestURL, "wrong-token-0123456789", good); code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong token: %d %s, want 401", code, body)
	}
	code, body := post(d.ingestURL, d.ingestTok, good)
	if code != http.StatusOK {
		t.Fatalf("POST an event with the deployment's token: %d %s, want 200", code, body)
	}
	var answer struct {
		Features   map[string]any `json:"features"`
		Prediction struct {
			Label string  `json:"label"`
			Score float64 `json:"score"`
		} `json:"prediction"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("the answer is not the event with its prediction: %v: %s", err, body)
	}
	if answer.Features["event_count"] != float64(1) || answer.Prediction.Label != "high_value_user" {
		t.Errorf("answer %s: want event_count 1 and label high_value_user", body)
	}
	bad := `{"user_id":"seven","event_type":"teleport","timestamp":"2025-01-01T10:01:00Z"}`
	if code, body := post(d.ingestURL, d.ingestTok, bad); code != http.StatusUnprocessableEntity || !strings.Contains(body, "error") {
		t.Errorf("POST a bad event: %d %s, want 422 with the reason", code, body)
	}

	preds := consume(t, d.kafka, "predictions", 1)
	if preds[0].key != "7" || !strings.Contains(preds[0].value, `"prediction"`) {
		t.Errorf("predictions topic: %+v, want the event keyed 7 with its prediction", preds[0])
	}
	dead := consume(t, d.kafka, "dead_letters", 1)
	if dead[0].value != bad || dead[0].headers["error"] == "" || !strings.HasPrefix(dead[0].headers["source"], d.sourceHead) {
		t.Errorf("dead_letters topic: %+v, want the bad event's bytes with an error header and source %q...", dead[0], d.sourceHead)
	}

}

// restartKeepsState starts the agent again on the data dir of a run that
// took user 7's first event, and checks the user's features go on from
// there: the state survived the restart.
func restartKeepsState(t *testing.T, launch func() *proc, httpBase, ingestURL, token string, startLimit, stopLimit time.Duration) {
	t.Helper()
	p := launch()
	p.waitReady(t, httpBase, startLimit)
	gap := p.waitListening(t, hostOf(t, ingestURL), startLimit)
	t.Logf("restart: http_ingest listened %v after /readyz first answered 200", gap.Round(time.Millisecond))
	code, body := post(ingestURL, token, `{"user_id":7,"event_type":"click","event_data":{"page":"home"},"timestamp":"2025-01-01T10:05:00Z"}`)
	if code != http.StatusOK || !strings.Contains(body, `"event_count":2`) {
		t.Errorf("after a restart on the same data dir: %d %s, want event_count 2 (state kept)", code, body)
	}
	p.stop(t, stopLimit)
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
