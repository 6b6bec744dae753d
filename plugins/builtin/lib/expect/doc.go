// Package expect evaluates Great Expectations-compatible expectation suites
// on a stream of records, one record at a time.
//
// A suite (Parse) is the builtin `validate` plugin's config: a list of GX
// expectations by their GX names and arguments, plus what to do with a
// record that breaks one. Everything that can be worked out once is worked
// out at Parse: regexes are compiled (Go's regexp, which is RE2: no
// lookarounds or backreferences, unlike Python's re), strftime formats are
// translated to a matcher, value sets become hash sets. What is left per
// record is comparisons on the record's values as the host hands them over:
// a kind (absent, null, bool, number, string, object, array) and the text.
//
// The package does not depend on the plugin SDK, so the same code runs
// natively (tests, benchmarks, the agent) and inside the Wasm plugin: the
// caller hands over a batch's values a column at a time, laid out as the
// host sends them (Column, EvaluateColumns), or fills a Row per record
// (Evaluate). A column asks for no more than its expectations read
// (Suite.Form): kinds only, or numbers as their bytes. A Validator
// checks rows, keeps GX's per-expectation counts for the batch (for
// `mostly` and the batch report) and renders, for a failing row only, the
// reason and the JSON list of what it broke. Nothing allocates per row,
// and a batch is evaluated expectation by expectation over all its rows,
// since in Wasm a call or a dispatch per (row, expectation) costs far more
// than the comparison itself.
//
// Streaming changes two GX notions. Table-level expectations (the record's
// columns) hold per record, since each record is a row that names its own
// keys. Uniqueness needs memory across records: it is checked against a
// bounded per-key set of hashes that the caller keeps as the step's keyed
// state (Row.State in, Outcome.State out). Aggregates (GX's column
// aggregate expectations and the table row count) are judged over tumbling
// windows (Suite.Window, Validator.WindowSegment), whose state stays in the
// Validator: a windowed suite gets one report per window instead of per
// batch.
package expect
