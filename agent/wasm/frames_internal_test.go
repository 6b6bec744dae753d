package wasm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// randomFrame is a frame of rows rows with a column of each type, every
// one with values, nulls and absent rows, and a constant column.
func randomFrame(t *testing.T, rng *rand.Rand, rows int) *frame.Frame {
	t.Helper()
	w := frame.NewWriter()
	s, i, f := w.Add("s", abi.TypeString, false), w.Add("i", abi.TypeInt, false), w.Add("f", abi.TypeFloat, false)
	bo, tm := w.Add("b", abi.TypeBool, false), w.Add("t", abi.TypeTime, false)
	file := w.AddConst("file", abi.TypeString, false)
	file.Text("sales/2024-01.csv")
	for r := range rows {
		for _, b := range []*frame.Builder{s, i, f, bo, tm} {
			switch rng.IntN(8) {
			case 0:
				b.Null()
				continue
			case 1:
				b.Absent()
				continue
			}
			switch b {
			case s:
				b.Text(fmt.Sprintf("row %d %s", r, string(rune('a'+rng.IntN(26)))))
			case i:
				b.Int(rng.Int64N(2000) - 1000)
			case f:
				b.Float([]float64{0.1, -2.5, 1e21, 123456789.125, 3}[rng.IntN(5)])
			case bo:
				b.Bool(rng.IntN(2) == 0)
			case tm:
				b.Int(time.Date(2024, 3, 9, 14, rng.IntN(60), 0, rng.IntN(3)*500_000_000, time.UTC).UnixNano())
			}
		}
		w.Accept()
	}
	return written(t, w)
}

