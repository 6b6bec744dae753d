// Package duckcheck cross-checks the Parquet files Sluice writes with an
// independent reader, DuckDB, in a module of its own: DuckDB's Go driver
// needs cgo and a prebuilt library of some tens of megabytes, which the
// agent must not depend on. Its only content is a test; CI runs it with
// `cd internal/duckcheck && go test ./...`.
package duckcheck
