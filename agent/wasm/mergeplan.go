package wasm

import (
	"strings"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// mergePlan groups a plugin's output fields by their top-level key, so a
// row's outputs that go under a key the message does not have yet (the
// common case: a step adding `features.*` or `prediction.*`) are rendered as
// one object and spliced into the message once, instead of once per field,
// each splice copying the whole message. Fields under a key the message
// already has go through setPath one by one, as before.
type mergePlan struct {
	groups []mergeGroup
}

type mergeGroup struct {
	key    string
	fields []int // output field indexes under key, in declaration order
	// root is the group's fields as a tree, for rendering; nil when the
	// group cannot be rendered in one piece (a field that is also another's
	// parent, or two fields with one name), and must go field by field.
	root *planNode
}

type planNode struct {
	name     string
	field    int // output field index at a leaf, -1 inside
	children []*planNode
}

func newMergePlan(out []abi.Field) mergePlan {
	var p mergePlan
	index := map[string]int{}
	for c, f := range out {
		key, _, _ := strings.Cut(f.Name, ".")
		g, ok := index[key]
		if !ok {
			g = len(p.groups)
			index[key] = g
			p.groups = append(p.groups, mergeGroup{key: key, root: &planNode{name: key, field: -1}})
		}
		grp := &p.groups[g]
		grp.fields = append(grp.fields, c)
		if grp.root != nil && !grp.root.add(strings.Split(f.Name, ".")[1:], c) {
			grp.root = nil
		}
	}
	return p
}

// add places field c at path below n; false if that clashes with a field
// already there.
func (n *planNode) add(path []string, c int) bool {
	if len(path) == 0 {
		if n.field >= 0 || len(n.children) > 0 {
			return false
		}
		n.field = c
		return true
	}
	if n.field >= 0 {
		return false
	}
	for _, ch := range n.children {
		if ch.name == path[0] {
			return ch.add(path[1:], c)
		}
	}
	ch := &planNode{name: path[0], field: -1}
	n.children = append(n.children, ch)
	return ch.add(path[1:], c)
}

// render appends `"name":value` for n if any field below it has a value in
// this row.
func (n *planNode) render(dst []byte, rv *rowValues) ([]byte, bool, error) {
	if n.field >= 0 {
		if rv.cols[n.field].Valid[rv.row] == 0 {
			return dst, false, nil
		}
		dst = appendKey(dst, n.name)
		dst, err := rv.appendValue(dst, n.field)
		return dst, err == nil, err
	}
	start := len(dst)
	dst = appendKey(dst, n.name)
	dst = append(dst, '{')
	wrote := false
	for _, ch := range n.children {
		mark := len(dst)
		if wrote {
			dst = append(dst, ',')
		}
		var ok bool
		var err error
		if dst, ok, err = ch.render(dst, rv); err != nil {
			return dst, false, err
		}
		if !ok {
			dst = dst[:mark]
			continue
		}
		wrote = true
	}
	if !wrote {
		return dst[:start], false, nil
	}
	return append(dst, '}'), true, nil
}

// appendKey writes a JSON object key; field path segments are plain
// (checkPath), so they need no escaping.
func appendKey(dst []byte, name string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}
