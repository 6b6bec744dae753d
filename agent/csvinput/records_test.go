package csvinput

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// read is what a reader of records gives for a file: each record's
// fields, the line it starts on, the offset after it, its error's text.
type read struct {
	rec  []string
	line int
	off  int64
	err  string
}

// readStd reads text with encoding/csv as csv_file configured it before
// records: the reference records must match.
func readStd(text string, comma rune) []read {
	r := csv.NewReader(strings.NewReader(text))
	r.Comma = comma
	r.FieldsPerRecord = -1
	var out []read
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		got := read{rec: slices.Clone(rec), off: r.InputOffset()}
		if err != nil {
			got.err = err.Error()
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				got.line = pe.StartLine
			} else {
				return append(out, got)
			}
		} else {
			got.line, _ = r.FieldPos(0)
		}
		out = append(out, got)
	}
}

// readRecords reads text with records through a window fed by rd, dropping
// what was read before each record as csv_file does.
func readRecords(rd io.Reader, comma rune) []read {
	win := &window{r: rd}
	win.skipBOM()
	r := newRecords(win, comma)
	var out []read
	for {
		win.drop(r.Offset())
		rec, line, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		// A record's strings are the reader's until its next read.
		got := read{line: line, off: r.Offset()}
		for _, f := range rec {
			got.rec = append(got.rec, strings.Clone(f))
		}
		if err != nil {
			got.err = err.Error()
			if _, ok := errors.AsType[*csv.ParseError](err); !ok {
				return append(out, got)
			}
		}
		out = append(out, got)
	}
}

func sameReads(t *testing.T, text string, comma rune) {
	t.Helper()
	shown := text
	if len(shown) > 200 {
		shown = shown[:200] + "..."
	}
	want := readStd(text, comma)
	for name, rd := range map[string]io.Reader{
		"whole":    strings.NewReader(text),
		"one-byte": iotest.OneByteReader(strings.NewReader(text)),
	} {
		got := readRecords(rd, comma)
		if len(got) != len(want) {
			t.Fatalf("%s, comma %q, %q: %d records, encoding/csv reads %d:\n got %+v\nwant %+v", name, comma, shown, len(got), len(want), got, want)
		}
		for i := range want {
			if !slices.Equal(got[i].rec, want[i].rec) || got[i].line != want[i].line || got[i].off != want[i].off || got[i].err != want[i].err {
				t.Fatalf("%s, comma %q, %q: record %d is %+v, encoding/csv reads %+v", name, comma, shown, i, got[i], want[i])
			}
		}
	}
}

// TestRecordsMatchEncodingCSV: csv_file's reader gives what encoding/csv
// gives, record by record (fields, line, offset, error), for plain lines,
// quoted ones, and files mixing them.
func TestRecordsMatchEncodingCSV(t *testing.T) {
	var big strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&big, "2024-01-%02d,%d,%d,%d.5,%d\n", i%28+1, i, i%7, i, i*3)
	}
	plain := big.String()
	for _, tc := range []struct {
		name  string
		text  string
		comma rune
	}{
		{"plain", "a,b,c\n1,2,3\n4,5,6\n", ','},
		{"no final newline", "a,b\n1,2", ','},
		{"crlf", "a,b\r\n1,2\r\n3,4\r\n", ','},
		{"cr before the end", "a,b\n1,2\r", ','},
		{"cr inside a field", "a,b\n1\r2,3\n", ','},
		{"two cr", "a,b\n1,2\r\r\n", ','},
		{"blank lines", "\n\na,b\n\n\r\n1,2\n\n", ','},
		{"empty fields", "a,b,c\n,,\n,x,\n", ','},
		{"short and long rows", "a,b\n1\n1,2,3\n", ','},
		{"only blank lines", "\n\r\n\n", ','},
		{"empty", "", ','},
		{"spaces", "a, b\n 1 , 2 \n", ','},
		{"quoted", "a,b\n\"1,5\",2\n3,4\n", ','},
		{"quoted header", "\"a\",\"b\"\n1,2\n", ','},
		{"quoted newline", "a,b\n\"x\ny\",2\n3,4\n", ','},
		{"quoted crlf inside", "a,b\r\n\"x\r\ny\",2\r\n3,4\r\n", ','},
		{"escaped quote", "a,b\n\"say \"\"hi\"\"\",2\n", ','},
		{"bare quote", "a,b\n1,2\"x\n3,4\n", ','},
		{"extraneous quote", "a,b\n\"1\"x,2\n3,4\n", ','},
		{"unclosed quote", "a,b\n1,2\n\"3,4\n5,6\n", ','},
		{"quote after plain lines", plain + "\"q\",1\n" + plain, ','},
		{"bare quote after plain lines", plain + "1,2\"\n3,4\n", ','},
		{"plain, large", plain, ','},
		{"semicolon", "a;b\n1,5;2\n", ';'},
		{"tab", "a\tb\n1\t2\n", '\t'},
		{"multibyte delimiter", "a§b\n1§2§\n", '§'},
		{"delimiter encoding/csv refuses", "a\rb\n1\r2\n", '\r'},
		{"bom", "\xef\xbb\xbfa,b\n1,2\n", ','},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if strings.HasPrefix(text, "\xef\xbb\xbf") {
				// The window skips a BOM; encoding/csv reads what follows.
				got := readRecords(strings.NewReader(text), tc.comma)
				want := readStd(strings.TrimPrefix(text, "\xef\xbb\xbf"), tc.comma)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
				return
			}
			sameReads(t, text, tc.comma)
		})
	}
}

