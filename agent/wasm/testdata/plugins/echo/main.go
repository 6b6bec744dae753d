// Command echo is a simple-mode test plugin: it keeps, drops, fails or
// rewrites messages as their bodies say, and reads a config.
package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

var cfg struct {
	Tag    string `json:"tag"`
	Reject bool   `json:"reject"`
	Rules  []struct {
		Name string `json:"name"`
	} `json:"rules"`
}

func init() {
	sdk.OnConfig(func(c sdk.Config) error {
		if err := c.Decode(&cfg); err != nil {
			return err
		}
		if cfg.Reject {
			return errors.New("reject is set: refusing to load")
		}
		// Errors lead with the config path, as builtins do, so lint can
		// point at the line.
		for i, r := range cfg.Rules {
			if r.Name == "bad" {
				return fmt.Errorf("rules[%d].name: %q is not allowed", i, r.Name)
			}
		}
		sdk.Log(sdk.LevelInfo, "echo loaded with tag "+cfg.Tag)
		return nil
	})
	sdk.HandleMessage(func(m *sdk.Message) error {
		body := m.Body()
		if v, ok := m.Meta("in"); ok {
			m.SetMeta("in_seen", v)
		}
		m.SetMeta("tag", cfg.Tag)
		switch {
		case string(body) == "drop":
			m.Drop()
		case string(body) == "fail":
			m.Fail("told to fail")
		case string(body) == "error":
			return errors.New("handler returned an error")
		case bytes.HasPrefix(body, []byte("upper:")):
			m.SetBody(bytes.ToUpper(body[len("upper:"):]))
		}
		return nil
	})
}

func main() {}
