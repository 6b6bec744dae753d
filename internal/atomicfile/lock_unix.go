//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Lock takes the writer's lock of the file at path: an flock on an open
// of its own, held until the returned file is closed or the process
// dies, so that a leftover of a writer that died can be told from a file
// a live writer is still writing. flock conflicts between two opens in
// one process too. It fails with ErrHeld if another open holds the lock.
// Where flock is missing it returns a nil file and no error.
func Lock(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrHeld)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