// FuzzRecords: any text, with a few delimiters, reads as encoding/csv
// reads it.
func FuzzRecords(f *testing.F) {
	for _, s := range []string{"a,b\n1,2\n", "\"a\nb\",c\r\n", "x\"y,z\n", "\r\n\r", "a;b\n\"\"\"\n", ",,\n,"} {
		f.Add(s, uint8(0))
	}
	commas := []rune{',', ';', '\t', '§', '\r'}
	f.Fuzz(func(t *testing.T, text string, c uint8) {
		sameReads(t, text, commas[int(c)%len(commas)])
	})
}

// BenchmarkRecords reads the seed's sales rows with records and with
// encoding/csv as csv_file used it before.
//
//	go test -run '^$' -bench Records -count 6 ./agent/csvinput/
func BenchmarkRecords(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("date,product_id,quantity,price,customer_id\n")
	for i := range 100_000 {
		fmt.Fprintf(&buf, "2024-%02d-%02d,%d,%d,%d.%02d,%d\n", i%12+1, i%28+1, 1000+i%500, i%9+1, 10+i%490, i%100, 1+i%1000)
	}
	text := buf.Bytes()
	b.Run("records", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			win := &window{r: bytes.NewReader(text)}
			r := newRecords(win, ',')
			for {
				win.drop(r.Offset())
				if _, _, err := r.Read(); err != nil {
					break
				}
			}
		}
	})
	b.Run("encoding-csv", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			win := &window{r: bytes.NewReader(text)}
			r := csv.NewReader(win)
			r.FieldsPerRecord = -1
			r.ReuseRecord = true
			for {
				win.drop(r.InputOffset())
				if _, err := r.Read(); err != nil {
					break
				}
			}
		}
	})
}

