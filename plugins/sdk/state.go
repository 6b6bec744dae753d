package sdk

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// State is the per-key state of a stateful plugin. The processor's `key:`
// picks the entity (e.g. user_id); the host loads each key's state before
// the batch, and commits what the plugin sets, in one transaction, before
// the batch is acknowledged. The bytes are the plugin's own format.
//
// Rows of one key see each other's updates in order: Get on a later row
// returns what Set stored for an earlier one.
type State struct{}

// UseState declares the plugin stateful; call it in a package-level var or
// in init(). The processor must then be configured with `key:`.
func UseState() State {
	stateful = true
	return State{}
}

// keyed is a batch's state section.
type keyed struct {
	nkeys    int
	rowKey   []byte // rows × u32 key index
	rowFlags []byte
	keys     abi.Column
	cur      [][]byte // current state per key; nil = none
	act      []byte   // per key: abi.StateUnchanged, StateSet, StateDelete
	arena    []byte   // the chunk Set copies into
	chunks   [][]byte // every chunk, reused batch after batch
	chunk    int      // index of arena in chunks
	badKey   bool
}

func (k *keyed) key(i int) int { return int(binary.LittleEndian.Uint32(k.rowKey[i*4:])) }

func (b *Batch) readState(r *abi.Reader, rows int) {
	k := &b.keyed
	k.nkeys = int(r.U32())
	r.U32()
	k.rowKey = r.Raw(rows * 4)
	r.Align8()
	k.rowFlags = r.Raw(rows)
	r.Align8()
	k.keys = abi.ReadColumn(r, abi.TypeString, k.nkeys)
	state := abi.ReadColumn(r, abi.TypeString, k.nkeys)
	if r.Err() != nil {
		return
	}
	k.badKey = false
	for i := 0; i < rows; i++ {
		if k.key(i) >= k.nkeys {
			k.badKey = true
			return
		}
	}
	k.cur = resizeStrs(k.cur, k.nkeys)
	k.act = resize(k.act, k.nkeys)
	// Last batch's states were copied into its response: their chunks are
	// free again. Reusing them, rather than dropping all but the last,
	// keeps a steady stream from making garbage for the guest's collector,
	// which in a wasip1 reactor is slow and only runs during calls.
	k.chunk = 0
	if len(k.chunks) > 0 {
		k.arena = k.chunks[0][:0]
	}
	for j := 0; j < k.nkeys; j++ {
		if state.Valid[j] != 0 {
			k.cur[j], _ = state.Str(j)
		}
	}
}

func (b *Batch) appendState(w *abi.Writer) {
	k := &b.keyed
	w.U32(uint32(k.nkeys))
	w.U32(0)
	strs := resizeStrs(nil, k.nkeys)
	for j := range strs {
		if k.act[j] == abi.StateSet {
			strs[j] = k.cur[j]
		}
	}
	abi.AppendColumn(w, abi.TypeString, k.act, nil, strs)
}

// Replayed reports whether row i's message was already applied to state
// before (redelivered after a crash). Its output is computed as usual, but
// state updates from it are ignored, so it is never counted twice.
func (b *Batch) Replayed(i int) bool { return b.rowFlags[i]&abi.RowReplayed != 0 }

// Key returns row i's entity key, aliasing the host's buffer.
func (State) Key(b *Batch, i int) []byte {
	s, _ := b.keys.Str(b.key(i))
	return s
}

// Get returns the current state of row i's key, or nil if it has none. The
// slice is valid until the handler returns; do not modify it.
func (State) Get(b *Batch, i int) []byte { return b.cur[b.key(i)] }

// Set stores v as the new state of row i's key; later rows of the key see
// it. v is copied. Ignored for replayed rows.
func (State) Set(b *Batch, i int, v []byte) {
	if b.Replayed(i) {
		return
	}
	k := &b.keyed
	if cap(k.arena)-len(k.arena) < len(v) {
		// The next chunk: earlier states keep pointing into this one.
		k.nextChunk(len(v))
	}
	start := len(k.arena)
	k.arena = append(k.arena, v...)
	j := b.key(i)
	k.cur[j] = k.arena[start:len(k.arena):len(k.arena)]
	k.act[j] = abi.StateSet
}

