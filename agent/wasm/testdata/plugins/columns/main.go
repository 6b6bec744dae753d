// Command columns is a fast-mode test plugin exercising every column type:
// it doubles n, negates x, flips b, upper-cases s, adds an hour to t,
// drops or fails rows as "action" says, and marks every row it saw
// "checked" in one metadata entry (failed rows, per row, otherwise).
package main

import (
	"bytes"
	"time"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	inN      = sdk.ReadInt("n")
	inX      = sdk.ReadFloat("nested.x")
	inB      = sdk.ReadBool("b")
	inS      = sdk.ReadString("s")
	inT      = sdk.ReadTime("t")
	inAction = sdk.ReadString("action")

	outN = sdk.WriteInt("n2")
	outX = sdk.WriteFloat("nested.neg_x")
	outB = sdk.WriteBool("not_b")
	outS = sdk.WriteString("s_upper")
	outT = sdk.WriteTime("t_plus_1h")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		// Every row sent, once; a failed row says so instead.
		b.SetMetaAll("checked", "yes")
		for i := 0; i < b.Len(); i++ {
			if a, ok := inAction.Get(b, i); ok {
				switch string(a) {
				case "drop":
					b.Drop(i)
					continue
				case "fail":
					b.Fail(i, "row asked to fail")
					b.SetMeta(i, "checked", "failed")
					continue
				case "meta past the end":
					b.SetMeta(b.Len(), "checked", "no such row")
					continue
				}
			}
			if v, ok := inN.Get(b, i); ok {
				outN.Set(b, i, v*2)
			}
			if v, ok := inX.Get(b, i); ok {
				outX.Set(b, i, -v)
			}
			if v, ok := inB.Get(b, i); ok {
				outB.Set(b, i, !v)
			}
			if v, ok := inS.Get(b, i); ok {
				outS.Set(b, i, bytes.ToUpper(v))
			}
			if v, ok := inT.Get(b, i); ok {
				outT.Set(b, i, v.Add(time.Hour))
			}
			b.SetMeta(i, "row", string(rune('0'+i%10)))
		}
		return nil
	})
}

func main() {}
