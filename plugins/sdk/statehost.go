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

// ReadState returns the current state of key in namespace ns, which must
// be the step's own ("" names it) or listed in its read_state. In the step's own
// namespace it sees this call's WriteState and DeleteState and the batches
// before it, but not the batch's state section (the plugin holds that);
// elsewhere it reads what is committed. ok is false if the key has no
// state.
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

// ErrNotWritable means the step has no namespace to write: only a
// stateful step (one with key and state config) can write state.
var ErrNotWritable = errors.New("sdk: state writes need a stateful step (key and state in the processor config)")

// errWrite means the host refused the write (an empty or too long key, a
// value over abi.MaxStateValueBytes, more than abi.MaxStateWrites keys in
// one call); it logged why.
var errWrite = errors.New("sdk: state write refused by the host (see the agent's log)")

// WriteState sets key in the step's own namespace (that of its state
// config) to value: the keys of a step's namespace beside the ones its
// batches are keyed by, such as an index or a per-page aggregate. The write
// is committed with the batch, in the same transaction as its state
// section and offsets, so it is applied once however often the batch is
// delivered; a plugin should skip writes for replayed rows (Batch.Replayed),
// as it skips their state updates. Within the call, ReadState sees it.
func WriteState(key string, value []byte) error {
	return writeResult(hostStateSet("", key, value))
}

// DeleteState removes key from the step's own namespace, committed with
// the batch like WriteState.
func DeleteState(key string) error {
	return writeResult(hostStateDelete("", key))
}

func writeResult(n int64) error {
	switch {
	case n == abi.StateNotGranted:
		return ErrNotWritable
	case n < 0:
		return errWrite
	}
	return nil
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
