//go:build unix

package diskbuffer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// lockDir takes an exclusive lock on the directory's lock file, held until
// the returned file is closed, and writes owner into it so that a buffer
// refused the directory can say who holds it. flock conflicts between two
// opens in the same process too, so two pipelines configured with one
// path are caught as well as two agents.
func lockDir(path, owner string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			hint := "give each pipeline its own path"
			h, same := holder(path, owner)
			if same {
				hint = "two pipelines of the same name (file name) share a default directory: set path in one of them"
			}
			return nil, fmt.Errorf("lock %s: the directory is in use by another %s buffer%s; %s: %w", path, Name, h, hint, err)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The record is a courtesy to the next opener; failing to write it
	// does not make the lock less held.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%s %d\n", owner, os.Getpid())), 0)
	}
	return f, nil
}

// holder describes the buffer holding the lock file at path, from what it
// wrote there, as ` (pipeline "x", in this process)`, and says whether it
// has the same owner as the caller.
func holder(path, owner string) (string, bool) {
	// The holder writes its record just after it takes the lock: a
	// refusal in between finds the file empty, so wait for it briefly.
	var rec string
	i := -1
	for try := 0; try < 20 && i < 0; try++ {
		if try > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", false
		}
		rec = strings.TrimRight(string(b), "\n")
		i = strings.LastIndexByte(rec, ' ')
	}
	if i < 0 {
		return "", false
	}
	pid := rec[i+1:]
	where := "process " + pid
	if pid == fmt.Sprint(os.Getpid()) {
		where = "this process"
	}
	if rec[:i] == "" {
		return " (in " + where + ")", false
	}
	return fmt.Sprintf(" (pipeline %s, in %s)", rec[:i], where), rec[:i] == owner
}
