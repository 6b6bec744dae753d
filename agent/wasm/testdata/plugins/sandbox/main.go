// Command sandbox reports what it can reach from inside the sandbox: the
// body names the probe, the reply replaces the body.
package main

import (
	"os"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

func init() {
	sdk.HandleMessage(func(m *sdk.Message) error {
		switch string(m.Body()) {
		case "env":
			m.SetBody([]byte("SLUICE_TEST_SECRET=" + os.Getenv("SLUICE_TEST_SECRET")))
		case "file":
			b, err := os.ReadFile("/data/hello.txt")
			if err != nil {
				return err
			}
			m.SetBody(b)
		case "write":
			if err := os.WriteFile("/data/new.txt", []byte("x"), 0o644); err != nil {
				return err
			}
		case "clock":
			m.SetBody([]byte(strconv.Itoa(time.Now().Year())))
		}
		return nil
	})
}

func main() {}