// written is the frame w's rows make, encoded and decoded.
func written(tb testing.TB, w *frame.Writer) *frame.Frame {
	tb.Helper()
	body, err := w.Append(nil)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := frame.Decode(body)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// TestGatherFrameMatchesRows: a request gathered a column at a time holds
// the same bytes, rows and rejects as one built row by row (each value as
// the row's JSON would give it), for every kind of field a plugin can
// declare over every kind of frame column.
func TestGatherFrameMatchesRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := randomFrame(t, rng, 300)
	var every []int
	for r := range f.Rows {
		if rng.IntN(5) != 0 { // some rows skipped, as earlier steps' rejects are
			every = append(every, r)
		}
	}
	field := func(name string, typ abi.Type, required bool) abi.Field {
		return abi.Field{Name: name, Type: typ, Required: required}
	}
	asBinary := func(f abi.Field) abi.Field { f.BinaryNumbers = true; return f }
	kindsOnly := func(f abi.Field) abi.Field { f.KindsOnly = true; return f }
	for _, tc := range []struct {
		name   string
		fields []abi.Field
		// mixed: the rows have both outcomes, sent and rejected
		mixed bool
	}{
		{"each column as its own type", []abi.Field{
			field("s", abi.TypeString, false), field("i", abi.TypeInt, false), field("f", abi.TypeFloat, false),
			field("b", abi.TypeBool, false), field("t", abi.TypeTime, false), field("file", abi.TypeString, false)}, false},
		{"each column as a value", []abi.Field{
			field("s", abi.TypeValue, false), field("i", abi.TypeValue, false), field("f", abi.TypeValue, false),
			field("b", abi.TypeValue, false), field("t", abi.TypeValue, false), field("file", abi.TypeValue, false)}, false},
		{"required fields reject rows, the first missing one named", []abi.Field{
			field("i", abi.TypeInt, true), field("s", abi.TypeValue, true), field("f", abi.TypeFloat, false)}, true},
		{"an int column as a float", []abi.Field{field("i", abi.TypeFloat, false)}, false},
		{"fields the frame lacks", []abi.Field{
			field("nope", abi.TypeInt, false), field("nope", abi.TypeValue, false), field("nope.a", abi.TypeString, false)}, false},
		{"a required field the frame lacks", []abi.Field{field("nope", abi.TypeValue, true)}, false},
		{"values with binary numbers", []abi.Field{
			asBinary(field("s", abi.TypeValue, false)), asBinary(field("i", abi.TypeValue, false)), asBinary(field("f", abi.TypeValue, true)),
			asBinary(field("b", abi.TypeValue, false)), asBinary(field("t", abi.TypeValue, false)), asBinary(field("nope", abi.TypeValue, false))}, true},
		{"values as kinds only", []abi.Field{
			kindsOnly(field("s", abi.TypeValue, false)), kindsOnly(field("i", abi.TypeValue, true)), kindsOnly(field("f", abi.TypeValue, false)),
			kindsOnly(field("b", abi.TypeValue, false)), kindsOnly(field("t", abi.TypeValue, false)), kindsOnly(field("file", abi.TypeValue, false))}, true},
		// Converted one by one: the row path itself, whatever it decides.
		{"a column of another type", []abi.Field{field("i", abi.TypeString, false), field("s", abi.TypeValue, false)}, false},
		{"the whole body", []abi.Field{field(abi.BodyPath, abi.TypeValue, false), field("i", abi.TypeInt, true)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rows := range [][]int{every, every[:1], nil} {
				var byCol, byRow scratch
				var rejCol, rejRow []string
				sentCol := slices.Clone(byCol.gatherFrame(tc.fields, f, rows, func(row int, err error) {
					rejCol = append(rejCol, fmt.Sprintf("%d: %v", row, err))
				}))
				sentRow := slices.Clone(byRow.gatherFrameRows(tc.fields, byRow.frameColumns(tc.fields, f), f, rows, func(row int, err error) {
					rejRow = append(rejRow, fmt.Sprintf("%d: %v", row, err))
				}))
				if !slices.Equal(sentCol, sentRow) {
					t.Fatalf("rows sent: %v by column, %v by row", sentCol, sentRow)
				}
				if !slices.Equal(rejCol, rejRow) {
					t.Fatalf("rejects:\n%q by column\n%q by row", rejCol, rejRow)
				}
				if tc.mixed && len(rows) > 1 && (len(rejCol) == 0 || len(sentCol) == 0) {
					t.Fatalf("%d rows rejected, %d sent: the frame should have both", len(rejCol), len(sentCol))
				}
				for c, fd := range tc.fields {
					var a, b abi.Writer
					byCol.cols[c].AppendTo(&a)
					byRow.cols[c].AppendTo(&b)
					if !bytes.Equal(a.Buf, b.Buf) {
						t.Fatalf("field %q (%d rows): column\n%x\nwant (by row)\n%x", fd.Name, len(sentRow), a.Buf, b.Buf)
					}
				}
			}
		})
	}
}

