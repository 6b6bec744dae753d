package wasm

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/sluice-dev/sluice/internal/jsonfield"

	"github.com/tidwall/gjson"
)

// Field paths are dot-separated object keys. Keeping keys to a plain
// alphabet means a path means the same to gjson (reading), to setPath
// (writing) and to a user reading the pipeline, with no escaping rules.
func checkPath(path string) error {
	if path == "" {
		return errors.New("empty field path")
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return fmt.Errorf("field path %q has an empty segment", path)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("field path %q: character %q is not allowed (use letters, digits, _ and -, with . between keys)", path, c)
			}
		}
	}
	return nil
}

// setPath appends to dst the document doc with the value at path set to raw
// (valid JSON), creating missing parent objects. It splices bytes instead of
// re-encoding the document, so everything else in it, key order included,
// is left as it was.
func setPath(dst, doc []byte, path string, raw []byte) ([]byte, error) {
	if res := jsonfield.Get(doc, path); res.Exists() && res.Index > 0 {
		dst = append(dst, doc[:res.Index]...)
		dst = append(dst, raw...)
		return append(dst, doc[res.Index+len(res.Raw):]...), nil
	}
	// Find the deepest ancestor that exists; it must be an object.
	segs := strings.Split(path, ".")
	for k := len(segs) - 1; k >= 0; k-- {
		var parent gjson.Result
		if k == 0 {
			parent = gjson.Parse(unsafe.String(unsafe.SliceData(doc), len(doc)))
			parent.Index = strings.IndexByte(unsafe.String(unsafe.SliceData(doc), len(doc)), '{')
			if parent.Index < 0 {
				return nil, fmt.Errorf("set %q: the message is not a JSON object", path)
			}
		} else {
			parent = jsonfield.Get(doc, strings.Join(segs[:k], "."))
			if !parent.Exists() {
				continue
			}
		}
		if !parent.IsObject() || parent.Index < 0 {
			return nil, fmt.Errorf("set %q: %q is %s, not an object", path, strings.Join(segs[:k], "."), kind(parent))
		}
		// Insert before the object's closing brace.
		end := parent.Index + len(parent.Raw) - 1
		empty := len(strings.TrimSpace(parent.Raw[1:len(parent.Raw)-1])) == 0
		dst = append(dst, doc[:end]...)
		if !empty {
			dst = append(dst, ',')
		}
		for i, seg := range segs[k:] {
			if i > 0 {
				dst = append(dst, '{')
			}
			dst = append(dst, '"')
			dst = append(dst, seg...)
			dst = append(dst, '"', ':')
		}
		dst = append(dst, raw...)
		for range segs[k+1:] {
			dst = append(dst, '}')
		}
		return append(dst, doc[end:]...), nil
	}
	return nil, fmt.Errorf("set %q: the message is not a JSON object", path)
}

func kind(r gjson.Result) string {
	switch {
	case r.IsArray():
		return "an array"
	case r.Type == gjson.String:
		return "a string"
	case r.Type == gjson.Number:
		return "a number"
	case r.Type == gjson.Null:
		return "null"
	case r.Type == gjson.True || r.Type == gjson.False:
		return "a bool"
	}
	return "not an object"
}
