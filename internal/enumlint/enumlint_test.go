package enumlint

import (
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// linter lints stream configs whose output is a test component with a
// top-level enum, an enum per list item and an enum per item of a list in
// a list, all checked by one Rule.
func linter(t *testing.T) *service.StreamConfigLinter {
	t.Helper()
	spec := service.NewConfigSpec().
		Fields(
			Field("mode", "batch", "run").Default("batch"),
			service.NewObjectListField("columns",
				service.NewStringField("name"),
				Field("type", "TEXT", "INTEGER"),
			).Default([]any{}),
			service.NewObjectListField("summaries",
				service.NewObjectListField("fields",
					Field("op", "sum", "count"),
				),
			).Default([]any{}),
			service.NewObjectField("nested", Field("kind", "a", "b")).Optional(),
		).
		LintRule(Rule(
			Enum{Path: "mode", Options: []string{"batch", "run"}},
			Enum{Path: "columns[].type", Options: []string{"TEXT", "INTEGER"}},
			Enum{Path: "summaries[].fields[].op", Options: []string{"sum", "count"}},
			Enum{Path: "nested.kind", Options: []string{"a", "b"}},
		))
	env := service.NewEmptyEnvironment()
	err := env.RegisterOutput("enumtest", spec, func(*service.ParsedConfig, *service.Resources) (service.Output, int, error) {
		return nil, 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = env.RegisterInput("nothing", service.NewConfigSpec(), func(*service.ParsedConfig, *service.Resources) (service.Input, error) {
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return env.FullConfigSchema("", "").NewStreamConfigLinter()
}

func TestRule(t *testing.T) {
	l := linter(t)
	for _, tc := range []struct {
		name, output string
		want         []string
	}{
		{"all valid", `{mode: run, columns: [{name: a, type: TEXT}, {name: b, type: INTEGER}], summaries: [{fields: [{op: sum}, {op: count}]}], nested: {kind: b}}`, nil},
		// Benthos' lint of a missing required field, and nothing of ours.
		{"absent fields", `{columns: [{name: a}], summaries: [{fields: [{}]}]}`, []string{"field type is required", "field op is required"}},
		{"top level", `{mode: later}`, []string{`mode: "later" is not one of batch, run`}},
		{"list item", `{columns: [{name: a, type: TEXT}, {name: b, type: TXT}]}`, []string{`columns[1].type: "TXT" is not one of TEXT, INTEGER`}},
		{"case differs", `{columns: [{name: a, type: text}]}`, []string{`columns[0].type: "text" is not one of TEXT, INTEGER`}},
		{"list in a list", `{summaries: [{fields: [{op: sum}]}, {fields: [{op: count}, {op: mean}, {op: max}]}]}`, []string{
			`summaries[1].fields[1].op: "mean" is not one of sum, count`,
			`summaries[1].fields[2].op: "max" is not one of sum, count`,
		}},
		{"object", `{nested: {kind: c}}`, []string{`nested.kind: "c" is not one of a, b`}},
		{"several", `{mode: x, columns: [{name: a, type: y}]}`, []string{
			`mode: "x" is not one of batch, run`,
			`columns[0].type: "y" is not one of TEXT, INTEGER`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lints, err := l.LintYAML([]byte("input:\n  nothing: {}\noutput:\n  enumtest: " + tc.output + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, lt := range lints {
				got = append(got, lt.What)
			}
			// One lint per bad value: a field keeping Benthos' own enum
			// mapping would add a second.
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("lints:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
