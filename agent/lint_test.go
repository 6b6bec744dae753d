package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/agent/config"
	"github.com/sluice-dev/sluice/internal/wasmbuild"
)

// newTestAgent returns an agent whose state lives in a temporary directory.
func newTestAgent(t testing.TB) *Agent {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{ScratchState: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// buildEcho compiles the echo test plugin, which rejects config fields it
// does not know, unlike the transform plugin, which takes no config at all.
func buildEcho(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "echo.wasm")
	if err := wasmbuild.Build(t.Context(), "wasm/testdata/plugins/echo", out); err != nil {
		t.Fatal(err)
	}
	return out
}

// lineOf returns the 1-based number of the one line of doc containing
// marker.
func lineOf(t *testing.T, doc, marker string) int {
	t.Helper()
	n := 0
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, marker) {
			if n != 0 {
				t.Fatalf("marker %q is on lines %d and %d", marker, n, i+1)
			}
			n = i + 1
		}
	}
	if n == 0 {
		t.Fatalf("marker %q not in document:\n%s", marker, doc)
	}
	return n
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func formatProblems(probs []Problem) string {
	var b strings.Builder
	for _, p := range probs {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

// wantProblem is a problem expected on the line of doc holding marker, with
// a message containing msg.
type wantProblem struct {
	marker, msg string
}

func TestLintPipelines(t *testing.T) {
	echo := buildEcho(t)
	a := newTestAgent(t)
	missing := filepath.Join(t.TempDir(), "missing.wasm")

	// Each pipeline goes between input and output below; in it {echo}
	// stands for the echo plugin and {missing} for a path with no file.
	paths := strings.NewReplacer("{echo}", strconv.Quote(echo), "{missing}", strconv.Quote(missing))
	const input = "input:\n  generate:\n    count: 1\n    mapping: 'root.timestamp = \"2025-01-01T00:00:00Z\"'\n"
	const output = "output:\n  drop: {}\n"
	tests := []struct {
		name     string
		pipeline string
		want     []wantProblem
	}{
		{
			name: "clean",
			pipeline: `pipeline:
  processors:
    - wasm:
        builtin: transform
    - wasm:
        path: {echo}
        config:
          tag: checked
    - catch:
        - wasm:
            path: {echo}
    - branch:
        request_map: root = this
        processors:
          - wasm:
              builtin: transform
        result_map: root.hour = this.hour_of_day
`,
		},
		{
			name: "unknown processor",
			pipeline: `pipeline:
  processors:
    - wasm:
        builtin: transform
    - not_a_processor: {}
`,
			want: []wantProblem{{"not_a_processor", "not_a_processor"}},
		},
		{
			name: "typo in a field",
			pipeline: `pipeline:
  processors:
    - mapping: root = this
      mapping_typo: root = this
`,
			want: []wantProblem{{"mapping_typo", "mapping_typo"}},
		},
		{
			name: "plugin file missing",
			pipeline: `pipeline:
  processors:
    - wasm:
        path: {missing}
`,
			want: []wantProblem{{"path:", "missing.wasm"}},
		},
		{
			name: "unknown builtin plugin",
			pipeline: `pipeline:
  processors:
    - wasm:
        builtin: no_such_builtin
`,
			want: []wantProblem{{"builtin:", `no builtin plugin named "no_such_builtin"`}},
		},
		{
			name: "config field the plugin does not know",
			pipeline: `pipeline:
  processors:
    - wasm:
        path: {echo}
        config:
          tag: fine
          colour: blue
`,
			want: []wantProblem{{"config:", `unknown field "colour"`}},
		},
		{
			name: "config given to a plugin that takes none",
			pipeline: `pipeline:
  processors:
    - wasm:
        builtin: transform
        config: {hour_offset: 2}
`,
			want: []wantProblem{{"config:", "takes no config"}},
		},
		{
			name: "no plugin named, reported once",
			pipeline: `pipeline:
  processors:
    - wasm:
        timeout: 2s
`,
			want: []wantProblem{{"timeout: 2s", "one of path or builtin must be set"}},
		},
		{
			name: "per-stream http server",
			pipeline: `http:
  enabled: true
`,
			want: []wantProblem{{"enabled: true", "http.enabled is true"}},
		},
		{
			name: "config the plugin refuses",
			pipeline: `pipeline:
  processors:
    - wasm:
        path: {echo}
        config: {reject: true}
`,
			want: []wantProblem{{"config:", "reject is set: refusing to load"}},
		},
		{
			name: "a config error's path points at its line",
			pipeline: `pipeline:
  processors:
    - wasm:
        path: {echo}
        config:
          tag: x
          rules:
            - name: fine
            - name: bad
`,
			want: []wantProblem{{"name: bad", `rules[1].name: "bad" is not allowed`}},
		},
		{
			name: "wasm inside catch",
			pipeline: `pipeline:
  processors:
    - wasm:
        builtin: transform
    - catch:
        - mapping: root = this
        - wasm:
            path: {missing}
`,
			want: []wantProblem{{"path:", "missing.wasm"}},
		},
		{
			name: "wasm inside branch",
			pipeline: `pipeline:
  processors:
    - branch:
        request_map: root = this
        processors:
          - wasm:
              path: {echo}
              config:
                colour: blue
        result_map: root.tag = meta("tag")
`,
			want: []wantProblem{{"config:", `unknown field "colour"`}},
		},
		{
			name: "wasm in a processor resource",
			pipeline: `pipeline:
  processors:
    - resource: enrich
processor_resources:
  - label: enrich
    wasm:
      builtin: no_such_resource_plugin
`,
			want: []wantProblem{{"no_such_resource_plugin", "no_such_resource_plugin"}},
		},
		{
			name: "every problem, in line order",
			pipeline: `pipeline:
  processors:
    - wasm:
        path: {missing}
    - not_a_processor: {}
    - switch:
        - check: this.user_id == 1
          processors:
            - wasm:
                path: {echo}
                config:
                  colour: blue
    - mapping: root = this
      mapping_typo: root = this
`,
			want: []wantProblem{
				{"missing.wasm", "missing.wasm"},
				{"not_a_processor", "not_a_processor"},
				{"config:", `unknown field "colour"`},
				{"mapping_typo", "mapping_typo"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := input + paths.Replace(tc.pipeline) + output
			src := filepath.Join(t.TempDir(), "pipeline.yaml")
			writeFile(t, src, doc)

			probs := a.Lint(t.Context(), []string{src})
			if len(probs) != len(tc.want) {
				t.Errorf("want %d problems, got%s\nin:\n%s", len(tc.want), formatProblems(probs), doc)
			}
			for i, w := range tc.want {
				line := lineOf(t, doc, w.marker)
				ok := slices.ContainsFunc(probs, func(p Problem) bool {
					return p.Source == src && p.Line == line && strings.Contains(p.Msg, w.msg)
				})
				if !ok {
					t.Errorf("no problem at %s:%d containing %q; got%s", filepath.Base(src), line, w.msg, formatProblems(probs))
				}
				if i < len(probs) && probs[i].Line != line {
					t.Errorf("problem %d is at line %d, want line %d: problems are sorted by line", i, probs[i].Line, line)
				}
			}
		})
	}
}

// TestLintConfigFile: a plugin config error in a `config_file` is reported
// at its line in that file, where the user has to fix it; a missing file is
// reported at the pipeline's processor.
func TestLintConfigFile(t *testing.T) {
	echo := buildEcho(t)
	a := newTestAgent(t)
	dir := t.TempDir()
	suite := "tag: shared\nrules:\n  - name: ok\n  - name: ok2\n  - name: bad\n"
	suitePath := filepath.Join(dir, "suite.yaml")
	writeFile(t, suitePath, suite)
	pipeline := fmt.Sprintf(`input:
  generate: {count: 1, mapping: 'root = {}'}
pipeline:
  processors:
    - wasm:
        path: %q
        config_file: %q
    - wasm:
        path: %q
        config_file: %q
output:
  drop: {}
`, echo, suitePath, echo, filepath.Join(dir, "nope.yaml"))
	src := filepath.Join(dir, "pipeline.yaml")
	writeFile(t, src, pipeline)

	probs := a.Lint(t.Context(), []string{src})
	if len(probs) != 2 {
		t.Fatalf("want 2 problems, got%s", formatProblems(probs))
	}
	wantSuite := Problem{Source: suitePath, Line: lineOf(t, suite, "name: bad")}
	if !slices.ContainsFunc(probs, func(p Problem) bool {
		return p.Source == wantSuite.Source && p.Line == wantSuite.Line && strings.Contains(p.Msg, `rules[2].name: "bad" is not allowed`)
	}) {
		t.Errorf("no problem at %s:%d; got%s", suitePath, wantSuite.Line, formatProblems(probs))
	}
	if !slices.ContainsFunc(probs, func(p Problem) bool {
		return p.Source == src && strings.Contains(p.Msg, "nope.yaml")
	}) {
		t.Errorf("no problem in the pipeline for the missing config file; got%s", formatProblems(probs))
	}
}

// TestLintWasmInInputProcessors: a wasm processor is checked wherever it
// sits, here among the input's own processors.
func TestLintWasmInInputProcessors(t *testing.T) {
	a := newTestAgent(t)
	doc := `input:
  generate:
    count: 1
    mapping: root = {}
  processors:
    - wasm:
        builtin: not_embedded
output:
  drop: {}
`
	src := filepath.Join(t.TempDir(), "in.yaml")
	writeFile(t, src, doc)
	probs := a.Lint(t.Context(), []string{src})
	want := Problem{Source: src, Line: lineOf(t, doc, "not_embedded")}
	if len(probs) != 1 || probs[0].Source != want.Source || probs[0].Line != want.Line ||
		!strings.Contains(probs[0].Msg, "not_embedded") {
		t.Errorf("want one problem at %s:%d naming not_embedded, got%s", src, want.Line, formatProblems(probs))
	}
}

// TestLintSources: the sources lint takes, as the config names them.
func TestLintSources(t *testing.T) {
	a := newTestAgent(t)
	dir := t.TempDir()
	clean := "input:\n  generate:\n    count: 1\n    mapping: root = {}\npipeline:\n  processors:\n    - wasm:\n        builtin: transform\noutput:\n  drop: {}\n"
	broken := strings.Replace(clean, "    - wasm:", "    - not_a_processor: {}\n    - wasm:", 1)
	writeFile(t, filepath.Join(dir, "pipelines", "a_clean.yaml"), clean)
	writeFile(t, filepath.Join(dir, "pipelines", "b_broken.yml"), broken)
	writeFile(t, filepath.Join(dir, "pipelines", "notes.txt"), "not a pipeline: {")
	writeFile(t, filepath.Join(dir, "clean.yaml"), clean)

	t.Run("clean file and builtin", func(t *testing.T) {
		if probs := a.Lint(t.Context(), []string{filepath.Join(dir, "clean.yaml"), "builtin:demo"}); len(probs) != 0 {
			t.Errorf("want no problems, got%s", formatProblems(probs))
		}
	})
	t.Run("directory", func(t *testing.T) {
		probs := a.Lint(t.Context(), []string{filepath.Join(dir, "pipelines")})
		want := Problem{Source: filepath.Join(dir, "pipelines", "b_broken.yml"), Line: lineOf(t, broken, "not_a_processor")}
		if len(probs) != 1 || probs[0].Source != want.Source || probs[0].Line != want.Line {
			t.Errorf("want one problem at %s:%d, got%s", want.Source, want.Line, formatProblems(probs))
		}
	})
	t.Run("missing file", func(t *testing.T) {
		src := filepath.Join(dir, "nope.yaml")
		probs := a.Lint(t.Context(), []string{src})
		if len(probs) != 1 || probs[0].Source != src || !strings.Contains(probs[0].Msg, "no such file") {
			t.Errorf("want one problem saying %s does not exist, got%s", src, formatProblems(probs))
		}
	})
	t.Run("unknown builtin pipeline", func(t *testing.T) {
		probs := a.Lint(t.Context(), []string{"builtin:nope"})
		if len(probs) != 1 || probs[0].Source != "builtin:nope" || !strings.Contains(probs[0].Msg, `no builtin pipeline named "nope"`) {
			t.Errorf("want one problem naming builtin:nope, got%s", formatProblems(probs))
		}
	})
	t.Run("every source is checked", func(t *testing.T) {
		probs := a.Lint(t.Context(), []string{"builtin:nope", filepath.Join(dir, "pipelines"), filepath.Join(dir, "clean.yaml")})
		var srcs []string
		for _, p := range probs {
			srcs = append(srcs, p.Source)
		}
		if want := []string{filepath.Join(dir, "pipelines", "b_broken.yml"), "builtin:nope"}; !slices.Equal(srcs, want) {
			t.Errorf("problems from %q, want %q (sorted by source)%s", srcs, want, formatProblems(probs))
		}
	})
}

// TestLintSuiteFile: a GX suite with an unknown expectation or a bad
// argument fails lint at its line in the suite file, through the builtin
// validate plugin.
func TestLintSuiteFile(t *testing.T) {
	a := newTestAgent(t)
	dir := t.TempDir()
	suite := `suite: users
expectations:
  - expect_column_values_to_not_be_null: {column: user_id}
  - expect_colum_to_exist: {column: user_id}
`
	for _, tc := range []struct{ name, suite, marker, msg string }{
		{"unknown expectation", suite, "expect_colum_to_exist", `unknown expectation "expect_colum_to_exist"`},
		{"bad argument", "suite: users\nexpectations:\n  - expect_column_values_to_be_between:\n      column: page_views\n      min_value: ten\n", "min_value: ten", "min_value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			suitePath := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			writeFile(t, suitePath, tc.suite)
			src := filepath.Join(dir, "pipeline.yaml")
			writeFile(t, src, fmt.Sprintf("input:\n  generate: {count: 1, mapping: 'root = {}'}\npipeline:\n  processors:\n    - wasm:\n        builtin: validate\n        config_file: %q\noutput:\n  drop: {}\n", suitePath))
			probs := a.Lint(t.Context(), []string{src})
			line := lineOf(t, tc.suite, tc.marker)
			if !slices.ContainsFunc(probs, func(p Problem) bool {
				return p.Source == suitePath && p.Line == line && strings.Contains(p.Msg, tc.msg)
			}) {
				t.Errorf("want a problem at %s:%d containing %q; got%s", filepath.Base(suitePath), line, tc.msg, formatProblems(probs))
			}
		})
	}
}

// TestLintKafkaWithNoBrokers: with dev_kafka off and no kafka_brokers, a
// kafka component that names no seed_brokers has nowhere to connect; lint
// says so at its line. One with seed_brokers, or an agent with brokers, is
// fine.
func TestLintKafkaWithNoBrokers(t *testing.T) {
	const doc = `input:
  kafka: # no brokers
    topics: [a]
    consumer_group: g
output:
  kafka:
    seed_brokers: [localhost:9092]
    topic: b
`
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, doc)
	for _, tc := range []struct {
		name    string
		dev     bool
		brokers []string
		want    []string
	}{
		{"dev broker", true, nil, nil},
		{"cluster", false, []string{"kafka-1:9092"}, nil},
		{"nowhere", false, nil, []string{fmt.Sprintf("%s:%d: kafka: no seed_brokers", path, lineOf(t, doc, "# no brokers"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir, cfg.DevKafka, cfg.KafkaBrokers = t.TempDir(), tc.dev, tc.brokers
			a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{ScratchState: true})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(context.Background())
			probs := a.Lint(context.Background(), []string{path})
			if len(probs) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", formatProblems(probs), len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(probs[i].String(), w) {
					t.Errorf("problem %q, want it to start %q", probs[i], w)
				}
			}
		})
	}
}

