package sqliteout

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// TestDiskFull: an I/O error of a database on a full file system says the
// file system is full, naming its directory; the same error with room
// left, or where the room cannot be read, and errors that are not I/O
// errors, are left as they are.
func TestDiskFull(t *testing.T) {
	ioErr := fmt.Errorf("row 482 of the batch: %w", sqlite3.IOERR_WRITE)
	for _, tc := range []struct {
		name string
		err  error
		free uint64
		read bool
		want string // "" for the error as it was
	}{
		{"a write failed on a full disk", ioErr, 0, true, "(the file system holding out has 0 bytes free: it is full)"},
		{"SQLITE_FULL", sqlite3.FULL, 4096, true, "(the file system holding out has 4096 bytes free: it is full)"},
		{"room left: another I/O fault", ioErr, 10 << 30, true, ""},
		{"the room cannot be read", ioErr, 0, false, ""},
		{"not an I/O error", fmt.Errorf("row 1: %w", sqlite3.CONSTRAINT), 0, true, ""},
		{"no error", nil, 0, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diskFull(tc.err, "out/sales.db", func(dir string) (uint64, bool) {
				if dir != "out" {
					t.Errorf("free space asked of %q, want the database's directory", dir)
				}
				return tc.free, tc.read
			})
			switch {
			case tc.want == "" && got != tc.err:
				t.Errorf("got %v, want the error as it was (%v)", got, tc.err)
			case tc.want != "" && (got == nil || !strings.HasSuffix(got.Error(), tc.want) || !errors.Is(got, tc.err)):
				t.Errorf("got %v, want %v ending %q and still matching it", got, tc.err, tc.want)
			}
		})
	}
}
