package frame

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// sample builds a three-row frame of every column type, the second row
// rejected and with nulls.
func sample(t *testing.T, prefix []byte) []byte {
	t.Helper()
	w := NewWriter()
	id, price, ok, name, at, raw := w.Add("id", abi.TypeInt, false), w.Add("price", abi.TypeFloat, false),
		w.Add("ok", abi.TypeBool, false), w.Add("name", abi.TypeString, false), w.Add("at", abi.TypeTime, false),
		w.AddRaw("csv_raw")
	src := w.AddConst("src", abi.TypeString, false)
	src.Text("sales.csv") // one value for all rows
	id.Int(1)
	price.Float(2.5)
	ok.Bool(true)
	name.String([]byte(`a "quoted" <name>`))
	at.Int(1_700_000_000_123_000_000)
	raw.String([]byte("1,2.5,true"))
	w.Accept()
	id.Int(2)
	price.Null()
	ok.Null()
	name.Null()
	at.Null()
	raw.String([]byte("2,abc,,"))
	w.Reject("price: \"abc\" is not a number")
	id.Int(-3)
	price.Float(1e21)
	ok.Bool(false)
	name.String([]byte("ü\x01"))
	at.Int(0)
	raw.String(nil)
	w.Accept()
	b, err := w.Append(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	body := sample(t, nil)
	// A frame written after other bytes pads from its own start.
	other := sample(t, []byte("xyz"))
	if string(other[3:]) != string(body) {
		t.Fatal("a frame appended after 3 bytes differs from one written alone")
	}
	if !Is(body) || Is([]byte(`{"a":1}`)) {
		t.Fatal("Is does not tell a frame from JSON")
	}
	f, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []string{
		`{"id":1,"price":2.5,"ok":true,"name":"a \"quoted\" \u003cname\u003e","at":"2023-11-14T22:13:20.123Z","src":"sales.csv"}`,
		`{"id":2,"price":null,"ok":null,"name":null,"at":null,"src":"sales.csv"}`,
		`{"id":-3,"price":1e+21,"ok":false,"name":"ü\u0001","at":"1970-01-01T00:00:00Z","src":"sales.csv"}`,
	}
	for i, want := range wantRows {
		got := f.AppendRowJSON(nil, i)
		if !json.Valid(got) {
			t.Errorf("row %d: invalid JSON %s", i, got)
		}
		// Compare as values: jsonstr may spell escapes differently.
		var g, w any
		_ = json.Unmarshal(got, &g)
		_ = json.Unmarshal([]byte(want), &w)
		if gs, ws := mustJSON(g), mustJSON(w); gs != ws {
			t.Errorf("row %d: %s, want %s", i, got, want)
		}
	}
	if r, ok := f.Reason(1); !ok || !strings.Contains(r, "abc") {
		t.Errorf("row 1 reason %q %v, want the rejection", r, ok)
	}
	if _, ok := f.Reason(0); ok || f.Accepted() != 2 {
		t.Errorf("row 0 rejected or %d accepted, want 2", f.Accepted())
	}
	if c := f.Col("csv_raw"); c == nil || !c.Meta || string(c.Bytes(1)) != "2,abc,," || f.Field("csv_raw") != nil || f.RawCol() != c {
		t.Error("the metadata column is not kept apart from fields")
	}
	if !f.Unread(1) || f.Unread(0) {
		t.Error("the row rejected by the writer is not marked as having no values")
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRejectSetAndFilter(t *testing.T) {
	tests := []struct {
		name     string
		keep     []bool
		wantIDs  []int64
		wantRej  []bool
		wantTier []string
	}{
		{"all rows", nil, []int64{1, 2, -3}, []bool{false, true, true}, []string{"x", "", "z"}},
		{"first and last", []bool{true, false, true}, []int64{1, -3}, []bool{false, true}, []string{"x", "z"}},
		{"none", []bool{false, false, false}, nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode(sample(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			f.Reject(2, "too negative")
			f.Reject(1, "a second reason is ignored")
			var tier Builder
			tier.Reset(abi.TypeString)
			tier.String([]byte("x"))
			tier.Null()
			tier.String([]byte("z"))
			f.Set(tier.Column("tier", false))
			g, err := Decode(f.Append(nil, tc.keep))
			if err != nil {
				t.Fatal(err)
			}
			if g.Rows != len(tc.wantIDs) {
				t.Fatalf("%d rows, want %d", g.Rows, len(tc.wantIDs))
			}
			id, tc2, src := g.Field("id"), g.Field("tier"), g.Field("src")
			// A frame that keeps no rows still says its constant: which
			// file it is of.
			if !src.Const || string(src.Bytes(0)) != "sales.csv" {
				t.Errorf("the constant column is no longer constant, or lost its value %q", src.Bytes(0))
			}
			for i := range tc.wantIDs {
				if string(src.Bytes(i)) != "sales.csv" {
					t.Errorf("row %d: src %q", i, src.Bytes(i))
				}
				if id.Int(i) != tc.wantIDs[i] || g.Rejected(i) != tc.wantRej[i] || string(tc2.AppendText(nil, i)) != tc.wantTier[i] {
					t.Errorf("row %d: id %d rejected %v tier %q, want %d %v %q", i, id.Int(i), g.Rejected(i), tc2.AppendText(nil, i), tc.wantIDs[i], tc.wantRej[i], tc.wantTier[i])
				}
			}
			if tc.keep == nil {
				if r, _ := g.Reason(1); !strings.Contains(r, "abc") {
					t.Errorf("row 1 reason %q: the first reason is not kept", r)
				}
				if r, _ := g.Reason(2); r != "too negative" {
					t.Errorf("row 2 reason %q", r)
				}
			}
		})
	}
}

// TestEmptyFrame: a frame of no rows (csv_file's for a file with a
// header alone) keeps its columns and its constant's value through
// encoding, decoding and encoding again.
func TestEmptyFrame(t *testing.T) {
	w := NewWriter()
	w.Add("id", abi.TypeInt, false)
	w.AddConst("src", abi.TypeString, false).Text("empty.csv")
	w.AddConst("csv_file", abi.TypeString, true).Text("empty.csv")
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range [][]bool{nil, {}} {
		f, err := Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		if f.Rows != 0 || f.Accepted() != 0 || len(f.Cols) != 3 || f.Field("id") == nil {
			t.Fatalf("%d rows, %d accepted, %d columns: want an empty frame of 3", f.Rows, f.Accepted(), len(f.Cols))
		}
		for _, name := range []string{"src", "csv_file"} {
			if c := f.Col(name); c == nil || !c.Const || string(c.Bytes(0)) != "empty.csv" {
				t.Errorf("%s: %v, want the constant empty.csv", name, c)
			}
		}
		body = f.Append(nil, keep)
	}
	// A writer's constant column must have its value, even for no rows.
	w = NewWriter()
	w.Add("id", abi.TypeInt, false)
	w.AddConst("src", abi.TypeString, false)
	if _, err := w.Append(nil); err == nil || !strings.Contains(err.Error(), `"src" has 0 rows, the frame 1`) {
		t.Errorf("a constant without its value: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	body := sample(t, nil)
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"json", []byte(`{"a":1}`), "not a frame"},
		{"truncated", body[:len(body)-9], "malformed frame"},
		{"header only", body[:len(Magic)+4], "malformed frame"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.body); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// BenchmarkAppend: re-encoding a decoded frame of 8192 sales rows, as
// every step that changes a frame does.
func BenchmarkAppend(b *testing.B) {
	w := NewWriter()
	date, qty, price, raw := w.Add("date", abi.TypeString, false), w.Add("quantity", abi.TypeInt, false),
		w.Add("price", abi.TypeFloat, false), w.AddRaw("csv_raw")
	const rows = 8192
	for i := range rows {
		date.Text("2025-01-15")
		qty.Int(int64(i))
		price.Float(float64(i) / 3)
		raw.Text("2025-01-15,17,3,12.50,4711")
		w.Accept()
	}
	f := written(b, w)
	f.Reject(7, "a reason")
	for b.Loop() {
		_ = f.Append(nil, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

// TestBuilderPop: a row appended and popped leaves the column as if it
// had never been appended, for each layout (8-byte, 1-byte, strings),
// including popping the only row.
func TestBuilderPop(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  abi.Type
		keep []func(*Builder)
		pop  func(*Builder)
	}{
		{"int", abi.TypeInt, []func(*Builder){func(b *Builder) { b.Int(7) }}, func(b *Builder) { b.Int(8) }},
		{"bool", abi.TypeBool, []func(*Builder){func(b *Builder) { b.Bool(true) }}, func(b *Builder) { b.Null() }},
		{"string", abi.TypeString, []func(*Builder){func(b *Builder) { b.Text("ab") }, func(b *Builder) { b.Null() }}, func(b *Builder) { b.Text("xyz") }},
		{"string, the only row", abi.TypeString, nil, func(b *Builder) { b.Text("xyz") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got Builder
			want.Reset(tc.typ)
			got.Reset(tc.typ)
			for _, f := range tc.keep {
				f(&want)
				f(&got)
			}
			tc.pop(&got)
			got.Pop()
			var ww, gw abi.Writer
			want.AppendTo(&ww)
			got.AppendTo(&gw)
			if string(gw.Buf) != string(ww.Buf) || got.Len() != len(tc.keep) {
				t.Errorf("after Pop: %d rows, % x; want %d rows, % x", got.Len(), gw.Buf, len(tc.keep), ww.Buf)
			}
			// And it takes another row as one that was never popped.
			tc.pop(&got)
			tc.pop(&want)
			gw.Reset()
			ww.Reset()
			want.AppendTo(&ww)
			got.AppendTo(&gw)
			if string(gw.Buf) != string(ww.Buf) {
				t.Errorf("a row after Pop: % x; want % x", gw.Buf, ww.Buf)
			}
		})
	}
}

// TestLateReasonsMerged: reasons given after decoding, merged into the
// reasons column in runs, give the bytes the row-by-row path gives (keep
// with every row true), and every row keeps its reason, its rejection
// and whether it was unread: for frames with reasons before (rejected
// and unread) and none, late reasons on the first row, the last, next
// to each other and beside earlier ones, empty and long.
func TestLateReasonsMerged(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		rows := 1 + rng.IntN(300)
		w := NewWriter()
		id := w.Add("id", abi.TypeInt, false)
		raw := w.AddRaw("csv_raw")
		for i := range rows {
			id.Int(int64(i))
			raw.Text(fmt.Sprint("row ", i))
			switch rng.IntN(10) {
			case 0:
				w.Reject(fmt.Sprint("early ", i))
			case 1:
				w.Reject("")
			default:
				w.Accept()
			}
		}
		body, err := w.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		// Some rows, the edges more often.
		for _, i := range []int{0, rows - 1, rng.IntN(rows), rng.IntN(rows), rng.IntN(rows)} {
			if rng.IntN(3) > 0 {
				f.Reject(i, strings.Repeat("late ", rng.IntN(4))+fmt.Sprint(i))
			}
		}
		if n%7 == 0 {
			for i := range rows {
				f.Reject(i, "every row")
			}
		}
		type state struct {
			reason           string
			rejected, unread bool
		}
		want := make([]state, rows)
		for i := range rows {
			want[i].reason, want[i].rejected = f.Reason(i)
			want[i].unread = f.Unread(i)
		}
		all := make([]bool, rows)
		for i := range all {
			all[i] = true
		}
		merged, rowwise := f.Append(nil, nil), f.Append(nil, all)
		if string(merged) != string(rowwise) {
			t.Fatalf("frame %d (%d rows, late %v): merged reasons differ from the row-by-row ones", n, rows, f.rejected)
		}
		g, err := Decode(merged)
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		for i := range rows {
			reason, rejected := g.Reason(i)
			if got := (state{reason, rejected, g.Unread(i)}); got != want[i] {
				t.Fatalf("frame %d row %d: %+v, want %+v", n, i, got, want[i])
			}
		}
	}
}

// TestDecodeBadOffsets: a string column whose offsets step back is a
// malformed frame, whichever row it is at. (Its last offset is the
// length of its data as read, so it cannot end past it.)
func TestDecodeBadOffsets(t *testing.T) {
	w := NewWriter()
	s := w.Add("s", abi.TypeString, false)
	for _, v := range []string{"ab", "cd", "ef"} {
		s.Text(v)
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Column s's offsets: after the header (24 bytes) and the reasons
	// column (24), its validity padded to 8: 0, 2, 4, 6.
	const offs = 24 + 24 + 8
	for i, want := range []uint32{0, 2, 4, 6} {
		if got := binary.LittleEndian.Uint32(body[offs+4*i:]); got != want {
			t.Fatalf("offset %d is %d, want %d: the layout this test assumes changed", i, got, want)
		}
	}
	for _, tc := range []struct {
		name string
		at   int
		off  uint32
	}{
		{"a step back", 1, 5},
		{"a step back at the end", 3, 3},
		{"far past", 2, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append([]byte(nil), body[:len(body):len(body)]...)
			binary.LittleEndian.PutUint32(bad[offs+4*tc.at:], tc.off)
			if _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), "offsets out of order") {
				t.Fatalf("error %v, want offsets out of order", err)
			}
		})
	}
	if _, err := Decode(body); err != nil {
		t.Fatalf("the untouched frame: %v", err)
	}
}
