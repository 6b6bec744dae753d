package wasm

import (
	"encoding/binary"
	"testing"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// TestMergeGrouped checks that outputs grouped under a new key give the
// same document as setting them one by one would, and that groups the
// message already has, or that cannot be rendered in one piece, still go
// field by field.
func TestMergeGrouped(t *testing.T) {
	intCol := func(vals ...int64) abi.Column {
		c := abi.Column{Type: abi.TypeInt}
		for _, v := range vals {
			if v < 0 {
				c.Valid = append(c.Valid, 0)
				c.Fixed = binary.LittleEndian.AppendUint64(c.Fixed, 0)
				continue
			}
			c.Valid = append(c.Valid, 1)
			c.Fixed = binary.LittleEndian.AppendUint64(c.Fixed, uint64(v))
		}
		return c
	}
	cases := []struct {
		name   string
		fields []string
		vals   []int64 // -1: absent in the row
		doc    string
		want   string
	}{
		{"new nested group", []string{"f.a", "f.b", "f.c.d", "top"}, []int64{1, 2, 3, 4}, `{"x":0}`, `{"x":0,"f":{"a":1,"b":2,"c":{"d":3}},"top":4}`},
		{"empty doc", []string{"f.a", "g"}, []int64{1, 2}, ` { } `, ` { "f":{"a":1},"g":2} `},
		{"absent values leave no empty object", []string{"f.a", "f.c.d", "g"}, []int64{-1, -1, 5}, `{"x":0}`, `{"x":0,"g":5}`},
		{"existing key is set in place", []string{"f.a", "f.b"}, []int64{1, 2}, `{"f":{"a":0,"z":9}}`, `{"f":{"a":1,"z":9,"b":2}}`},
		{"a field that is another's parent", []string{"f", "f.a"}, []int64{1, 2}, `{}`, ""},
		{"same name twice: the last wins", []string{"f.a", "f.a"}, []int64{1, 2}, `{}`, `{"f":{"a":2}}`},
		{"nothing present", []string{"f.a"}, []int64{-1}, `{"x":0}`, `{"x":0}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := &Instance{}
			cols := make([]abi.Column, len(tc.fields))
			for c, name := range tc.fields {
				inst.desc.Out = append(inst.desc.Out, abi.Field{Name: name, Type: abi.TypeInt})
				cols[c] = intCol(tc.vals[c])
			}
			inst.plan = newMergePlan(inst.desc.Out)
			got, err := inst.merge([]byte(tc.doc), cols, 0)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("merged to %s, want an error (f is set to a number, then f.a needs it to be an object)", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				got = []byte(tc.doc)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
