package abi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// docHex returns the ```hex NAME blocks of ABI.md by name. Each line of a
// block is "OFFSET  BYTES  comment"; the offset must be where the previous
// lines ended, so a dump cannot be edited into an inconsistent state.
func docHex(t testing.TB) map[string][]byte {
	t.Helper()
	md, err := os.ReadFile("../ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]byte{}
	var (
		name string
		cur  []byte
		in   bool
	)
	for n, line := range strings.Split(string(md), "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```hex "):
			name, cur, in = strings.TrimSpace(strings.TrimPrefix(line, "```hex ")), []byte{}, true
		case in && strings.TrimSpace(line) == "```":
			if _, dup := blocks[name]; dup {
				t.Fatalf("ABI.md: two hex blocks named %q", name)
			}
			blocks[name], in = cur, false
		case in:
			off, rest, ok := strings.Cut(line, "  ")
			at, err := strconv.ParseUint(off, 16, 32)
			if !ok || err != nil || len(off) != 4 {
				t.Fatalf("ABI.md:%d: %q does not start with a 4-digit hex offset", n+1, line)
			}
			if int(at) != len(cur) {
				t.Fatalf("ABI.md:%d: block %s: offset %04x, but the bytes above end at %04x", n+1, name, at, len(cur))
			}
			hexPart, _, _ := strings.Cut(strings.TrimLeft(rest, " "), "  ")
			toks := strings.Fields(hexPart)
			if len(toks) == 0 {
				t.Fatalf("ABI.md:%d: no bytes", n+1)
			}
			for _, tok := range toks {
				b, err := hex.DecodeString(tok)
				if err != nil || len(b) != 1 {
					t.Fatalf("ABI.md:%d: %q is not a hex byte", n+1, tok)
				}
				cur = append(cur, b[0])
			}
		}
	}
	if in {
		t.Fatalf("ABI.md: hex block %s is not closed", name)
	}
	return blocks
}

