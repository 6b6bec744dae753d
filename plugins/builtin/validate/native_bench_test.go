//go:build !wasip1

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/expect"
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
	// Each column as the host sends a frame's: as the field's form asks
	// (a not-null column's kinds only, a range-checked one's numbers as
	// their bytes).
	for c, name := range suite.Columns() {
		valid, strs := make([]byte, rows), make([][]byte, rows)
		for i := range rows {
			var data []byte
			kind := abi.KindInt
			switch name {
			case "date":
				data, kind = fmt.Appendf(nil, "2025-01-%02d", 1+i%28), abi.KindString
			case "product_id":
				data = binary.LittleEndian.AppendUint64(nil, uint64(i%500))
			case "quantity":
				data = binary.LittleEndian.AppendUint64(nil, uint64(1+i%5))
			case "price":
				data, kind = binary.LittleEndian.AppendUint64(nil, math.Float64bits(float64(i%100)+0.5)), abi.KindFloat
			case "customer_id":
				data = binary.LittleEndian.AppendUint64(nil, uint64(i%5000))
			}
			switch suite.Form(c) {
			case expect.FormKinds:
				data = nil
				if kind != abi.KindString {
					kind = abi.KindNumber
				}
			case expect.FormText:
				b.Fatalf("column %q: the sales suite should not need its text", name)
			}
			valid[i], strs[i] = byte(kind), data
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
