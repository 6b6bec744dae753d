package sdk

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// statefulRequest is a columns request with no input fields and a state
// section, built as the host builds it: rowKeys index keys; states[j] nil
// means key j has no state.
func statefulRequest(rowKeys []uint32, replayed []bool, keys []string, states [][]byte) []byte {
	var w abi.Writer
	w.U32(uint32(len(rowKeys)))
	w.U32(0)
	w.U32(uint32(len(keys)))
	w.U32(0)
	for _, k := range rowKeys {
		w.U32(k)
	}
	w.Align8()
	for _, r := range replayed {
		if r {
			w.U8(abi.RowReplayed)
		} else {
			w.U8(0)
		}
	}
	w.Align8()
	all, kb := make([]byte, len(keys)), make([][]byte, len(keys))
	valid := make([]byte, len(keys))
	for j, k := range keys {
		all[j], kb[j] = 1, []byte(k)
		if states[j] != nil {
			valid[j] = 1
		}
	}
	abi.AppendColumn(&w, abi.TypeString, all, nil, kb)
	abi.AppendColumn(&w, abi.TypeString, valid, nil, states)
	return aligned(w.Buf)
}

type counterState struct {
	N   int64
	Sum float64
}

func TestStructStateInOrderAcrossRows(t *testing.T) {
	fresh(t)
	st := UseStructState[counterState]()
	out := WriteInt("n")
	HandleBatch(func(b *Batch) error {
		for i := 0; i < b.Len(); i++ {
			s, _ := st.Get(b, i)
			s.N++
			s.Sum += 0.5
			st.Set(b, i, s)
			out.Set(b, i, s.N)
		}
		return nil
	})
	if d := descriptorOf(t, Init(nil)); !d.Stateful {
		t.Fatal("descriptor does not say stateful")
	}
	prior := counterState{N: 10}
	priorBytes := make([]byte, 16)
	binary.LittleEndian.PutUint64(priorBytes, uint64(prior.N))
	// Rows: a, b, a (replayed), a. Key a starts at 10, b has no state.
	req := statefulRequest([]uint32{0, 1, 0, 0}, []bool{false, false, true, false}, []string{"a", "b"}, [][]byte{priorBytes, nil})
	resp := Process(req)
	r := okReader(t, resp)
	rows := int(r.U32())
	r.Raw(rows)
	r.Align8()
	n := abi.ReadColumn(r, abi.TypeInt, rows)
	var got []int64
	for i := 0; i < rows; i++ {
		got = append(got, int64(binary.LittleEndian.Uint64(n.Fixed[i*8:])))
	}
	// The replayed row sees state but does not change it.
	if want := []int64{11, 1, 12, 12}; !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
	if k := r.U32(); k != 2 {
		t.Fatalf("state section for %d keys, want 2", k)
	}
	r.U32()
	col := abi.ReadColumn(r, abi.TypeString, 2)
	if col.Valid[0] != abi.StateSet || col.Valid[1] != abi.StateSet {
		t.Fatalf("state codes %v, want both set", col.Valid)
	}
	a, _ := col.Str(0)
	if v := int64(binary.LittleEndian.Uint64(a)); v != 12 {
		t.Errorf("stored count of a = %d, want 12", v)
	}
}

func TestStateNeedsBatchHandler(t *testing.T) {
	fresh(t)
	UseState()
	HandleMessage(func(*Message) error { return nil })
	wantError(t, Init(nil), abi.StatusError, "state needs HandleBatch")
}

func TestStructStateRefusesPointers(t *testing.T) {
	fresh(t)
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("UseStructState accepted a struct with a string field")
		}
	}()
	UseStructState[struct{ Name string }]()
}

func TestStateKeyIndexOutOfRange(t *testing.T) {
	fresh(t)
	UseState()
	HandleBatch(func(*Batch) error { return nil })
	Init(nil)
	wantError(t, Process(statefulRequest([]uint32{5}, []bool{false}, []string{"a"}, [][]byte{nil})), abi.StatusError, "out of range")
}

func TestStateView(t *testing.T) {
	for _, withView := range []bool{false, true} {
		fresh(t)
		st := UseStructState[counterState]()
		if withView {
			st.ViewJSON()
		}
		HandleBatch(func(*Batch) error { return nil })
		if d := descriptorOf(t, Init(nil)); d.StateView != withView {
			t.Fatalf("view registered %v: descriptor says state view %v", withView, d.StateView)
		}
		state := make([]byte, 16)
		binary.LittleEndian.PutUint64(state, 7)
		var w abi.Writer
		w.String("a")
		w.Bytes(state)
		resp := StateView(w.Buf)
		r := abi.NewReader(resp)
		status := abi.Status(r.U32())
		msg := string(r.Bytes())
		switch {
		case !withView && (status != abi.StatusError || msg != "this plugin has no state view"):
			t.Errorf("without a view: status %d %q, want an error", status, msg)
		case withView && (status != abi.StatusOK || msg != `{"N":7,"Sum":0}`):
			t.Errorf("with a view: status %d %q, want {\"N\":7,\"Sum\":0}", status, msg)
		}
	}
}

// TestStateChunksReused: the memory Set copies states into is reused batch
// after batch (no garbage for the guest's slow collector), and reusing it
// never leaks one batch's state into another's response.
func TestStateChunksReused(t *testing.T) {
	fresh(t)
	st := UseState()
	HandleBatch(func(b *Batch) error {
		for i := 0; i < b.Len(); i++ {
			// 20 KiB per key: several chunks per batch.
			v := make([]byte, 20<<10)
			for j := range v {
				v[j] = byte(len(st.Key(b, i))) + byte(i)
			}
			st.Set(b, i, v)
		}
		return nil
	})
	descriptorOf(t, Init(nil))
	keys := []string{"a", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg", "hhhhhhhh"}
	for round := 0; round < 5; round++ {
		rows := make([]uint32, len(keys))
		for i := range rows {
			rows[i] = uint32(i)
		}
		req := statefulRequest(rows, make([]bool, len(keys)), keys, make([][]byte, len(keys)))
		r := okReader(t, Process(req))
		n := int(r.U32())
		r.Raw(n)
		r.Align8()
		if k := int(r.U32()); k != len(keys) {
			t.Fatalf("round %d: state for %d keys", round, k)
		}
		r.U32()
		col := abi.ReadColumn(r, abi.TypeString, len(keys))
		for j := range keys {
			v, _ := col.Str(j)
			want := byte(len(keys[j])) + byte(j)
			if len(v) != 20<<10 || v[0] != want || v[len(v)-1] != want {
				t.Fatalf("round %d key %s: %d bytes starting %d, want 20 KiB of %d", round, keys[j], len(v), v[0], want)
			}
		}
	}
	if n := len(batch.keyed.chunks); n > 3 {
		t.Errorf("%d chunks after 5 batches of 160 KiB of state: not reused", n)
	}
}
