//go:build !wasip1

package sdk

import (
	"fmt"
	"os"
)

// hostLog prints to stderr when the SDK runs natively, as in a plugin's own
// `go test`.
func hostLog(level Level, msg string) {
	fmt.Fprintf(os.Stderr, "plugin log level=%d: %s\n", level, msg)
}
