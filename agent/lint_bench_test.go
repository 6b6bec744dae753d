package agent

import (
	"testing"

	"github.com/sluice-dev/sluice/agent/supervisor"
	"github.com/sluice-dev/sluice/pipelines"
)

// BenchmarkStreamConfig is the config step of every run of the sales ETL:
// Benthos parsing its YAML (parse) and, as a run does, linting it as well
// (lint). The difference is the lint; enum fields checked per component
// (internal/enumlint) rather than per value keep it small.
func BenchmarkStreamConfig(b *testing.B) {
	a := newTestAgent(b)
	doc, ok := pipelines.Lookup("sales_etl")
	if !ok {
		b.Fatal("no builtin sales_etl pipeline")
	}
	_, doc, err := supervisor.SplitSchedule(doc)
	if err != nil {
		b.Fatal(err)
	}
	for _, lint := range []bool{false, true} {
		name := "parse"
		if lint {
			name = "lint"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				sb := a.env.NewStreamBuilder()
				if !lint {
					sb.DisableLinting()
				}
				if err := sb.SetYAML(string(doc)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
