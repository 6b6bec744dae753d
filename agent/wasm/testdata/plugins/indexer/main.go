// Command indexer is a stateful test plugin that writes its namespace at
// random beside its keyed state: per user it counts events (the state
// section), and per event type it keeps which user sent the latest one,
// under "last:TYPE" (state_set). An event of type "forget" deletes
// "last:click" (state_delete). Each event gets "previous", the "last:TYPE"
// value it saw before writing (state_get: this call's writes and the
// batches before it).
package main

import (
	"strconv"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	state     = sdk.UseStructState[struct{ Events int64 }]()
	user      = sdk.ReadInt("user_id", sdk.Required)
	eventType = sdk.ReadString("event_type", sdk.Required)
	count     = sdk.WriteInt("event_count")
	previous  = sdk.WriteString("previous")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		for i := 0; i < b.Len(); i++ {
			t, _ := state.Get(b, i)
			typ, _ := eventType.Get(b, i)
			key := "last:" + string(typ)
			prev, ok, err := sdk.ReadState("", key)
			if err != nil {
				return err
			}
			if !ok {
				prev = []byte("none")
			}
			previous.Set(b, i, prev)
			if !b.Replayed(i) {
				t.Events++
				state.Set(b, i, t)
				u, _ := user.Get(b, i)
				if err := sdk.WriteState(key, []byte(strconv.FormatInt(u, 10))); err != nil {
					return err
				}
				if string(typ) == "forget" {
					if err := sdk.DeleteState("last:click"); err != nil {
						return err
					}
				}
			}
			count.Set(b, i, t.Events)
		}
		return nil
	})
}

func main() {}
