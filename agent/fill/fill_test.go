package fill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

func newProc(t testing.TB, yaml string) *Processor {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(conf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run fills docs (a doc starting "!" is a message that already failed)
// and renders each message out: its body, and "! reason" if it failed.
func run(t *testing.T, p *Processor, docs ...string) []string {
	t.Helper()
	var batch service.MessageBatch
	for _, d := range docs {
		m := service.NewMessage([]byte(strings.TrimPrefix(d, "!")))
		if strings.HasPrefix(d, "!") {
			m.SetError(errors.New("rejected upstream"))
		}
		batch = append(batch, m)
	}
	out, err := p.ProcessBatch(context.Background(), batch)
	if err != nil || len(out) != 1 {
		t.Fatalf("ProcessBatch: %v, %d batches", err, len(out))
	}
	var got []string
	for _, m := range out[0] {
		b, _ := m.AsBytes()
		s := string(b)
		if err := m.GetError(); err != nil {
			s += " ! " + err.Error()
		}
		got = append(got, s)
	}
	return got
}

// TestFill: pandas' ffill and bfill over a batch in order, on every field
// or the listed ones; values copied as written; rows that failed upstream
// untouched and lending nothing; a row that is not an object failed.
func TestFill(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		in, want   []string
	}{
		{
			"forward, every field", `{}`,
			[]string{`{"a":1,"b":null}`, `{"a":null,"b":"x, \"y\""}`, `{"a":null,"b":null,"c":{"d":[1]}}`, `{"c":null}`},
			[]string{`{"a":1,"b":null}`, `{"a":1,"b":"x, \"y\""}`, `{"a":1,"b":"x, \"y\"","c":{"d":[1]}}`, `{"c":{"d":[1]}}`},
		},
		{
			"backward, every field", `{method: backward}`,
			[]string{`{"a":1,"b":null}`, `{"a":null,"b":2}`, `{"a":null,"b":null}`},
			[]string{`{"a":1,"b":2}`, `{"a":null,"b":2}`, `{"a":null,"b":null}`},
		},
		{
			"listed fields, a missing one added", `{fields: [a]}`,
			[]string{`{"a":1.50,"b":3}`, `{"b":null}`, `{"a":null,"b":null}`},
			[]string{`{"a":1.50,"b":3}`, `{"b":null,"a":1.50}`, `{"a":1.50,"b":null}`},
		},
		{
			"failed rows untouched and lending nothing", `{}`,
			[]string{`!{"a":7}`, `{"a":null}`, `{"a":2}`, `!{"a":null}`, `{"a":null}`},
			[]string{`{"a":7} ! rejected upstream`, `{"a":null}`, `{"a":2}`, `{"a":null} ! rejected upstream`, `{"a":2}`},
		},
		{
			"not an object", `{}`,
			[]string{`{"a":1}`, `[1,2]`, `{"a":null}`},
			[]string{`{"a":1}`, `[1,2] ! fill: the message is not a JSON object`, `{"a":1}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, newProc(t, tc.conf), tc.in...)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestFillRefusesFrames: a frame fails saying to unframe it first, rather
// than passing through unfilled.
func TestFillRefusesFrames(t *testing.T) {
	body, err := frame.FromValues([]frame.Values{{Name: "a", Type: abi.TypeInt, Rows: []any{1, nil}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newProc(t, `{}`).ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(body)})
	if err != nil || len(out) != 1 || len(out[0]) != 1 {
		t.Fatalf("%v %v", out, err)
	}
	if err := out[0][0].GetError(); err == nil || !strings.Contains(err.Error(), "unframe") {
		t.Errorf("a frame: %v, want an error saying to unframe it", err)
	}
}

func TestFillConfigErrors(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{method: sideways}`, "sideways"},
		{`{fields: [a, a]}`, `"a" is empty or listed twice`},
		{`{fields: [""]}`, `"" is empty or listed twice`},
	} {
		conf, err := ConfigSpec().ParseYAML(tc.conf, nil)
		if err == nil {
			_, err = New(conf)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.conf, err, tc.want)
		}
	}
}

// BenchmarkFill: forward fill of every field over a batch of 100,000
// rows shaped like the DAG's user_behavior, one value in ten missing.
//
//	go test -run '^$' -bench Fill -benchmem ./agent/fill/
func BenchmarkFill(b *testing.B) {
	const rows = 100_000
	docs := make([][]byte, rows)
	for i := range docs {
		views := fmt.Sprint(i % 500)
		if i%10 == 3 {
			views = "null"
		}
		docs[i] = fmt.Appendf(nil, `{"user_id":%d,"page_views":%s,"session_duration":%d,"timestamp":"2025-01-01T%02d:00:00Z"}`, i, views, i%7000, i%24)
	}
	p := newProc(b, `{}`)
	for b.Loop() {
		b.StopTimer()
		batch := make(service.MessageBatch, rows)
		for i, d := range docs {
			batch[i] = service.NewMessage(d)
		}
		b.StartTimer()
		if _, err := p.ProcessBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