// TestShortInt: an int cell read on the fast path is the integer
// strconv.ParseInt reads, and anything it does not take goes on to
// convertCell.
func TestShortInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"-42", -42, true},
		{"+7", 7, true},
		{"007", 7, true},
		{"999999999999999999", 999999999999999999, true},
		{"-999999999999999999", -999999999999999999, true},
		{"9223372036854775807", 0, false}, // 19 digits: strconv's
		{"", 0, false},
		{"-", 0, false},
		{"+", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"10.0", 0, false},
		{"1e3", 0, false},
		{"--1", 0, false},
		{"1,000", 0, false},
	} {
		got, ok := shortInt(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("shortInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzShortInt(f *testing.F) {
	for _, s := range []string{"1", "-0", "+12", "123456789012345678", "1x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := shortInt(s)
		if !ok {
			return
		}
		want, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n != want {
			t.Fatalf("shortInt(%q) = %d; strconv.ParseInt gives %d, %v", s, n, want, err)
		}
	})
}

// TestPlainLinesKeepValues: csv_file over a file whose first 25,000 lines
// quote nothing (split where they lie in the window, which moves many
// times meanwhile) and whose rest encoding/csv reads (from a quoted
// line on): every good row's values and every reject's line and text
// are the file's, as rows and as frames (readAll compares the two).
func TestPlainLinesKeepValues(t *testing.T) {
	var b strings.Builder
	b.WriteString("id,note,day,price\n")
	var want []string
	for i := range 30000 {
		line := i + 2
		note := fmt.Sprintf("note %d %s", i, strings.Repeat("x", i%40))
		day := fmt.Sprintf("2024-01-%02d", 1+i%28)
		price := float64(i%1000) + 0.25
		id := strconv.Itoa(i)
		if i%1013 == 7 {
			id = "x" + id // not an int: rejected with its text
		}
		if i == 25000 {
			note = "a quoted, note" // from here on encoding/csv reads
		}
		cell := note
		if strings.Contains(note, ",") {
			cell = `"` + note + `"`
		}
		row := strings.Join([]string{id, cell, day, strconv.FormatFloat(price, 'f', -1, 64)}, ",")
		b.WriteString(row + "\n")
		if id[0] == 'x' {
			want = append(want, fmt.Sprintf("%d: %s !", line, row))
			continue
		}
		want = append(want, fmt.Sprintf(`%d: {"id":%s,"note":%q,"day":%q,"price":%s}`, line, id, note, day, strconv.FormatFloat(price, 'f', -1, 64)))
	}
	path := filepath.Join(t.TempDir(), "plain.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+path+"]\ncolumns: [{name: id, type: int}, {name: day, type: date}, {name: price, type: float}]\n", nil)
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if g, _, _ := strings.Cut(got[i], " ! "); g+" !" != want[i] && got[i] != want[i] {
			t.Fatalf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// TestShortFloat: a float cell read on the fast path is the float
// strconv.ParseFloat reads, bit for bit, and anything it does not take
// goes on to convertCell.
func TestShortFloat(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"0", true}, {"-0", true}, {"+0.0", true}, {"12.5", true}, {"0.1", true}, {"-999.99", true},
		{"123456789012345", true}, {"1.23456789012345", true}, {"0.00000000000001", true}, {"0.000000000000001", false},
		{"1234567890123456", false}, // 16 digits: strconv's
		{"", false}, {"-", false}, {".5", false}, {"5.", false}, {"1.2.3", false}, {"1e3", false},
		{" 1", false}, {"1,5", false}, {"NaN", false}, {"Inf", false}, {"0x1p3", false}, {"1_000", false},
	} {
		got, ok := shortFloat(tc.in)
		if ok != tc.ok {
			t.Errorf("shortFloat(%q): ok %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if want, err := strconv.ParseFloat(tc.in, 64); ok && (err != nil || math.Float64bits(got) != math.Float64bits(want)) {
			t.Errorf("shortFloat(%q) = %v (%x); strconv gives %v (%x), %v", tc.in, got, math.Float64bits(got), want, math.Float64bits(want), err)
		}
	}
	// Random decimals of 1 to 15 digits, the point anywhere inside.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		digits := 1 + rng.IntN(15)
		var b []byte
		if rng.IntN(4) == 0 {
			b = append(b, '-')
		}
		for range digits {
			b = append(b, byte('0'+rng.IntN(10)))
		}
		if n := len(b); digits > 1 && rng.IntN(5) > 0 {
			at := n - 1 - rng.IntN(digits-1) // at least a digit on each side
			b = append(b[:at:at], append([]byte{'.'}, b[at:]...)...)
		}
		s := string(b)
		got, ok := shortFloat(s)
		want, err := strconv.ParseFloat(s, 64)
		if !ok || err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("shortFloat(%q) = %v, %v; strconv gives %v, %v", s, got, ok, want, err)
		}
	}
}

func FuzzShortFloat(f *testing.F) {
	for _, s := range []string{"1.5", "-0", "+12.25", "999999999999.999", "0.1", "1x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, ok := shortFloat(s)
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(x) != math.Float64bits(want) {
			t.Fatalf("shortFloat(%q) = %v; strconv.ParseFloat gives %v, %v", s, x, want, err)
		}
	})
}
