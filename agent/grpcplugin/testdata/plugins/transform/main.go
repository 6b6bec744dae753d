// Command transform is the seed's transform step (examples/wasm/transform)
// as a native plugin, for the benchmark: from each event's timestamp it
// derives hour_of_day, day_of_week (Monday = 0) and is_weekend, in UTC,
// and appends them to the event as the agent merges a Wasm plugin's new
// fields, so the output is byte-identical to the Wasm step's.
package main

import (
	"context"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluice-dev/sluice/plugins/native"
)

func main() {
	native.Serve(native.Plugin{Process: process})
}

func process(_ context.Context, batch []native.Message) ([]native.Result, error) {
	out := make([]native.Result, len(batch))
	for i, m := range batch {
		ts := gjson.GetBytes(m.Value, "timestamp")
		if !ts.Exists() || ts.Type == gjson.Null {
			out[i] = native.Fail(`required field "timestamp" is missing`)
			continue
		}
		t, err := parseTime(ts.Str)
		if err != nil || ts.Type != gjson.String {
			out[i] = native.Fail(`field "timestamp": want time, got ` + ts.Raw)
			continue
		}
		t = t.UTC()
		dow := (int(t.Weekday()) + 6) % 7
		end := len(m.Value) - 1
		for end > 0 && m.Value[end] != '}' {
			end--
		}
		b := make([]byte, 0, len(m.Value)+64)
		b = append(b, m.Value[:end]...)
		b = append(b, `,"hour_of_day":`...)
		b = strconv.AppendInt(b, int64(t.Hour()), 10)
		b = append(b, `,"day_of_week":`...)
		b = strconv.AppendInt(b, int64(dow), 10)
		b = append(b, `,"is_weekend":`...)
		b = strconv.AppendBool(b, dow >= 5)
		b = append(b, m.Value[end:]...)
		out[i] = native.Replace(b)
	}
	return out, nil
}

// parseTime reads RFC 3339, or the same without a zone as UTC, as the
// agent does for a Wasm plugin's time fields.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	if t, err2 := time.Parse("2006-01-02T15:04:05.999999999", s); err2 == nil {
		return t, nil
	}
	return time.Time{}, err
}