// TestGatherValueForms: a value field declared with binary numbers gets
// an int or float column's values as their 8 bytes, every other column
// as text; one declared kinds-only gets each row's kind and no data.
func TestGatherValueForms(t *testing.T) {
	f := randomFrame(t, rand.New(rand.NewPCG(5, 6)), 200)
	rows := make([]int, f.Rows)
	for r := range rows {
		rows[r] = r
	}
	// The whole body, kinds only: an object and no text.
	var s scratch
	s.gatherFrame([]abi.Field{{Name: abi.BodyPath, Type: abi.TypeValue, KindsOnly: true}}, f, rows, func(row int, err error) { t.Fatalf("row %d rejected: %v", row, err) })
	var w abi.Writer
	s.cols[0].AppendTo(&w)
	body := abi.ReadColumn(abi.NewReader(w.Buf), abi.TypeValue, len(rows))
	for r := range rows {
		if k, d := abi.Kind(body.Valid[r]), str(body, r); k != abi.KindObject || len(d) != 0 {
			t.Fatalf("the body, row %d, kinds only: %v %q, want an object and no data", r, k, d)
		}
	}
	for _, name := range []string{"s", "i", "f", "b", "t", "file"} {
		col := f.Field(name)
		text := abi.Field{Name: name, Type: abi.TypeValue}
		bin, kinds := text, text
		bin.BinaryNumbers, kinds.KindsOnly = true, true
		var got [3]abi.Column
		for k, fd := range []abi.Field{text, bin, kinds} {
			var s scratch
			s.gatherFrame([]abi.Field{fd}, f, rows, func(row int, err error) { t.Fatalf("row %d rejected: %v", row, err) })
			var w abi.Writer
			s.cols[0].AppendTo(&w)
			got[k] = abi.ReadColumn(abi.NewReader(w.Buf), abi.TypeValue, len(rows))
		}
		for r := range rows {
			kind, data := abi.Kind(got[0].Valid[r]), str(got[0], r)
			wantKind, wantData := kind, data
			if kind == abi.KindNumber && col.Type == abi.TypeInt {
				wantKind, wantData = abi.KindInt, binaryLE(uint64(col.Int(r)))
			}
			if kind == abi.KindNumber && col.Type == abi.TypeFloat {
				wantKind, wantData = abi.KindFloat, binaryLE(math.Float64bits(col.Float(r)))
			}
			if k, d := abi.Kind(got[1].Valid[r]), str(got[1], r); k != wantKind || !bytes.Equal(d, wantData) {
				t.Fatalf("column %q row %d, binary numbers: %v %x, want %v %x", name, r, k, d, wantKind, wantData)
			}
			if k, d := abi.Kind(got[2].Valid[r]), str(got[2], r); k != kind || len(d) != 0 {
				t.Fatalf("column %q row %d, kinds only: %v %q, want %v and no data", name, r, k, d, kind)
			}
		}
	}
}

func str(c abi.Column, r int) []byte {
	b, _ := c.Str(r)
	return b
}

func binaryLE(u uint64) []byte { return binary.LittleEndian.AppendUint64(nil, u) }

// BenchmarkGatherFrame: the host's part of a call on a frame of the sales
// ETL's shape, as the validate step declares its fields (five values) and
// as the transform does (a string, an int and a float), a column at a
// time beside row by row.
//
//	go test -run '^$' -bench GatherFrame -count 6 ./agent/wasm/
func BenchmarkGatherFrame(b *testing.B) {
	const rows = 8192
	w := frame.NewWriter()
	date, product, qty, price, customer := w.Add("date", abi.TypeString, false), w.Add("product_id", abi.TypeInt, false),
		w.Add("quantity", abi.TypeInt, false), w.Add("price", abi.TypeFloat, false), w.Add("customer_id", abi.TypeInt, false)
	for r := range rows {
		date.Text(fmt.Sprintf("2025-01-%02d", 1+r%28))
		product.Int(int64(r % 500))
		qty.Int(int64(1 + r%5))
		price.Float(float64(r%100) + 0.5)
		customer.Int(int64(r % 5000))
		w.Accept()
	}
	f := written(b, w)
	all := make([]int, rows)
	for r := range all {
		all[r] = r
	}
	value := func(name string) abi.Field { return abi.Field{Name: name, Type: abi.TypeValue} }
	for _, step := range []struct {
		name   string
		fields []abi.Field
	}{
		{"validate", []abi.Field{value("date"), value("product_id"), value("quantity"), value("price"), value("customer_id")}},
		{"transform", []abi.Field{{Name: "date", Type: abi.TypeString, Required: true},
			{Name: "quantity", Type: abi.TypeInt, Required: true}, {Name: "price", Type: abi.TypeFloat, Required: true}}},
	} {
		for _, how := range []string{"columns", "rows"} {
			b.Run(step.name+"/"+how, func(b *testing.B) {
				var s scratch
				reject := func(int, error) { b.Fatal("a row rejected") }
				for b.Loop() {
					if how == "columns" {
						s.gatherFrame(step.fields, f, all, reject)
					} else {
						s.gatherFrameRows(step.fields, s.frameColumns(step.fields, f), f, all, reject)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}
