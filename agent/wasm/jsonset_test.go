package wasm

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/sdk/jsonnum"
)

func TestSetPath(t *testing.T) {
	for _, tc := range []struct {
		name, doc, path, raw, want, err string
	}{
		{"add top level", `{"a":1}`, "b", `2`, `{"a":1,"b":2}`, ""},
		{"add to empty", `{}`, "b", `true`, `{"b":true}`, ""},
		{"add to empty with space", `{ }`, "b", `true`, `{ "b":true}`, ""},
		{"replace", `{"a":1,"b":"x"}`, "b", `"yy"`, `{"a":1,"b":"yy"}`, ""},
		{"replace object", `{"a":{"x":1},"c":3}`, "a", `5`, `{"a":5,"c":3}`, ""},
		{"nested existing parent", `{"a":{"x":1}}`, "a.y", `2`, `{"a":{"x":1,"y":2}}`, ""},
		{"nested missing parents", `{"a":1}`, "b.c.d", `2`, `{"a":1,"b":{"c":{"d":2}}}`, ""},
		{"nested replace", `{"a":{"x":1}}`, "a.x", `9`, `{"a":{"x":9}}`, ""},
		{"keeps whitespace and order", "{\n  \"z\": 1,\n  \"a\": 2\n}", "m", `3`, "{\n  \"z\": 1,\n  \"a\": 2\n,\"m\":3}", ""},
		{"parent not object", `{"a":"s"}`, "a.b", `1`, "", `"a" is a string, not an object`},
		{"not an object", `[1,2]`, "a", `1`, "", "not a JSON object"},
		{"escaped key lookalike", `{"a.b":1}`, "a.b", `2`, `{"a.b":1,"a":{"b":2}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := setPath(nil, []byte(tc.doc), tc.path, []byte(tc.raw))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %s, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not valid JSON: %s", got)
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	for path, ok := range map[string]bool{
		"timestamp": true, "event_data.amount": true, "a-b.c_d.E9": true,
		"": false, "a..b": false, ".a": false, "a.*": false, "a|b": false, "a b": false, `a\.b`: false,
	} {
		if err := checkPath(path); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", path, err, ok)
		}
	}
}

// FuzzSetPath checks that setting a field on any JSON object yields valid
// JSON in which the field reads back as the value set.
func FuzzSetPath(f *testing.F) {
	f.Add(`{"a":1}`, "b")
	f.Add(`{"a":{"b":[1,2]}}`, "a.c")
	f.Add(`{ "x" : { } }`, "x.y.z")
	f.Fuzz(func(t *testing.T, doc, path string) {
		var v map[string]any
		if json.Unmarshal([]byte(doc), &v) != nil || checkPath(path) != nil {
			return
		}
		got, err := setPath(nil, []byte(doc), path, []byte(`"SET"`))
		if err != nil {
			return // a parent that is not an object: refused, fine
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON from %s set %s: %s", doc, path, got)
		}
		if r := jsonfield.Get(got, path); r.Str != "SET" {
			t.Fatalf("%s set %s: read back %q from %s", doc, path, r.Raw, got)
		}
	})
}

func TestAppendJSONFloat(t *testing.T) {
	for _, v := range []float64{0, 1, -1.5, 1e6, 123456789.25, 1e20, 1e21, 1.5e300, 1e-6, 1e-7, -2.5e-9, 0.1} {
		want, _ := json.Marshal(v)
		if got := jsonnum.AppendFloat(nil, v); string(got) != string(want) {
			t.Errorf("%v: got %s, want %s (encoding/json)", v, got, want)
		}
	}
}
