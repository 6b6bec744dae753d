package features

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// StateJSON appends to dst a JSON object of the online features of a
// stored state: every written feature that describes the user rather than
// one event (so not is_purchase_event, hour_of_day, day_of_week or
// is_weekend), by its name without the prefix, in output order, as of the
// user's latest event. A window's mean, min or max with no events is null,
// as is a sum that overflowed.
// It is for the agent's state lookup, off the hot path, and allocates.
func (c *Config) StateJSON(dst, state []byte) ([]byte, error) {
	if len(state) == 0 {
		return dst, errors.New("features state: empty: the user has no events")
	}
	var s State
	if err := c.Decode(&s, state); err != nil {
		return dst, err
	}
	v := c.NewVector()
	c.eval(&s, nil, 0, false, v)
	dst = append(dst, '{')
	first := true
	for j, f := range c.feats {
		if f.perEvent() {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = strconv.AppendQuote(dst, f.name)
		dst = append(dst, ':')
		switch {
		case !v.Valid[j], f.kind == KindFloat && (math.IsNaN(v.Float[j]) || math.IsInf(v.Float[j], 0)):
			// JSON has no NaN or infinity; a sum can overflow to one.
			dst = append(dst, "null"...)
		case f.kind == KindFloat:
			dst = strconv.AppendFloat(dst, v.Float[j], 'g', -1, 64)
		case f.kind == KindTime:
			dst = strconv.AppendQuote(dst, time.Unix(0, v.Int[j]).UTC().Format(time.RFC3339Nano))
		case f.kind == KindBool:
			dst = strconv.AppendBool(dst, v.Int[j] != 0)
		default:
			dst = strconv.AppendInt(dst, v.Int[j], 10)
		}
	}
	return append(dst, '}'), nil
}
