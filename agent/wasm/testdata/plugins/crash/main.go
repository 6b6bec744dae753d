// Command crash is a test plugin that misbehaves on demand: the body of the
// first message says how. Anything else passes through.
package main

import (
	"os"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	hoard  [][]byte
	anchor byte
)

func init() {
	sdk.HandleMessage(func(m *sdk.Message) error {
		switch string(m.Body()) {
		case "trap":
			// A store far outside linear memory: a genuine wasm trap, not a
			// Go panic the SDK could recover.
			*(*byte)(unsafe.Add(unsafe.Pointer(&anchor), 0x7FFF_FFF0)) = 1
		case "panic":
			panic("plugin panicked on purpose")
		case "exit":
			os.Exit(3)
		case "loop":
			for {
			}
		case "grow":
			for {
				hoard = append(hoard, make([]byte, 1<<20))
			}
		}
		return nil
	})
}

func main() {}
