//go:build !linux

package grpcplugin

import (
	"errors"
	"syscall"
)

// Elsewhere than Linux there is no parent-death signal: a plugin whose
// agent is SIGKILLed outlives it until it next writes to its closed
// connection. Close still stops it.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(int) {}

func applyRlimits(_ int, memBytes, cpuSeconds uint64) error {
	if memBytes > 0 || cpuSeconds > 0 {
		return errors.New("rlimit_memory_bytes and rlimit_cpu_seconds are only supported on Linux")
	}
	return nil
}

// rlimitsSupported reports whether applyRlimits can set limits here.
const rlimitsSupported = false
