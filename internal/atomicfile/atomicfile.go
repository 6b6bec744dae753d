// Package atomicfile publishes a file written under a temporary name so
// that a reader of the final name never sees it half written, even across
// a crash: the data is fsynced, the file renamed, and the directory
// fsynced so the rename itself is durable. A writer holds a lock on its
// temporary file (Lock) while it owns it, so that the leftover of one
// that died can be removed and a live one's is left alone.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Publish syncs and closes f, written as tmp, and renames it to final.
func Publish(f *os.File, tmp, final string) error {
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, final, err)
	}
	if err := SyncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("fsync the directory of %s: %w", final, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making the renames and creations in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