// TestLintNativePlugin: lint starts each grpc_plugin step's binary as the
// pipeline would, so a missing file and a binary that is not a Sluice
// plugin are reported at the step's line, and a good one passes.
func TestLintNativePlugin(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "echo"), filepath.Join(dir, "badcookie")
	for bin, pkg := range map[string]string{good: "./grpcplugin/testdata/plugins/echo", bad: "./grpcplugin/testdata/plugins/badcookie"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	a := newTestAgent(t)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"a plugin", good, ""},
		{"no such file", filepath.Join(dir, "missing"), "no such file"},
		{"not a Sluice plugin", bad, "handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "input:\n  generate: {count: 1, mapping: 'root = {}'}\npipeline:\n  processors:\n    - grpc_plugin: # step\n        path: " + tc.path + "\noutput:\n  drop: {}\n"
			path := filepath.Join(t.TempDir(), "p.yaml")
			writeFile(t, path, doc)
			probs := a.Lint(context.Background(), []string{path})
			if tc.want == "" {
				if len(probs) != 0 {
					t.Fatalf("problems with a good plugin:\n%s", formatProblems(probs))
				}
				return
			}
			prefix := fmt.Sprintf("%s:%d: grpc_plugin: ", path, lineOf(t, doc, "# step")+1)
			if len(probs) != 1 || !strings.HasPrefix(probs[0].String(), prefix) || !strings.Contains(probs[0].String(), tc.want) {
				t.Errorf("problems:\n%s\nwant one starting %q and saying %q", formatProblems(probs), prefix, tc.want)
			}
		})
	}
}

