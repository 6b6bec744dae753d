package parquetout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/sluice-dev/sluice/agent/runscope"
)

// joinRun checks, in run mode, that every message of the batch belongs to
// the run of the earlier batches, the first batch setting it. Anything
// else spoils the run: its output would lack rows it was sent.
func (o *output) joinRun(batch service.MessageBatch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.connected {
		return service.ErrNotConnected
	}
	for i, msg := range batch {
		run, ok := runscope.From(msg.Context())
		if !ok || run == nil {
			err := fmt.Errorf("message %d: %s: run needs a bounded input that reports the end of its run, such as csv_file; this message has none", i, fTransaction)
			o.spoil(err)
			return err
		}
		if o.run == nil {
			o.run = run
		}
		if run != o.run {
			err := fmt.Errorf("message %d: %s: run: the message belongs to another run than the earlier batches; one output instance serves one run", i, fTransaction)
			o.spoil(err)
			return err
		}
	}
	if o.runFault != nil {
		// Writing more rows of a run that will be thrown away helps no one,
		// and failing tells the input now rather than at Close.
		return fmt.Errorf("%s: run: the batch is not written, since the run can no longer be published: %w", fTransaction, o.runFault)
	}
	return nil
}

// spoil records, in run mode, the first reason the run cannot be
// published. The caller holds o.mu.
func (o *output) spoil(err error) {
	if o.runMode && o.runFault == nil {
		o.runFault = err
	}
}

// finishRun seals a file of the run, which keeps its .tmp name until Close
// publishes the run. Its name stays reserved until then.
func (o *output) finishRun(f *file) {
	err := o.sealTmp(f)
	if err != nil {
		_ = os.Remove(f.tmp)
		o.log.Errorf("parquet output: %v", err)
	} else {
		o.log.Debugf("parquet output: sealed %s, %d rows, to be published with its run", f.tmp, f.rows)
	}
	o.mu.Lock()
	if err != nil {
		// Acknowledged rows were in it.
		o.spoil(err)
	}
	o.mu.Unlock()
	f.err = err
	close(f.done)
}

// closeRun ends the run: it publishes every file of the run if the input
// reports the run complete and nothing here spoiled it, and removes them
// otherwise.
func (o *output) closeRun(ctx context.Context) error {
	o.mu.Lock()
	o.connected = false
	cur := o.cur
	if cur != nil {
		o.detach(cur)
	}
	run, files := o.run, o.runFiles
	// A second Close finds nothing left to do.
	o.run, o.runFiles = nil, nil
	o.mu.Unlock()
	if run == nil {
		// No batch joined a run, so no file was opened; batches without a
		// run were failed when they came.
		return nil
	}
	// Batches still finishing the files they filled decide whether those
	// files can be published.
	var waitErr error
wait:
	for _, f := range files {
		if f == cur {
			continue
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			waitErr = fmt.Errorf("parquet output: waiting for the run's files being finished: %w", ctx.Err())
			break wait
		}
	}
	o.mu.Lock()
	reason := o.runFault
	o.mu.Unlock()
	why := run.Incomplete()
	switch {
	case reason != nil:
	case waitErr != nil:
		reason = waitErr
	case why != nil:
		reason = fmt.Errorf("the run did not complete: %w", why)
	}
	if reason == nil && cur != nil {
		o.finish(cur)
		if cur.err != nil {
			reason = fmt.Errorf("finishing the last file: %w", cur.err)
		}
		cur = nil // closed either way
	}
	defer o.releaseNames(files)
	if reason != nil {
		if cur != nil {
			// No footer for a file about to be removed.
			_ = cur.f.Close()
		}
		err := errors.Join(waitErr, o.removeRun(files, reason))
		if run.Complete() {
			// The input takes the run as delivered (a fallback may have
			// taken the batch that failed here, or the last file failed
			// here): the run fails now, so the supervisor reports it.
			notPublished := fmt.Errorf("parquet output: the run completed but is not published: %w", reason)
			run.Fail(notPublished)
			err = errors.Join(notPublished, err)
		}
		return err
	}
	return o.publishRun(files)
}

// publishRun gives every sealed file of the run its final name, in name
// order, each rename made durable before the next, so that after a crash
// the files published are the first ones by name.
func (o *output) publishRun(files []*file) error {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b *file) int { return strings.Compare(a.final, b.final) })
	// Names were new when their files were opened, but the run lasts: a
	// file that appeared since would be replaced by the rename.
	for _, f := range files {
		if _, err := os.Lstat(f.final); err == nil && !o.overwrite {
			err := fmt.Errorf("parquet output: %s appeared while the run was written (%s must give each file a new name); nothing of the run is published", f.final, fPath)
			return errors.Join(err, o.removeRun(files, err))
		}
	}
	var rows int64
	for i, f := range files {
		if err := o.rename(f.tmp, f.final); err != nil {
			return o.publishFailed(files, i, fmt.Errorf("rename %s to %s: %w", f.tmp, f.final, err))
		}
		// Without this the rename may not survive a crash, while the input
		// takes the run as delivered.
		if err := o.syncDir(filepath.Dir(f.final)); err != nil {
			return o.publishFailed(files, i+1, fmt.Errorf("fsync directory of %s: %w", f.final, err))
		}
		rows += f.rows
		o.log.Debugf("parquet output: published %s, %d rows", f.final, f.rows)
	}
	if o.rowsSent != nil {
		o.rowsSent.Incr(rows)
	}
	switch len(files) {
	case 0:
		o.log.Infof("parquet output: the run had no rows: no file published")
	case 1:
		// Named, as the csv_file output names its file: the one a user
		// looks for after a run.
		o.log.Infof("parquet output: published %s, %d rows", files[0].final, rows)
	default:
		o.log.Infof("parquet output: published %d files (%s to %s), %d rows", len(files), files[0].final, files[len(files)-1].final, rows)
	}
	return nil
}

// publishFailed handles a failure once files[:n] are published: the rest
// are removed, since the run can no longer be whole, and the error says
// which files hold part of it.
func (o *output) publishFailed(files []*file, n int, err error) error {
	var published []string
	for _, f := range files[:n] {
		published = append(published, f.final)
	}
	err = fmt.Errorf("parquet output: publishing the run: %w; %d of its %d files were published and hold part of the run, remove them before running it again: %s",
		err, n, len(files), strings.Join(published, ", "))
	o.log.Errorf("%v", err)
	return errors.Join(err, o.removeRun(files[n:], err))
}

// removeRun removes the .tmp files of a run that is not published, and
// says which and why.
func (o *output) removeRun(files []*file, reason error) error {
	var removed []string
	var rows int64
	var errs []error
	for _, f := range files {
		err := os.Remove(f.tmp)
		switch {
		case err == nil:
			removed = append(removed, f.tmp)
			rows += f.rows
		case errors.Is(err, fs.ErrNotExist):
			// A file that failed was removed then.
		default:
			errs = append(errs, fmt.Errorf("parquet output: remove %s: %w", f.tmp, err))
		}
	}
	if len(removed) == 0 {
		o.log.Warnf("parquet output: the run is not published: %v; it left no file", reason)
	} else {
		o.log.Warnf("parquet output: the run is not published: %v; removed its %d files (%d rows): %s",
			reason, len(removed), rows, strings.Join(removed, ", "))
	}
	return errors.Join(errs...)
}

// releaseNames frees the final names the run's files reserved, and
// their .tmp files' locks: each is published or removed by now.
func (o *output) releaseNames(files []*file) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range files {
		delete(o.names, f.final)
		f.unlock()
	}
}
