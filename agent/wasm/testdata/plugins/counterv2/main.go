// Command counterv2 is the counter test plugin's next version: the same
// per-key state, and it marks each event it handled with "v":2, so a test
// sees which version served a batch after a hot reload.
package main

import "github.com/sluice-dev/sluice/plugins/sdk"

type tally struct {
	Events int64
	Amount float64
}

var (
	state   = sdk.UseStructState[tally]().ViewJSON()
	amount  = sdk.ReadFloat("event_data.amount")
	count   = sdk.WriteInt("event_count")
	total   = sdk.WriteFloat("total_value")
	replay  = sdk.WriteBool("replayed")
	version = sdk.WriteInt("v")
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
			version.Set(b, i, 2)
		}
		return nil
	})
}

func main() {}
