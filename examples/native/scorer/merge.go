package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

// The agent writes a Wasm plugin's fast-mode outputs into the event by
// splicing JSON text (plugins/sdk/ABI.md §8.6; agent/wasm/batch.go merge,
// mergeplan.go). This file does the same, so this plugin's output is
// byte-identical to the builtin `score` step's: outputs under a top-level
// key the event lacks (the usual "prediction") are rendered as one object
// and appended at the end of the event; outputs under a key it has are set
// in place, one by one. Nothing else in the event is touched.

// value is one row's output: its JSON text, or absent.
type value struct {
	raw     []byte
	present bool
}

// plan groups the outputs by their top-level key, once at Init, as the
// agent does for a plugin's declared outputs (agent/wasm/mergeplan.go).
type plan struct {
	paths  []string
	groups []group
}

// group is the outputs under one top-level key, in order; tree is nil when
// they cannot be rendered as one object (a path that is also another's
// parent, or a path twice).
type group struct {
	key    string
	fields []int
	tree   *node
}

type node struct {
	name     string
	field    int // output index at a leaf, -1 inside
	children []*node
}

func newPlan(paths []string) *plan {
	p := &plan{paths: paths}
	index := map[string]int{}
	for i, path := range paths {
		key, _, _ := strings.Cut(path, ".")
		g, ok := index[key]
		if !ok {
			g = len(p.groups)
			index[key] = g
			p.groups = append(p.groups, group{key: key, tree: &node{name: key, field: -1}})
		}
		p.groups[g].fields = append(p.groups[g].fields, i)
		if p.groups[g].tree != nil && !p.groups[g].tree.add(strings.Split(path, ".")[1:], i) {
			p.groups[g].tree = nil
		}
	}
	return p
}

// merge returns doc with the present values written, or nil when there is
// nothing to write. docStr is doc as a string, for gjson; scratch is a
// buffer reused from one call to the next.
func (p *plan) merge(doc []byte, docStr string, vals []value, scratch *[]byte) ([]byte, error) {
	cur, curStr, changed := doc, docStr, false
	add := (*scratch)[:0]
	defer func() { *scratch = add }()
	for _, g := range p.groups {
		if g.tree != nil && !gjson.Get(curStr, g.key).Exists() {
			mark := len(add)
			if mark > 0 {
				add = append(add, ',')
			}
			var ok bool
			if add, ok = g.tree.render(add, vals); !ok {
				add = add[:mark]
			}
			continue
		}
		for _, i := range g.fields {
			if !vals[i].present {
				continue
			}
			next, err := setPath(cur, p.paths[i], vals[i].raw)
			if err != nil {
				return nil, fmt.Errorf("output field %q: %w", p.paths[i], err)
			}
			cur, curStr, changed = next, string(next), true
		}
	}
	if len(add) > 0 {
		end, empty := jsonfield.RootEnd(cur)
		if end < 0 {
			return nil, fmt.Errorf("output field %q: set %q: the message is not a JSON object", p.paths[0], p.paths[0])
		}
		next := make([]byte, 0, len(cur)+len(add)+1)
		next = append(next, cur[:end]...)
		if !empty {
			next = append(next, ',')
		}
		next = append(next, add...)
		cur, changed = append(next, cur[end:]...), true
	}
	if !changed {
		return nil, nil
	}
	return cur, nil
}

// appendNumber renders a number as the agent does (jsonnum.AppendFloat,
// as encoding/json would); NaN and infinities cannot be written.
func appendNumber(dst []byte, v float64) ([]byte, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dst, false
	}
	return jsonnum.AppendFloat(dst, v), true
}

func (n *node) add(path []string, i int) bool {
	if len(path) == 0 {
		if n.field >= 0 || len(n.children) > 0 {
			return false
		}
		n.field = i
		return true
	}
	if n.field >= 0 {
		return false
	}
	for _, ch := range n.children {
		if ch.name == path[0] {
			return ch.add(path[1:], i)
		}
	}
	ch := &node{name: path[0], field: -1}
	n.children = append(n.children, ch)
	return ch.add(path[1:], i)
}

// render appends `"name":value` if any output below n is present.
func (n *node) render(dst []byte, vals []value) ([]byte, bool) {
	if n.field >= 0 {
		if !vals[n.field].present {
			return dst, false
		}
		dst = appendKey(dst, n.name)
		return append(dst, vals[n.field].raw...), true
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
		if dst, ok = ch.render(dst, vals); !ok {
			dst = dst[:mark]
			continue
		}
		wrote = true
	}
	if !wrote {
		return dst[:start], false
	}
	return append(dst, '}'), true
}

func appendKey(dst []byte, name string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// setPath returns doc with the value at path set to raw, creating missing
// parent objects at the end of the deepest ancestor that exists.
func setPath(doc []byte, path string, raw []byte) ([]byte, error) {
	if res := gjson.GetBytes(doc, path); res.Exists() && res.Index > 0 {
		out := append([]byte{}, doc[:res.Index]...)
		out = append(out, raw...)
		return append(out, doc[res.Index+len(res.Raw):]...), nil
	}
	segs := strings.Split(path, ".")
	for k := len(segs) - 1; k >= 0; k-- {
		var parent gjson.Result
		if k == 0 {
			parent = gjson.ParseBytes(doc)
			parent.Index = strings.IndexByte(string(doc), '{')
			if parent.Index < 0 {
				return nil, fmt.Errorf("set %q: the message is not a JSON object", path)
			}
		} else {
			parent = gjson.GetBytes(doc, strings.Join(segs[:k], "."))
			if !parent.Exists() {
				continue
			}
		}
		if !parent.IsObject() || parent.Index < 0 {
			return nil, fmt.Errorf("set %q: %q is not an object", path, strings.Join(segs[:k], "."))
		}
		end := parent.Index + len(parent.Raw) - 1
		empty := len(strings.TrimSpace(parent.Raw[1:len(parent.Raw)-1])) == 0
		out := append([]byte{}, doc[:end]...)
		if !empty {
			out = append(out, ',')
		}
		for i, seg := range segs[k:] {
			if i > 0 {
				out = append(out, '{')
			}
			out = append(out, '"')
			out = append(out, seg...)
			out = append(out, '"', ':')
		}
		out = append(out, raw...)
		for range segs[k+1:] {
			out = append(out, '}')
		}
		return append(out, doc[end:]...), nil
	}
	return nil, errors.New("set " + strconv.Quote(path) + ": the message is not a JSON object")
}
