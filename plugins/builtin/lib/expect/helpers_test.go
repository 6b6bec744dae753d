package expect

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// yamlJSON converts a YAML suite to the JSON the plugin receives, as the
// agent does with a processor's config block or config_file.
func yamlJSON(t testing.TB, y string) []byte {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatalf("yaml: %v\n%s", err, y)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, y string) *Suite {
	t.Helper()
	s, err := Parse(yamlJSON(t, y))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, y)
	}
	return s
}

func shippedSuite(t testing.TB, name string) *Suite {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "pipelines", "suites", name))
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(b))
}

// rowFor reads a JSON record the way the host fills value fields: each
// column's kind and text, and the top-level keys in order.
func rowFor(t testing.TB, s *Suite, record string) *Row {
	t.Helper()
	r := &Row{Values: make([]Value, len(s.columns))}
	fs, err := objectFields("", []byte(record))
	if err != nil {
		r.NotObject = true
	}
	for _, f := range fs {
		r.Keys = append(r.Keys, []byte(f.key))
	}
	for i, col := range s.columns {
		r.Values[i] = lookup(t, []byte(record), col)
	}
	return r
}

func lookup(t testing.TB, doc []byte, path string) Value {
	raw := doc
	for _, key := range strings.Split(path, ".") {
		fs, err := objectFields("", raw)
		if err != nil {
			return Value{}
		}
		found := false
		for _, f := range fs {
			if f.key == key {
				raw, found = f.raw, true
				break
			}
		}
		if !found {
			return Value{}
		}
	}
	return valueOf(t, raw)
}

func valueOf(t testing.TB, raw []byte) Value {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case 'n':
		return Value{Kind: KindNull}
	case 't':
		return Value{Kind: KindTrue}
	case 'f':
		return Value{Kind: KindFalse}
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return Value{Kind: KindString, Text: []byte(s)}
	case '{':
		return Value{Kind: KindObject, Text: raw}
	case '[':
		return Value{Kind: KindArray, Text: raw}
	}
	return Value{Kind: KindNumber, Text: raw}
}

// keyOf is the key the agent would read for a row from column col: the
// value's text (integers as written).
func keyOf(r *Row, col int) []byte {
	return r.Values[col].Text
}

// stream checks records one by one as a keyed step would, threading each
// key's state from record to record (and batch to batch).
type stream struct {
	t      testing.TB
	s      *Suite
	v      *Validator
	states map[string][]byte
	keyCol int
}

func newStream(t testing.TB, s *Suite) *stream {
	st := &stream{t: t, s: s, v: s.NewValidator(), states: map[string][]byte{}, keyCol: -1}
	if len(s.unique) > 0 {
		st.keyCol = s.unique[0].cols[0]
	}
	st.v.Begin()
	return st
}

func (st *stream) check(record string, replayed bool) (Outcome, *Row) {
	r := rowFor(st.t, st.s, record)
	if st.keyCol >= 0 {
		r.Key = keyOf(r, st.keyCol)
		r.State = st.states[string(r.Key)]
		r.Replayed = replayed
	}
	out := st.v.Check(r)
	if out.SetState {
		st.states[string(r.Key)] = append([]byte(nil), out.State...)
	}
	return out, r
}

func violations(t testing.TB, v *Validator) []map[string]any {
	t.Helper()
	b := v.AppendViolations(nil)
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("violations are not JSON: %v\n%s", err, b)
	}
	return out
}

func validJSON(b []byte) bool { return json.Valid(b) }
