// Command counter is a stateful test plugin, the seed's per-user state in
// miniature: per key it counts events and sums purchase amounts, and writes
// the running figures into each event.
package main

import "github.com/sluice-dev/sluice/plugins/sdk"

type tally struct {
	Events int64
	Amount float64
}

var (
	state  = sdk.UseStructState[tally]().ViewJSON()
	amount = sdk.ReadFloat("event_data.amount")
	count  = sdk.WriteInt("event_count")
	total  = sdk.WriteFloat("total_value")
	replay = sdk.WriteBool("replayed")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		for i := 0; i < b.Len(); i++ {
			t, _ := state.Get(b, i)
			if !b.Replayed(i) {
				t.Events++
				if a, ok := amount.Get(b, i); ok {
					t.Amount += a
				}
				state.Set(b, i, t)
			}
			count.Set(b, i, t.Events)
			total.Set(b, i, t.Amount)
			replay.Set(b, i, b.Replayed(i))
		}
		return nil
	})
}

func main() {}
