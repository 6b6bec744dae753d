// Command spin is loop-heavy on purpose: per row it mixes a number through
// 2000 rounds of arithmetic. It measures what interrupt_on_timeout costs on
// code that lives in loops.
package main

import "github.com/sluice-dev/sluice/plugins/sdk"

var (
	in  = sdk.ReadInt("user_id")
	out = sdk.WriteInt("mixed")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		for i, v := range in.Values(b) {
			h := uint64(v)
			for r := 0; r < 2000; r++ {
				h ^= h >> 33
				h *= 0xff51afd7ed558ccd
				h += uint64(r)
			}
			out.Set(b, i, int64(h>>1))
		}
		return nil
	})
}

func main() {}
