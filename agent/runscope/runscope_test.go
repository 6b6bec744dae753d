package runscope

import (
	"context"
	"errors"
	"testing"
)

func TestRunComplete(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(r *Run)
		want  bool
	}{
		{"ended, all acked", func(r *Run) { r.Emitted(); r.Emitted(); r.Acked(nil); r.Ended(); r.Acked(nil) }, true},
		{"ended with nothing emitted", func(r *Run) { r.Ended() }, true},
		{"a batch not acked", func(r *Run) { r.Emitted(); r.Emitted(); r.Acked(nil); r.Ended() }, false},
		{"not ended", func(r *Run) { r.Emitted(); r.Acked(nil) }, false},
		{"a batch failed", func(r *Run) { r.Emitted(); r.Acked(errors.New("no")); r.Ended() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Run{}
			tc.steps(r)
			if got := r.Complete(); got != tc.want {
				t.Errorf("Complete() = %v, want %v", got, tc.want)
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
