// Command sales is the seed's sales transform (exercise 1's transform step)
// as a builtin plugin in fast mode: total_amount is quantity × price, as
// the seed computes it (not rounded: its summaries round the sums), and year, month, day and day_of_week (Monday = 0,
// as pandas' dayofweek) come from the row's date. The host parses each
// row once and merges the five fields back into its JSON, so the rows stay
// JSON bytes for the outputs that follow: no re-encoding per output.
package main

import (
	"github.com/sluice-dev/sluice/plugins/builtin/lib/civil"
	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	date     = sdk.ReadString("date", sdk.Required)
	quantity = sdk.ReadInt("quantity", sdk.Required)
	price    = sdk.ReadFloat("price", sdk.Required)

	totalAmount = sdk.WriteFloat("total_amount")
	year        = sdk.WriteInt("year")
	month       = sdk.WriteInt("month")
	day         = sdk.WriteInt("day")
	dayOfWeek   = sdk.WriteInt("day_of_week")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		qs, ps := quantity.Values(b), price.Values(b)
		for i := range b.Len() {
			d, _ := date.Get(b, i)
			y, m, dd, ok := civil.ParseISO(d)
			if !ok {
				b.Fail(i, "date: want YYYY-MM-DD, got "+quote(d))
				continue
			}
			totalAmount.Set(b, i, float64(qs[i])*ps[i])
			year.Set(b, i, y)
			month.Set(b, i, m)
			day.Set(b, i, dd)
			// 1970-01-01 was a Thursday (3 with Monday = 0).
			dayOfWeek.Set(b, i, ((civil.DaysFromEpoch(y, m, dd)%7)+7+3)%7)
		}
		return nil
	})
}

func quote(b []byte) string {
	if len(b) > 32 {
		b = append(b[:29:29], "..."...)
	}
	return `"` + string(b) + `"`
}

func main() {}
