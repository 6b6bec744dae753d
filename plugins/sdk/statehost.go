package sdk

import (
	"errors"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// ErrNotGranted means the plugin read a namespace its processor config does
// not list in read_state.
var ErrNotGranted = errors.New("sdk: state namespace not granted to this step (add it to read_state)")

// errLookup means the host could not do the lookup; it logged why.
var errLookup = errors.New("sdk: state lookup failed on the host (see the agent's log)")

// ReadState returns the current committed state of key in namespace ns,
// which must be the step's own or listed in its read_state. It reads what
// is committed, not the batch's pending updates. ok is false if the key has
// no state.
func ReadState(ns, key string) (value []byte, ok bool, err error) {
	buf := make([]byte, 256)
	for {
		n := hostStateGet(ns, key, buf)
		switch {
		case n == abi.StateNotFound:
			return nil, false, nil
		case n == abi.StateNotGranted:
			return nil, false, ErrNotGranted
		case n < 0:
			return nil, false, errLookup
		case int(n) <= len(buf):
			return buf[:n], true, nil
		}
		buf = make([]byte, n)
	}
}

// ScanState lists up to limit (1..1000) keys of namespace ns that start
// with prefix, after the key `after`; next is the `after` of the following
// page, "" at the end.
func ScanState(ns, prefix, after string, limit int) (keys []string, next string, err error) {
	buf := make([]byte, 4096)
	for {
		n := hostStateScan(ns, prefix, after, limit, buf)
		switch {
		case n == abi.StateNotGranted:
			return nil, "", ErrNotGranted
		case n < 0:
			return nil, "", errLookup
		case int(n) <= len(buf):
			return decodeScan(buf[:n])
		}
		buf = make([]byte, n)
	}
}

func decodeScan(b []byte) ([]string, string, error) {
	r := abi.NewReader(b)
	n := int(r.U32())
	keys := make([]string, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		keys = append(keys, string(r.Bytes()))
	}
	next := string(r.Bytes())
	if r.Err() != nil {
		return nil, "", r.Err()
	}
	return keys, next, nil
}
