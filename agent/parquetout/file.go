package parquetout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/internal/atomicfile"
)

// chunkRows bounds how far a file can overshoot max_bytes: the size is
// checked after each chunk.
const chunkRows = 4096

// file is one Parquet file being written as <final>.tmp.
type file struct {
	final, tmp string
	f          *os.File
	// lock marks tmp as this output's until it is published or removed
	// (stale.go); nil where it could not be taken.
	lock *os.File
	w    *parquet.GenericWriter[any]
	rows int64
	// waiters counts the batches whose last rows are here, so the file can
	// be finished as soon as no slot is left for another batch.
	waiters int
	timer   *time.Timer   // max_age; nil in run mode
	done    chan struct{} // closed once finished or failed
	err     error         // why it failed; set before done is closed
}

// append writes the rows to the open file, opening files as needed and
// splitting the rows where a file fills up. It gives the files holding the
// rows, and those the caller must finish, even when it fails. In run mode a
// failure after some of the rows were written spoils the run: a retry of
// the batch would write those rows twice.
func (o *output) append(batch service.MessageBatch, rows []parquet.Row, msgs []int) (touched, finish []*file, err error) {
	return o.appendRows(batch, rows, msgs, true)
}

// appendRows is append for part of a batch's rows; last says the batch
// has no more, so that it waits for its last file (a batch waits once).
func (o *output) appendRows(batch service.MessageBatch, rows []parquet.Row, msgs []int, last bool) (touched, finish []*file, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return nil, nil, service.ErrNotConnected
	}
	for len(rows) > 0 {
		f := o.cur
		if f == nil {
			if f, err = o.open(batch[msgs[0]]); err != nil {
				err = fmt.Errorf("message %d: %w", msgs[0], err)
				if len(touched) > 0 {
					o.spoil(err)
				}
				return touched, finish, err
			}
			o.cur = f
		}
		if len(touched) == 0 || touched[len(touched)-1] != f {
			touched = append(touched, f)
		}
		n := min(int64(len(rows)), o.maxRows-f.rows, chunkRows)
		if _, err := f.w.WriteRows(rows[:n]); err != nil {
			o.detach(f)
			o.discard(f, fmt.Errorf("write rows to %s: %w", f.tmp, err))
			return touched, finish, f.err
		}
		f.rows += n
		rows, msgs = rows[n:], msgs[n:]
		if f.rows >= o.maxRows || f.w.Size() >= o.maxBytes {
			o.detach(f)
			finish = append(finish, f)
		}
	}
	if o.runMode || !last {
		// No batch waits for a file: it is finished only when full. Or
		// more of the batch's rows are to come.
		return touched, finish, nil
	}
	if last := touched[len(touched)-1]; o.cur == last {
		last.waiters++
		if last.waiters >= o.maxInFlight {
			// Every slot waits for this file: nothing more can come to it
			// before it is finished.
			o.detach(last)
			finish = append(finish, last)
		}
	}
	return touched, finish, nil
}

// openForEmpty gives a run that has no file yet the file of a frame of
// no rows in batch, if there is one: csv_file's frame of a file with a
// header and no rows, so the run publishes a file of none (with the
// schema's columns), as pandas' to_parquet writes an empty DataFrame.
func (o *output) openForEmpty(batch service.MessageBatch, fr framed) error {
	i := -1
	for j := range batch {
		if f := fr.at(j); f != nil && f.Rows == 0 {
			i = j
			break
		}
	}
	if i < 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur != nil || len(o.runFiles) > 0 {
		return nil
	}
	f, err := o.open(batch[i])
	if err != nil {
		return fmt.Errorf("message %d: %w", i, err)
	}
	o.cur = f
	return nil
}

// open starts a file named by path evaluated on msg. The caller holds o.mu.
func (o *output) open(msg *service.Message) (*file, error) {
	name, err := o.path.TryString(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fPath, err)
	}
	if name == "" {
		return nil, fmt.Errorf("%s: the expression gave an empty name", fPath)
	}
	if o.names[name] {
		return nil, fmt.Errorf("%s is already being written: %s must give each file its own name", name, fPath)
	}
	if o.published[name] {
		// Replacing it would lose rows already acknowledged.
		return nil, fmt.Errorf("%s was written by this output already: %s must give each file its own name (%s replaces only files that were there before)", name, fPath, fOverwrite)
	}
	if _, err := os.Lstat(name); err == nil && !o.overwrite {
		return nil, fmt.Errorf("%s already exists: %s must give each file its own name, or set %s", name, fPath, fOverwrite)
	}
	dir := filepath.Dir(name)
	if err := o.mkdirAll(dir); err != nil {
		return nil, err
	}
	tmp := name + ".tmp"
	// O_EXCL: a .tmp already there is a crash's leftover or another
	// writer's file, and renaming it would publish rows we never wrote.
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		if lock, lerr := atomicfile.Lock(tmp); errors.Is(lerr, atomicfile.ErrHeld) {
			return nil, fmt.Errorf("%s is being written by another run of this output (another agent or pipeline writing %s): %w", tmp, name, err)
		} else if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("%s exists, left by a crash (not a Parquet file's start, so not removed as a dead writer's leftover) or by a writer without flock; it is never renamed: remove it, or make %s give new names: %w", tmp, fPath, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	f := &file{
		final: name,
		tmp:   tmp,
		f:     fh,
		lock:  lockTmp(tmp),
		w: parquet.NewGenericWriter[any](fh, o.schema.node, parquet.Compression(o.codec),
			parquet.MaxRowsPerRowGroup(o.rowGroupRows), parquet.CreatedBy("sluice", "", "")),
		done: make(chan struct{}),
	}
	if o.runMode {
		// No file appears before Close, so age has nothing to bound.
		o.runFiles = append(o.runFiles, f)
	} else {
		f.timer = time.AfterFunc(o.maxAge, func() { o.expire(f) })
	}
	o.names[name] = true
	return f, nil
}

// mkdirAll creates dir and syncs the parent of each directory it creates,
// so that a file renamed into dir survives a crash along with dir itself.
func (o *output) mkdirAll(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		missing = append(missing, d)
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	for _, d := range missing {
		if err := o.syncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("fsync directory %s: %w", filepath.Dir(d), err)
		}
	}
	return nil
}

// detach takes f out of use, so no more rows go to it. The caller holds
// o.mu.
func (o *output) detach(f *file) {
	if o.cur == f {
		o.cur = nil
	}
	if f.timer != nil {
		f.timer.Stop()
	}
}

// expire finishes f when it has been open for max_age, unless something
// else took it out of use first.
func (o *output) expire(f *file) {
	o.mu.Lock()
	if o.cur != f {
		o.mu.Unlock()
		return
	}
	o.detach(f)
	o.timers.Add(1)
	o.mu.Unlock()
	defer o.timers.Done()
	o.finish(f)
}

// finish publishes a detached file under its final name and wakes the
// batches waiting for it. In run mode it only seals the file, which keeps
// its .tmp name until Close publishes the run.
func (o *output) finish(f *file) {
	if o.runMode {
		o.finishRun(f)
		return
	}
	err := o.seal(f)
	if err != nil {
		// Its rows go back to be retried; only our own .tmp is removed.
		_ = os.Remove(f.tmp)
		o.log.Errorf("parquet output: %v", err)
	} else {
		o.log.Debugf("parquet output: finished %s, %d rows", f.final, f.rows)
	}
	o.mu.Lock()
	delete(o.names, f.final)
	if err == nil && o.overwrite {
		o.published[f.final] = true
	}
	o.mu.Unlock()
	f.unlock()
	f.err = err
	close(f.done)
}

// unlock gives up the mark of a file that is published or removed.
func (f *file) unlock() {
	if f.lock != nil {
		f.lock.Close()
		f.lock = nil
	}
}

// seal writes the footer, makes the file durable and only then gives it its
// final name, so that no reader and no crash ever sees a partial file there.
func (o *output) seal(f *file) error {
	if err := o.sealTmp(f); err != nil {
		return err
	}
	return o.publish(f)
}

// sealTmp writes the footer and makes the .tmp durable, then closes it.
func (o *output) sealTmp(f *file) error {
	if err := f.w.Close(); err != nil {
		f.f.Close()
		return fmt.Errorf("write the footer of %s: %w", f.tmp, err)
	}
	if err := o.syncFile(f.f); err != nil {
		f.f.Close()
		return fmt.Errorf("fsync %s: %w", f.tmp, err)
	}
	if err := f.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.tmp, err)
	}
	return nil
}

// publish renames a sealed .tmp to its final name, durably.
func (o *output) publish(f *file) error {
	if err := o.rename(f.tmp, f.final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.tmp, f.final, err)
	}
	// Without this the rename itself may not survive a crash, and the
	// acknowledged rows would be lost with it.
	if err := o.syncDir(filepath.Dir(f.final)); err != nil {
		return fmt.Errorf("fsync directory of %s: %w", f.final, err)
	}
	return nil
}

// discard fails a detached file that cannot be written any more. The caller
// holds o.mu.
func (o *output) discard(f *file, err error) {
	f.f.Close()
	_ = os.Remove(f.tmp)
	f.unlock()
	delete(o.names, f.final)
	o.log.Errorf("parquet output: %v", err)
	// Rows of acknowledged batches may have been in it.
	o.spoil(err)
	f.err = err
	close(f.done)
}

// wait returns once every file is finished, with the first failure.
func (o *output) wait(ctx context.Context, files []*file) error {
	for _, f := range files {
		select {
		case <-f.done:
		case <-ctx.Done():
			// The rows are in the file already: finishing it now acknowledges
			// them, where giving up would have them written twice on retry.
			o.mu.Lock()
			mine := o.cur == f
			if mine {
				o.detach(f)
			}
			o.mu.Unlock()
			if mine {
				o.finish(f)
			}
			<-f.done
		}
		if f.err != nil {
			return f.err
		}
	}
	return nil
}
