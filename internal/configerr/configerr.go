// Package configerr marks the errors a component gives for its config
// alone (a value out of range, options that cannot go together), so that
// the scheduler (agent/supervisor) fails a scheduled run at once instead
// of retrying, after its backoff, a run that must fail the same way.
// Errors that may pass by the next attempt (a file not there yet, a
// broker down) are not marked.
package configerr

// Error is a config error: trying the same config again cannot help.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent says trying again cannot help; the scheduler looks for it
// anywhere in a run's error chain.
func (e *Error) Permanent() bool { return true }

// Wrap marks err as a config error; nil stays nil.
func Wrap(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err}
}
