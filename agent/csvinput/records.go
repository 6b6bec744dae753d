package csvinput

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"unicode/utf8"
	"unsafe"
)

// records reads a file's CSV records exactly as encoding/csv reads them
// (RFC 4180 with a one-rune delimiter, blank lines skipped, \r\n taken as
// \n, each field's text, the line a record starts on, its parse errors),
// but splits a line holding no quote where it lies in the window: most
// files quote nothing, and encoding/csv's copy of every line through its
// own buffer and record buffer was a third of the extract's time. From the
// first line with a quote on, encoding/csv reads the rest of the file, so
// quoted fields, and their errors, are its own; a file quoting every line
// costs what it did.
type records struct {
	win   *window
	comma rune
	off   int64 // the offset of the next line
	lines int   // lines before off
	rec   []string
	ends  []int // where the line's fields end

	csv *csv.Reader // once a line with a quote is met
	// csvOff and csvLines are the offset and lines before csv's first byte.
	csvOff   int64
	csvLines int
}

func newRecords(win *window, comma rune) *records {
	r := &records{win: win, comma: comma}
	if comma == '\r' || comma == utf8.RuneError || !utf8.ValidRune(comma) || comma == 0 || comma == '"' || comma == '\n' {
		// A delimiter encoding/csv refuses: its error is the one given.
		r.toCSV(0)
	}
	return r
}

// Read returns the next record, the line it starts on, and the offset
// after it; io.EOF at the end of the file. A record that does not parse
// comes with its *csv.ParseError (lines counted from the file's start); any
// other error is the file's. The record, and its strings, are valid only
// until the next call: the strings may point into the window, which the
// next call moves. A caller keeping one clones it (strings.Clone).
func (r *records) Read() (rec []string, line int, err error) {
	if r.csv != nil {
		return r.readCSV()
	}
	for {
		end, rerr := r.win.lineEnd(r.off)
		if rerr != nil {
			return nil, 0, rerr
		}
		if end == r.off {
			return nil, 0, io.EOF
		}
		text := r.win.span(r.off, end)
		// As encoding/csv: the line without its \n, and a \r before that
		// (or before the end of the file) dropped.
		if n := len(text); text[n-1] == '\n' {
			text = text[:n-1]
		}
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
		r.lines++
		if len(text) == 0 {
			r.off = end // a blank line: skipped, but counted
			continue
		}
		if !r.cut(text) {
			r.toCSV(r.lines - 1)
			return r.readCSV()
		}
		r.off = end
		// The fields point into the window, not a copy: a record's cells
		// are converted, and copied into a frame or a JSON row, before the
		// next is read, and a string per record was a third of the reader's
		// time.
		return r.fields(unsafe.String(&text[0], len(text))), r.lines, nil
	}
}

// Offset is the offset after the last record read (after the blank lines
// before it, and its own line).
func (r *records) Offset() int64 { return r.off }

// cut finds where a line's fields end, into r.ends; false if the line
// holds a quote. One pass a byte at a time: a field is a few bytes, shorter
// than bytes.IndexByte's setup pays for.
func (r *records) cut(text []byte) bool {
	r.ends = r.ends[:0]
	if r.comma >= utf8.RuneSelf {
		if bytes.IndexByte(text, '"') >= 0 {
			return false
		}
		for i := 0; ; {
			j := bytes.IndexRune(text[i:], r.comma)
			if j < 0 {
				break
			}
			r.ends = append(r.ends, i+j)
			i += j + utf8.RuneLen(r.comma)
		}
		r.ends = append(r.ends, len(text))
		return true
	}
	comma := byte(r.comma)
	for i, c := range text {
		switch c {
		case comma:
			r.ends = append(r.ends, i)
		case '"':
			return false
		}
	}
	r.ends = append(r.ends, len(text))
	return true
}

// fields is s cut at r.ends.
func (r *records) fields(s string) []string {
	rec := r.rec[:0]
	start, skip := 0, utf8.RuneLen(r.comma)
	for _, end := range r.ends {
		rec = append(rec, s[start:end])
		start = end + skip
	}
	r.rec = rec
	return rec
}

// toCSV hands the rest of the file, from off, after lines lines, to
// encoding/csv.
func (r *records) toCSV(lines int) {
	r.csvOff, r.csvLines = r.off, lines
	r.win.pos = int(r.off - r.win.base)
	r.csv = csv.NewReader(r.win)
	r.csv.Comma = r.comma
	r.csv.FieldsPerRecord = -1 // a short row is the row's problem, reported per row
	r.csv.ReuseRecord = true
}

func (r *records) readCSV() ([]string, int, error) {
	rec, err := r.csv.Read()
	r.off = r.csvOff + r.csv.InputOffset()
	if err != nil {
		pe, ok := errors.AsType[*csv.ParseError](err)
		if !ok {
			return nil, 0, err
		}
		pe.StartLine += r.csvLines
		pe.Line += r.csvLines
		return rec, pe.StartLine, err
	}
	line, _ := r.csv.FieldPos(0)
	return rec, line + r.csvLines, nil
}
