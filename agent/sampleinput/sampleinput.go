// Package sampleinput provides the `sample_events` input: the embedded
// sample of user events, one message per line, after which the input ends.
// It lets the zero-setup demo, and anyone trying a pipeline, run with no
// broker and no files.
package sampleinput

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/pipelines"
)

// ConfigSpec is the input's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Utility").
		Summary("Emits Sluice's embedded sample of user events (JSON lines in the seed's event shape), then ends.").
		Description("Each message carries the metadata `sample_seq`: its position in the stream, from 1, increasing across repeats, so a keyed step can use it as an offset (`offsets: {source: sample, partition: \"0\", offset: '${! meta(\"sample_seq\") }'}`) and show effectively-once state.").
		Fields(
			service.NewStringEnumField("sample", "events", "realtime").Description("`events`: 24 valid events of 6 users. `realtime`: the same with five bad ones among them, for the real-time pipeline's dead letters.").Default("events"),
			service.NewIntField("repeat").Description("How many times to emit the sample.").Default(1),
		)
}

// Register adds the `sample_events` input to env.
func Register(env *service.Environment) error {
	return env.RegisterInput("sample_events", ConfigSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.Input, error) {
		repeat, err := conf.FieldInt("repeat")
		if err != nil {
			return nil, err
		}
		name, err := conf.FieldString("sample")
		if err != nil {
			return nil, err
		}
		sample, ok := pipelines.Sample(name)
		if !ok {
			return nil, fmt.Errorf("no sample named %q", name)
		}
		var lines [][]byte
		for _, l := range bytes.Split(sample, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines = append(lines, l)
			}
		}
		return service.AutoRetryNacks(&input{lines: lines, left: repeat * len(lines)}), nil
	})
}

type input struct {
	mu    sync.Mutex
	lines [][]byte
	next  int
	left  int
}

func (in *input) Connect(context.Context) error { return nil }

func (in *input) Read(context.Context) (*service.Message, service.AckFunc, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.left <= 0 || len(in.lines) == 0 {
		return nil, nil, service.ErrEndOfInput
	}
	line := in.lines[in.next%len(in.lines)]
	in.next++
	in.left--
	msg := service.NewMessage(append([]byte(nil), line...))
	msg.MetaSetMut("sample_seq", in.next)
	return msg, func(context.Context, error) error { return nil }, nil
}

func (in *input) Close(context.Context) error { return nil }