func le64(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func f64s(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func nanos(s string) int64 {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return ts.UnixNano()
}

// The descriptors of the examples in ABI.md.
var (
	tsHourDescriptor = abi.Descriptor{
		Mode: abi.ModeColumns,
		In:   []abi.Field{{Name: "ts", Type: abi.TypeTime, Required: true}},
		Out:  []abi.Field{{Name: "hour", Type: abi.TypeInt}},
	}
	bytesDescriptor = abi.Descriptor{Mode: abi.ModeBytes}
)

// docEncoders build every hex block of ABI.md with the package's Writer,
// the way the host (requests) and the Go SDK (responses) build them.
var docEncoders = map[string]func(w *abi.Writer){
	"error-response": func(w *abi.Writer) {
		w.U32(uint32(abi.StatusError))
		w.String("bad config")
	},
	"init-request": func(w *abi.Writer) { w.Raw([]byte(`{"tag":"x"}`)) },
	"init-response-bytes": func(w *abi.Writer) {
		w.U32(uint32(abi.StatusOK))
		abi.AppendDescriptor(w, bytesDescriptor)
	},
	"descriptor": func(w *abi.Writer) {
		w.U32(uint32(abi.StatusOK))
		abi.AppendDescriptor(w, tsHourDescriptor)
	},
	"columns-request": func(w *abi.Writer) {
		w.U32(2)
		w.U32(0)
		abi.AppendColumn(w, abi.TypeTime, []byte{1, 1}, le64(nanos("2024-03-09T14:05:00Z"), 1700000000*1e9), nil)
	},
	"columns-response": func(w *abi.Writer) {
		w.U32(uint32(abi.StatusOK))
		w.U32(2)
		w.Raw([]byte{byte(abi.ActionKeep), byte(abi.ActionFail)})
		w.Align8()
		abi.AppendColumn(w, abi.TypeInt, []byte{1, 0}, le64(14, 0), nil)
		w.U32(1)
		w.U32(1)
		w.String("before 2024")
		w.U32(0)
	},
	"columns-request-mixed": func(w *abi.Writer) {
		w.U32(2)
		w.U32(0)
		abi.AppendColumn(w, abi.TypeBool, []byte{1, 1}, []byte{1, 0}, nil)
		abi.AppendColumn(w, abi.TypeString, []byte{1, 0}, nil, [][]byte{[]byte("ab"), nil})
		abi.AppendColumn(w, abi.TypeFloat, []byte{1, 0}, f64s(0.5, 0), nil)
	},
	"bytes-request": func(w *abi.Writer) {
		w.U32(2)
		w.U32(0)
		w.Bytes([]byte("hello"))
		w.U32(1)
		w.String("src")
		w.String("a")
		w.Bytes([]byte("bye"))
		w.U32(0)
	},
	"bytes-response": func(w *abi.Writer) {
		w.U32(uint32(abi.StatusOK))
		w.U32(2)
		w.U8(uint8(abi.ActionReplace))
		w.Bytes([]byte("HELLO"))
		w.U32(1)
		w.String("tag")
		w.String("x")
		w.U8(uint8(abi.ActionFail))
		w.String("no goodbyes")
		w.U32(0)
	},
}

// TestDocExamples pins every hex dump in ABI.md to the encoder.
func TestDocExamples(t *testing.T) {
	doc := docHex(t)
	for name := range doc {
		if docEncoders[name] == nil {
			t.Errorf("ABI.md has a hex block %q that no test checks", name)
		}
	}
	for name, enc := range docEncoders {
		t.Run(name, func(t *testing.T) {
			want, ok := doc[name]
			if !ok {
				t.Fatalf("ABI.md has no hex block %q", name)
			}
			var w abi.Writer
			enc(&w)
			if !bytes.Equal(w.Buf, want) {
				t.Errorf("encoder and ABI.md disagree:\ncode:\n%sdoc:\n%s", hex.Dump(w.Buf), hex.Dump(want))
			}
		})
	}
}

// TestDocExamplesDecode reads the examples back, as the other side would.
func TestDocExamplesDecode(t *testing.T) {
	doc := docHex(t)

	for name, want := range map[string]abi.Descriptor{"descriptor": tsHourDescriptor, "init-response-bytes": bytesDescriptor} {
		r := abi.NewReader(doc[name])
		if st := abi.Status(r.U32()); st != abi.StatusOK {
			t.Fatalf("%s: status %d", name, st)
		}
		got, err := abi.ReadDescriptor(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
		if r.Remaining() != 0 {
			t.Errorf("%s: %d bytes left over", name, r.Remaining())
		}
	}

	r := abi.NewReader(doc["columns-request"])
	if rows := r.U32(); rows != 2 {
		t.Fatalf("rows %d", rows)
	}
	r.U32()
	ts := abi.ReadColumn(r, abi.TypeTime, 2)
	for i, want := range []string{"2024-03-09T14:05:00Z", "2023-11-14T22:13:20Z"} {
		got := time.Unix(0, int64(binary.LittleEndian.Uint64(ts.Fixed[i*8:]))).UTC().Format(time.RFC3339Nano)
		if ts.Valid[i] != 1 || got != want {
			t.Errorf("ts[%d] = %s (valid %d), want %s", i, got, ts.Valid[i], want)
		}
	}
	if r.Err() != nil || r.Remaining() != 0 {
		t.Errorf("columns-request: err %v, %d bytes left", r.Err(), r.Remaining())
	}

	r = abi.NewReader(doc["columns-request-mixed"])
	r.U32()
	r.U32()
	b := abi.ReadColumn(r, abi.TypeBool, 2)
	s := abi.ReadColumn(r, abi.TypeString, 2)
	f := abi.ReadColumn(r, abi.TypeFloat, 2)
	if r.Err() != nil || r.Remaining() != 0 {
		t.Fatalf("columns-request-mixed: err %v, %d bytes left", r.Err(), r.Remaining())
	}
	if !bytes.Equal(b.Fixed, []byte{1, 0}) || !bytes.Equal(s.Valid, []byte{1, 0}) || !bytes.Equal(f.Valid, []byte{1, 0}) {
		t.Errorf("mixed: b %v, s.Valid %v, f.Valid %v", b.Fixed, s.Valid, f.Valid)
	}
	if v, ok := s.Str(0); !ok || string(v) != "ab" {
		t.Errorf("s[0] = %q, %v", v, ok)
	}
	if v, ok := s.Str(1); !ok || len(v) != 0 {
		t.Errorf("s[1] = %q, %v, want empty", v, ok)
	}
	if got := math.Float64frombits(binary.LittleEndian.Uint64(f.Fixed)); got != 0.5 {
		t.Errorf("f[0] = %v", got)
	}

	r = abi.NewReader(doc["error-response"])
	if st := abi.Status(r.U32()); st != abi.StatusError || string(r.Bytes()) != "bad config" || r.Err() != nil {
		t.Errorf("error-response does not decode to status 1, %q", "bad config")
	}
}

// normalize makes nil and empty field lists compare equal.
func normalize(d abi.Descriptor) abi.Descriptor {
	if len(d.In) == 0 {
		d.In = nil
	}
	if len(d.Out) == 0 {
		d.Out = nil
	}
	return d
}

func TestDescriptorEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    abi.Descriptor
		hex  string
	}{
		{"bytes", abi.Descriptor{Mode: abi.ModeBytes}, "00 000000 00000000 00000000"},
		{"columns, nothing declared", abi.Descriptor{Mode: abi.ModeColumns}, "01 000000 00000000 00000000"},
		{"sequential", abi.Descriptor{Mode: abi.ModeColumns, Sequential: true}, "01 04 0000 00000000 00000000"},
		{
			"every type, required and not",
			abi.Descriptor{
				Mode: abi.ModeColumns,
				In: []abi.Field{
					{Name: "a.b", Type: abi.TypeInt, Required: true},
					{Name: "f", Type: abi.TypeFloat},
					{Name: "ok", Type: abi.TypeBool},
					{Name: "", Type: abi.TypeString, Required: true},
				},
				Out: []abi.Field{{Name: "t", Type: abi.TypeTime}},
			},
			"01 000000" +
				" 04000000" +
				" 01 01 0300 612e62" +
				" 02 00 0100 66" +
				" 03 00 0200 6f6b" +
				" 04 01 0000" +
				" 01000000" +
				" 05 00 0100 74",
		},
		{
			"value inputs' forms",
			abi.Descriptor{
				Mode: abi.ModeColumns,
				In: []abi.Field{
					{Name: "n", Type: abi.TypeValue, BinaryNumbers: true},
					{Name: "k", Type: abi.TypeValue, KindsOnly: true, Required: true},
					{Name: "v", Type: abi.TypeValue},
				},
			},
			"01 000000" +
				" 03000000" +
				" 06 02 0100 6e" +
				" 06 05 0100 6b" +
				" 06 00 0100 76" +
				" 00000000",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			var w abi.Writer
			abi.AppendDescriptor(&w, tc.d)
			if !bytes.Equal(w.Buf, want) {
				t.Fatalf("encoded\n%swant\n%s", hex.Dump(w.Buf), hex.Dump(want))
			}
			r := abi.NewReader(want)
			got, err := abi.ReadDescriptor(r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tc.d)) {
				t.Errorf("decoded %+v, want %+v", got, tc.d)
			}
		})
	}
}

