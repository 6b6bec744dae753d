// Command kinds is a fast-mode test plugin for value fields: it reports the
// kind and text of "v", the number in "v" if it is one, and the body's
// top-level keys.
package main

import (
	"strings"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	inV    = sdk.ReadValue("v")
	inBody = sdk.ReadValue(sdk.Body)

	outKind = sdk.WriteString("kind")
	outText = sdk.WriteString("text")
	outNum  = sdk.WriteFloat("num")
	outKeys = sdk.WriteString("keys")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		for i := 0; i < b.Len(); i++ {
			k, text := inV.Get(b, i)
			outKind.Set(b, i, []byte(k.String()))
			outText.Set(b, i, text)
			if f, ok := inV.Float(b, i); ok {
				outNum.Set(b, i, f)
			}
			_, body := inBody.Get(b, i)
			var keys []string
			if err := sdk.ObjectKeys(body, func(k []byte) { keys = append(keys, string(k)) }); err != nil {
				b.Fail(i, err.Error())
				continue
			}
			outKeys.Set(b, i, []byte(strings.Join(keys, ",")))
		}
		return nil
	})
}

func main() {}
