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

// TestFillFrames: a frame's columns are filled as its rows would be as
// JSON messages (TestFill), values carry from one frame of the batch to
// the next, rejected rows are untouched and lend nothing, and a column of
// another type in a later frame takes nothing from an earlier one.
func TestFillFrames(t *testing.T) {
	type fr struct {
		cols     []frame.Values
		rejected map[int]string
	}
	ints := func(name string, rows ...any) frame.Values {
		return frame.Values{Name: name, Type: abi.TypeInt, Rows: rows}
	}
	for _, tc := range []struct {
		name, conf string
		in         []fr
		want       []string // the rows, unframed, of every frame in order
	}{
		{
			"forward, every field", `{}`,
			[]fr{{cols: []frame.Values{
				ints("a", 1, nil, nil, 4, nil),
				{Name: "s", Type: abi.TypeString, Rows: []any{nil, "x, \"y\"", nil, nil, "z"}},
				{Name: "csv_line", Type: abi.TypeInt, Meta: true, Rows: []any{2, nil, 4, 5, 6}},
			}}},
			[]string{`{"a":1,"s":null}`, `{"a":1,"s":"x, \"y\""}`, `{"a":1,"s":"x, \"y\""}`, `{"a":4,"s":"x, \"y\""}`, `{"a":4,"s":"z"}`},
		},
		{
			"backward", `{method: backward}`,
			[]fr{{cols: []frame.Values{ints("a", nil, 2, nil, nil, 5, nil)}}},
			[]string{`{"a":2}`, `{"a":2}`, `{"a":5}`, `{"a":5}`, `{"a":5}`, `{"a":null}`},
		},
		{
			"listed fields only", `{fields: [b]}`,
			[]fr{{cols: []frame.Values{ints("a", 1, nil), {Name: "b", Type: abi.TypeFloat, Rows: []any{1.5, nil}}}}},
			[]string{`{"a":1,"b":1.5}`, `{"a":null,"b":1.5}`},
		},
		{
			"rejected rows untouched and lending nothing", `{}`,
			[]fr{{cols: []frame.Values{ints("a", nil, 2, nil, 7, nil)}, rejected: map[int]string{2: "bad row", 3: "bad too"}}},
			[]string{`{"a":null}`, `{"a":2}`, `{"a":null} ! bad row`, `{"a":7} ! bad too`, `{"a":2}`},
		},
		{
			"from one frame to the next", `{}`,
			[]fr{
				{cols: []frame.Values{ints("a", 1, 3), ints("b", 8, nil)}},
				{cols: []frame.Values{ints("a", nil, nil), ints("b", nil, 9)}},
				{cols: []frame.Values{{Name: "a", Type: abi.TypeString, Rows: []any{nil, "s"}}}},
			},
			[]string{`{"a":1,"b":8}`, `{"a":3,"b":8}`, `{"a":3,"b":8}`, `{"a":3,"b":9}`, `{"a":null}`, `{"a":"s"}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var batch service.MessageBatch
			for _, f := range tc.in {
				body, err := frame.FromValues(f.cols, f.rejected)
				if err != nil {
					t.Fatal(err)
				}
				batch = append(batch, service.NewMessage(body))
			}
			out, err := newProc(t, tc.conf).ProcessBatch(context.Background(), batch)
			if err != nil || len(out) != 1 {
				t.Fatalf("ProcessBatch: %v, %d batches", err, len(out))
			}
			var got []string
			for _, m := range out[0] {
				body, err := m.AsBytes()
				if err != nil || m.GetError() != nil {
					t.Fatalf("frame message: %v %v", err, m.GetError())
				}
				f, err := frame.Decode(body)
				if err != nil {
					t.Fatal(err)
				}
				for i := range f.Rows {
					row := string(f.AppendRowJSON(nil, i))
					if why, bad := f.Reason(i); bad {
						row += " ! " + why
					}
					got = append(got, row)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
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
// rows shaped like the DAG's user_behavior, one value in ten missing, as
// JSON messages and as one frame, side by side.
//
//	go test -run '^$' -bench Fill -benchmem ./agent/fill/
func BenchmarkFill(b *testing.B) {
	const rows = 100_000
	docs := make([][]byte, rows)
	cols := []frame.Values{{Name: "user_id", Type: abi.TypeInt}, {Name: "page_views", Type: abi.TypeInt}, {Name: "session_duration", Type: abi.TypeInt}, {Name: "timestamp", Type: abi.TypeString}}
	for i := range docs {
		var views any = i % 500
		if i%10 == 3 {
			views = nil
		}
		ts := fmt.Sprintf("2025-01-01T%02d:00:00Z", i%24)
		docs[i] = fmt.Appendf(nil, `{"user_id":%d,"page_views":%s,"session_duration":%d,"timestamp":%q}`, i, strings.Replace(fmt.Sprint(views), "<nil>", "null", 1), i%7000, ts)
		for c, v := range []any{i, views, i % 7000, ts} {
			cols[c].Rows = append(cols[c].Rows, v)
		}
	}
	body, err := frame.FromValues(cols, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := newProc(b, `{}`)
	for _, tc := range []struct {
		name  string
		batch func() service.MessageBatch
	}{
		{"messages", func() service.MessageBatch {
			batch := make(service.MessageBatch, rows)
			for i, d := range docs {
				batch[i] = service.NewMessage(d)
			}
			return batch
		}},
		{"frame", func() service.MessageBatch { return service.MessageBatch{service.NewMessage(body)} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				batch := tc.batch()
				b.StartTimer()
				if _, err := p.ProcessBatch(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
