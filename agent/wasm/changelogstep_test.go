package wasm_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/state"
	"github.com/sluice-dev/sluice/state/changelog"
)

// TestChangelogStepOnePartitionPerBatch: a step whose state follows Kafka
// partitions counts the messages of the batch's partition (the first
// message's), in that partition's namespace, and fails a message of
// another partition or with none, saying why.
func TestChangelogStepOnePartitionPerBatch(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := openStore(t, t.TempDir())
	defer st.Close()
	assign := changelog.NewAssignments()
	if err := assign.Assigned("g", "events", []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	eng, err := wasm.NewEngine(wasm.EngineConfig{State: st, Changelog: wasm.ChangelogDeps{
		Assignments: assign,
		ClientOpts:  func() ([]kgo.Opt, error) { return []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, nil },
		Logger:      slog.New(slog.DiscardHandler),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(t.Context())
	p := mustProcessor(t, eng, `
path: `+plugins["counter"]+`
key: user_id
state: {namespace: tallies, changelog: {}}
offsets:
  source: events
  partition: '${! json("p").or("") }'
  offset: '${! json("seq").or("") }'
`)
	out := run(t, p, service.MessageBatch{
		service.NewMessage([]byte(`{"user_id":"a","p":"1","seq":10}`)),
		service.NewMessage([]byte(`{"user_id":"a"}`)),
		service.NewMessage([]byte(`{"user_id":"a","p":"0","seq":11}`)),
		service.NewMessage([]byte(`{"user_id":"a","p":"1","seq":12}`)),
	})
	wantErr := []string{"", "has no partition and offset", "mixes partitions events/1 and events/0", ""}
	for i, m := range out {
		err := m.GetError()
		switch {
		case wantErr[i] == "" && err != nil:
			t.Errorf("message %d failed: %v", i, err)
		case wantErr[i] != "" && (err == nil || !strings.Contains(err.Error(), wantErr[i])):
			t.Errorf("message %d: error %v, want one containing %q", i, err, wantErr[i])
		}
	}
	if got := gjson.GetBytes([]byte(body(t, out[3])), "event_count").Int(); got != 2 {
		t.Errorf("the second message of partition 1 counted %d, want 2", got)
	}
	if _, ok, err := st.Get(state.PartitionNamespace("tallies", 1), "a"); err != nil || !ok {
		t.Errorf("partition 1 has no state of a (%v)", err)
	}
	if _, ok, _ := st.Get(state.PartitionNamespace("tallies", 0), "a"); ok {
		t.Error("partition 0 has state of a: the other partition's message was applied")
	}
}