// TestDescriptorFlags: bit 0 (required), and on a value input bits 1 and 2
// (binary numbers, kinds only), are all that mean anything in v1; readers
// ignore the reserved bits and bytes so later minor additions do not break
// them.
func TestDescriptorFlags(t *testing.T) {
	b, _ := hex.DecodeString("01ffffff" + "01000000" + "01fe0100" + "78" + "01000000" + "01ff0100" + "79")
	d, err := abi.ReadDescriptor(abi.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if d.In[0].Required || !d.Out[0].Required {
		t.Errorf("flags 0xfe read as required=%v, 0xff as required=%v", d.In[0].Required, d.Out[0].Required)
	}
	// The value-input bits mean nothing on an int field.
	if d.In[0].BinaryNumbers || d.In[0].KindsOnly || d.Out[0].BinaryNumbers || d.Out[0].KindsOnly {
		t.Errorf("an int field read with value-input flags: %+v, %+v", d.In[0], d.Out[0])
	}
	b, _ = hex.DecodeString("01000000" + "01000000" + "06fe0100" + "78" + "00000000")
	if d, err = abi.ReadDescriptor(abi.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if f := d.In[0]; f.Required || !f.BinaryNumbers || !f.KindsOnly {
		t.Errorf("a value field's flags 0xfe read as %+v, want binary numbers and kinds only, not required", f)
	}
}

func TestReadDescriptorRefusals(t *testing.T) {
	field := func(typ byte, name string) string {
		return hex.EncodeToString([]byte{typ, 0, byte(len(name)), 0}) + hex.EncodeToString([]byte(name))
	}
	for _, tc := range []struct {
		name, hex, want string
	}{
		{"mode 2", "02000000 00000000 00000000", "unknown mode 2"},
		{"mode 255", "ff000000 00000000 00000000", "unknown mode 255"},
		{"state view without state", "01020000 00000000 00000000", "a state view needs state"},
		{"input type 0", "01000000 01000000" + field(0, "x") + "00000000", `descriptor input field "x": unknown type 0`},
		{"input type 7", "01000000 01000000" + field(7, "x") + "00000000", `input field "x": unknown type 7`},
		{"output type 6 (value)", "01000000 00000000 01000000" + field(6, "y"), `descriptor output field "y": type value is for inputs only`},
		{"output type 255", "01000000 00000000 01000000" + field(255, "y"), `descriptor output field "y": unknown type 255`},
		{"too many inputs", "01000000 01000100", "declares 65537 fields"},
		{"too many outputs", "01000000 00000000 ffffffff", "declares 4294967295 fields"},
		{"empty", "", "truncated at byte 0"},
		{"input entry cut short", "01000000 01000000 0100", "truncated at byte 10"},
		{"name cut short", "01000000 01000000 01000500 6162", "truncated at byte 12: want 5 more bytes, have 2"},
		{"no output count", "01000000 00000000", "truncated at byte 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			_, err = abi.ReadDescriptor(abi.NewReader(b))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			var ae *abi.Error
			if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "abi: ") {
				t.Errorf("error %q is not an *abi.Error", err)
			}
		})
	}
}

