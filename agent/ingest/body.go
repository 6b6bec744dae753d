package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// shape is what a request body held; it decides the response's shape, so a
// client that sent one object gets one object back and a client that sent
// a list gets a list, whatever the list's length.
type shape int

const (
	shapeObject shape = iota // one JSON object
	shapeList                // a JSON array or NDJSON
)

// errEmptyBody is kept apart so the handler can say "empty" rather than
// quote a JSON error about an unexpected end of input.
var errEmptyBody = errors.New("the request body is empty; send a JSON object, a JSON array or NDJSON")

// parseBody splits a request body into events, keeping each event's bytes
// exactly as sent (minus surrounding whitespace): users may rely on key
// order or number formatting that a decode and re-encode would change.
//
// A body that is one JSON value as a whole is an object (one event), an
// array (one event per element) or a lone scalar (NDJSON of one). Anything
// else is NDJSON, unless its first line is not valid JSON on its own: then
// it is more likely a broken pretty-printed document, and an error naming
// "line 1" of a would-be NDJSON body would mislead.
func parseBody(body []byte) ([][]byte, shape, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, 0, errEmptyBody
	}
	if json.Valid(trimmed) {
		switch trimmed[0] {
		case '{':
			return [][]byte{trimmed}, shapeObject, nil
		case '[':
			events, err := parseArray(body)
			return events, shapeList, err
		default:
			return [][]byte{trimmed}, shapeList, nil
		}
	}
	first, _, _ := bytes.Cut(trimmed, []byte("\n"))
	if json.Valid(bytes.TrimSpace(first)) {
		events, err := parseNDJSON(body)
		return events, shapeList, err
	}
	if trimmed[0] == '[' {
		_, err := parseArray(body)
		if err == nil {
			// Unreachable, as json.Valid said no; kept so a disagreement
			// between the two parsers cannot ingest a half-understood body.
			err = errors.New("invalid JSON array")
		}
		return nil, shapeList, err
	}
	return nil, 0, fmt.Errorf("invalid JSON at %s", syntaxError(body))
}

// parseArray returns the raw bytes of each element of the JSON array that
// body holds. Errors name the element, as that is what a client building
// the array can find; the line and column help with pretty-printed bodies.
func parseArray(body []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // the opening '['
		return nil, fmt.Errorf("invalid JSON array at %s", syntaxError(body))
	}
	var events [][]byte
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON in array element %d at %s", len(events), syntaxError(body))
		}
		events = append(events, raw)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		if len(events) == 0 {
			return nil, fmt.Errorf("invalid JSON array at %s", syntaxError(body))
		}
		return nil, fmt.Errorf("invalid JSON after array element %d at %s", len(events)-1, syntaxError(body))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON array at %s; send one array, or NDJSON with one value per line", syntaxError(body))
	}
	return events, nil
}

// parseNDJSON returns one event per non-blank line. Line numbers count every
// line of the body, blank ones included, so they match the client's editor.
func parseNDJSON(body []byte) ([][]byte, error) {
	var events [][]byte
	for i, raw := range bytes.Split(body, []byte("\n")) {
		line := bytes.TrimSpace(raw)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			_, col, err := locate(raw)
			return nil, fmt.Errorf("invalid JSON on NDJSON line %d, column %d: %v", i+1, col, err)
		}
		events = append(events, line)
	}
	return events, nil
}

// syntaxError describes the first JSON syntax error in b, which the caller
// knows is invalid, as "line L, column C: reason".
func syntaxError(b []byte) string {
	line, col, err := locate(b)
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// locate finds the first JSON syntax error in b, by line and column from 1.
// It asks Unmarshal, whose offsets are exact, where the Decoder's count
// from odd points and cannot be used for this.
func locate(b []byte) (line, col int, err error) {
	var v json.RawMessage
	if err = json.Unmarshal(b, &v); err == nil {
		// Only for callers that know b is invalid; stay truthful anyway.
		err = errors.New("the JSON parsers disagree on this body")
	}
	// An unexpected end is reported at the very end, which may be trailing
	// blank lines; the last non-blank byte is where the user should look.
	// (An offending byte is rarely blank, and then only off by one.)
	at := len(bytes.TrimRight(b, " \t\r\n")) - 1
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		at = min(at, int(se.Offset)-1) // Offset counts the offending byte
	}
	at = max(0, at)
	before := b[:at]
	return bytes.Count(before, []byte("\n")) + 1, at - bytes.LastIndexByte(before, '\n'), err
}
