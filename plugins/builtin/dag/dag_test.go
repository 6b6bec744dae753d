//go:build !wasip1

package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/wasm"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
	"github.com/sluice-dev/sluice/internal/wasmtest"
)

// TestDAGFeatures compiles the plugin and runs rows through the agent's
// wasm processor: each source's features as the seed's pandas computes
// them, a missing input giving no feature (pandas' NaN) rather than a
// failed row, and the rest of each row as it was.
func TestDAGFeatures(t *testing.T) {
	ctx := context.Background()
	bin := wasmbuild.ForTest(t, "dag.wasm")
	eng := wasmtest.Engine(t, wasm.EngineConfig{})
	for _, tc := range []struct {
		source  string
		in, out []string
	}{
		{"user_behavior", []string{
			`{"user_id":1,"page_views":10,"session_duration":100}`,
			`{"user_id":2,"page_views":10,"session_duration":100,"median_engagement":73}`,
			`{"user_id":3,"page_views":10,"session_duration":100,"median_engagement":80}`,
			`{"user_id":4,"page_views":null,"session_duration":100,"median_engagement":1}`,
			`{"user_id":5,"session_duration":100.5,"page_views":2.5,"median_engagement":null}`,
		}, []string{
			`{"user_id":1,"page_views":10,"session_duration":100,"engagement_score":73,"is_active_user":false}`,
			`{"user_id":2,"page_views":10,"session_duration":100,"median_engagement":73,"engagement_score":73,"is_active_user":false}`,
			`{"user_id":3,"page_views":10,"session_duration":100,"median_engagement":80,"engagement_score":73,"is_active_user":false}`,
			`{"user_id":4,"page_views":null,"session_duration":100,"median_engagement":1,"is_active_user":false}`,
			`{"user_id":5,"session_duration":100.5,"page_views":2.5,"median_engagement":null,"engagement_score":71.1,"is_active_user":false}`,
		}},
		{"user_behavior", []string{
			`{"page_views":10,"session_duration":100,"median_engagement":72.99}`,
		}, []string{
			`{"page_views":10,"session_duration":100,"median_engagement":72.99,"engagement_score":73,"is_active_user":true}`,
		}},
		{"product_catalog", []string{
			`{"price":0}`, `{"price":0.01}`, `{"price":50}`, `{"price":50.01}`, `{"price":200}`,
			`{"price":200.5}`, `{"price":1000}`, `{"price":1000.01}`, `{"price":-5}`, `{"price":null}`, `{"id":1}`,
		}, []string{
			`{"price":0}`, `{"price":0.01,"price_category":"budget"}`, `{"price":50,"price_category":"budget"}`,
			`{"price":50.01,"price_category":"mid-range"}`, `{"price":200,"price_category":"mid-range"}`,
			`{"price":200.5,"price_category":"premium"}`, `{"price":1000,"price_category":"premium"}`,
			`{"price":1000.01}`, `{"price":-5}`, `{"price":null}`, `{"id":1}`,
		}},
	} {
		t.Run(tc.source, func(t *testing.T) {
			p := newProcessor(t, eng, bin, tc.source)
			var batch service.MessageBatch
			for _, doc := range tc.in {
				batch = append(batch, service.NewMessage([]byte(doc)))
			}
			out, err := p.ProcessBatch(ctx, batch)
			if err != nil || len(out) != 1 || len(out[0]) != len(tc.in) {
				t.Fatalf("ProcessBatch: %v, %v", err, out)
			}
			for i, m := range out[0] {
				b, _ := m.AsBytes()
				if m.GetError() != nil || string(b) != tc.out[i] {
					t.Errorf("row %d: %s (error %v)\nwant %s", i, b, m.GetError(), tc.out[i])
				}
			}
		})
	}
	t.Run("an unknown source", func(t *testing.T) {
		conf, err := wasm.ConfigSpec().ParseYAML("path: "+bin+"\nconfig: {source: transactions}\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wasm.NewProcessor(ctx, eng, conf, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), `source: "transactions" is not user_behavior or product_catalog`) {
			t.Errorf("load: %v, want an error naming the source", err)
		}
	})
}

func newProcessor(t *testing.T, eng *wasm.Engine, bin, source string) *wasm.Processor {
	t.Helper()
	return wasmtest.Processor(t, eng, "path: "+bin+"\nconfig: {source: "+source+"}\n")
}
