package wasm

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero/api"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
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
	if uint32(len(e.Value)) <= d(5) && len(e.Value) > 0 && !mod.Memory().Write(d(4), e.Value) {
		stack[0] = api.EncodeI64(abi.StateFailed)
		return
	}
	stack[0] = uint64(len(e.Value))
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
