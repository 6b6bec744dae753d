package etlbench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/aggregate"
	"github.com/sluice-dev/sluice/agent/fill"
	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/plugins/builtin"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// BenchmarkDAGUserBehavior: ml_dag's user_behavior transform (forward
// fill, engagement_score, the median split) over one batch of n rows, one
// page_views in ten missing, side by side as the pipeline has had it: the
// forward fill a Bloblang fold over the batch as one array (each row
// appended copies the rows before it); `fill`, Bloblang per row and the
// median beside each row by `aggregate`, on JSON messages (session 15);
// and on one frame, the features by the `dag` builtin (session 16).
//
//	go test -run '^$' -bench DAGUserBehavior -benchtime 1x -count 3 ./internal/etlbench/
//
// (the fold only up to 40,000 rows: it is quadratic).
func BenchmarkDAGUserBehavior(b *testing.B) {
	// As pipelines/ml_dag.yaml has it since the fill: a score missing
	// (nothing filled it) is left out of the median.
	const score = `
let scores = $rows.map_each(r -> r.engagement_score).filter(s -> s != null).sort()
let n = $scores.length()
let median = if $n == 0 { null } else { if $n % 2 == 1 { $scores.index(($n / 2).floor()) } else { ($scores.index($n / 2 - 1) + $scores.index($n / 2)) / 2 } }
root = $rows.map_each(r -> r.merge({"is_active_user": r.engagement_score != null && $median != null && r.engagement_score > $median}))
`
	steps := map[string][]string{
		"fold": {
			`archive: {format: json_array}`,
			`mapping: |
  let rows = this.fold({"rows": [], "prev": {}}, t -> {
    "rows": t.tally.rows.append(t.value.map_each(kv -> kv.value.or(t.tally.prev.get(kv.key)))),
    "prev": t.value.map_each(kv -> kv.value.or(t.tally.prev.get(kv.key)))
  }).rows.map_each(r -> r.merge({"engagement_score": r.page_views * 0.3 + r.session_duration * 0.7}))` + indent(score),
			`unarchive: {format: json_array}`,
		},
		// As pipelines/ml_dag.yaml has it: the fill, then the score per
		// row and the source's median beside each row (aggregate annotate).
		"frame": {
			`fill: {}`,
			`wasm: {builtin: dag, config: {source: user_behavior}, skip_errored: true}`,
			`aggregate: {group_by: [], annotate: true, fields: [{as: median_engagement, op: median, path: engagement_score}]}`,
			`wasm: {builtin: dag, config: {source: user_behavior}, skip_errored: true}`,
		},
		"fill": {
			`fill: {}`,
			`mapping: |
  root = this
  root.engagement_score = if this.page_views == null || this.session_duration == null { null } else { this.page_views * 0.3 + this.session_duration * 0.7 }`,
			`aggregate: {group_by: [], annotate: true, fields: [{as: median_engagement, op: median, path: engagement_score}]}`,
			`mapping: |
  root = this.without("median_engagement")
  root.is_active_user = this.engagement_score != null && this.median_engagement != null && this.engagement_score > this.median_engagement`,
		},
	}
	ctx := context.Background()
	eng, err := wasm.NewEngine(wasm.EngineConfig{Builtins: builtin.Lookup, CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close(ctx) })
	holdCompiled(b, eng, "{builtin: dag, config: {source: user_behavior}}")
	env := service.NewEnvironment()
	for _, reg := range []func(*service.Environment) error{fill.Register, aggregate.Register, func(e *service.Environment) error { return wasm.Register(e, eng) }} {
		if err := reg(env); err != nil {
			b.Fatal(err)
		}
	}
	for _, rows := range []int{10_000, 40_000, 320_000} {
		for _, how := range []string{"fold", "fill", "frame"} {
			if how == "fold" && rows > 40_000 {
				continue // quadratic: minutes
			}
			b.Run(fmt.Sprintf("rows=%d/%s", rows, how), func(b *testing.B) {
				for b.Loop() {
					sb := env.NewStreamBuilder()
					if err := sb.SetLoggerYAML("level: none"); err != nil {
						b.Fatal(err)
					}
					produce, err := sb.AddBatchProducerFunc()
					if err != nil {
						b.Fatal(err)
					}
					for _, st := range steps[how] {
						if err := sb.AddProcessorYAML(st); err != nil {
							b.Fatal(err)
						}
					}
					var got int
					if err := sb.AddBatchConsumerFunc(func(_ context.Context, mb service.MessageBatch) error {
						got += len(mb)
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					strm, err := sb.Build()
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer() // the input's making is not the steps'
					batch := make(service.MessageBatch, rows)
					cols := []frame.Values{{Name: "user_id", Type: abi.TypeInt}, {Name: "page_views", Type: abi.TypeInt}, {Name: "session_duration", Type: abi.TypeInt}}
					for i := range batch {
						var views any = i % 500
						if i%10 == 3 {
							views = nil
						}
						batch[i] = service.NewMessage(fmt.Appendf(nil, `{"user_id":%d,"page_views":%s,"session_duration":%d}`, i+1, strings.Replace(fmt.Sprint(views), "<nil>", "null", 1), i%7000))
						for c, v := range []any{i + 1, views, i % 7000} {
							cols[c].Rows = append(cols[c].Rows, v)
						}
					}
					want := rows
					if how == "frame" {
						body, err := frame.FromValues(cols, nil)
						if err != nil {
							b.Fatal(err)
						}
						batch, want = service.MessageBatch{service.NewMessage(body)}, 1
					}
					b.StartTimer()
					done := make(chan error, 1)
					go func() { done <- strm.Run(context.Background()) }()
					if err := produce(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
					if err := strm.StopWithin(time.Minute); err != nil {
						b.Fatal(err)
					}
					<-done
					if got != want {
						b.Fatalf("%d messages out, want %d", got, want)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}

// indent indents a mapping's lines under a YAML block scalar.
func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }
