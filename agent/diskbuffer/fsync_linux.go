package diskbuffer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// The Linux AIO ABI, from include/uapi/linux/aio_abi.h.
const (
	iocbCmdFsync  = 2 // IOCB_CMD_FSYNC
	iocbFlagResfd = 1 // IOCB_FLAG_RESFD: signal completion on an eventfd
)

// iocb is struct iocb. key and rwFlags swap places on big-endian
// machines; both stay zero.
type iocb struct {
	data     uint64
	key      uint32
	rwFlags  uint32
	opcode   uint16
	reqprio  int16
	fildes   uint32
	buf      uint64
	nbytes   uint64
	offset   int64
	reserved uint64
	flags    uint32
	resfd    uint32
}

// ioEvent is struct io_event.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

// groupFsync is the group commit's fsync: fsync(2) submitted as a Linux
// AIO request (IOCB_CMD_FSYNC, since Linux 4.18), waited for on an eventfd
// through the network poller.
//
// Why: a goroutine in a blocking system call keeps its P until sysmon
// takes it back, after one to two sysmon ticks, which back off to
// milliseconds when little else happens. With GOMAXPROCS 2 that held
// half the process for much of every fsync: goroutines made runnable by
// the last acknowledgements waited on the held P's queue (seen in the
// execution tracer: runnable goroutines but fewer than two running for
// about a quarter of a disk stream's time, during fsyncs). Parked on the
// poller the syncer holds no P. The kernel runs the request as vfs_fsync
// on the same open file in a worker thread: the durability, and the
// error reporting, of fsync(2).
//
// Where AIO is missing or refused (old kernels, seccomp filters,
// sandboxes), it falls back to a plain fsync for good.
type groupFsync struct {
	ctx  uintptr  // aio_context_t
	ev   *os.File // the eventfd, in the poller
	evfd uintptr  // its descriptor: ev.Fd() would make it blocking
	cb   *iocb    // on the heap, unmoved, while the kernel reads it
	out  ioEvent
	buf  [8]byte
	off  bool // plain fsync
}

// newGroupFsync sets up the AIO context and the eventfd; it is used by
// one goroutine at a time.
func newGroupFsync() *groupFsync {
	g := &groupFsync{cb: &iocb{}}
	if _, _, e := syscall.Syscall(syscall.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&g.ctx)), 0); e != 0 {
		g.off = true
		return g
	}
	fd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		_, _, _ = syscall.Syscall(syscall.SYS_IO_DESTROY, g.ctx, 0, 0)
		g.off = true
		return g
	}
	// Non-blocking, so os.NewFile has the poller wait for it.
	g.ev, g.evfd = os.NewFile(fd, "eventfd"), fd
	return g
}

// sync fsyncs f, which must stay open until it returns.
func (g *groupFsync) sync(f *os.File) error {
	if g.off {
		return f.Sync()
	}
	*g.cb = iocb{opcode: iocbCmdFsync, fildes: uint32(f.Fd()), flags: iocbFlagResfd, resfd: uint32(g.evfd)}
	cbs := [1]uintptr{uintptr(unsafe.Pointer(g.cb))}
	var n uintptr
	var e syscall.Errno
	for {
		n, _, e = syscall.Syscall(syscall.SYS_IO_SUBMIT, g.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		if e != syscall.EINTR {
			break
		}
	}
	runtime.KeepAlive(g.cb)
	if e != 0 || n != 1 {
		// Nothing was submitted. EINVAL: a kernel without AIO fsync, or
		// a file system refusing it.
		g.off = true
		return f.Sync()
	}
	_, rerr := g.ev.Read(g.buf[:])
	// With the eventfd signalled the completion is there; after a failed
	// read io_getevents waits for it.
	for {
		_, _, e = syscall.Syscall6(syscall.SYS_IO_GETEVENTS, g.ctx, 1, 1, uintptr(unsafe.Pointer(&g.out)), 0, 0)
		if e != syscall.EINTR {
			break
		}
	}
	runtime.KeepAlive(f)
	if e != 0 {
		return fmt.Errorf("wait for the fsync: %w", errors.Join(e, rerr))
	}
	if g.out.res < 0 {
		return syscall.Errno(-g.out.res)
	}
	return nil
}

// close releases the AIO context and the eventfd; no request is in flight.
func (g *groupFsync) close() {
	if g.off {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_IO_DESTROY, g.ctx, 0, 0)
	g.ev.Close()
}
