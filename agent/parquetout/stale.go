package parquetout

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/atomicfile"
)

// A writer that dies (SIGKILL, OOM, power) leaves its file's .tmp behind,
// and with names new every run (timestamp_unix_nano) nothing ever reuses
// or removes it: a job retried or scheduled hourly piles them up. Every
// .tmp this output writes holds a lock (flock) for as long as it is the
// output's, so when the output connects, a .tmp of its path's pattern
// whose lock nobody holds is a dead writer's and is removed. A writer
// locks its file right after creating it and before writing anything, so
// an empty .tmp is only taken for dead once it is older than
// staleEmptyAge; a non-empty one must also start as a Parquet file does.
// Where flock is missing (not unix), nothing is removed.

// lockTmp takes the lock that marks the .tmp file path as this output's,
// or returns nil where it cannot be taken (no flock here). It is its own
// open of the file, so sealing and closing the written file keeps it
// until the file is published or removed.
func lockTmp(path string) *os.File {
	f, err := atomicfile.Lock(path)
	if err != nil {
		return nil
	}
	return f
}

// removeIfDead removes path if it is a dead writer's .tmp: nobody holds
// its lock (a file of another output of this agent holds one too) and
// deadTmp says so. A file whose lock cannot be tried (gone meanwhile, no
// flock here) is left.
func removeIfDead(path string, now time.Time) (int64, bool, error) {
	lock, err := atomicfile.Lock(path)
	if err != nil || lock == nil {
		return 0, false, nil
	}
	defer lock.Close()
	size, dead := deadTmp(lock, now)
	if !dead {
		return 0, false, nil
	}
	if err := os.Remove(path); err != nil {
		return size, false, err
	}
	return size, true, nil
}

// staleEmptyAge is how old an empty, unlocked .tmp must be to be a dead
// writer's rather than a live one's between creating and locking it.
const staleEmptyAge = time.Minute

// tmpPattern is how the .tmp files of a path expression are named: in dir,
// prefix + anything + suffix + ".tmp", or exactly name when the path has
// no interpolation. ok is false when the expression can name files in
// more than one directory (an interpolation before a separator), which
// cannot be listed.
type tmpPattern struct {
	dir, prefix, suffix string
	exact               bool
}

func patternOf(path string) (tmpPattern, bool) {
	i := strings.Index(path, "${!")
	if i < 0 {
		return tmpPattern{dir: filepath.Dir(path), prefix: filepath.Base(path) + ".tmp", exact: true}, true
	}
	if strings.ContainsAny(path[i:], `/\`) {
		return tmpPattern{}, false
	}
	head := path[:i]
	p := tmpPattern{dir: filepath.Dir(head + "x"), prefix: filepath.Base(head + "x")}
	p.prefix = p.prefix[:len(p.prefix)-1]
	p.suffix = path[strings.LastIndexByte(path, '}')+1:]
	// Without a fixed part the pattern would take any .tmp of the
	// directory for one of ours.
	if p.prefix == "" && p.suffix == "" {
		return tmpPattern{}, false
	}
	return p, true
}

func (p tmpPattern) matches(name string) bool {
	if p.exact {
		return name == p.prefix
	}
	end := p.suffix + ".tmp"
	return len(name) > len(p.prefix)+len(end) && strings.HasPrefix(name, p.prefix) && strings.HasSuffix(name, end)
}

// sweepStale removes the .tmp files of the output's path that dead writers
// left, and logs each.
func (o *output) sweepStale(now time.Time) {
	p, ok := patternOf(o.rawPath)
	if !ok {
		return
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return // no directory yet, nothing left in it
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !p.matches(e.Name()) {
			continue
		}
		path := filepath.Join(p.dir, e.Name())
		size, removed, err := removeIfDead(path, now)
		switch {
		case err != nil:
			o.log.Warnf("parquet output: %s looks left by a crashed writer, but it could not be removed: %v", path, err)
		case removed:
			o.log.Infof("parquet output: removed %s (%d bytes), left unfinished by a writer that died; its rows were never acknowledged", path, size)
		}
	}
}

// parquetMagic starts every Parquet file, the .tmp files this output
// writes included, once their first bytes are out.
var parquetMagic = []byte("PAR1")

// deadTmp tells whether the .tmp file f, whose lock the caller holds,
// is a dead writer's.
func deadTmp(f *os.File, now time.Time) (int64, bool) {
	st, err := f.Stat()
	if err != nil {
		return 0, false
	}
	if st.Size() == 0 {
		return 0, now.Sub(st.ModTime()) > staleEmptyAge
	}
	head := make([]byte, len(parquetMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		return st.Size(), false
	}
	return st.Size(), bytes.Equal(head, parquetMagic)
}