// TestReadDescriptorTruncated cuts a valid descriptor at every length: each
// prefix is refused as truncated, never misread as something else.
func TestReadDescriptorTruncated(t *testing.T) {
	var w abi.Writer
	abi.AppendDescriptor(&w, abi.Descriptor{
		Mode: abi.ModeColumns,
		In:   []abi.Field{{Name: "ts", Type: abi.TypeTime, Required: true}, {Name: "s", Type: abi.TypeString}},
		Out:  []abi.Field{{Name: "hour", Type: abi.TypeInt}},
	})
	for n := 0; n < len(w.Buf); n++ {
		_, err := abi.ReadDescriptor(abi.NewReader(w.Buf[:n]))
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("prefix of %d bytes: got %v, want a truncation error", n, err)
		}
	}
}

// TestColumnEncoding pins the column format for every type, including the
// padding of each part to 8 bytes.
func TestColumnEncoding(t *testing.T) {
	for _, tc := range []struct {
		name  string
		t     abi.Type
		valid []byte
		fixed []byte
		strs  []string
		hex   string
	}{
		{
			"int, 1 row", abi.TypeInt, []byte{1}, le64(-2), nil,
			"01 00000000000000" + " feffffffffffffff",
		},
		{
			"int, 3 rows, middle absent", abi.TypeInt, []byte{1, 0, 1}, le64(math.MaxInt64, 0, math.MinInt64), nil,
			"010001 0000000000" + " ffffffffffffff7f 0000000000000000 0000000000000080",
		},
		{
			"float", abi.TypeFloat, []byte{1, 1}, f64s(1.5, math.Inf(-1)), nil,
			"0101 000000000000" + " 000000000000f83f 000000000000f0ff",
		},
		{
			"bool, 3 rows: both parts padded", abi.TypeBool, []byte{1, 1, 0}, []byte{1, 0, 0}, nil,
			"010100 0000000000" + " 010000 0000000000",
		},
		{
			"bool, 8 rows: no padding", abi.TypeBool, []byte{1, 1, 1, 1, 1, 1, 1, 1}, []byte{1, 0, 1, 0, 1, 0, 1, 0}, nil,
			"0101010101010101" + " 0100010001000100",
		},
		{
			"time", abi.TypeTime, []byte{1}, le64(nanos("1969-12-31T23:59:59.5Z")), nil,
			"01 00000000000000" + " 009b32e2ffffffff",
		},
		{
			"string, 3 rows, one absent", abi.TypeString, []byte{1, 0, 1}, nil, []string{"ab", "", "xyz"},
			"010001 0000000000" + // validity, pad
				" 00000000 02000000 02000000 05000000" + // 4 offsets, already aligned
				" 6162 78797a 000000", // data, pad
		},
		{
			"string, 2 rows: offsets padded", abi.TypeString, []byte{1, 1}, nil, []string{"é", ""},
			"0101 000000000000" +
				" 00000000 02000000 02000000 00000000" + // 3 offsets + pad
				" c3a9 000000000000",
		},
		{
			"string, all empty: no data", abi.TypeString, []byte{1}, nil, []string{""},
			"01 00000000000000" + " 00000000 00000000",
		},
		{
			"string, 8 bytes of data: no padding", abi.TypeString, []byte{1}, nil, []string{"12345678"},
			"01 00000000000000" + " 00000000 08000000" + " 3132333435363738",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			var strs [][]byte
			for _, s := range tc.strs {
				strs = append(strs, []byte(s))
			}
			var w abi.Writer
			abi.AppendColumn(&w, tc.t, tc.valid, tc.fixed, strs)
			if !bytes.Equal(w.Buf, want) {
				t.Fatalf("encoded\n%swant\n%s", hex.Dump(w.Buf), hex.Dump(want))
			}
			if len(w.Buf)%8 != 0 {
				t.Errorf("column ends at %d, not 8-aligned", len(w.Buf))
			}
			rows := len(tc.valid)
			r := abi.NewReader(want)
			c := abi.ReadColumn(r, tc.t, rows)
			if r.Err() != nil || r.Remaining() != 0 {
				t.Fatalf("read back: err %v, %d bytes left", r.Err(), r.Remaining())
			}
			if c.Type != tc.t || !bytes.Equal(c.Valid, tc.valid) {
				t.Errorf("read back type %v validity %v", c.Type, c.Valid)
			}
			if tc.t != abi.TypeString {
				if !bytes.Equal(c.Fixed, tc.fixed) {
					t.Errorf("read back values %x, want %x", c.Fixed, tc.fixed)
				}
				return
			}
			for i, s := range tc.strs {
				if got, ok := c.Str(i); !ok || string(got) != s {
					t.Errorf("row %d: %q, %v; want %q", i, got, ok, s)
				}
			}
		})
	}
}

