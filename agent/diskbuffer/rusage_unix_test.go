//go:build unix

package diskbuffer

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time, user and system, the process has used: a cost
// that waiting for a core on a loaded machine does not inflate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
