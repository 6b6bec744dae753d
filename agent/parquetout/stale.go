package parquetout

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/internal/atomicfile"
)

// A writer that dies (SIGKILL, OOM, power) leaves its file's .tmp behind:
// with names new every run (timestamp_unix_nano) nothing ever reuses or
// removes it, so a job retried or scheduled hourly piles them up, and
// with a fixed name (overwrite) the next run cannot create its own. Every
// .tmp this output writes holds a lock (flock) for as long as it is the
// output's, so when the output connects, a .tmp of its path's pattern
// whose lock nobody holds is a dead writer's and is removed if it starts
// as a Parquet file does, or is empty: a writer killed before its first
// page. A live writer locks its file right after creating it, so an empty
// one is looked at again after emptyGrace, in case its writer was between
// the two. Where flock is missing (not unix), nothing is removed.

// emptyGrace is how long an empty, unlocked .tmp is given to be locked by
// a live writer that has just created it.
const emptyGrace = 100 * time.Millisecond

// lockTmp takes the lock that marks the new .tmp file path as this
// output's, or returns nil where it cannot be taken (no flock here). It is
// its own open of the file, so sealing and closing the written file keeps
// it until the file is published or removed. Only a sweeper looking at
// the file can hold its lock now, and only for a moment: it is waited for.
func lockTmp(path string) *os.File {
	for try := 0; ; try++ {
		f, err := atomicfile.Lock(path)
		if errors.Is(err, atomicfile.ErrHeld) && try < 100 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil
		}
		return f
	}
}

// tmpVerdict is what a look at a .tmp file found.
type tmpVerdict int

const (
	tmpLive  tmpVerdict = iota // locked, not a Parquet start, or not to be tried: left
	tmpDead                    // a dead writer's: remove
	tmpEmpty                   // empty and unlocked: dead unless locked after emptyGrace
)

// lookAt judges the .tmp at path, holding its lock while it looks, and
// returns its stat. A file whose lock is held, or cannot be tried (gone
// meanwhile, no flock here), is live.
func lookAt(path string) (tmpVerdict, os.FileInfo) {
	lock, err := atomicfile.Lock(path)
	if err != nil || lock == nil {
		return tmpLive, nil
	}
	defer lock.Close()
	st, err := lock.Stat()
	switch {
	case err != nil:
		return tmpLive, nil
	case st.Size() == 0:
		return tmpEmpty, st
	case !startsAsParquet(lock):
		return tmpLive, st
	}
	return tmpDead, st
}

// removeDead removes a dead writer's .tmp and logs it.
func (o *output) removeDead(path string, size int64) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		o.log.Warnf("parquet output: %s looks left by a crashed writer, but it could not be removed: %v", path, err)
		return
	}
	o.log.Infof("parquet output: removed %s (%d bytes), left unfinished by a writer that died; its rows were never acknowledged", path, size)
}

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
// left, and logs each. The empty ones get their second look together,
// after one wait.
func (o *output) sweepStale() {
	p, ok := patternOf(o.rawPath)
	if !ok {
		return
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return // no directory yet, nothing left in it
	}
	type empty struct {
		path string
		st   os.FileInfo
	}
	var empties []empty
	for _, e := range entries {
		if !e.Type().IsRegular() || !p.matches(e.Name()) {
			continue
		}
		path := filepath.Join(p.dir, e.Name())
		switch v, st := lookAt(path); v {
		case tmpDead:
			o.removeDead(path, st.Size())
		case tmpEmpty:
			empties = append(empties, empty{path, st})
		}
	}
	if len(empties) == 0 {
		return
	}
	time.Sleep(emptyGrace)
	for _, e := range empties {
		// Still empty, still unlocked, still the same file: its writer
		// died before writing; a live one would have locked it by now.
		if v, st := lookAt(e.path); v == tmpEmpty && os.SameFile(e.st, st) {
			o.removeDead(e.path, 0)
		}
	}
}

// parquetMagic starts every Parquet file, the .tmp files this output
// writes included, once their first bytes are out.
const parquetMagic = "PAR1"

// startsAsParquet tells whether f begins with the Parquet magic.
func startsAsParquet(f *os.File) bool {
	head := make([]byte, len(parquetMagic))
	_, err := io.ReadFull(f, head)
	return err == nil && string(head) == parquetMagic
}
