//go:build !wasip1

package sdk

import (
	"fmt"
	"os"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// hostLog prints to stderr when the SDK runs natively, as in a plugin's own
// `go test`.
func hostLog(level Level, msg string) {
	fmt.Fprintf(os.Stderr, "plugin log level=%d: %s\n", level, msg)
}

// Natively there is no agent to ask: state reads fail.
func hostStateGet(string, string, []byte) int64 { return abi.StateFailed }

func hostStateScan(string, string, string, int, []byte) int64 { return abi.StateFailed }

func hostStateSet(string, string, []byte) int64 { return abi.StateFailed }

func hostStateDelete(string, string) int64 { return abi.StateFailed }

// Natively there is no agent to report to: metrics are dropped.
func hostMetric(uint32, string, []byte, int64) {}