// TestAlignmentFromBufferStart: padding is counted from the first byte of the
// buffer, not from the start of the column, on both sides.
func TestAlignmentFromBufferStart(t *testing.T) {
	for start := 0; start < 16; start++ {
		var w abi.Writer
		w.Raw(bytes.Repeat([]byte{0xee}, start))
		abi.AppendColumn(&w, abi.TypeInt, []byte{1, 1, 1}, le64(7, 8, 9), nil)
		valuesAt := (start + 3 + 7) / 8 * 8
		if got := int64(binary.LittleEndian.Uint64(w.Buf[valuesAt:])); got != 7 {
			t.Errorf("start %d: values not at %d", start, valuesAt)
		}
		if len(w.Buf) != valuesAt+24 {
			t.Errorf("start %d: column ends at %d, want %d", start, len(w.Buf), valuesAt+24)
		}
		r := abi.NewReader(w.Buf)
		r.Raw(start)
		c := abi.ReadColumn(r, abi.TypeInt, 3)
		if r.Err() != nil || r.Remaining() != 0 || !bytes.Equal(c.Fixed, le64(7, 8, 9)) {
			t.Errorf("start %d: read back %x, err %v, %d left", start, c.Fixed, r.Err(), r.Remaining())
		}
	}
}

// TestReadColumnTruncated: every prefix of a column is an error.
func TestReadColumnTruncated(t *testing.T) {
	for _, tc := range []struct {
		t     abi.Type
		fixed []byte
		strs  [][]byte
	}{
		{abi.TypeInt, le64(1, 2, 3), nil},
		{abi.TypeBool, []byte{1, 0, 1}, nil},
		{abi.TypeString, nil, [][]byte{[]byte("a"), []byte("bcdefghijk"), nil}},
	} {
		var w abi.Writer
		abi.AppendColumn(&w, tc.t, []byte{1, 1, 0}, tc.fixed, tc.strs)
		for n := 0; n < len(w.Buf); n++ {
			r := abi.NewReader(w.Buf[:n])
			abi.ReadColumn(r, tc.t, 3)
			if r.Err() == nil {
				t.Errorf("%v: prefix of %d of %d bytes read without error", tc.t, n, len(w.Buf))
			}
		}
	}
}

