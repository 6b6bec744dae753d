package expect

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigErrors: every mistake is refused at load with the JSON path of
// what is wrong first, which the agent's lint turns into a line number.
func TestConfigErrors(t *testing.T) {
	const col = "expectations:\n  - expect_column_values_to_not_be_null: {column: a}\n"
	for _, tc := range []struct {
		name, y, want string
	}{
		{"no config", ``, "no suite configured"},
		{"not a mapping", `[1, 2]`, "config: want a mapping"},
		{"unknown top key", "suit: x\n" + col, "suit: unknown key"},
		{"suite not a string", "suite: 5\n" + col, "suite: want a string, got 5"},
		{"bad on_failure", "on_failure: reject\n" + col, `on_failure: want fail, flag or drop, got "reject"`},
		{"bad report", "report: always\n" + col, `report: want auto, batch or none`},
		{"no expectations", "suite: x", "expectations: missing"},
		{"empty expectations", "expectations: []", "expectations: empty"},
		{"expectations not a list", "expectations: {a: 1}", "expectations: want a list"},
		{"unknown expectation", col + "  - expect_colum_to_exist: {column: a}",
			`expectations[1]: unknown expectation "expect_colum_to_exist" (did you mean expect_column_to_exist?)`},
		{"two names in one entry", "expectations:\n  - {expect_column_to_exist: {column: a}, expect_column_values_to_be_null: {column: a}}", "expectations[0]: want one expectation"},
		{"entry not a mapping", "expectations: [expect_column_to_exist]", "expectations[0]: want a mapping"},
		{"kwargs not a mapping", "expectations: [{expect_column_to_exist: a}]", "expectations[0].expect_column_to_exist: want a mapping"},
		{"missing column", "expectations: [{expect_column_values_to_not_be_null: {}}]",
			"expectations[0].expect_column_values_to_not_be_null: missing column"},
		{"column not a string", "expectations: [{expect_column_values_to_not_be_null: {column: 3}}]",
			"expectations[0].expect_column_values_to_not_be_null.column: want a string, got 3"},
		{"column not a path", "expectations: [{expect_column_values_to_not_be_null: {column: 'user id'}}]",
			`expectations[0].expect_column_values_to_not_be_null.column: "user id" is not a field path`},
		{"unknown argument", "expectations: [{expect_column_values_to_not_be_null: {column: a, min_value: 1}}]",
			"expectations[0].expect_column_values_to_not_be_null.min_value: unknown argument of expect_column_values_to_not_be_null (want column, mostly)"},
		{"bound not a number", col + col[len("expectations:\n"):] + "  - expect_column_values_to_be_between: {column: a, min_value: ten}",
			`expectations[2].expect_column_values_to_be_between.min_value: want a number or an ISO 8601 date-time (2025-01-31, 2025-01-31T08:00:00Z), got "ten"`},
		{"bound a list", "expectations: [{expect_column_values_to_be_between: {column: a, max_value: [1]}}]",
			"expectations[0].expect_column_values_to_be_between.max_value: want a number, got [1]"},
		{"no bounds", "expectations: [{expect_column_values_to_be_between: {column: a}}]",
			"expectations[0].expect_column_values_to_be_between: set min_value, max_value or both"},
		{"bounds reversed", "expectations: [{expect_column_values_to_be_between: {column: a, min_value: 5, max_value: 1}}]",
			"expectations[0].expect_column_values_to_be_between.max_value: 1 is below min_value 5"},
		{"mixed bounds", "expectations: [{expect_column_values_to_be_between: {column: a, min_value: 0, max_value: '2025-01-01'}}]",
			"expectations[0].expect_column_values_to_be_between.min_value: want a string, got 0"},
		{"strict not bool", "expectations: [{expect_column_values_to_be_between: {column: a, min_value: 0, strict_min: yes please}}]",
			"expectations[0].expect_column_values_to_be_between.strict_min: want true or false"},
		{"mostly out of range", "expectations: [{expect_column_values_to_not_be_null: {column: a, mostly: 95}}]",
			"expectations[0].expect_column_values_to_not_be_null.mostly: want a fraction from 0 to 1, got 95"},
		{"mostly on a table expectation", "expectations: [{expect_table_columns_to_match_set: {column_set: [a], mostly: 0.5}}]",
			"expectations[0].expect_table_columns_to_match_set.mostly: unknown argument"},
		{"unknown type", "expectations: [{expect_column_values_to_be_of_type: {column: a, type_: int65}}]",
			`expectations[0].expect_column_values_to_be_of_type.type_: unknown type "int65"`},
		{"bad type in list", "expectations: [{expect_column_values_to_be_in_type_list: {column: a, type_list: [int, nope]}}]",
			`expectations[0].expect_column_values_to_be_in_type_list.type_list[1]: unknown type "nope"`},
		{"empty value set", "expectations: [{expect_column_values_to_be_in_set: {column: a, value_set: []}}]",
			"expectations[0].expect_column_values_to_be_in_set.value_set: empty list"},
		{"object in value set", "expectations: [{expect_column_values_to_be_in_set: {column: a, value_set: [a, {b: 1}]}}]",
			`expectations[0].expect_column_values_to_be_in_set.value_set[1]: want a string, number or boolean, got {"b":1}`},
		{"lookaround", `expectations: [{expect_column_values_to_match_regex: {column: a, regex: '(?<=x)y'}}]`,
			"expectations[0].expect_column_values_to_match_regex.regex: not a regular expression Go's regexp (RE2) accepts; lookarounds and backreferences are not supported"},
		{"bad regex in list", `expectations: [{expect_column_values_to_not_match_regex_list: {column: a, regex_list: ['ok', '(']}}]`,
			"expectations[0].expect_column_values_to_not_match_regex_list.regex_list[1]: not a regular expression"},
		{"bad match_on", `expectations: [{expect_column_values_to_match_regex_list: {column: a, regex_list: [x], match_on: some}}]`,
			`expectations[0].expect_column_values_to_match_regex_list.match_on: want any or all, got "some"`},
		{"bad strftime", `expectations: [{expect_column_values_to_match_strftime_format: {column: a, strftime_format: '%Y-%c'}}]`,
			"expectations[0].expect_column_values_to_match_strftime_format.strftime_format: \"%Y-%c\": %c depends on the locale"},
		{"row_condition", `expectations: [{expect_column_values_to_not_be_null: {column: a, row_condition: 'b>1'}}]`,
			"expectations[0].expect_column_values_to_not_be_null.row_condition: conditional expectations are not supported"},
		{"column listed twice", "horizon: {count: 1}\nexpectations: [{expect_compound_columns_to_be_unique: {column_list: [a, a]}}]",
			`expectations[0].expect_compound_columns_to_be_unique.column_list[1]: "a" is listed twice`},
		{"bad ignore_row_if", "horizon: {count: 1}\nexpectations: [{expect_compound_columns_to_be_unique: {column_list: [a, b], ignore_row_if: both}}]",
			`expectations[0].expect_compound_columns_to_be_unique.ignore_row_if: want all_values_are_missing`},
		{"negative column_index", "expectations: [{expect_column_to_exist: {column: a, column_index: -1}}]",
			"expectations[0].expect_column_to_exist.column_index: want 0 or more, got -1"},
		{"fractional count", "expectations: [{expect_table_column_count_to_equal: {value: 2.5}}]",
			"expectations[0].expect_table_column_count_to_equal.value: want a whole number, got 2.5"},
		{"GX form without kwargs", "expectations: [{expectation_type: expect_column_to_exist}]", "expectations[0]: missing kwargs"},
		{"GX form bad kwarg", "expectations: [{expectation_type: expect_column_to_exist, kwargs: {column: a, colum_index: 1}}]",
			"expectations[0].kwargs.colum_index: unknown argument of expect_column_to_exist"},
		{"GX form unknown key", "expectations: [{expectation_type: expect_column_to_exist, kwargs: {column: a}, extra: 1}]",
			"expectations[0].extra: unknown key in a GX expectation"},
		{"uniqueness without horizon", "expectations: [{expect_column_values_to_be_unique: {column: id}}]",
			"horizon: missing: expectations[0] (expect_column_values_to_be_unique) remembers values per key"},
		{"horizon without uniqueness", "horizon: {count: 5}\n" + col, "horizon: set, but it only applies to uniqueness expectations"},
		{"empty horizon", "horizon: {}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]", "horizon: set count, duration or both"},
		{"bad horizon count", "horizon: {count: 0}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]", "horizon.count: want 1 to 1000000 values per key, got 0"},
		{"bad duration", "horizon: {duration: 1 day, time_column: ts}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]",
			`horizon.duration: want a positive duration such as 24h or 90m, got "1 day"`},
		{"duration without time column", "horizon: {duration: 24h}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]",
			"horizon.duration: needs horizon.time_column"},
		{"time column without duration", "horizon: {count: 3, time_column: ts}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]",
			"horizon.time_column: only used with horizon.duration"},
		{"unknown horizon key", "horizon: {count: 3, window: 1h}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]",
			"horizon.window: unknown key"},
		{"same uniqueness twice", "horizon: {count: 3}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}, {expect_column_values_to_be_unique: {column: id}}]",
			"expectations[1]: the same uniqueness expectation as expectations[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(nil)
			if tc.y != "" {
				raw = yamlJSON(t, tc.y)
			}
			_, err := Parse(raw)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error starting %q", err, tc.want)
			}
		})
	}
}

