//go:build !wasip1

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/plugins/sdk"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// BenchmarkSalesNative: the plugin's own handler, compiled natively and
// called in this process as the SDK's export would be, on the request
// BenchmarkSalesFrame's 8192 good sales rows make (the suite's five
// columns as value columns). Beside BenchmarkSalesFrame it splits the
// plugin's cost into its Go code and what running it as Wasm through the
// host adds.
//
//	go test -run '^$' -bench 'Sales(Native|Frame)' -count 3 ./plugins/builtin/validate/
func BenchmarkSalesNative(b *testing.B) {
	const rows = 8192
	if suite == nil {
		raw, err := os.ReadFile(filepath.Join(suites, "sales_data.yaml"))
		if err != nil {
			b.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			b.Fatal(err)
		}
		cfg, err := json.Marshal(v) // the config as the host hands it over
		if err != nil {
			b.Fatal(err)
		}
		if out := sdk.Init(cfg); len(out) < 4 || abi.Status(out[0]) != abi.StatusOK {
			b.Fatalf("init: %q", out)
		}
	}
	var w abi.Writer
	w.U32(rows)
	w.U32(0)
	for _, name := range suite.Columns() {
		valid, strs := make([]byte, rows), make([][]byte, rows)
		for i := range rows {
			text, kind := fmt.Sprint(i%500), abi.KindNumber
			switch name {
			case "date":
				text, kind = fmt.Sprintf("2025-01-%02d", 1+i%28), abi.KindString
			case "quantity":
				text = fmt.Sprint(1 + i%5)
			case "price":
				text = fmt.Sprint(float64(i%100) + 0.5)
			case "customer_id":
				text = fmt.Sprint(i % 5000)
			}
			valid[i], strs[i] = byte(kind), []byte(text)
		}
		abi.AppendColumn(&w, abi.TypeValue, valid, nil, strs)
	}
	for b.Loop() {
		if out := sdk.Process(w.Buf); abi.Status(out[0]) != abi.StatusOK {
			b.Fatalf("process: %q", out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}