func TestColumnStrBadOffsets(t *testing.T) {
	// Offsets 4, 2, 4 over 4 bytes of data: row 0 runs backwards; then
	// off[1] = 9 runs past the end. Neither may panic.
	b, _ := hex.DecodeString(strings.ReplaceAll("0101000000000000"+"04000000 02000000 04000000 00000000"+"6162636400000000", " ", ""))
	r := abi.NewReader(b)
	c := abi.ReadColumn(r, abi.TypeString, 2)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, ok := c.Str(0); ok {
		t.Error("row 0 (offsets 4..2) accepted")
	}
	if s, ok := c.Str(1); !ok || string(s) != "cd" {
		t.Errorf("row 1 = %q, %v", s, ok)
	}
	binary.LittleEndian.PutUint32(b[8+4:], 9) // off[1] = 9 > len(data)
	c = abi.ReadColumn(abi.NewReader(b), abi.TypeString, 2)
	if _, ok := c.Str(0); ok {
		t.Error("row 0 (offsets 4..9 over 4 bytes) accepted")
	}
}

func TestReaderTruncation(t *testing.T) {
	for _, tc := range []struct {
		name string
		buf  string
		read func(r *abi.Reader) any
		want string
	}{
		{"U8 of nothing", "", func(r *abi.Reader) any { return r.U8() }, "abi: truncated at byte 0: want 1 more bytes, have 0"},
		{"U16 of 1", "01", func(r *abi.Reader) any { return r.U16() }, "want 2 more bytes, have 1"},
		{"U32 of 3", "010203", func(r *abi.Reader) any { return r.U32() }, "want 4 more bytes, have 3"},
		{"U64 of 7", "01020304050607", func(r *abi.Reader) any { return r.U64() }, "want 8 more bytes, have 7"},
		{"Raw past end", "0102", func(r *abi.Reader) any { return r.Raw(3) }, "want 3 more bytes, have 2"},
		{"Raw negative", "0102", func(r *abi.Reader) any { return r.Raw(-1) }, "want -1 more bytes"},
		{"Bytes length past end", "05000000 6162", func(r *abi.Reader) any { return r.Bytes() }, "truncated at byte 4: want 5 more bytes, have 2"},
		{"Bytes huge length", "ffffffff", func(r *abi.Reader) any { return r.Bytes() }, "want 4294967295 more bytes, have 0"},
		{"Align8 past end", "01 000000", func(r *abi.Reader) any { r.U8(); r.Align8(); return nil }, "truncated at byte 1: want 7 more bytes, have 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(strings.ReplaceAll(tc.buf, " ", ""))
			r := abi.NewReader(b)
			got := tc.read(r)
			err := r.Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if v := reflect.ValueOf(got); got != nil && !v.IsZero() {
				t.Errorf("a failed read returned %v, want the zero value", got)
			}
			// The first error sticks; later reads return zero values.
			if r.U8() != 0 || r.U32() != 0 || r.Raw(0) != nil || r.Bytes() != nil || r.Err() != err {
				t.Error("reads after an error did not return zero values, or changed the error")
			}
		})
	}
}

