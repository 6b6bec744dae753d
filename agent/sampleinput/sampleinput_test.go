package sampleinput

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the stream's default tracer, buffer and processors
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/pipelines"
)

// run builds a stream with the input configured as conf and returns what
// it emitted, in order, with each message's sample_seq.
func run(t *testing.T, conf string) ([][]byte, []string, error) {
	t.Helper()
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		t.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	if err := sb.AddInputYAML("sample_events: " + conf); err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	var bodies [][]byte
	var seqs []string
	if err := sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		b, _ := m.AsBytes()
		s, _ := m.MetaGet("sample_seq")
		mu.Lock()
		bodies, seqs = append(bodies, bytes.Clone(b)), append(seqs, s)
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	stream, err := sb.Build()
	if err != nil {
		return nil, nil, err
	}
	err = stream.Run(context.Background())
	return bodies, seqs, err
}

// TestSampleInput: each named sample is emitted line by line, repeated as
// asked, every message numbered by sample_seq from 1 across repeats, and
// then the input ends; an unknown sample is refused.
func TestSampleInput(t *testing.T) {
	for _, tc := range []struct {
		conf, sample string
		repeat       int
	}{
		{"{}", "events", 1},
		{"{sample: realtime, repeat: 2}", "realtime", 2},
	} {
		t.Run(tc.conf, func(t *testing.T) {
			raw, _ := pipelines.Sample(tc.sample)
			lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
			bodies, seqs, err := run(t, tc.conf)
			if err != nil {
				t.Fatal(err)
			}
			if len(bodies) != tc.repeat*len(lines) {
				t.Fatalf("%d messages, want %d", len(bodies), tc.repeat*len(lines))
			}
			for i, b := range bodies {
				if !bytes.Equal(b, lines[i%len(lines)]) {
					t.Errorf("message %d is %s, want line %d of the sample", i+1, b, i%len(lines)+1)
				}
				if seqs[i] != strconv.Itoa(i+1) {
					t.Errorf("message %d has sample_seq %q", i+1, seqs[i])
				}
			}
		})
	}
	if _, _, err := run(t, "{sample: nope}"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown sample: %v, want it refused by name", err)
	}
}
