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
package runscope

import (
	"context"
	"sync"
)

// Run is one run of a bounded input.
type Run struct {
	mu          sync.Mutex
	outstanding int  // batches emitted and not yet acknowledged
	ended       bool // the input has reached its end
	failed      bool // a batch was acknowledged with an error
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
		r.failed = true
	}
}

// Ended records that the input has emitted its last batch.
func (r *Run) Ended() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = true
}

// Complete reports whether the input reached its end and every batch it
// emitted was delivered.
func (r *Run) Complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended && r.outstanding == 0 && !r.failed
}
