package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnce: with --once (or SLUICE_ONCE) a scheduled pipeline runs once,
// with its retries, and the agent exits with the run's outcome, as a job
// started by cron or a Kubernetes CronJob must: the seed's hourly DAG
// writes its three Parquet files and exits 0; an hourly job whose input is
// missing fails both attempts (a retry) and exits 1.
func TestOnce(t *testing.T) {
	t.Run("the hourly DAG, once", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "dag_out")
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "DAG_OUT="+out)
		res := runAgent(t, dir, env, "--pipeline", "builtin:ml_dag", "--once")
		if res.code != 0 || strings.Count(res.stderr, "run succeeded") != 1 || !strings.Contains(res.stderr, "pipeline finished") {
			t.Fatalf("want one successful run and an exit: %s", res)
		}
		for _, source := range []string{"user_behavior", "product_catalog", "transaction_history"} {
			if m, _ := filepath.Glob(filepath.Join(out, "processed_"+source+"_*.parquet")); len(m) != 1 {
				t.Errorf("%s: %v, want one Parquet file", source, m)
			}
		}
	})
	t.Run("an hourly job that fails", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(`
input:
  csv_file:
    paths: [%q]
schedule: {every: 1h, retries: 1, backoff: 10ms}
output:
  drop: {}
`, filepath.Join(dir, "missing.csv")))
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=", "SLUICE_ONCE=true")
		res := runAgent(t, dir, env, "--pipeline", filepath.Join(dir, "job.yaml"))
		if res.code != 1 || strings.Count(res.stderr, "ok=false") != 2 || !strings.Contains(res.stderr, "matches no file") {
			t.Errorf("want two failed attempts naming the missing file, then exit 1: %s", res)
		}
	})
	t.Run("a plugin that refuses its config", func(t *testing.T) {
		// A misspelt option fails every attempt the same way: the run
		// fails at once, not after its retries' backoff (an hour here),
		// while a model file not there yet may be there at the next
		// attempt, so that run is retried.
		for _, tc := range []struct {
			name, step, want string
			attempts         int
		}{
			{"misspelt source", "{builtin: dag, config: {source: user_behaviour}}", `source: \"user_behaviour\" is not user_behavior or product_catalog`, 1},
			{"unknown option", "{builtin: score, config: {model_fil: /models/m.json}}", "model_fil: unknown key", 1},
			{"model file not there yet", "{builtin: score, mounts: [{host: %q, guest: /models}], config: {model_file: /models/m.json}}", "model_file: stat /models/m.json", 2},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				step := tc.step
				if strings.Contains(step, "%q") {
					step = fmt.Sprintf(step, dir)
				}
				backoff := "1h"
				if tc.attempts > 1 {
					backoff = "10ms"
				}
				writeFile(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(`
input:
  generate: {count: 1, interval: '', mapping: 'root.price = 3'}
pipeline:
  processors:
    - wasm: %s
schedule: {every: 1h, retries: 1, backoff: %s}
output:
  drop: {}
`, step, backoff))
				env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
				res := runAgent(t, dir, env, "--pipeline", filepath.Join(dir, "job.yaml"), "--once")
				if res.code != 1 || strings.Count(res.stderr, "ok=false") != tc.attempts || !strings.Contains(res.stderr, tc.want) {
					t.Errorf("want %d failed attempt(s) naming %s, then exit 1: %s", tc.attempts, tc.want, res)
				}
			})
		}
	})
	t.Run("an output whose options cannot go together", func(t *testing.T) {
		// Beyond what lint sees: the component refuses its config when it
		// is built, every attempt alike, so the run fails at once rather
		// than after its retries' backoff (an hour here).
		for _, tc := range []struct{ name, output, want string }{
			{"sqlite replace_by without columns", "sqlite: {path: %q, table: t, transaction: run, replace_by: [f]}", "replace_by: needs columns"},
			{"parquet max_rows of 0", "parquet: {path: '%s/p-${! counter() }.parquet', max_rows: 0}", "max_rows: must be positive"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, "job.yaml"), fmt.Sprintf(`
input:
  generate: {count: 1, interval: '', mapping: 'root.f = "a"'}
schedule: {every: 1h, retries: 1, backoff: 1h}
output:
  %s
`, fmt.Sprintf(tc.output, filepath.Join(dir, "out"))))
				env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
				res := runAgent(t, dir, env, "--pipeline", filepath.Join(dir, "job.yaml"), "--once")
				if res.code != 1 || strings.Count(res.stderr, "ok=false") != 1 || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "not retried") {
					t.Errorf("want one failed attempt naming %s, not retried, then exit 1: %s", tc.want, res)
				}
			})
		}
	})
	t.Run("a pipeline without a schedule", func(t *testing.T) {
		// It runs as always (here, to the end of its bounded input), and
		// the agent says once does not apply to it.
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "plain.yaml"), `
input:
  generate: { count: 2, interval: '', mapping: 'root.n = counter()' }
output:
  drop: {}
`)
		env := append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
		res := runAgent(t, dir, env, "--pipeline", filepath.Join(dir, "plain.yaml"), "--once")
		if res.code != 0 || !strings.Contains(res.stderr, "once applies to scheduled pipelines") {
			t.Errorf("want a run to the end and a warning that once does not apply: %s", res)
		}
	})
}
