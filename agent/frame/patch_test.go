package frame

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// view is everything a reader can see of a decoded frame: its columns in
// order, with their kinds, and every row's reason and values.
func view(f *Frame) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows\n", f.Rows)
	for _, c := range f.Cols {
		fmt.Fprintf(&b, "column %s %v meta=%v raw=%v const=%v\n", c.Name, c.Type, c.Meta, c.Raw, c.Const)
	}
	for i := range f.Rows {
		reason, rejected := f.Reason(i)
		fmt.Fprintf(&b, "row %d rejected=%v unread=%v %q:", i, rejected, f.Unread(i), reason)
		for c := range f.Cols {
			col := &f.Cols[c]
			if col.Absent(i) {
				b.WriteString(" absent")
				continue
			}
			b.WriteString(" " + string(col.AppendJSON(nil, i)))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// step is one step's changes to a frame, made the same way on the frame a
// patch is written from and on the frame encoded whole.
type step func(f *Frame)

// randomStep rejects some rows and sets some columns: new ones, ones the
// frame has (fields and metadata), of every type, and a constant.
func randomStep(rng *rand.Rand, n int) step {
	rejects := map[int]string{}
	for range rng.IntN(4) {
		rejects[rng.IntN(n)] = fmt.Sprint("step reason ", rng.IntN(100))
	}
	type set struct {
		name  string
		meta  bool
		typ   abi.Type
		konst bool
	}
	var sets []set
	for range rng.IntN(4) {
		s := []set{
			{"id", false, abi.TypeInt, false}, {"total", false, abi.TypeFloat, false},
			{"label", false, abi.TypeString, false}, {"flag", false, abi.TypeBool, false},
			{"sluice_valid", true, abi.TypeString, false}, {"src", false, abi.TypeString, true},
			{"name", false, abi.TypeString, false},
		}[rng.IntN(7)]
		sets = append(sets, s)
	}
	seed := rng.Uint64()
	return func(f *Frame) {
		for i, r := range rejects {
			f.Reject(i, r)
		}
		vals := rand.New(rand.NewPCG(seed, 0))
		for _, s := range sets {
			b := Builder{Type: s.typ, Const: s.konst}
			rows := f.Rows
			if s.konst {
				rows = 1
			}
			for range rows {
				switch {
				case vals.IntN(5) == 0:
					b.Null()
				case s.typ == abi.TypeInt:
					b.Int(vals.Int64N(1000))
				case s.typ == abi.TypeFloat:
					b.Float(vals.Float64())
				case s.typ == abi.TypeBool:
					b.Bool(vals.IntN(2) == 0)
				default:
					b.Text(strings.Repeat("x", vals.IntN(6)))
				}
			}
			f.Set(b.Column(s.name, s.meta))
		}
	}
}

// newFrameMessage makes a frame of n rows as csv_file does, sent with
// room for patches.
func newFrameMessage(t *testing.T, rng *rand.Rand, n int) (*service.Message, []byte) {
	t.Helper()
	w := NewWriter()
	id, name, raw := w.Add("id", abi.TypeInt, false), w.Add("name", abi.TypeString, false), w.AddRaw("csv_raw")
	src := w.AddConst("src", abi.TypeString, false)
	src.Text("sales.csv")
	for i := range n {
		raw.Text(fmt.Sprint("line ", i))
		if rng.IntN(8) == 0 {
			id.Null()
			name.Null()
			w.Reject(fmt.Sprint("unread ", i))
			continue
		}
		id.Int(int64(i))
		name.Text(fmt.Sprint("name ", i))
		w.Accept()
	}
	body, err := w.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewMessage(body), body
}

func mustDecode(t *testing.T, body []byte) *Frame {
	t.Helper()
	f, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestUpdatePatches: a frame sent with room, through up to four steps that
// each reject rows and set columns, decodes after each step exactly as the
// frame encoded whole with the same changes would, and each step's patch
// goes in place, after the body in its buffer, while there is room.
func TestUpdatePatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var inPlace, anew int
	defer func() {
		// The room NewMessage leaves holds most frames' first steps.
		if inPlace < 2*anew {
			t.Errorf("%d patches in place, %d frames encoded anew", inPlace, anew)
		}
	}()
	for n := range 300 {
		rows := 1 + rng.IntN(60)
		msg, body := newFrameMessage(t, rng, rows)
		whole := append([]byte(nil), body...) // the reference, encoded whole each step
		for s := range 1 + rng.IntN(4) {
			change := randomStep(rng, rows)
			f, ref := mustDecode(t, body), mustDecode(t, whole)
			change(f)
			change(ref)
			start := &body[0]
			// In place when the body is the recorded buffer's and the patch
			// fits in what is left of it.
			sp, _ := msg.Context().Value(spareKey{}).(*spare)
			cols, late := f.changes()
			fits := sp != nil && &sp.buf[0] == start && len(body)+f.patchBound(cols, late) <= len(sp.buf)
			Update(msg, body, f)
			got, err := msg.AsBytes()
			if err != nil {
				t.Fatal(err)
			}
			whole = ref.Append(nil, nil)
			if g, w := view(mustDecode(t, got)), view(mustDecode(t, whole)); g != w {
				t.Fatalf("frame %d step %d: patched:\n%s\nencoded whole:\n%s", n, s, g, w)
			}
			if changed := len(cols) > 0 || len(late) > 0; changed {
				if fits != (&got[0] == start) {
					t.Errorf("frame %d step %d: patched in place %v, want %v", n, s, &got[0] == start, fits)
				}
				if fits {
					inPlace++
				} else {
					anew++
				}
			}
			if cap(got) != len(got) {
				t.Fatalf("frame %d step %d: the body has room past its end (%d of %d): code outside could append into it", n, s, len(got), cap(got))
			}
			body = got
		}
	}
}

// TestUpdateSharedBody: messages that share one body (Benthos copies a
// message without its body for a broker's outputs or a branch) each get
// their own changes, whatever order they are patched in and however many
// at once: one patch goes in place, the others encode the frame anew, and
// none sees another's.
func TestUpdateSharedBody(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 50 {
		rows := 1 + rng.IntN(40)
		msg, body := newFrameMessage(t, rng, rows)
		copies := 2 + rng.IntN(6)
		msgs, changes, want := make([]*service.Message, copies), make([]step, copies), make([]string, copies)
		for c := range msgs {
			msgs[c], changes[c] = msg.Copy(), randomStep(rng, rows)
			ref := mustDecode(t, body)
			changes[c](ref)
			want[c] = view(mustDecode(t, ref.Append(nil, nil)))
		}
		var wg sync.WaitGroup
		for c := range msgs {
			wg.Go(func() {
				f, err := Decode(body)
				if err != nil {
					t.Error(err)
					return
				}
				changes[c](f)
				Update(msgs[c], body, f)
			})
		}
		wg.Wait()
		inPlace := 0
		for c, m := range msgs {
			got, err := m.AsBytes()
			if err != nil {
				t.Fatal(err)
			}
			if &got[0] == &body[0] && len(got) > len(body) {
				inPlace++
			}
			if g := view(mustDecode(t, got)); g != want[c] {
				t.Fatalf("frame %d copy %d:\n%s\nwant:\n%s", n, c, g, want[c])
			}
		}
		if inPlace > 1 {
			t.Fatalf("frame %d: %d copies patched the shared buffer in place", n, inPlace)
		}
		if orig, _ := msg.AsBytes(); view(mustDecode(t, orig)) != view(mustDecode(t, body)) {
			t.Fatalf("frame %d: the original message changed", n)
		}
	}
}

// TestUpdateWithoutRoom: a frame sent without room (a plain message, or a
// body that is not the buffer NewMessage recorded) is encoded anew.
func TestUpdateWithoutRoom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	_, body := newFrameMessage(t, rng, 20)
	for _, tc := range []struct {
		name string
		msg  *service.Message
		body []byte
	}{
		{"plain message", service.NewMessage(body), body},
		{"a copy of the body", NewMessage(body).WithContext(NewMessage(append([]byte(nil), body...)).Context()), body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustDecode(t, tc.body)
			f.Reject(3, "late")
			Update(tc.msg, tc.body, f)
			got, _ := tc.msg.AsBytes()
			if &got[0] == &tc.body[0] {
				t.Fatal("patched in place a buffer with no room recorded for it")
			}
			if reason, _ := mustDecode(t, got).Reason(3); reason != "late" && !mustDecode(t, tc.body).Rejected(3) {
				t.Fatalf("row 3's reason %q, want late", reason)
			}
		})
	}
}

// TestDecodePatchErrors: bytes after a frame that are no whole patch are
// an error naming what is wrong.
func TestDecodePatchErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	msg, body := newFrameMessage(t, rng, 10)
	f := mustDecode(t, body)
	for i := range f.Rows {
		if !f.Rejected(i) {
			f.Reject(i, "late")
			break
		}
	}
	b := Builder{Type: abi.TypeInt}
	for i := range 10 {
		b.Int(int64(i))
	}
	f.Set(b.Column("n", false))
	Update(msg, body, f)
	patched, _ := msg.AsBytes()
	for _, tc := range []struct {
		name, want string
		body       []byte
	}{
		{"junk after the frame", "no patch", append(append([]byte(nil), body...), "12345678"...)},
		{"a patch cut short", "malformed frame: patch", patched[:len(patched)-8]},
		{"a patch's reject past the rows", "rejects row", func() []byte {
			p := append([]byte(nil), patched...)
			// The patch's first rejected row, after its header and the
			// column's name ("n") and padding.
			at := len(body) + len(patchMagic) + 8 + 4 + len("n")
			at += (8 - at%8) % 8
			p[at] = 200
			return p
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
