//go:build linux

package grpcplugin

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr is the orphan guard. Pdeathsig makes the kernel SIGKILL the
// plugin when the agent dies, even by SIGKILL, when no Close can run.
// Setpgid puts the plugin in a process group of its own: a Ctrl-C in the
// agent's terminal (SIGINT to the foreground group) reaches only the agent,
// which drains its pipelines and then stops the plugin, instead of killing
// the plugin under a batch in flight; and the group lets killGroup reach
// processes the plugin started itself.
//
// Pdeathsig is tied to the OS thread that started the child, not to the
// agent process: if that thread exits, the plugin is killed as if the
// agent had died. Go only ends a thread when a goroutine that locked it
// (runtime.LockOSThread) returns without unlocking; nothing in the agent
// does, and a plugin killed that way would be restarted by the next batch.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup SIGKILLs the plugin's process group: the plugin, and whatever
// it started that is still in its group. Errors (the group is already
// gone) are of no interest.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// applyRlimits sets the plugin's resource limits with prlimit(2), right
// after the handshake: Go's os/exec has no way to set them between fork
// and exec, so the plugin's start-up, up to the line it prints on stdout,
// runs without them.
//
// Memory is RLIMIT_DATA: since Linux 4.7 it bounds the process's writable
// private memory (heap, anonymous mappings, thread stacks), which is what
// a plugin's allocations grow, while address space merely reserved
// (RLIMIT_AS would count it; Go and many runtimes reserve generously) is
// free. A plugin past it fails to allocate: a Go plugin dies with "fatal
// error: out of memory" and is restarted.
//
// CPU is RLIMIT_CPU, seconds of CPU for the life of the process: the soft
// limit sends SIGXCPU, the hard limit, a second later, SIGKILL. It is a
// budget against a runaway plugin, not a per-call limit (that is timeout):
// a busy plugin reaching it is killed and restarted, failing the batch in
// flight.
func applyRlimits(pid int, memBytes, cpuSeconds uint64) error {
	if memBytes > 0 {
		if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &unix.Rlimit{Cur: memBytes, Max: memBytes}, nil); err != nil {
			return fmt.Errorf("set RLIMIT_DATA to %d bytes on pid %d: %w", memBytes, pid, err)
		}
	}
	if cpuSeconds > 0 {
		if err := unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: cpuSeconds, Max: cpuSeconds + 1}, nil); err != nil {
			return fmt.Errorf("set RLIMIT_CPU to %ds on pid %d: %w", cpuSeconds, pid, err)
		}
	}
	return nil
}

// rlimitsSupported reports whether applyRlimits can set limits here.
const rlimitsSupported = true
