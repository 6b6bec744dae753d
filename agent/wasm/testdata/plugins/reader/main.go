// Command reader reads state at random through the host: the body says
// what to read ("get NS KEY" or "scan NS PREFIX"), the reply replaces it.
// "set KEY VALUE" tries a write, which a step with no state cannot make:
// the reply is the error.
package main

import (
	"strings"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

func init() {
	sdk.HandleMessage(func(m *sdk.Message) error {
		f := strings.Fields(string(m.Body()))
		switch {
		case len(f) == 3 && f[0] == "get":
			v, ok, err := sdk.ReadState(f[1], f[2])
			if err != nil {
				return err
			}
			if !ok {
				v = []byte("missing")
			}
			m.SetBody(v)
		case len(f) == 3 && f[0] == "set":
			if err := sdk.WriteState(f[1], []byte(f[2])); err != nil {
				m.SetBody([]byte(err.Error()))
			} else {
				m.SetBody([]byte("written"))
			}
		case len(f) == 3 && f[0] == "scan":
			keys, _, err := sdk.ScanState(f[1], f[2], "", 100)
			if err != nil {
				return err
			}
			m.SetBody([]byte(strings.Join(keys, ",")))
		}
		return nil
	})
}

func main() {}
