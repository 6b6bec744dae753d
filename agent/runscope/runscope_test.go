package runscope

import (
	"context"
	"errors"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestRunComplete(t *testing.T) {
	errDisk := errors.New("disk")
	for _, tc := range []struct {
		name  string
		steps func(r *Run)
		want  bool
		why   error // what Incomplete matches, if the run is not complete
	}{
		{"ended, all acked", func(r *Run) { r.Emitted(); r.Emitted(); r.Acked(nil); r.Ended(); r.Acked(nil) }, true, nil},
		{"ended with nothing emitted", func(r *Run) { r.Ended() }, true, nil},
		{"a batch not acked", func(r *Run) { r.Emitted(); r.Emitted(); r.Acked(nil); r.Ended() }, false, ErrStopped},
		{"not ended", func(r *Run) { r.Emitted(); r.Acked(nil) }, false, ErrStopped},
		{"a batch failed", func(r *Run) { r.Emitted(); r.Acked(errDisk); r.Ended() }, false, errDisk},
		{"the input failed", func(r *Run) { r.Emitted(); r.Acked(nil); r.Fail(errDisk); r.Ended() }, false, errDisk},
		{"two inputs, one ended", func(r *Run) { r.Join(); r.Join(); r.Ended() }, false, ErrStopped},
		{"two inputs, both ended", func(r *Run) { r.Join(); r.Join(); r.Ended(); r.Ended() }, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Run{}
			tc.steps(r)
			if got := r.Complete(); got != tc.want {
				t.Errorf("Complete() = %v, want %v", got, tc.want)
			}
			why := r.Incomplete()
			if (why == nil) != tc.want || tc.why != nil && !errors.Is(why, tc.why) {
				t.Errorf("Incomplete() = %v, want %v", why, tc.why)
			}
		})
	}
	r := &Run{}
	if got, ok := From(With(context.Background(), r)); !ok || got != r {
		t.Error("From(With(r)) is not r")
	}
	if _, ok := From(context.Background()); ok {
		t.Error("a context without a run has one")
	}
}

// TestForStream: the components of one stream share its run, and a
// stream with no bounded input has none to look up.
func TestForStream(t *testing.T) {
	res := service.MockResources()
	if _, ok := Lookup(res); ok {
		t.Fatal("a run before any input made one")
	}
	r := ForStream(res)
	if ForStream(res) != r {
		t.Error("two runs in one stream")
	}
	if got, ok := Lookup(res); !ok || got != r {
		t.Error("Lookup does not find the stream's run")
	}
	if ForStream(service.MockResources()) == r {
		t.Error("two streams share a run")
	}
	if ForStream(nil) == nil {
		t.Error("no run outside a stream")
	}
}

// TestFailed: Failed says why a run failed (Fail, or a batch acknowledged
// with an error) and nothing while it goes on or once it completed, and a
// failed run's batches are Abandoned; FailFrom fails the batch's run
// unless the stream is stopping.
func TestFailed(t *testing.T) {
	errDisk := errors.New("disk full")
	stopping, stop := context.WithCancel(context.Background())
	stop()
	for _, tc := range []struct {
		name string
		act  func(r *Run, batch service.MessageBatch)
		want error
	}{
		{"going on", func(r *Run, _ service.MessageBatch) { r.Emitted() }, nil},
		{"complete", func(r *Run, _ service.MessageBatch) { r.Emitted(); r.Acked(nil); r.Ended() }, nil},
		{"failed", func(r *Run, _ service.MessageBatch) { r.Emitted(); r.Fail(errDisk) }, errDisk},
		{"a batch not delivered", func(r *Run, _ service.MessageBatch) { r.Emitted(); r.Acked(errDisk) }, errDisk},
		{"an output's write", func(_ *Run, b service.MessageBatch) { FailFrom(context.Background(), b, errDisk) }, errDisk},
		{"a write the stop interrupted", func(_ *Run, b service.MessageBatch) { FailFrom(stopping, b, errDisk) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Run{}
			batch := service.MessageBatch{service.NewMessage(nil).WithContext(With(context.Background(), r))}
			tc.act(r, batch)
			if got := r.Failed(); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("Failed() = %v, want %v", got, tc.want)
			}
			if Abandoned(batch) != (tc.want != nil) {
				t.Errorf("Abandoned = %v for a run failed with %v", Abandoned(batch), tc.want)
			}
		})
	}
	if Abandoned(service.MessageBatch{service.NewMessage(nil)}) {
		t.Error("a batch of no run is abandoned")
	}
}
