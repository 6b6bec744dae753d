package distinct

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

func parse(t testing.TB, yaml string) *Processor {
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

// processFrame runs the frame w holds through p and decodes what comes out.
func processFrame(t *testing.T, p *Processor, w *frame.Writer) *frame.Frame {
	t.Helper()
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(body)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := out[0][0].AsBytes()
	f, err := frame.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func msg(key, line string) *service.Message {
	m := service.NewMessage([]byte(key))
	m.MetaSetMut("raw", key)
	m.MetaSetMut("line", line)
	return m
}

func TestDistinct(t *testing.T) {
	p := parse(t, `
key: '${! meta("raw") }'
reason: 'duplicate row: the same as line ${! meta("line") }'
`)
	failed := msg("c", "3")
	failed.SetError(errors.New("bad price"))
	batches := []service.MessageBatch{
		{msg("a", "1"), msg("b", "2"), failed, msg("a", "4")},
		// Across batches, and a key whose first message had failed
		// earlier is new.
		{msg("c", "5"), msg("b", "6"), msg("c", "7")},
	}
	var got []string
	for _, b := range batches {
		out, err := p.ProcessBatch(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out[0] {
			line, _ := m.MetaGet("line")
			if err := m.GetError(); err != nil {
				got = append(got, line+":"+err.Error())
			} else {
				got = append(got, line+":ok")
			}
		}
	}
	want := []string{"1:ok", "2:ok", "3:bad price", "4:duplicate row: the same as line 4", "5:ok", "6:duplicate row: the same as line 6", "7:duplicate row: the same as line 7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

// TestDistinctFrames: a frame's rows are checked in order like messages,
// whether the key is a metadata column or an interpolation on the row.
func TestDistinctFrames(t *testing.T) {
	for _, tc := range []struct{ name, key string }{
		{"metadata column", `${! meta("raw") }`},
		{"interpolated", `${! json("k") }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := parse(t, "key: '"+tc.key+"'\nreason: 'duplicate row: the same as line ${! meta(\"line\") }'\n")
			w := frame.NewWriter()
			k, raw, line := w.Add("k", abi.TypeString, false), w.AddRaw("raw"), w.Add("line", abi.TypeInt, true)
			for i, key := range []string{"a", "b", "c", "a", "c", "b"} {
				k.Text(key)
				raw.Text(key)
				line.Int(int64(i + 1))
				if i == 2 {
					w.Reject("bad price")
				} else {
					w.Accept()
				}
			}
			f := processFrame(t, p, w)
			var got []string
			for i := 0; i < f.Rows; i++ {
				if r, ok := f.Reason(i); ok {
					got = append(got, fmt.Sprintf("%d:%s", i+1, r))
				} else {
					got = append(got, fmt.Sprintf("%d:ok", i+1))
				}
			}
			want := []string{"1:ok", "2:ok", "3:bad price", "4:duplicate row: the same as line 4", "5:ok", "6:duplicate row: the same as line 6"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
}

// BenchmarkDedupe: the sales ETL's dedupe step per message, as the `cache`
// processor (operator add, memory cache) it replaced and as `distinct`, in
// the same kind of stream, batches of 8192 rows with distinct keys.
//
//	go test -run '^$' -bench Dedupe -count 6 ./agent/distinct/
func BenchmarkDedupe(b *testing.B) {
	env := service.NewEnvironment()
	if err := Register(env); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, resources, proc string }{
		{"cache", "cache_resources:\n  - label: seen\n    memory: {}\n", `cache: {resource: seen, operator: add, key: '${! meta("raw") }', value: '${! meta("line") }'}`},
		{"distinct", "", `distinct: {key: '${! meta("raw") }', reason: 'duplicate of ${! meta("line") }'}`},
		{"noop", "", `noop: {}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const batch = 8192
			sb := env.NewStreamBuilder()
			if err := sb.SetLoggerYAML("level: none"); err != nil {
				b.Fatal(err)
			}
			if tc.resources != "" {
				if err := sb.AddResourcesYAML(tc.resources); err != nil {
					b.Fatal(err)
				}
			}
			if err := sb.AddProcessorYAML(tc.proc); err != nil {
				b.Fatal(err)
			}
			produce, err := sb.AddBatchProducerFunc()
			if err != nil {
				b.Fatal(err)
			}
			var dups atomic.Int64
			if err := sb.AddBatchConsumerFunc(func(_ context.Context, mb service.MessageBatch) error {
				for _, m := range mb {
					if m.GetError() != nil {
						dups.Add(1)
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			strm, err := sb.Build()
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = strm.Run(context.Background()) }()
			defer func() { _ = strm.StopWithin(10 * time.Second) }()
			ctx := context.Background()
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				mb := make(service.MessageBatch, batch)
				for j := range mb {
					s := "2025-01-02," + strconv.Itoa(n) + ",3,9.99,42"
					mb[j] = msg(s, strconv.Itoa(n))
					n++
				}
				b.StartTimer()
				if err := produce(ctx, mb); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if dups.Load() != 0 {
				b.Fatalf("%d distinct rows taken for duplicates", dups.Load())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
		})
	}
}

// BenchmarkFrames: the sales ETL's dedupe step on frames: 1M rows in
// frames of 8192, keyed by their csv_raw column, one row in a thousand a
// duplicate; the figure is per row.
//
//	go test -run '^$' -bench Frames -count 6 ./agent/distinct/
func BenchmarkFrames(b *testing.B) {
	const rows, per = 1 << 20, 8192
	var frames [][]byte
	for start := 0; start < rows; start += per {
		w := frame.NewWriter()
		raw := w.AddRaw("csv_raw")
		for i := start; i < start+per; i++ {
			k := i
			if i%1000 == 999 {
				k = i - 500
			}
			raw.Text(fmt.Sprintf("2025-01-%02d,%d,%d,%d.50,%d", 1+k%28, k%500, 1+k%5, k%100, k))
			w.Accept()
		}
		body, err := w.Append(nil)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, body)
	}
	for b.Loop() {
		p := parse(b, `key: '${! meta("csv_raw") }'`)
		for _, body := range frames {
			if _, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(body)}); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

// TestShardsKeepFirstOccurrence: with the keys spread over 1 to 8 sets,
// filled at once, a frame's duplicates are exactly the rows whose key an
// earlier row had, in this frame or an earlier one, as one set would say;
// rows rejected before the step neither count nor get a second reason.
// Frames of 5000 rows from 3000 keys, so every shard has duplicates and
// takes the concurrent path.
func TestShardsKeepFirstOccurrence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const frames, rows = 3, 5000
	var keys [frames][rows]string
	var before [frames][rows]bool
	for f := range frames {
		for i := range rows {
			keys[f][i], before[f][i] = strconv.Itoa(rng.IntN(3000)), rng.IntN(50) == 0
		}
	}
	for _, n := range []int{1, 2, 4, 8} {
		t.Run(fmt.Sprint(n, " sets"), func(t *testing.T) {
			p := parse(t, `key: '${! meta("raw") }'`)
			p.seen = make([]hashSet, n)
			seen := map[string]bool{}
			for f := range frames {
				w := frame.NewWriter()
				raw := w.AddRaw("raw")
				for i := range rows {
					raw.Text(keys[f][i])
					if before[f][i] {
						w.Reject("bad row")
					} else {
						w.Accept()
					}
				}
				got := processFrame(t, p, w)
				dups := 0
				for i := range rows {
					want := ""
					switch k := keys[f][i]; {
					case before[f][i]:
						want = "bad row"
					case seen[k]:
						want, dups = "duplicate: an earlier message had the same key", dups+1
					default:
						seen[k] = true
					}
					if r, _ := got.Reason(i); r != want {
						t.Fatalf("frame %d row %d (key %s): reason %q, want %q", f, i, keys[f][i], r, want)
					}
				}
				if dups == 0 {
					t.Fatalf("frame %d: no duplicates; the test data has them", f)
				}
			}
		})
	}
}

// TestKeyReadFromFrameColumn: the key forms that name one metadata value
// are read from a frame's column rather than interpolated per row; any
// other key is interpolated.
func TestKeyReadFromFrameColumn(t *testing.T) {
	for _, tc := range []struct{ key, meta string }{
		{`${! @csv_raw }`, "csv_raw"},
		{`${!@csv_raw}`, "csv_raw"},
		{`${! meta("csv_raw") }`, "csv_raw"},
		{`${! @csv_raw.uppercase() }`, ""},
		{`${! @csv_file }${! @csv_line }`, ""},
		{`${! this.id }`, ""},
	} {
		if got := parse(t, "key: '"+tc.key+"'").keyMeta; got != tc.meta {
			t.Errorf("key %s: read from column %q, want %q", tc.key, got, tc.meta)
		}
	}
}
