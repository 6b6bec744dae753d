package csvinput

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// readAll runs the input over its files and renders each message as
// "line: body" or "line: body ! reason".
func readAll(t *testing.T, yaml string, builtin Files) []string {
	t.Helper()
	conf, err := ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInput(conf, builtin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := in.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		batch, _, err := in.ReadBatch(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range batch {
			line, _ := msg.MetaGet("csv_line")
			body, _ := msg.AsBytes()
			s := line + ": " + string(body)
			if err := msg.GetError(); err != nil {
				s += " ! " + err.Error()
			}
			out = append(out, s)
		}
	}
}

func TestMissingRequiredColumn(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	b := filepath.Join(dir, "b.csv")
	if err := os.WriteFile(a, []byte("date,qty\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("date,quantity\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+filepath.Join(dir, "*.csv")+"]\ncolumns: [{name: date, type: date}, {name: quantity, type: int}, {name: note, required: false}]\n", nil)
	want := []string{
		"1: date,qty ! " + a + " line 1: missing required columns: quantity (the header has date, qty)",
		`2: {"date":"2024-01-01","quantity":1}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuiltinFile(t *testing.T) {
	files := func(name string) ([]byte, bool) {
		if name == "sample/x.csv" {
			return []byte("a\n1\n"), true
		}
		return nil, false
	}
	if got := readAll(t, "paths: [builtin:sample/x.csv]\ncolumns: [{name: a, type: int}]\n", files); len(got) != 1 || got[0] != `2: {"a":1}` {
		t.Errorf("got %q", got)
	}
}

// TestFileAndLineFields: file_field and line_field put where a row came
// from into the row itself; a header that already has such a column is
// rejected rather than producing a JSON object with the key twice.
func TestFileAndLineFields(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	b := filepath.Join(dir, "b.csv")
	if err := os.WriteFile(a, []byte("date,quantity\n2024-01-01,1\n\n2024-01-02,x\n2024-01-03,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("date,line\n2024-01-01,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, "paths: ["+filepath.Join(dir, "*.csv")+"]\ncolumns: [{name: quantity, type: int, required: false}]\nfile_field: source_file\nline_field: line\n", nil)
	want := []string{
		`2: {"date":"2024-01-01","quantity":1,"source_file":"` + a + `","line":2}`,
		"4: 2024-01-02,x ! " + a + ` line 4: column quantity: "x" is not an integer`,
		`5: {"date":"2024-01-03","quantity":3,"source_file":"` + a + `","line":5}`,
		"1: date,line ! " + b + ` line 1: the header has a column "line", the name file_field or line_field gives the field the input adds`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBatchSizes: rows come out the same, in order, whatever the batch
// size, batches spanning the end of one file and the start of the next.
func TestBatchSizes(t *testing.T) {
	dir := t.TempDir()
	for i, body := range []string{"a,b\n1,2\n3,4\n5\n", "a,b\n6,7\n", "a,b\n8,9\n10,11\n"} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.csv", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "paths: [" + filepath.Join(dir, "*.csv") + "]\ncolumns: [{name: a, type: int}]\n"
	want := readAll(t, base, nil)
	if len(want) != 6 {
		t.Fatalf("%d rows, want 6:\n%s", len(want), strings.Join(want, "\n"))
	}
	for _, n := range []int{1, 2, 3, 5} {
		if got := readAll(t, base+fmt.Sprintf("batch_size: %d\n", n), nil); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("batch_size %d:\n%s\nwant\n%s", n, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
