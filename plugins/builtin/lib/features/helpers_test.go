package features

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, raw string) *Config {
	t.Helper()
	c, err := Parse([]byte(raw))
	if err != nil {
		t.Fatalf("Parse(%s): %v", raw, err)
	}
	return c
}

// user drives one user's state through a Config as the plugin does,
// re-encoding after every event so the binary form is exercised too.
type user struct {
	t   testing.TB
	c   *Config
	s   State
	ev  *Event
	vec *Vector
	enc []byte
}

func newUser(t testing.TB, c *Config) *user {
	return &user{t: t, c: c, ev: c.NewEvent(), vec: c.NewVector()}
}

// fill sets the event's inputs: fields are path, value pairs; a value is a
// string, float64 or int64.
func fill(t testing.TB, c *Config, ev *Event, ts, typ string, fields ...any) {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatal(err)
	}
	clear(ev.Values)
	ev.Values[InputTime] = Value{Int: tm.UnixNano(), Ok: true}
	ev.Values[InputType] = Value{Str: []byte(typ), Ok: true}
	for k := 0; k < len(fields); k += 2 {
		path := fields[k].(string)
		j := -1
		for i, f := range c.Inputs() {
			if f.Path == path {
				j = i
			}
		}
		if j < 0 {
			t.Fatalf("config reads no field %s", path)
		}
		switch v := fields[k+1].(type) {
		case string:
			ev.Values[j] = Value{Str: []byte(v), Ok: true}
		case float64:
			ev.Values[j] = Value{Num: v, Ok: true}
		case int64:
			ev.Values[j] = Value{Int: v, Ok: true}
		default:
			t.Fatalf("field %s: unsupported %T", path, v)
		}
	}
}

// add applies one event and returns Update's error.
func (u *user) add(ts, typ string, fields ...any) error {
	u.t.Helper()
	fill(u.t, u.c, u.ev, ts, typ, fields...)
	err := u.c.Update(&u.s, u.ev, u.vec)
	if err == nil {
		u.enc = u.c.Encode(u.enc[:0], &u.s)
		if err := u.c.Decode(&u.s, u.enc); err != nil {
			u.t.Fatalf("decode what was just encoded: %v", err)
		}
	}
	return err
}

func (u *user) mustAdd(ts, typ string, fields ...any) {
	u.t.Helper()
	if err := u.add(ts, typ, fields...); err != nil {
		u.t.Fatalf("event at %s: %v", ts, err)
	}
}

// get returns the last vector's feature called name (without prefix).
func (u *user) get(name string) (float64, bool) {
	u.t.Helper()
	return featureOf(u.t, u.c, u.vec, name)
}

func featureOf(t testing.TB, c *Config, v *Vector, name string) (float64, bool) {
	t.Helper()
	for j, o := range c.Outputs() {
		if strings.TrimPrefix(o.Name, c.prefix) != name {
			continue
		}
		if !v.Valid[j] {
			return 0, false
		}
		if o.Kind == KindFloat {
			return v.Float[j], true
		}
		return float64(v.Int[j]), true
	}
	t.Fatalf("no output feature %q", name)
	return 0, false
}

// want checks features by name; a value of nil means "no value".
func (u *user) want(ctx string, want map[string]any) {
	u.t.Helper()
	for name, w := range want {
		got, ok := u.get(name)
		switch w := w.(type) {
		case nil:
			if ok {
				u.t.Errorf("%s: %s = %v, want no value", ctx, name, got)
			}
		default:
			wf := toFloat(w)
			if !ok || !near(got, wf) {
				u.t.Errorf("%s: %s = %v (valid %v), want %v", ctx, name, got, ok, wf)
			}
		}
	}
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	case bool:
		if v {
			return 1
		}
		return 0
	}
	panic(fmt.Sprintf("toFloat(%T)", v))
}

func near(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= 1e-9*max(1, abs(a), abs(b))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