// TestLintEnumValues: a value outside an enum field's options, in a list
// or nested lists of the agent's own components, is one lint problem
// naming where in the component it is, at the line the component's config
// starts on; Benthos' own per-value lint (internal/enumlint says why it is
// off) would not name the path.
func TestLintEnumValues(t *testing.T) {
	a := newTestAgent(t)
	const gen = "input:\n  generate:\n    count: 1\n    mapping: 'root = {}'\n"
	const drop = "output:\n  drop: {}\n"
	for _, tc := range []struct {
		name, doc, marker, msg string
	}{
		{"csv_file column type", "input:\n  csv_file:\n    paths: [x.csv]\n    columns: [{name: a, type: int}, {name: b, type: integer}]\n" + drop,
			"paths: [x.csv]", `columns[1].type: "integer" is not one of string, int, float, bool, date, timestamp`},
		{"sqlite column type", gen + "output:\n  sqlite:\n    path: x.db\n    table: t\n    columns: [{name: a, type: text}]\n",
			"path: x.db", `columns[0].type: "text" is not one of TEXT, INTEGER`},
		{"sqlite summary op", gen + "output:\n  sqlite:\n    path: x.db\n    table: t\n    transaction: run\n    summaries:\n      - {table: s, group_by: [a], fields: [{as: n, op: count}]}\n      - {table: u, group_by: [a], fields: [{as: n, op: count}, {as: m, op: median, column: a}]}\n",
			"path: x.db", `summaries[1].fields[1].op: "median" is not one of sum, mean`},
		{"parquet compression", gen + "output:\n  parquet:\n    path: x.parquet\n    compression: lz4\n",
			"path: x.parquet", `compression: "lz4" is not one of snappy, zstd, gzip, none`},
		{"aggregate op", gen + "pipeline:\n  processors:\n    - aggregate:\n        group_by: [a]\n        fields: [{as: n, op: total}]\n" + drop,
			"group_by: [a]", `fields[0].op: "total" is not one of`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "pipeline.yaml")
			writeFile(t, src, tc.doc)
			probs := a.Lint(t.Context(), []string{src})
			line := lineOf(t, tc.doc, tc.marker)
			if len(probs) != 1 || probs[0].Line != line || !strings.Contains(probs[0].Msg, tc.msg) {
				t.Errorf("want one problem at line %d containing %q; got%s", line, tc.msg, formatProblems(probs))
			}
		})
	}
}

