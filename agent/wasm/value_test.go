package wasm_test

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestValueFields checks that a value-typed input reaches the plugin with
// the kind and text the message holds, that no kind fails the message on
// the host, and that the body path lists the record's keys in order.
func TestValueFields(t *testing.T) {
	eng := newEngine(t, "")
	p := mustProcessor(t, eng, "path: "+plugins["kinds"])

	cases := []struct {
		body, kind, text, keys string
		num                    float64
		hasNum                 bool
		err                    string
	}{
		{body: `{"a":1}`, kind: "absent", keys: "a"},
		{body: `{"v":null}`, kind: "null", keys: "v"},
		{body: `{"v":true,"w":2}`, kind: "bool", keys: "v,w"},
		{body: `{"v":-1.5e3}`, kind: "number", text: "-1.5e3", num: -1500, hasNum: true, keys: "v"},
		{body: `{"v":"tw\u00e9nty \"q\""}`, kind: "string", text: `twénty "q"`, keys: "v"},
		{body: `{"z":0, "v" : {"x":[1,{"y":"}"}]} ,"a\u00e9":[]}`, kind: "object", text: `{"x":[1,{"y":"}"}]}`, keys: "z,v,aé"},
		{body: `{"v":[1,"2",null]}`, kind: "array", text: `[1,"2",null]`, keys: "v"},
		{body: `{"v":{"x":}}`, err: `field "v": not valid JSON`},
		{body: `not json`, err: `field ".": not valid JSON`},
		{body: `[1,2]`, kind: "absent", err: "not a JSON object"},
	}
	bodies := make([]string, len(cases))
	for i, c := range cases {
		bodies[i] = c.body
	}
	out := run(t, p, batchOf(bodies...))
	if len(out) != len(cases) {
		t.Fatalf("got %d messages, want %d", len(out), len(cases))
	}
	for i, c := range cases {
		m := out[i]
		b, _ := m.AsBytes()
		if c.err != "" {
			if m.GetError() == nil || !strings.Contains(m.GetError().Error(), c.err) {
				t.Errorf("%s: error %v, want it to contain %q", c.body, m.GetError(), c.err)
			}
			if string(b) != c.body {
				t.Errorf("%s: failed message body changed to %s", c.body, b)
			}
			continue
		}
		if m.GetError() != nil {
			t.Errorf("%s: unexpected error %v", c.body, m.GetError())
			continue
		}
		got := gjson.ParseBytes(b)
		if k := got.Get("kind").String(); k != c.kind {
			t.Errorf("%s: kind %q, want %q", c.body, k, c.kind)
		}
		if txt := got.Get("text").String(); txt != c.text {
			t.Errorf("%s: text %q, want %q", c.body, txt, c.text)
		}
		if n := got.Get("num"); n.Exists() != c.hasNum || n.Float() != c.num {
			t.Errorf("%s: num %s, want %v (present %v)", c.body, n.Raw, c.num, c.hasNum)
		}
		if k := got.Get("keys").String(); k != c.keys {
			t.Errorf("%s: keys %q, want %q", c.body, k, c.keys)
		}
	}
}