func TestReaderWriter(t *testing.T) {
	var w abi.Writer
	w.U8(0x01)
	w.U16(0x0302)
	w.U32(0x07060504)
	w.U64(0x0f0e0d0c0b0a0908)
	w.Bytes([]byte("hi"))
	w.String("yo")
	w.Align8()
	g := w.Grow(3)
	copy(g, "abc")
	want, _ := hex.DecodeString(strings.ReplaceAll("01 0203 04050607 08090a0b0c0d0e0f 02000000 6869 02000000 796f 0000000000 616263", " ", ""))
	if !bytes.Equal(w.Buf, want) || w.Len() != len(want) {
		t.Fatalf("wrote\n%swant\n%s", hex.Dump(w.Buf), hex.Dump(want))
	}

	r := abi.NewReader(w.Buf)
	if r.U8() != 1 || r.U16() != 0x0302 || r.U32() != 0x07060504 || r.U64() != 0x0f0e0d0c0b0a0908 {
		t.Fatal("read back the wrong numbers")
	}
	if string(r.Bytes()) != "hi" || string(r.Bytes()) != "yo" {
		t.Fatal("read back the wrong bytes")
	}
	if r.Offset() != 27 {
		t.Errorf("offset %d, want 27", r.Offset())
	}
	r.Align8()
	if r.Offset() != 32 || r.Remaining() != 3 || string(r.Raw(3)) != "abc" || r.Err() != nil {
		t.Errorf("after Align8: offset %d, remaining %d, err %v", r.Offset(), r.Remaining(), r.Err())
	}
	// Trailing padding is part of the format: a buffer that ends before it
	// is truncated.
	r.Align8()
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "truncated at byte 35: want 5 more bytes, have 0") {
		t.Errorf("Align8 at byte 35 of 35: %v", err)
	}
	r = abi.NewReader(w.Buf[:32])
	r.Raw(32)
	if r.Align8(); r.Err() != nil {
		t.Errorf("Align8 at an aligned end: %v", r.Err())
	}

	w.Reset()
	if w.Len() != 0 {
		t.Error("Reset left bytes")
	}
	if g := w.Grow(4); len(g) != 4 || !bytes.Equal(g, make([]byte, 4)) {
		t.Errorf("Grow after Reset returned %x, want 4 zero bytes", g)
	}
}

func TestTypes(t *testing.T) {
	for _, tc := range []struct {
		t     abi.Type
		name  string
		width int
	}{
		{abi.TypeInt, "int", 8},
		{abi.TypeFloat, "float", 8},
		{abi.TypeBool, "bool", 1},
		{abi.TypeString, "string", 0},
		{abi.TypeTime, "time", 8},
		{abi.TypeValue, "value", 0},
		{0, "type(0)", 0},
		{9, "type(9)", 0},
	} {
		if tc.t.String() != tc.name || tc.t.Fixed() != tc.width {
			t.Errorf("type %d: %q width %d, want %q width %d", uint8(tc.t), tc.t.String(), tc.t.Fixed(), tc.name, tc.width)
		}
	}
	// The numbers are the ABI: changing one breaks every built plugin.
	for got, want := range map[int]int{
		int(abi.StatusOK): 0, int(abi.StatusError): 1, int(abi.StatusFatal): 2,
		int(abi.ModeBytes) + 10: 10, int(abi.ModeColumns) + 10: 11,
		int(abi.ActionKeep) + 20: 20, int(abi.ActionDrop) + 20: 21, int(abi.ActionReplace) + 20: 22, int(abi.ActionFail) + 20: 23,
		int(abi.TypeInt) + 30: 31, int(abi.TypeFloat) + 30: 32, int(abi.TypeBool) + 30: 33, int(abi.TypeString) + 30: 34, int(abi.TypeTime) + 30: 35, int(abi.TypeValue) + 30: 36,
		int(abi.KindAbsent) + 60: 60, int(abi.KindNull) + 60: 61, int(abi.KindFalse) + 60: 62, int(abi.KindTrue) + 60: 63,
		int(abi.KindNumber) + 60: 64, int(abi.KindString) + 60: 65, int(abi.KindObject) + 60: 66, int(abi.KindArray) + 60: 67,
		int(abi.FieldRequired) + 40: 41, abi.Version + 50: 51,
	} {
		if got != want {
			t.Errorf("constant %d, want %d", got, want)
		}
	}
	for _, n := range []string{abi.ExportAlloc, abi.ExportInit, abi.ExportProcess, abi.ImportModule} {
		if !strings.HasPrefix(n, "sluice_v1") {
			t.Errorf("%s does not carry the version", n)
		}
	}
}

