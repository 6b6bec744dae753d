package main

import "github.com/sluice-dev/sluice/plugins/sdk"

// emitMetrics is called once per closed window of a windowed suite, and
// once per batch otherwise, with that window's (or batch's) counts: rows
// checked, rows valid (no broken expectation without `mostly`), and
// expectations evaluated and passed. They become counters on the agent's
// /metrics, labelled by pipeline and suite, from which both data quality
// scores are exact ratios:
//
//	sluice_quality_rows_valid_total / sluice_quality_rows_total * 100
//	sluice_quality_expectations_passed_total / sluice_quality_expectations_total * 100
//
// (over a range: divide the two rate()s).
func emitMetrics(suite string, rows, validRows, expectationsRun, expectationsPassed int) {
	sdk.CounterAdd("sluice_quality_rows_total", int64(rows), "suite", suite)
	sdk.CounterAdd("sluice_quality_rows_valid_total", int64(validRows), "suite", suite)
	sdk.CounterAdd("sluice_quality_expectations_total", int64(expectationsRun), "suite", suite)
	sdk.CounterAdd("sluice_quality_expectations_passed_total", int64(expectationsPassed), "suite", suite)
}
