package model

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// scanner reads a JSON document in one pass without reflection. XGBoost
// model files are hundreds of kilobytes of number arrays, and a reload
// happens inside a batch call with a deadline: encoding/json, run in Wasm,
// takes about a second for 100 trees of depth 6, this a small fraction.
type scanner struct {
	b     []byte
	i     int
	depth int
}

// maxDepth bounds nesting, so a hostile file cannot exhaust the stack.
const maxDepth = 512

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) null() bool {
	if s.peek() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.unexpected(fmt.Sprintf("%q", c))
	}
	s.i++
	return nil
}

func (s *scanner) unexpected(want string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("not valid JSON: the file ends where %s should be", want)
	}
	return fmt.Errorf("not valid JSON: %q at byte %d where %s should be", s.b[s.i], s.i, want)
}

// kind names the next value's JSON type, for errors.
func (s *scanner) kind() string {
	c := s.peek()
	if c == 0 {
		return "nothing"
	}
	return kind(s.b[s.i : s.i+1])
}

// object calls fn for each key; fn must consume the key's value. Null is
// an empty object.
func (s *scanner) object(at string, fn func(key string) error) error {
	if s.null() {
		return nil
	}
	if s.peek() != '{' {
		return errorf(at, "want an object, got %s", s.kind())
	}
	if s.depth++; s.depth > maxDepth {
		return errorf(at, "nested too deeply")
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return wrap(at, err)
		}
		if err := s.expect(':'); err != nil {
			return wrap(at, err)
		}
		if err := fn(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return wrap(at, s.unexpected(`"," or "}"`))
		}
	}
}

// array calls fn for each element; fn must consume it. Null is an empty
// list, as encoding/json reads it.
func (s *scanner) array(at string, fn func(i int) error) error {
	if s.null() {
		return nil
	}
	if s.peek() != '[' {
		return errorf(at, "want a list, got %s", s.kind())
	}
	if s.depth++; s.depth > maxDepth {
		return errorf(at, "nested too deeply")
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for n := 0; ; n++ {
		if err := fn(n); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return wrap(at, s.unexpected(`"," or "]"`))
		}
	}
}

// str reads a string; keys and names rarely have escapes, so only those
// that do go through the full decoder.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", fmt.Errorf("want a string, got %s", s.kind())
	}
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			if !escaped {
				return string(s.b[start+1 : s.i-1]), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return "", fmt.Errorf("not valid JSON: %w", err)
			}
			return out, nil
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return "", fmt.Errorf("not valid JSON: control character in a string at byte %d", s.i)
		default:
			s.i++
		}
	}
	return "", fmt.Errorf("not valid JSON: unterminated string")
}

// token returns the bytes of a number or literal.
func (s *scanner) token() []byte {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '+', c == '.':
			s.i++
		default:
			return s.b[start:s.i]
		}
	}
	return s.b[start:s.i]
}

func (s *scanner) number() (float64, error) {
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, fmt.Errorf("want a number, got %s", s.kind())
	}
	t := s.token()
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", t)
	}
	return f, nil
}

// integer reads an integer; true and false count as 1 and 0, as some
// XGBoost versions write default_left.
func (s *scanner) integer() (int64, error) {
	switch s.peek() {
	case 't', 'f':
		switch t := string(s.token()); t {
		case "true":
			return 1, nil
		case "false":
			return 0, nil
		default:
			return 0, fmt.Errorf("not valid JSON: %q", t)
		}
	}
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, fmt.Errorf("want an integer, got %s", s.kind())
	}
	t := s.token()
	// Node indices are short runs of digits: parse them by hand, the
	// common case of a reload's hot loop.
	if len(t) > 0 && len(t) < 10 {
		neg := t[0] == '-'
		d := t
		if neg {
			d = t[1:]
		}
		var n int64
		ok := len(d) > 0
		for _, c := range d {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if ok && neg {
			return -n, nil
		} else if ok {
			return n, nil
		}
	}
	n, err := strconv.ParseInt(string(t), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", t)
	}
	return n, nil
}

// numbers and integers loop by themselves rather than through array: a
// call per element costs much in Wasm, and files hold 100,000s of them.
func (s *scanner) numbers(at string) ([]float64, error) {
	if empty, err := s.openList(at); empty || err != nil {
		return nil, err
	}
	var out []float64
	for {
		f, err := s.number()
		if err != nil {
			return nil, wrap(index(at, len(out)), err)
		}
		out = append(out, f)
		if done, err := s.next(at); done || err != nil {
			return out, err
		}
	}
}

func (s *scanner) integers(at string) ([]int64, error) {
	if empty, err := s.openList(at); empty || err != nil {
		return nil, err
	}
	var out []int64
	for {
		n, err := s.integer()
		if err != nil {
			return nil, wrap(index(at, len(out)), err)
		}
		out = append(out, n)
		if done, err := s.next(at); done || err != nil {
			return out, err
		}
	}
}

// openList consumes a list's "[", and its "]" too when it is empty; null
// reads as an empty list.
func (s *scanner) openList(at string) (empty bool, err error) {
	if s.null() {
		return true, nil
	}
	if s.peek() != '[' {
		return false, errorf(at, "want a list, got %s", s.kind())
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true, nil
	}
	return false, nil
}

// next consumes the "," before a list's next element, or its "]".
func (s *scanner) next(at string) (done bool, err error) {
	switch s.peek() {
	case ',':
		s.i++
		return false, nil
	case ']':
		s.i++
		return true, nil
	}
	return false, wrap(at, s.unexpected(`"," or "]"`))
}

func (s *scanner) strings(at string) ([]string, error) {
	var out []string
	err := s.array(at, func(i int) error {
		v, err := s.str()
		if err != nil {
			return wrap(index(at, i), err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// skip consumes one value of any type. Numbers are checked by their
// characters only: skipped arrays (loss_changes, sum_hessian, ...) are
// most of an XGBoost file, and parsing them would be wasted.
func (s *scanner) skip(at string) error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(at, func(key string) error { return s.skip(join(at, key)) })
	case c == '[':
		return s.array(at, func(i int) error { return s.skip(at) })
	case c == '"':
		_, err := s.str()
		return wrap(at, err)
	case c == '-' || c >= '0' && c <= '9':
		s.token()
		return nil
	case c == 0:
		return wrap(at, s.unexpected("a value"))
	}
	switch string(s.token()) {
	case "true", "false", "null":
		return nil
	}
	return wrap(at, s.unexpected("a value"))
}

// end checks nothing but space follows the document.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return s.unexpected("the end of the file")
	}
	return nil
}
