package wasm

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
	"github.com/sluice-dev/sluice/state"
)

// readGuest returns a guest memory range as a string copy, or ok false if it
// lies outside memory.
func readGuest(mod api.Module, ptr, n uint32) (string, bool) {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		return "", false
	}
	return string(b), true
}

// access resolves the namespace a state import names and whether this step
// may read it: its own namespace, and those its config grants.
func access(ctx context.Context, mod api.Module, nsPtr, nsLen uint32) (*callInfo, string, int64) {
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	ns, ok := readGuest(mod, nsPtr, nsLen)
	if !ok || info == nil || info.store == nil {
		return nil, "", abi.StateFailed
	}
	if ns == "" && info.keyed != nil {
		ns = info.keyed.own // "" names the step's own namespace
	}
	if !info.readable[ns] {
		info.logger.Warn("plugin read a state namespace it was not granted", "namespace", ns)
		return nil, "", abi.StateNotGranted
	}
	return info, ns, 0
}

// hostStateGet: state_get(ns, key, buf, cap) -> i64. It copies the key's
// state into buf if it fits and returns its length either way, so a guest
// with too small a buffer calls again with a bigger one.
func hostStateGet(ctx context.Context, mod api.Module, stack []uint64) {
	d := func(i int) uint32 { return api.DecodeU32(stack[i]) }
	info, ns, code := access(ctx, mod, d(0), d(1))
	if info == nil {
		stack[0] = api.EncodeI64(code)
		return
	}
	key, ok := readGuest(mod, d(2), d(3))
	if !ok {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	if kin := info.keyed; kin != nil && ns == kin.own {
		if v, ok := kin.readOwn(key); ok {
			if v.value == nil {
				stack[0] = api.EncodeI64(abi.StateNotFound)
				return
			}
			writeValue(mod, stack, d(4), d(5), v.value)
			return
		}
		ns = kin.storeNS // a changelog-backed step reads its batch's partition
	}
	e, found, err := info.store.Get(ns, key)
	switch {
	case err != nil:
		info.logger.Warn("plugin state_get failed", "namespace", ns, "error", err)
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	case !found:
		stack[0] = api.EncodeI64(abi.StateNotFound)
		return
	}
	writeValue(mod, stack, d(4), d(5), e.Value)
}

// writeValue answers state_get: the value into buf if it fits, and its
// length either way.
func writeValue(mod api.Module, stack []uint64, buf, bufCap uint32, v []byte) {
	if uint32(len(v)) <= bufCap && len(v) > 0 && !mod.Memory().Write(buf, v) {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	stack[0] = uint64(len(v))
}

// writable resolves the namespace a write names: only a stateful step's
// own, during its call. A namespace has one writer, its step, so two
// steps never race on a key, and every write commits in the step's batch
// transaction with its offsets: effectively once, like the state section.
func writable(ctx context.Context, mod api.Module, nsPtr, nsLen, keyPtr, keyLen uint32) (*KeyedInput, string, int64) {
	info, _ := ctx.Value(callInfoKey{}).(*callInfo)
	ns, ok1 := readGuest(mod, nsPtr, nsLen)
	key, ok2 := readGuest(mod, keyPtr, keyLen)
	if !ok1 || !ok2 || info == nil {
		return nil, "", abi.StateFailed
	}
	kin := info.keyed
	if kin != nil && ns == "" {
		ns = kin.own // "" names the step's own namespace
	}
	if kin == nil || ns != kin.own {
		info.logger.Warn("plugin wrote a state namespace that is not its step's own; writes go only to the namespace of a stateful step's state config", "namespace", ns)
		return nil, "", abi.StateNotGranted
	}
	if err := state.ValidateKey(ns, []byte(key)); err != nil {
		info.logger.Warn("plugin state write refused", "error", err)
		return nil, "", abi.StateFailed
	}
	return kin, key, 0
}

// hostStateSet: state_set(ns, key, value) -> i64, 0 or a negative code.
func hostStateSet(ctx context.Context, mod api.Module, stack []uint64) {
	d := func(i int) uint32 { return api.DecodeU32(stack[i]) }
	kin, key, code := writable(ctx, mod, d(0), d(1), d(2), d(3))
	if kin == nil {
		stack[0] = api.EncodeI64(code)
		return
	}
	if d(5) > abi.MaxStateValueBytes {
		logWrite(ctx, "value of %d bytes over the limit of %d", d(5), abi.MaxStateValueBytes)
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	v, ok := mod.Memory().Read(d(4), d(5))
	if !ok {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	// Copied: guest memory is reused by the next call.
	if !kin.writeRandom(key, append(make([]byte, 0, len(v)), v...)) {
		logWrite(ctx, "more than %d keys written in one call", abi.MaxStateWrites)
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	stack[0] = 0
}

// hostStateDelete: state_delete(ns, key) -> i64, 0 or a negative code.
func hostStateDelete(ctx context.Context, mod api.Module, stack []uint64) {
	d := func(i int) uint32 { return api.DecodeU32(stack[i]) }
	kin, key, code := writable(ctx, mod, d(0), d(1), d(2), d(3))
	if kin == nil {
		stack[0] = api.EncodeI64(code)
		return
	}
	if !kin.writeRandom(key, nil) {
		logWrite(ctx, "more than %d keys written in one call", abi.MaxStateWrites)
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	stack[0] = 0
}

func logWrite(ctx context.Context, format string, args ...any) {
	if info, _ := ctx.Value(callInfoKey{}).(*callInfo); info != nil {
		info.logger.Warn("plugin state write refused: " + fmt.Sprintf(format, args...))
	}
}

// hostStateScan: state_scan(ns, prefix, after, limit, buf, cap) -> i64. The
// result is u32 count, then count × (u32 len, key bytes), then (u32 len,
// next) where next is the `after` of the following page ("" at the end). It
// is written only if it fits; the length is returned either way.
func hostStateScan(ctx context.Context, mod api.Module, stack []uint64) {
	d := func(i int) uint32 { return api.DecodeU32(stack[i]) }
	info, ns, code := access(ctx, mod, d(0), d(1))
	if info == nil {
		stack[0] = api.EncodeI64(code)
		return
	}
	prefix, ok1 := readGuest(mod, d(2), d(3))
	after, ok2 := readGuest(mod, d(4), d(5))
	limit := int(d(6))
	if !ok1 || !ok2 || limit < 1 || limit > 1000 {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	if kin := info.keyed; kin != nil && ns == kin.own {
		ns = kin.storeNS // a changelog-backed step scans its batch's partition
	}
	keys, next, err := info.store.Scan(ns, prefix, after, limit)
	if err != nil {
		info.logger.Warn("plugin state_scan failed", "namespace", ns, "error", err)
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(next)))
	out = append(out, next...)
	if uint32(len(out)) <= d(8) && !mod.Memory().Write(d(7), out) {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	stack[0] = uint64(len(out))
}
