// Package jsonfield holds the agent's rules for reading a message's JSON
// fields as typed values and writing values back as JSON: what a plugin's
// declared fields receive (plugins/sdk/ABI.md §8.4-8.6) and how outputs are
// spelled. The wasm processor uses it, and so does the native benchmark
// chain that must do exactly the host's work.
package jsonfield

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Get reads a field without copying doc: gjson only reads the string,
// and doc is not modified while the result is in use.
func Get(doc []byte, path string) gjson.Result {
	return gjson.Get(unsafe.String(unsafe.SliceData(doc), len(doc)), path)
}

// Value reads a value-typed field: its kind and text (§8.5 of plugins/sdk/ABI.md).
// Strings are unescaped; numbers, objects and arrays keep their JSON text,
// which is checked, since the plugin is promised JSON it need not validate.
func Value(doc []byte, path string) (abi.Kind, []byte, bool) {
	var res gjson.Result
	if path == abi.BodyPath {
		if !gjson.ValidBytes(doc) {
			return abi.KindAbsent, nil, false
		}
		res = gjson.ParseBytes(doc)
	} else {
		res = Get(doc, path)
	}
	switch res.Type {
	case gjson.Null:
		if !res.Exists() {
			return abi.KindAbsent, nil, true
		}
		if res.Raw != "null" {
			return abi.KindAbsent, nil, false
		}
		return abi.KindNull, nil, true
	case gjson.False:
		return abi.KindFalse, nil, true
	case gjson.True:
		return abi.KindTrue, nil, true
	case gjson.Number:
		return abi.KindNumber, []byte(res.Raw), true
	case gjson.String:
		return abi.KindString, []byte(res.Str), true
	}
	if path != abi.BodyPath && !gjson.Valid(res.Raw) {
		return abi.KindAbsent, nil, false
	}
	if res.IsArray() {
		return abi.KindArray, []byte(res.Raw), true
	}
	return abi.KindObject, []byte(res.Raw), true
}

// Convert checks a JSON value against a declared type. Types are strict:
// a string where a number was declared is the sender's bug, and failing the
// message says so instead of guessing.
func Convert(t abi.Type, res gjson.Result) (uint64, []byte, error) {
	switch t {
	case abi.TypeInt:
		if res.Type == gjson.Number {
			if v, err := strconv.ParseInt(res.Raw, 10, 64); err == nil {
				return uint64(v), nil, nil
			}
			if v := res.Num; v == math.Trunc(v) && math.Abs(v) < 1<<63 {
				return uint64(int64(v)), nil, nil
			}
		}
		return 0, nil, wantGot("int", res)
	case abi.TypeFloat:
		if res.Type == gjson.Number {
			return math.Float64bits(res.Num), nil, nil
		}
		return 0, nil, wantGot("number", res)
	case abi.TypeBool:
		switch res.Type {
		case gjson.True:
			return 1, nil, nil
		case gjson.False:
			return 0, nil, nil
		}
		return 0, nil, wantGot("bool", res)
	case abi.TypeString:
		if res.Type == gjson.String {
			return 0, []byte(res.Str), nil
		}
		return 0, nil, wantGot("string", res)
	case abi.TypeTime:
		switch res.Type {
		case gjson.String:
			ts, err := parseTime(res.Str)
			if err != nil {
				return 0, nil, fmt.Errorf("want time (RFC 3339), got %s: %w", res.Raw, err)
			}
			return timeNanos(ts, res)
		case gjson.Number:
			sec, frac := math.Modf(res.Num)
			if math.Abs(sec) > 1e11 { // far outside int64 nanoseconds; int64(sec) could overflow
				return 0, nil, wantGot("time within 1677-09-21..2262-04-11", res)
			}
			return timeNanos(time.Unix(int64(sec), int64(frac*1e9)), res)
		}
		return 0, nil, wantGot("time (RFC 3339 string or epoch seconds)", res)
	}
	return 0, nil, fmt.Errorf("unsupported type %s", t)
}

// The instants a time column can carry: int64 nanoseconds since the epoch.
// Computed once: InNanos runs for every timestamp cell a frame is given.
var minTime, maxTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// InNanos reports whether a time column (int64 nanoseconds since the
// epoch: 1677-09-21 to 2262-04-11) can carry t. Outside it UnixNano is
// undefined: it wraps silently, and year 9999 would become 1816.
func InNanos(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// timeNanos refuses instants a time column cannot carry.
func timeNanos(ts time.Time, res gjson.Result) (uint64, []byte, error) {
	if !InNanos(ts) {
		return 0, nil, wantGot("time within 1677-09-21..2262-04-11", res)
	}
	return uint64(ts.UnixNano()), nil, nil
}

func wantGot(want string, res gjson.Result) error {
	raw := res.Raw
	if len(raw) > 64 {
		raw = raw[:61] + "..."
	}
	return fmt.Errorf("want %s, got %s", want, raw)
}

// parseTime accepts RFC 3339 and, since Python's isoformat() omits the zone
// for naive datetimes (as the seed's events do), the same without one,
// read as UTC.
func parseTime(s string) (time.Time, error) {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return ts, nil
	}
	if ts, err2 := time.Parse("2006-01-02T15:04:05.999999999", s); err2 == nil {
		return ts, nil
	}
	return time.Time{}, err
}

// RootEnd returns the index of the closing brace of doc's top-level
// object and whether the object is empty, or -1 if doc is not an object.
// doc has been through gjson lookups already; only its outer braces are
// checked here.
func RootEnd(doc []byte) (int, bool) {
	start, end := 0, len(doc)-1
	for start < len(doc) && isSpace(doc[start]) {
		start++
	}
	for end > start && isSpace(doc[end]) {
		end--
	}
	if start >= end || doc[start] != '{' || doc[end] != '}' {
		return -1, false
	}
	inner := start + 1
	for inner < end && isSpace(doc[inner]) {
		inner++
	}
	return end, inner == end
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
