// Command tagv2 is version 2 of a plugin a hot-reload test swaps while
// events flow: it marks every JSON object it passes on with "v":2, so the
// output says which version handled each event.
package main

import (
	"bytes"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

const version = "2"

func init() {
	// Any config is accepted, so a test can give the step one that the
	// next version rejects.
	sdk.OnConfig(func(sdk.Config) error { return nil })
	sdk.HandleMessage(func(m *sdk.Message) error {
		body := bytes.TrimSpace(m.Body())
		if len(body) < 2 || body[0] != '{' {
			m.Fail("want a JSON object")
			return nil
		}
		if bytes.Equal(bytes.TrimSpace(body[1:]), []byte("}")) {
			m.SetBody([]byte(`{"v":` + version + "}"))
			return nil
		}
		m.SetBody(append([]byte(`{"v":`+version+","), body[1:]...))
		return nil
	})
}

func main() {}
