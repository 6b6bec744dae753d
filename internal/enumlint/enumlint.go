// Package enumlint checks the enumerated string fields of a component's
// config with one lint rule for the whole component.
//
// Benthos lints a field made with service.NewStringEnumField by a Bloblang
// mapping of its own, which it parses again, in a new Bloblang
// environment, for every value it lints: milliseconds each. A component
// with an enum in a list (a type per column, an op per summary field)
// paid that per item, and the sales pipeline's dozens of them were most of
// the 0.1-0.2 s Benthos took to lint it before every run. A field made
// with Field keeps its options in the docs and has no mapping of its own;
// Rule writes one mapping, for the component, that checks them all.
package enumlint

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Field is service.NewStringEnumField without its lint mapping: list it
// in the component's Rule.
func Field(name string, options ...string) *service.ConfigField {
	return service.NewStringEnumField(name, options...).LintRule("")
}

// Enum is an enumerated field and where it is: a path of field names from
// the component's config, where a name ending in "[]" is a list whose
// items each have the rest of the path, e.g. "columns[].type" or
// "summaries[].fields[].op".
type Enum struct {
	Path    string
	Options []string
}

// Rule returns a lint rule (for service.ConfigSpec.LintRule) giving a lint
// for each value of enums that is not one of its options, naming where it
// is: `columns[2].type: "TXT" is not one of TEXT, INTEGER`. Unlike
// Benthos' own, it is case-sensitive, as the components' constructors are.
// A field that is absent is not checked: its default, or Benthos' lint of
// a missing required field, applies.
func Rule(enums ...Enum) string {
	parts := make([]string, len(enums))
	for i, e := range enums {
		parts[i] = check("this", `""`, strings.Split(e.Path, "."), e.Options, 0)
	}
	return "root = [" + strings.Join(parts, ", ") + "].flatten()"
}

// check is a Bloblang query for the list of lints of the values at path
// below the value v, whose place in the config is the string loc.
func check(v, loc string, path []string, options []string, depth int) string {
	name, list := strings.CutSuffix(path[0], "[]")
	field := v + "." + name
	here := fmt.Sprintf("%s + %q", loc, name)
	if len(path) == 1 {
		if list {
			panic("enumlint: a path must end in a field, not a list: " + strings.Join(path, "."))
		}
		quoted := make([]string, len(options))
		for i, o := range options {
			quoted[i] = strconv.Quote(o)
		}
		msg := strconv.Quote(`: %q is not one of ` + strings.Join(options, ", "))
		return fmt.Sprintf(`if %s != null && ![%s].contains(%s) { [(%s) + %s.format(%s.string())] } else { [] }`,
			field, strings.Join(quoted, ", "), field, here, msg, field)
	}
	if !list {
		return check(fmt.Sprintf("(%s | {})", field), here+` + "."`, path[1:], options, depth)
	}
	item := fmt.Sprintf("item%d", depth)
	inner := check(item+".value", fmt.Sprintf(`%s + "[" + %s.index.string() + "]."`, here, item), path[1:], options, depth+1)
	return fmt.Sprintf(`(%s | []).enumerated().map_each(%s -> %s).flatten()`, field, item, inner)
}