func FuzzReadDescriptor(f *testing.F) {
	for _, d := range []abi.Descriptor{bytesDescriptor, tsHourDescriptor, {
		Mode: abi.ModeColumns,
		In:   []abi.Field{{Name: "a", Type: abi.TypeString}, {Name: "b.c", Type: abi.TypeBool, Required: true}},
		Out:  []abi.Field{{Name: "x", Type: abi.TypeFloat}, {Name: "y", Type: abi.TypeTime}},
	}} {
		var w abi.Writer
		abi.AppendDescriptor(&w, d)
		f.Add(w.Buf)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := abi.ReadDescriptor(abi.NewReader(b))
		if err != nil {
			return
		}
		if d.Mode != abi.ModeBytes && d.Mode != abi.ModeColumns {
			t.Fatalf("accepted mode %d", d.Mode)
		}
		for _, f := range append(append([]abi.Field(nil), d.In...), d.Out...) {
			if f.Type < abi.TypeInt || f.Type > abi.TypeTime {
				t.Fatalf("accepted type %d", f.Type)
			}
		}
		// What was accepted encodes and decodes to itself.
		var w abi.Writer
		abi.AppendDescriptor(&w, d)
		d2, err := abi.ReadDescriptor(abi.NewReader(w.Buf))
		if err != nil || !reflect.DeepEqual(normalize(d), normalize(d2)) {
			t.Fatalf("round trip: %+v -> %+v, %v", d, d2, err)
		}
	})
}

func FuzzReadColumn(f *testing.F) {
	add := func(t abi.Type, valid, fixed []byte, strs [][]byte) {
		var w abi.Writer
		abi.AppendColumn(&w, t, valid, fixed, strs)
		f.Add(w.Buf, uint8(t), len(valid), uint8(0))
	}
	add(abi.TypeInt, []byte{1, 0, 1}, le64(1, 0, 3), nil)
	add(abi.TypeBool, []byte{1, 1}, []byte{0, 1}, nil)
	add(abi.TypeString, []byte{1, 0, 1}, nil, [][]byte{[]byte("ab"), nil, []byte("xyz")})
	add(abi.TypeTime, []byte{1}, le64(1), nil)
	f.Add([]byte{}, uint8(abi.TypeString), 0, uint8(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint8(abi.TypeString), 0, uint8(0))
	f.Add([]byte{1, 2, 3}, uint8(abi.TypeString), -1, uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, typ uint8, rows int, skip uint8) {
		r := abi.NewReader(b)
		r.Raw(int(skip % 8))
		c := abi.ReadColumn(r, abi.Type(typ), rows)
		if r.Err() != nil {
			return
		}
		if r.Offset()%8 != 0 {
			t.Fatalf("column ended at %d, not aligned", r.Offset())
		}
		if len(c.Valid) != rows {
			t.Fatalf("%d validity bytes for %d rows", len(c.Valid), rows)
		}
		if abi.Type(typ) != abi.TypeString {
			if len(c.Fixed) != rows*abi.Type(typ).Fixed() {
				t.Fatalf("%d value bytes for %d rows of %v", len(c.Fixed), rows, abi.Type(typ))
			}
			return
		}
		if len(c.Offs) != 4*(rows+1) {
			t.Fatalf("%d offset bytes for %d rows", len(c.Offs), rows)
		}
		for i := 0; i < rows; i++ {
			if s, ok := c.Str(i); ok && len(s) > len(c.Data) {
				t.Fatalf("row %d longer than the data", i)
			}
		}
	})
}
