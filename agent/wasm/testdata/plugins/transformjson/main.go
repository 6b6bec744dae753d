// Command transformjson is the seed's transform step written in simple
// (bytes) mode, the way a plugin author would without the fast mode: parse
// the JSON, add the fields, write it back. It exists to measure that path.
package main

import (
	"encoding/json"
	"time"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

func init() {
	sdk.HandleMessage(func(m *sdk.Message) error {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(m.Body(), &doc); err != nil {
			return err
		}
		var s string
		if err := json.Unmarshal(doc["timestamp"], &s); err != nil {
			return err
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return err
		}
		dow := (int(ts.Weekday()) + 6) % 7
		doc["hour_of_day"], _ = json.Marshal(ts.Hour())
		doc["day_of_week"], _ = json.Marshal(dow)
		doc["is_weekend"], _ = json.Marshal(dow >= 5)
		out, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		m.SetBody(out)
		return nil
	})
}

func main() {}
