//go:build !unix

package sqliteout

// freeSpace cannot be read here: an I/O error is reported as it is.
func freeSpace(string) (uint64, bool) { return 0, false }
