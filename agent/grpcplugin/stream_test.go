package grpcplugin_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // retry, catch, mapping

	"github.com/sluice-dev/sluice/agent/grpcplugin"
)

type outMsg struct {
	body, err string
	meta      map[string]string
}

// runStream runs a Benthos stream of one pipeline thread with the given
// processor over inputs, one message per batch, each sent once the one
// before is acknowledged, and returns what reached the output, in order.
// onOutput, if set, sees each output as it arrives.
func runStream(t *testing.T, env *service.Environment, processor string, inputs []string, onOutput ...func(outMsg)) []outMsg {
	t.Helper()
	b := env.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: off"); err != nil {
		t.Fatal(err)
	}
	b.SetThreads(1)
	if err := b.AddProcessorYAML(processor); err != nil {
		t.Fatal(err)
	}
	produce, err := b.AddProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out []outMsg
	err = b.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		body, _ := m.AsBytes()
		o := outMsg{body: string(body), err: errText(m), meta: map[string]string{}}
		_ = m.MetaWalk(func(k, v string) error { o.meta[k] = v; return nil })
		mu.Lock()
		out = append(out, o)
		mu.Unlock()
		for _, fn := range onOutput {
			fn(o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	strm, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- strm.Run(ctx) }()
	for _, in := range inputs {
		if err := produce(ctx, service.NewMessage([]byte(in))); err != nil {
			t.Fatalf("produce %q: %v", in, err)
		}
	}
	if err := strm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return out
}

func testEnv(t *testing.T) *service.Environment {
	t.Helper()
	env := service.NewEnvironment()
	if err := grpcplugin.Register(env, nil); err != nil {
		t.Fatal(err)
	}
	return env
}

// TestStreamScorer runs the example scorer in a pipeline and checks each
// event's prediction.
func TestStreamScorer(t *testing.T) {
	model, err := filepath.Abs("../../examples/native/scorer/model.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	version := hex.EncodeToString(sum[:])[:12]
	out := runStream(t, testEnv(t), `
grpc_plugin:
  path: `+plugins["scorer"]+`
  config:
    model_file: `+model+`
    labels:
      - {label: high_value_user, above: 0.7}
      - {label: medium_value_user, above: 0.3}
    default_label: low_value_user
    confidence: {constant: 0.85}
`, []string{
		`{"user_id":7,"features":{"event_count":12,"unique_event_types":3,"total_value":250.5,"is_purchase_event":1}}`,
		`{"user_id":8,"features":{"event_count":2,"unique_event_types":1}}`,
		`{"user_id":9,"features":{}}`,
		`{"user_id":10,"features":{"event_count":"many"}}`,
	})
	wants := []struct {
		label, score, err string
	}{
		{label: "high_value_user", score: "2.5505000000000004"},
		{label: "medium_value_user", score: "0.4"},
		{label: "low_value_user", score: "0"},
		{err: `field "features.event_count": want number, got "many"`},
	}
	if len(out) != len(wants) {
		t.Fatalf("got %d messages, want %d", len(out), len(wants))
	}
	for i, w := range wants {
		o := out[i]
		if w.err != "" {
			if o.err != plugins["scorer"]+": "+w.err {
				t.Errorf("message %d: error %q, want %q", i, o.err, w.err)
			}
			continue
		}
		p := gjson.Get(o.body, "prediction")
		if o.err != "" || p.Get("label").String() != w.label || p.Get("score").Raw != w.score ||
			p.Get("confidence").Raw != "0.85" || p.Get("model_version").String() != version {
			t.Errorf("message %d: %s (error %q), want label %s, score %s, confidence 0.85, version %s", i, o.body, o.err, w.label, w.score, version)
		}
	}
}

// TestStreamNothingLost kills the plugin under a running pipeline, once
// from inside (a message that crashes it) and once from outside (SIGKILL):
// with a retry around the step, every message comes out once, processed.
func TestStreamNothingLost(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "crashed")
	var inputs []string
	for i := range 120 {
		inputs = append(inputs, fmt.Sprintf("upper:m%03d", i))
		if i == 30 {
			inputs = append(inputs, "crash-once:"+marker)
		}
	}
	var killOnce sync.Once
	var seen int
	var mu sync.Mutex
	kill := func(o outMsg) {
		mu.Lock()
		seen++
		n := seen
		mu.Unlock()
		if n == 80 {
			killOnce.Do(func() {
				pid, _ := strconv.Atoi(o.meta["pid"])
				_ = syscall.Kill(pid, syscall.SIGKILL)
			})
		}
	}
	out := runStream(t, testEnv(t), `
retry:
  backoff: {initial_interval: 10ms, max_interval: 200ms}
  processors:
    - grpc_plugin:
        path: `+plugins["echo"]+`
`, inputs, kill)

	if len(out) != len(inputs) {
		t.Fatalf("got %d messages out, %d in", len(out), len(inputs))
	}
	pids := map[string]bool{}
	var got, want []string
	for i, o := range out {
		if o.err != "" {
			t.Errorf("message %d failed: %s", i, o.err)
		}
		pids[o.meta["pid"]] = true
		got = append(got, o.body)
	}
	for _, in := range inputs {
		if len(in) > 6 && in[:6] == "upper:" {
			in = "M" + in[7:]
		}
		want = append(want, in)
	}
	sort.Strings(got)
	sort.Strings(want)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("outputs differ from inputs at %d: %q, want %q", i, got[i], want[i])
		}
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the crash-once message never crashed the plugin")
	}
	if len(pids) < 3 {
		t.Errorf("messages were handled by %d processes, want at least 3 (two deaths)", len(pids))
	}
}
