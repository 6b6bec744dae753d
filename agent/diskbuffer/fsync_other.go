//go:build !linux

package diskbuffer

import "os"

// groupFsync is the group commit's fsync: a plain one here (see the Linux
// version for why it differs there).
type groupFsync struct{}

func newGroupFsync() *groupFsync { return &groupFsync{} }

func (*groupFsync) sync(f *os.File) error { return f.Sync() }

func (*groupFsync) close() {}
