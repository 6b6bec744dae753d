// Package runscope tells the outputs of a batch job whether the run they
// are part of read and delivered all of its input, so an output that holds
// a whole run's writes (one SQLite transaction, Parquet files kept as
// .tmp) can publish them only when the run completed, and throw them away
// when it was stopped partway (a timeout, a shutdown) or failed.
//
// A bounded input (csv_file) creates one Run per stream, attaches it to
// the context of every message it emits, and marks it complete once it
// has reached the end of its input and every batch it emitted has been
// acknowledged. Benthos waits for those acknowledgements before it closes
// the outputs, so an output deciding at Close sees the final answer.
//
// The Run is also kept in the stream's resources (ForStream, Lookup), so
// that an output which never got a batch, and the supervisor once the
// stream has ended, can ask the same question: a run whose input failed
// before it emitted anything (a file that is not there) must not publish
// empty outputs or count as a success.
//
// An output that cannot write a batch for a reason no retry mends (a full
// disk) fails the run too (FailFrom); the input then stops, and the
// outputs drop the failed run's remaining batches (Abandoned), so the
// stream ends at once instead of retrying until the run's timeout.
package runscope

import (
	"context"
	"errors"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// ErrStopped is why a run that ended before its input did is incomplete:
// a shutdown, a timeout.
var ErrStopped = errors.New("the run was stopped before the end of its input")

// errBatch marks a run failed by a batch acknowledged with an error.
var errBatch = errors.New("a batch of the run was not delivered")

// Run is one run of a bounded input.
type Run struct {
	mu          sync.Mutex
	outstanding int // batches emitted and not yet acknowledged
	// inputs is how many bounded inputs the stream has (Join), ended how
	// many of them reached their end: a broker of files is done when
	// each is.
	inputs, ended int
	// err is why the run failed, if it did: the input's or an output's
	// error (Fail), or a batch acknowledged with an error.
	err error
}

// setErr records the run's first failure; r.mu held.
func (r *Run) setErr(err error) {
	if r.err == nil {
		r.err = err
	}
}

type key struct{}

// With returns ctx carrying r.
func With(ctx context.Context, r *Run) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// From returns the run ctx carries, if any.
func From(ctx context.Context) (*Run, bool) {
	r, ok := ctx.Value(key{}).(*Run)
	return r, ok
}

// Emitted records a batch handed downstream; call Acked for it later.
func (r *Run) Emitted() {
	r.mu.Lock()
	r.outstanding++
	r.mu.Unlock()
}

// Acked records the acknowledgement of an emitted batch. err is what the
// pipeline acknowledged it with; a batch that is retried until delivered
// should only be acked with its final outcome.
func (r *Run) Acked(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outstanding--
	if err != nil {
		r.setErr(errors.Join(errBatch, err))
	}
}

// Fail records that the run cannot complete: its input cannot open or
// read its files, or an output cannot write (a full disk), which retrying
// the same batch would not mend. The run is failed with err, whatever
// comes after. Its input stops reading, and its run-mode outputs drop
// the batches still coming (Abandoned), so the stream ends soon.
func (r *Run) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setErr(err)
}

// Failed is why the run failed, or nil: unlike Incomplete, nil while it
// is still going.
func (r *Run) Failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Incomplete is nil if the run is complete, or else why it is not: the
// input's failure, a batch not delivered, or ErrStopped.
func (r *Run) Incomplete() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.err != nil:
		return r.err
	case !r.endedAll() || r.outstanding > 0:
		return ErrStopped
	}
	return nil
}

type streamKey struct{}

// ForStream returns the run of the stream res belongs to, making it on
// first use. A bounded input calls it when it is built; res may be nil (a
// component built outside a stream), for a run of its own.
func ForStream(res *service.Resources) *Run {
	if res == nil {
		return &Run{}
	}
	r, _ := res.GetOrSetGeneric(streamKey{}, &Run{})
	return r.(*Run)
}

// FailFrom fails the run batch belongs to with err, an output's error
// that no retry of the batch would mend (a full disk, a broken file),
// unless ctx is done: then the stream is being stopped, which is the
// reason to report (ErrStopped), not the write it interrupted. A row's
// own fault (a constraint) is not for FailFrom: a fallback output may
// still take the row, and the run complete.
func FailFrom(ctx context.Context, batch service.MessageBatch, err error) {
	if ctx.Err() != nil || len(batch) == 0 {
		return
	}
	if r, ok := From(batch[0].Context()); ok {
		r.Fail(err)
	}
}

// Abandoned reports whether batch belongs to a run that has failed. A
// run-mode output then acknowledges it without writing it: the run
// publishes nothing, and an error would only have Benthos retry the batch
// (a broker does, with back-off, for as long as the stream runs), so the
// failed stream could not drain until the run's timeout.
func Abandoned(batch service.MessageBatch) bool {
	if len(batch) == 0 {
		return false
	}
	r, ok := From(batch[0].Context())
	return ok && r.Failed() != nil
}

// Lookup returns the run of the stream res belongs to, if the stream has
// a bounded input; a streaming pipeline's has none.
func Lookup(res *service.Resources) (*Run, bool) {
	if res == nil {
		return nil, false
	}
	r, ok := res.GetGeneric(streamKey{})
	if !ok {
		return nil, false
	}
	run, ok := r.(*Run)
	return run, ok
}

// Ended records that an input has emitted its last batch.
func (r *Run) Ended() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended++
}

// Join counts one more bounded input in the run; each calls Ended once.
// A Run nobody joined has one input.
func (r *Run) Join() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inputs++
}

// endedAll reports whether every input has ended; r.mu held.
func (r *Run) endedAll() bool { return r.ended >= max(r.inputs, 1) }

// Complete reports whether every input reached its end and every batch
// emitted was delivered.
func (r *Run) Complete() bool { return r.Incomplete() == nil }