// TestLintMemoryBufferBehindFile: a `memory` buffer behind a csv_file
// input is reported at the buffer, naming the input: the run would count
// as delivered whatever its outputs did. A memory buffer behind another
// input, a csv_file input without it, and a csv_file output are not.
func TestLintMemoryBufferBehindFile(t *testing.T) {
	a := newTestAgent(t)
	t.Chdir(t.TempDir()) // the runs' relative paths
	const file = "csv_file: {paths: [in.csv]} # file"
	const memory = "memory: {} # memory"
	for _, tc := range []struct {
		name, doc string
		files     int // problems, one per csv_file input
	}{
		{"file, memory buffer", "input:\n  " + file + "\nbuffer:\n  " + memory + "\noutput:\n  drop: {}\n", 1},
		{"files in a broker, memory buffer", "input:\n  broker:\n    inputs:\n      - " + file + "\n      - csv_file: {paths: [b.csv]}\nbuffer:\n  " + memory + "\noutput:\n  drop: {}\n", 2},
		{"file, no buffer", "input:\n  " + file + "\noutput:\n  drop: {}\n", 0},
		{"generate, memory buffer", "input:\n  generate: {count: 1, mapping: 'root = 1'}\nbuffer:\n  " + memory + "\noutput:\n  drop: {}\n", 0},
		{"csv_file output, memory buffer", "input:\n  generate: {count: 1, mapping: 'root = 1'}\nbuffer:\n  " + memory + "\noutput:\n  csv_file: {path: out.csv, columns: [{name: a, value: x}]}\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "p.yaml")
			writeFile(t, src, tc.doc)
			var got []Problem
			for _, p := range a.Lint(t.Context(), []string{src}) {
				if strings.Contains(p.Msg, "buffer memory") {
					got = append(got, p)
				}
			}
			if len(got) != tc.files {
				t.Fatalf("%d buffer problems, want %d:%s", len(got), tc.files, formatProblems(got))
			}
			// A run warns of the same (Benthos runs such a config).
			var log bytes.Buffer
			_ = runAgent(t, t.TempDir(), []string{src}, slog.NewTextHandler(&log, nil), t.Context())
			if warned := strings.Contains(log.String(), "level=WARN msg=\""+src+":"); warned != (tc.files > 0) {
				t.Errorf("the run warned: %v, want %v:\n%s", warned, tc.files > 0, log.String())
			}
			if tc.files > 0 {
				want := fmt.Sprintf("csv_file input of line %d", lineOf(t, tc.doc, "# file"))
				if got[0].Line != lineOf(t, tc.doc, "# memory") || !strings.Contains(got[0].Msg, want) || !strings.Contains(got[0].Msg, "batch_size: 0") {
					t.Errorf("problem %s, want it at the buffer's line naming the %s and the fix", got[0], want)
				}
			}
		})
	}
}
