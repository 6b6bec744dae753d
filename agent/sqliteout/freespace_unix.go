//go:build unix

package sqliteout

import "golang.org/x/sys/unix"

// freeSpace is how many bytes an unprivileged process can still write to
// the file system holding dir, and whether that could be read.
func freeSpace(dir string) (uint64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