// lintPath is the agent's pattern for the config path a plugin's error
// starts with (agent/lint.go); an error that starts with one is shown at
// that line of the suite.
var lintPath = regexp.MustCompile(`^[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*)*$`)

func TestConfigErrorPathsAreLintable(t *testing.T) {
	for _, y := range []string{
		"expectations: [{expect_column_values_to_be_between: {column: a, min_value: ten}}]",
		"expectations: [{expectation_type: expect_column_values_to_be_between, kwargs: {column: a, min_value: ten}}]",
		"horizon: {count: 0}\nexpectations: [{expect_column_values_to_be_unique: {column: id}}]",
		"on_failure: x\nexpectations: [{expect_column_to_exist: {column: a}}]",
		"expectations: [{expect_column_values_to_be_in_set: {column: a, value_set: [{}]}}]",
	} {
		_, err := Parse(yamlJSON(t, y))
		path, _, _ := strings.Cut(err.Error(), ": ")
		if !lintPath.MatchString(path) {
			t.Errorf("%s: error %q does not start with a config path", y, err)
		}
	}
}

func TestGXForm(t *testing.T) {
	// A suite's expectations as GX 0.x and 1.x export them.
	s, err := Parse([]byte(`{"suite":"pasted","expectations":[
		{"expectation_type":"expect_column_values_to_be_between","kwargs":{"column":"n","min_value":0,"max_value":null,"mostly":0.9},"meta":{}},
		{"type":"expect_column_values_to_not_be_null","kwargs":{"column":"n","result_format":"SUMMARY"},"id":"2b1c","meta":null,"notes":null}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || !s.exps[0].soft || s.exps[0].hasHi || s.exps[1].name != "expect_column_values_to_not_be_null" {
		t.Errorf("parsed %+v %+v", s.exps[0], s.exps[1])
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"user_events.yaml", "user_data.yaml", "product_data.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "pipelines", "suites", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(yamlJSON(f, string(b)))
	}
	f.Add([]byte(`{"expectations":[{"expectation_type":"expect_column_values_to_match_strftime_format","kwargs":{"column":"a","strftime_format":"%Y%m%d %I%p"}}]}`))
	f.Add([]byte(`{"expectations":[{"expect_column_values_to_be_between":{"column":"a.b","min_value":"2025-01-01","strict_max":true,"max_value":"2026-01-01T00:00:00+01:00"}}]}`))
	f.Add([]byte(`{"horizon":{"duration":"1h","time_column":"t"},"expectations":[{"expect_compound_columns_to_be_unique":{"column_list":["a","t"]}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := Parse(raw)
		if err != nil {
			return
		}
		// A suite that loads must evaluate any record without panicking,
		// and its report must be JSON.
		v := s.NewValidator()
		v.Begin()
		r := &Row{Values: make([]Value, len(s.Columns())), Key: []byte("1")}
		for _, k := range []Kind{KindAbsent, KindNull, KindTrue, KindNumber, KindString, KindObject, KindArray} {
			for i := range r.Values {
				r.Values[i] = Value{Kind: k, Text: []byte("1")}
			}
			out := v.Check(r)
			if out.Violations > 0 {
				v.AppendReason(nil)
				v.AppendViolations(nil)
			}
			if out.SetState {
				r.State = append(r.State[:0], out.State...)
			}
		}
		if b := v.Report().AppendJSON(nil); !validJSON(b) {
			t.Fatalf("report is not JSON: %s", b)
		}
	})
}

// TestColumnForms: a column is asked of the host only as far as its
// expectations read it: kinds for not-null checks alone, numbers (as
// bytes if the host has them) for numeric ranges, text for anything else
// on the column, and text for columns read as a time, a key or a set.
func TestColumnForms(t *testing.T) {
	for _, tc := range []struct {
		name, y string
		want    map[string]Form
	}{
		{"the sales suite", `expectations:
  - expect_column_values_to_not_be_null: {column: date}
  - expect_column_values_to_not_be_null: {column: price}
  - expect_column_values_to_be_between: {column: price, min_value: 0, strict_min: true}`,
			map[string]Form{"date": FormKinds, "price": FormNumbers}},
		{"anything else on the column wants its text", `expectations:
  - expect_column_values_to_not_be_null: {column: a}
  - expect_column_values_to_be_in_set: {column: a, value_set: [1, 2]}
  - expect_column_values_to_be_between: {column: b, min_value: 0}
  - expect_column_values_to_be_of_type: {column: b, type_: int}
  - expect_column_values_to_be_null: {column: c}`,
			map[string]Form{"a": FormText, "b": FormText, "c": FormText}},
		{"a range of times is text", `expectations:
  - expect_column_values_to_be_between: {column: at, min_value: '2024-01-01', max_value: '2025-01-01'}`,
			map[string]Form{"at": FormText}},
		{"a window's mean reads text", `window: {count: 10}
expectations:
  - expect_column_mean_to_be_between: {column: x, min_value: 0, max_value: 1}`,
			map[string]Form{"x": FormText}},
		{"key, time and set columns are text", `horizon: {count: 5, duration: 1h, time_column: ts}
expectations:
  - expect_column_values_to_not_be_null: {column: ts}
  - expect_column_values_to_be_unique: {column: id}
  - expect_compound_columns_to_be_unique: {column_list: [a, b]}
  - expect_column_values_to_not_be_null: {column: a}`,
			map[string]Form{"ts": FormText, "id": FormText, "a": FormText, "b": FormText}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(yamlJSON(t, tc.y))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]Form{}
			for i, c := range s.Columns() {
				got[c] = s.Form(i)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("forms %v, want %v", got, tc.want)
			}
		})
	}
}
