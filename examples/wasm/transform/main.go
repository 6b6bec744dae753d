// Command transform is the seed tutorial's transform step as a Sluice
// plugin: from each event's timestamp it derives hour_of_day (0-23),
// day_of_week (Monday = 0, as pandas' dayofweek) and is_weekend, all in UTC.
//
// It runs in fast mode: the host parses "timestamp" natively and hands the
// plugin a column of nanoseconds, so the plugin never touches JSON.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o transform.wasm .
package main

import "github.com/sluice-dev/sluice/plugins/sdk"

var (
	timestamp = sdk.ReadTime("timestamp", sdk.Required)
	hourOfDay = sdk.WriteInt("hour_of_day")
	dayOfWeek = sdk.WriteInt("day_of_week")
	isWeekend = sdk.WriteBool("is_weekend")
)

const (
	secondsPerDay = 24 * 60 * 60
	nanosPerSec   = 1_000_000_000
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		for i, ns := range timestamp.Values(b) {
			secs := floorDiv(ns, nanosPerSec)
			days := floorDiv(secs, secondsPerDay)
			// 1970-01-01 was a Thursday, day 3 when Monday is 0.
			dow := (days%7 + 7 + 3) % 7
			hourOfDay.Set(b, i, (secs-days*secondsPerDay)/3600)
			dayOfWeek.Set(b, i, dow)
			isWeekend.Set(b, i, dow >= 5)
		}
		return nil
	})
}

// floorDiv rounds toward negative infinity, so instants before 1970 land in
// the right hour and day.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func main() {}
