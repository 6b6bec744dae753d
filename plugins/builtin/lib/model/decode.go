package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Error is a problem in a config or model file, located by Path: the config
// path of the offending key ("model.conditions[2].op"), which the agent's
// lint maps to a line of the pipeline's YAML.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(path, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// wrap locates err at path, unless it is already located deeper.
func wrap(path string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Path: path, Err: err}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// kind names the JSON type of raw for error messages.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// object decodes one JSON object strictly: every key present must be read by
// one of the getters, so a typo is an error naming the key, not a silently
// ignored setting. A null value counts as absent, as YAML's `key: ~` means.
type object struct {
	path   string
	fields map[string]json.RawMessage
	known  []string
}

func newObject(path string, raw json.RawMessage) (*object, error) {
	if kind(raw) != "an object" {
		return nil, errorf(path, "want an object, got %s", kind(raw))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, wrap(path, err)
	}
	return &object{path: path, fields: m}, nil
}

func (o *object) at(key string) string { return join(o.path, key) }

// raw returns key's value and whether it is set.
func (o *object) raw(key string) (json.RawMessage, bool) {
	o.known = append(o.known, key)
	v, ok := o.fields[key]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

func (o *object) has(key string) bool {
	v, ok := o.fields[key]
	return ok && !isNull(v)
}

func (o *object) number(key string, dst *float64) (bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return false, nil
	}
	f, err := parseNumber(v)
	if err != nil {
		return false, wrap(o.at(key), err)
	}
	*dst = f
	return true, nil
}

func (o *object) str(key string, dst *string) (bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return false, nil
	}
	if kind(v) != "a string" {
		return false, errorf(o.at(key), "want a string, got %s", kind(v))
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return false, wrap(o.at(key), err)
	}
	return true, nil
}

func (o *object) boolean(key string, dst *bool) (bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return false, nil
	}
	if kind(v) != "a boolean" {
		return false, errorf(o.at(key), "want true or false, got %s", kind(v))
	}
	*dst = string(bytes.TrimSpace(v)) == "true"
	return true, nil
}

func (o *object) list(key string) ([]json.RawMessage, bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return nil, false, nil
	}
	items, err := parseList(o.at(key), v)
	return items, err == nil, err
}

// names reads a list of distinct, non-empty strings.
func (o *object) names(key string, dst *[]string) (bool, error) {
	items, ok, err := o.list(key)
	if !ok {
		return false, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := parseName(index(o.at(key), i), it)
		if err != nil {
			return false, err
		}
		if j := slices.Index(out, s); j >= 0 {
			return false, errorf(index(o.at(key), i), "%q is listed twice (also at [%d])", s, j)
		}
		out = append(out, s)
	}
	*dst = out
	return true, nil
}

// done reports the first key (in sorted order, so the error is stable) that
// no getter asked for.
func (o *object) done() error {
	var unknown []string
	for k := range o.fields {
		if !slices.Contains(o.known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	known := slices.Clone(o.known)
	slices.Sort(known)
	known = slices.Compact(known)
	return errorf(o.at(unknown[0]), "unknown key (want one of %s)", strings.Join(known, ", "))
}

func parseList(path string, raw json.RawMessage) ([]json.RawMessage, error) {
	if kind(raw) != "a list" {
		return nil, errorf(path, "want a list, got %s", kind(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, wrap(path, err)
	}
	return items, nil
}

func parseNumber(raw json.RawMessage) (float64, error) {
	if kind(raw) != "a number" {
		return 0, fmt.Errorf("want a number, got %s", kind(raw))
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is not a finite number", bytes.TrimSpace(raw))
	}
	return f, nil
}

func parseNumbers(path string, raw json.RawMessage) ([]float64, error) {
	items, err := parseList(path, raw)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(items))
	for i, it := range items {
		if out[i], err = parseNumber(it); err != nil {
			return nil, wrap(index(path, i), err)
		}
	}
	return out, nil
}

func parseName(path string, raw json.RawMessage) (string, error) {
	if kind(raw) != "a string" {
		return "", errorf(path, "want a string, got %s", kind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", wrap(path, err)
	}
	if s == "" {
		return "", errorf(path, "is empty")
	}
	return s, nil
}
