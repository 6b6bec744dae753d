package sqliteout

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ncruces/go-sqlite3"
)

// diskFullSlack is how little free space, in bytes, counts as a full file
// system when a write fails: SQLite writes pages of a few KiB, and the
// file system keeps its own reserve.
const diskFullSlack = 1 << 20

// diskFull adds to an I/O error of the database at path that the file
// system holding it is (nearly) out of space, when it is. The driver
// reports a write that found the disk full as `disk I/O error`, without
// the system's error (its VFS maps ENOSPC to SQLITE_FULL only for a bare
// errno, and os.File wraps it), which reads as a failing disk.
func diskFull(err error, path string, free func(dir string) (uint64, bool)) error {
	if err == nil || !errors.Is(err, sqlite3.IOERR) && !errors.Is(err, sqlite3.FULL) {
		return err
	}
	dir := filepath.Dir(path)
	n, ok := free(dir)
	if !ok || n > diskFullSlack {
		return err
	}
	return fmt.Errorf("%w (the file system holding %s has %d bytes free: it is full)", err, dir, n)
}
