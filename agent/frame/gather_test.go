package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// oldColumns decodes a frame of n rows with a column of each type named by
// its type, each row a value, a null or absent at random, and a constant
// column ("const", a string).
func oldColumns(t *testing.T, rng *rand.Rand, n int) *Frame {
	t.Helper()
	w := NewWriter()
	types := []abi.Type{abi.TypeInt, abi.TypeFloat, abi.TypeBool, abi.TypeString, abi.TypeTime}
	var bs []*Builder
	for _, typ := range types {
		bs = append(bs, w.Add(typ.String(), typ, false))
	}
	w.AddConst("const", abi.TypeString, false).Text("sales.csv")
	for i := range n {
		for k, b := range bs {
			switch rng.IntN(4) {
			case 0:
				b.Null()
			case 1:
				b.Absent()
			default:
				if types[k] == abi.TypeString {
					b.Text(fmt.Sprintf("old %d", i))
				} else {
					b.Raw(1, uint64(rng.Int64N(1000)), nil)
				}
			}
		}
		w.Accept()
	}
	return written(t, w)
}

// written is the frame w's rows make, encoded and decoded.
func written(tb testing.TB, w *Writer) *Frame {
	tb.Helper()
	body, err := w.Append(nil)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := Decode(body)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// TestMerge: a column merged a column at a time holds what one built row
// by row does: the rows set take their new values, the others keep the old
// column's row (value, null or absent; absent, or for metadata null, when
// there is no old column).
func TestMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 200
	f := oldColumns(t, rng, n)
	set := make([]byte, n)
	fixed := make([]uint64, n)
	strs := make([][]byte, n)
	for i := range n {
		if rng.IntN(2) == 0 {
			set[i] = 1
			fixed[i] = uint64(rng.Int64N(1 << 40))
			strs[i] = fmt.Appendf(nil, "new %d", i)
		}
	}
	for _, tc := range []struct {
		typ  abi.Type
		old  string // the old column's name, "" for none
		meta bool
	}{
		{abi.TypeInt, "int", false}, {abi.TypeFloat, "float", false}, {abi.TypeBool, "bool", false},
		{abi.TypeTime, "time", false}, {abi.TypeString, "string", false}, {abi.TypeString, "const", false},
		{abi.TypeInt, "", false}, {abi.TypeBool, "", false}, {abi.TypeString, "", false},
		{abi.TypeString, "string", true}, {abi.TypeString, "", true},
	} {
		t.Run(fmt.Sprintf("%s over %q meta %v", tc.typ, tc.old, tc.meta), func(t *testing.T) {
			var old *Column
			if tc.old != "" {
				old = f.Col(tc.old)
			}
			var got, want Builder
			got.Reset(tc.typ)
			want.Reset(tc.typ)
			if tc.typ.Fixed() != 0 {
				got.MergeFixed(set, fixed, old)
			} else {
				got.MergeStrings(set, strs, old, tc.meta)
			}
			// Row by row, as the wasm processor merged before.
			for i := range n {
				switch {
				case set[i] != 0 && tc.typ.Fixed() != 0:
					want.Raw(1, fixed[i], nil)
				case set[i] != 0:
					want.Raw(1, 0, strs[i])
				case tc.meta && (old == nil || old.Null(i)):
					want.Null()
				case tc.meta:
					want.String(old.AppendText(nil, i))
				case old == nil || old.Absent(i):
					want.Absent()
				case old.Null(i):
					want.Null()
				default:
					want.CopyRow(old, i)
				}
			}
			var a, b abi.Writer
			got.AppendTo(&a)
			want.AppendTo(&b)
			if !bytes.Equal(a.Buf, b.Buf) {
				t.Fatalf("merged column\n%x\nwant\n%x", a.Buf, b.Buf)
			}
		})
	}
}
