package configerr

import (
	"errors"
	"fmt"
	"testing"
)

// TestWrap: a wrapped error reads as it was, is still found by errors.Is,
// and says it is permanent through any wrapping, as the scheduler asks.
func TestWrap(t *testing.T) {
	if Wrap(nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	cause := errors.New("replace_by: needs columns")
	err := fmt.Errorf("failed to init output 'sales_data': %w", Wrap(cause))
	if err.Error() != "failed to init output 'sales_data': replace_by: needs columns" || !errors.Is(err, cause) {
		t.Errorf("%v", err)
	}
	var perm interface{ Permanent() bool }
	if !errors.As(err, &perm) || !perm.Permanent() {
		t.Error("not permanent")
	}
}