// nextChunk makes arena an empty chunk of at least n bytes: the next
// reusable one, or a new one.
func (k *keyed) nextChunk(n int) {
	if len(k.chunks) > 0 {
		k.chunk++
	}
	for k.chunk < len(k.chunks) && cap(k.chunks[k.chunk]) < n {
		k.chunk++ // too small for this value: skip it for this batch
	}
	if k.chunk < len(k.chunks) {
		k.arena = k.chunks[k.chunk][:0]
		return
	}
	k.arena = make([]byte, 0, max(64<<10, n))
	k.chunks = append(k.chunks, k.arena)
	k.chunk = len(k.chunks) - 1
}

// Delete forgets row i's key. Ignored for replayed rows.
func (State) Delete(b *Batch, i int) {
	if b.Replayed(i) {
		return
	}
	j := b.key(i)
	b.cur[j] = nil
	b.act[j] = abi.StateDelete
}

// View registers fn to render a stored state as JSON, so the agent's state
// lookups (the HTTP API's /v1/state/NS/KEY) show a user's features rather
// than opaque bytes. fn appends the JSON to dst and returns it; it must not
// keep key or state. It runs between batches, on any of the step's
// instances, with the plugin's config applied.
func (s State) View(fn func(dst, key, state []byte) ([]byte, error)) State {
	stateView = fn
	return s
}

// stateViewCall runs the registered view on one request: the key and the
// state as two length-prefixed strings.
func stateViewCall(req []byte) []byte {
	if stateView == nil {
		return errorResponse(abi.StatusError, "this plugin has no state view")
	}
	r := abi.NewReader(req)
	key := r.Bytes()
	val := r.Bytes()
	if r.Err() != nil {
		return errorResponse(abi.StatusError, errMalformed.Error()+": "+r.Err().Error())
	}
	viewBuf = viewBuf[:0]
	out, err := stateView(viewBuf, key, val)
	if err != nil {
		return errorResponse(abi.StatusError, err.Error())
	}
	viewBuf = out
	resp.U32(uint32(abi.StatusOK))
	resp.Bytes(out)
	return resp.Buf
}

// StructState stores a fixed-size struct of plain values (integers, floats,
// bools, arrays of them) as its in-memory bytes: no encoding work at all,
// and a compact form on disk. Changing the struct changes the format; a
// stored state of another size fails the plugin loudly rather than being
// misread.
type StructState[T any] struct{ State }

// UseStructState declares the plugin stateful with state of type T. It
// panics at load if T holds pointers, slices, maps, strings or interfaces,
// whose bytes would not survive being stored.
func UseStructState[T any]() StructState[T] {
	var zero T
	if err := plainType(reflect.TypeOf(zero)); err != "" {
		panic("sdk: UseStructState[" + reflect.TypeOf(zero).String() + "]: " + err)
	}
	return StructState[T]{UseState()}
}

func plainType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return ""
	case reflect.Array:
		return plainType(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if err := plainType(t.Field(i).Type); err != "" {
				return "field " + t.Field(i).Name + ": " + err
			}
		}
		return ""
	}
	return t.Kind().String() + " cannot be stored by value (use fixed-size numbers, bools and arrays)"
}

// ViewJSON registers a state view that shows T as encoding/json does:
// exported fields by name (or json tag).
func (s StructState[T]) ViewJSON() StructState[T] {
	s.State.View(func(dst, _, state []byte) ([]byte, error) {
		var v T
		if len(state) != int(unsafe.Sizeof(v)) {
			return nil, errors.New("stored state is " + strconv.Itoa(len(state)) + " bytes, want " + strconv.Itoa(int(unsafe.Sizeof(v))))
		}
		v = *(*T)(unsafe.Pointer(unsafe.SliceData(state)))
		b, err := json.Marshal(v)
		return append(dst, b...), err
	})
	return s
}

// Get returns row i's state and whether the key had one.
func (s StructState[T]) Get(b *Batch, i int) (T, bool) {
	var v T
	raw := s.State.Get(b, i)
	if raw == nil {
		return v, false
	}
	size := int(unsafe.Sizeof(v))
	if len(raw) != size {
		panic("sdk: stored state of key " + string(s.Key(b, i)) + " has " + strconv.Itoa(len(raw)) + " bytes, " +
			reflect.TypeOf(v).String() + " has " + strconv.Itoa(size) + ": the state format changed")
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), size), raw)
	return v, true
}

// Set stores v as row i's state.
func (s StructState[T]) Set(b *Batch, i int, v T) {
	s.State.Set(b, i, unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)))
}
