package csvinput

import (
	"context"
	"errors"
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
		msg, _, err := in.Read(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		line, _ := msg.MetaGet("csv_line")
		body, _ := msg.AsBytes()
		s := line + ": " + string(body)
		if err := msg.GetError(); err != nil {
			s += " ! " + err.Error()
		}
		out = append(out, s)
	}
}

func TestRowsTypedAndRejected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sales.csv")
	data := "\xef\xbb\xbfdate,product_id,quantity,price,customer_id,note\n" +
		"2024-01-01,101,2,19.99,7,plain\n" +
		"2024-01-01,102,1,abc,8,bad price\n" +
		"2024-01-02,103,,5.5,9,\"missing, quantity\"\n" +
		"2024-01-02,104,1,5.5,9,\"two\nlines\"\n" +
		"2024-13-02,105,1,5.5,9,bad date\n" +
		"2024-01-03,106,1\n" +
		"2024-01-03,107,3,0.5,10,last\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, `
paths: [`+path+`]
columns:
  - {name: date, type: date}
  - {name: product_id, type: int}
  - {name: quantity, type: int}
  - {name: price, type: float}
  - {name: customer_id, type: int}
`, nil)
	want := []string{
		`2: {"date":"2024-01-01","product_id":101,"quantity":2,"price":19.99,"customer_id":7,"note":"plain"}`,
		`3: 2024-01-01,102,1,abc,8,bad price ! ` + path + ` line 3: column price: "abc" is not a number`,
		`4: {"date":"2024-01-02","product_id":103,"quantity":null,"price":5.5,"customer_id":9,"note":"missing, quantity"}`,
		`5: {"date":"2024-01-02","product_id":104,"quantity":1,"price":5.5,"customer_id":9,"note":"two\nlines"}`,
		`7: 2024-13-02,105,1,5.5,9,bad date ! ` + path + ` line 7: column date: "2024-13-02" is not a date (YYYY-MM-DD)`,
		`8: 2024-01-03,106,1 ! ` + path + ` line 8: 3 fields, the header has 6`,
		`9: {"date":"2024-01-03","product_id":107,"quantity":3,"price":0.5,"customer_id":10,"note":"last"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A file without a required column is rejected whole, by its header, and
// the next file is still read.
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
