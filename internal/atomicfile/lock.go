package atomicfile

import "errors"

// ErrHeld is Lock's error when another writer holds the file's lock.
var ErrHeld = errors.New("held by another writer")
