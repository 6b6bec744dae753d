//go:build unix

package parquetout

import (
	"os"
	"syscall"
	"time"
)

// lockTmp takes the lock that marks the .tmp file path as a live writer's,
// held until the returned file is closed (nil if it could not be taken).
// It is its own open of the file, so sealing and closing the written
// file keeps it until the file is published or removed.
func lockTmp(path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil
	}
	return f
}

// removeIfDead removes path if it is a dead writer's .tmp: nobody holds
// its lock (flock conflicts between two opens in one process too, so a
// file of another output of this agent is safe) and deadTmp says so. A
// lock that cannot be tried for another reason (a file system without
// flock) leaves the file.
func removeIfDead(path string, now time.Time) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, nil // gone already, or not ours to read
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return 0, false, nil
	}
	size, dead := deadTmp(f, now)
	if !dead {
		return 0, false, nil
	}
	if err := os.Remove(path); err != nil {
		return size, false, err
	}
	return size, true, nil
}
