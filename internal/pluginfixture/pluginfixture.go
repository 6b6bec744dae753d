// Package pluginfixture is the fixture format of plugin tests: input
// messages one per line, and the record of what a `wasm` step did to each,
// which `agent plugin test --json` prints and an expected-output file
// holds. It is shared by `agent plugin test` (internal/plugintool) and the
// `self_test` a `wasm` step runs before a plugin version may serve
// (agent/wasm), so that a file written for one is read the same by the
// other.
package pluginfixture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Result names what happened to one message.
const (
	Kept     = "kept"     // passed on with its body unchanged
	Replaced = "replaced" // passed on with a new body: replaced (bytes mode) or fields merged in (fast mode)
	Dropped  = "dropped"  // removed from the batch
	Errored  = "errored"  // marked failed, with its original bytes
)

// Record is what happened to one input message. Its JSON form, one per
// line, is both what `agent plugin test --json` prints and what an
// expected-output file holds.
type Record struct {
	// Line is the message's line in the input file, from 1.
	Line   int    `json:"line"`
	Result string `json:"result"`
	// Error is the reason a message errored, without the `NAME: ` prefix a
	// pipeline puts before it (NAME is where the plugin was loaded from).
	Error string `json:"error,omitempty"`
	// Body is the message's body after the step when it is JSON (compact:
	// whitespace is not compared, key order, number spelling and escapes
	// are); BodyText holds any other body. Neither is set for a drop.
	Body     json.RawMessage `json:"body,omitempty"`
	BodyText *string         `json:"body_text,omitempty"`
	// Meta is the message's metadata after the step (the input has none).
	Meta map[string]string `json:"meta,omitempty"`
}

// MarshalLine returns r as one line of JSON, with <, > and & as they are
// (encoding/json would escape them, and a body must read as its bytes).
func (r Record) MarshalLine() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode result of line %d: %w", r.Line, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func setBody(r *Record, b []byte) {
	if json.Valid(b) {
		var c bytes.Buffer
		_ = json.Compact(&c, b) // valid, so it cannot fail
		r.Body = c.Bytes()
		return
	}
	s := string(b)
	r.BodyText = &s
}

// Line is one non-blank line of an input file.
type Line struct {
	// N is its line number in the file, from 1.
	N    int
	Body []byte
}

// SplitInput returns the non-blank lines of in; blank lines are skipped
// but still counted, so results name file lines.
func SplitInput(in []byte) []Line {
	var out []Line
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		out = append(out, Line{n, append([]byte(nil), b...)})
	}
	return out
}

// Messages makes one message per line.
func Messages(lines []Line) service.MessageBatch {
	batch := make(service.MessageBatch, len(lines))
	for i, l := range lines {
		batch[i] = service.NewMessage(l.Body)
	}
	return batch
}

// Describe says what a step did to each message of in (made from lines by
// Messages) given the messages it passed on. A `wasm` step hands back the
// messages it was given, changed in place, minus the dropped ones: identity
// says which input each output is. name is where the plugin was loaded
// from, trimmed from error reasons.
func Describe(lines []Line, in service.MessageBatch, passedOn service.MessageBatch, name string) ([]Record, error) {
	passed := make(map[*service.Message]bool, len(passedOn))
	for _, m := range passedOn {
		passed[m] = true
	}
	recs := make([]Record, len(in))
	for i, m := range in {
		r := &recs[i]
		r.Line = lines[i].N
		if !passed[m] {
			r.Result = Dropped
			continue
		}
		body, err := m.AsBytes()
		if err != nil {
			return nil, fmt.Errorf("line %d: read body: %w", r.Line, err)
		}
		setBody(r, body)
		switch {
		case m.GetError() != nil:
			r.Result, r.Error = Errored, TrimName(m.GetError().Error(), name)
		case bytes.Equal(body, lines[i].Body):
			r.Result = Kept
		default:
			r.Result = Replaced
		}
		_ = m.MetaWalk(func(k, v string) error {
			if r.Meta == nil {
				r.Meta = map[string]string{}
			}
			r.Meta[k] = v
			return nil
		})
	}
	return recs, nil
}

// TrimName removes the plugin-name prefix the processor puts on errors
// ("NAME: reason" on a message, "plugin NAME: ..." for a failed call), so
// that expected output does not depend on where the .wasm file lies.
func TrimName(msg, name string) string {
	for _, p := range []string{"plugin " + name + ": ", name + ": "} {
		if rest, ok := strings.CutPrefix(msg, p); ok {
			return rest
		}
	}
	return msg
}

// Compare checks records against an expected-output file (Record lines, one
// per input message, in input order; blank lines are skipped). It returns
// a human-readable diff, empty when everything matches, or an error if the
// file cannot be read as records.
func Compare(got []Record, expected []byte, name string) (string, error) {
	var want []Record
	var wantLines []int
	for _, l := range SplitInput(expected) {
		var r Record
		dec := json.NewDecoder(bytes.NewReader(l.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return "", fmt.Errorf("%s:%d: %w", name, l.N, err)
		}
		if r.Body != nil {
			var c bytes.Buffer
			if err := json.Compact(&c, r.Body); err != nil {
				return "", fmt.Errorf("%s:%d: body: %w", name, l.N, err)
			}
			r.Body = c.Bytes()
		}
		want = append(want, r)
		wantLines = append(wantLines, l.N)
	}
	var b strings.Builder
	bad := 0
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(want):
			bad++
			g, _ := got[i].MarshalLine()
			fmt.Fprintf(&b, "input line %d: not in %s (it has %d records)\n  got  %s\n", got[i].Line, name, len(want), g)
			continue
		case i >= len(got):
			bad++
			w, _ := want[i].MarshalLine()
			fmt.Fprintf(&b, "%s:%d: no such input message (the input has %d)\n  want %s\n", name, wantLines[i], len(got), w)
			continue
		}
		diffs := differences(want[i], got[i])
		if len(diffs) == 0 {
			continue
		}
		bad++
		w, _ := want[i].MarshalLine()
		g, _ := got[i].MarshalLine()
		fmt.Fprintf(&b, "%s:%d (input line %d) differs in %s\n  want %s\n  got  %s\n", name, wantLines[i], got[i].Line, strings.Join(diffs, ", "), w, g)
	}
	if bad == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d of %d messages differ from %s:\n%s", bad, max(len(got), len(want)), name, b.String()), nil
}

// differences names the fields of got that differ from want. A zero Line
// in want matches any line, so a hand-written file may leave it out.
func differences(want, got Record) []string {
	var d []string
	if want.Line != 0 && want.Line != got.Line {
		d = append(d, "line")
	}
	if want.Result != got.Result {
		d = append(d, "result")
	}
	if want.Error != got.Error {
		d = append(d, "error")
	}
	if !bytes.Equal(want.Body, got.Body) || !equalPtr(want.BodyText, got.BodyText) {
		d = append(d, "body")
	}
	if !maps.Equal(want.Meta, got.Meta) {
		d = append(d, "meta")
	}
	return d
}

func equalPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
