// Command counter is a stateful test plugin: it counts the messages of
// each key, in the key's state, and replaces each message with its key
// and count. A message containing "reset" deletes its key's count.
package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/sluice-dev/sluice/plugins/native"
)

func main() {
	native.Serve(native.Plugin{
		Stateful: true,
		ProcessMessage: func(_ context.Context, m native.Message) (native.Result, error) {
			if bytes.Contains(m.Value, []byte("reset")) {
				return native.Replace(fmt.Appendf(nil, `{"key":%q,"count":0}`, m.Key)).DeleteState(), nil
			}
			n := 0
			if m.State != nil {
				var err error
				if n, err = strconv.Atoi(string(m.State)); err != nil {
					return native.Result{}, fmt.Errorf("state %q: %w", m.State, err)
				}
			}
			n++
			return native.Replace(fmt.Appendf(nil, `{"key":%q,"count":%d}`, m.Key, n)).SetState(strconv.AppendInt(nil, int64(n), 10)), nil
		},
	})
}
