//go:build !unix

package parquetout

import (
	"os"
	"time"
)

// lockTmp takes no lock where flock is missing.
func lockTmp(string) *os.File { return nil }

// removeIfDead removes nothing where flock is missing: a live writer's
// .tmp cannot be told from a dead one's.
func removeIfDead(string, time.Time) (int64, bool, error) { return 0, false, nil }
