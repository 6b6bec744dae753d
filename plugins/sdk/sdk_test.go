package sdk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// These tests run the SDK natively, on the host: they feed Init and Process
// the bytes the agent would write (built with abi.Writer exactly as
// agent/wasm/batch.go builds them) and decode the responses as the agent
// does.

// reset forgets every registration and all reused state, so that each test
// starts like a freshly instantiated module.
func reset() {
	onConfig, msgHandler, batchHandle = nil, nil, nil
	inFields, outFields = nil, nil
	registered = ""
	resp = abi.Writer{}
	message = Message{}
	batch = Batch{}
	boolScratch = nil
	stateful, stateView = false, nil
	sequential = false
}

func fresh(t *testing.T) {
	t.Helper()
	reset()
	t.Cleanup(reset)
}

// aligned copies b into 8-aligned memory, as sluice_v1_alloc hands the
// host, so the SDK's in-place column views are aligned (and pass checkptr).
func aligned(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8+1)
	out := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:len(b)]
	copy(out, b)
	return out
}

// docHex returns the ```hex NAME blocks of ABI.md by name (the format is
// checked strictly by the abi package's tests).
func docHex(t *testing.T) map[string][]byte {
	t.Helper()
	md, err := os.ReadFile("ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string][]byte{}
	var name string
	var cur []byte
	in := false
	for _, line := range strings.Split(string(md), "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```hex "):
			name, cur, in = strings.TrimSpace(strings.TrimPrefix(line, "```hex ")), nil, true
		case in && strings.TrimSpace(line) == "```":
			blocks[name], in = cur, false
		case in:
			_, rest, _ := strings.Cut(line, "  ")
			hexPart, _, _ := strings.Cut(strings.TrimLeft(rest, " "), "  ")
			b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
			if err != nil {
				t.Fatalf("ABI.md block %s: %q: %v", name, line, err)
			}
			cur = append(cur, b...)
		}
	}
	return blocks
}

func mustDoc(t *testing.T, doc map[string][]byte, name string) []byte {
	t.Helper()
	b, ok := doc[name]
	if !ok {
		t.Fatalf("ABI.md has no hex block %q", name)
	}
	return b
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\ngot\n%swant\n%s", what, hex.Dump(got), hex.Dump(want))
	}
}

// ---- requests, as the host builds them ----

type inMsg struct {
	body string
	meta [][2]string
}

// bytesRequest encodes a batch as agent/wasm processBytes does.
func bytesRequest(msgs ...inMsg) []byte {
	var w abi.Writer
	w.U32(uint32(len(msgs)))
	w.U32(0)
	for _, m := range msgs {
		w.Bytes([]byte(m.body))
		w.U32(uint32(len(m.meta)))
		for _, kv := range m.meta {
			w.String(kv[0])
			w.String(kv[1])
		}
	}
	return aligned(w.Buf)
}

// columnsRequest encodes rows as agent/wasm processColumns does: one column
// per field, values already converted by the host (int64, float64, bool,
// string, time.Time), nil for an absent value.
func columnsRequest(t *testing.T, fields []abi.Field, rows [][]any) []byte {
	t.Helper()
	var w abi.Writer
	w.U32(uint32(len(rows)))
	w.U32(0)
	for c, f := range fields {
		var valid, fixed []byte
		var strs [][]byte
		for _, row := range rows {
			var u uint64
			var s []byte
			switch v := row[c].(type) {
			case nil:
			case int64:
				u = uint64(v)
			case float64:
				u = math.Float64bits(v)
			case bool:
				if v {
					u = 1
				}
			case string:
				s = []byte(v)
			case time.Time:
				u = uint64(v.UnixNano())
			default:
				t.Fatalf("field %s: unsupported test value %T", f.Name, v)
			}
			if row[c] != nil {
				valid = append(valid, 1)
			} else {
				valid = append(valid, 0)
			}
			switch f.Type.Fixed() {
			case 8:
				fixed = binary.LittleEndian.AppendUint64(fixed, u)
			case 1:
				fixed = append(fixed, byte(u))
			default:
				strs = append(strs, s)
			}
		}
		abi.AppendColumn(&w, f.Type, valid, fixed, strs)
	}
	return aligned(w.Buf)
}

// ---- responses, decoded as the host decodes them ----

// callError decodes a non-OK response.
func callError(t *testing.T, out []byte) (abi.Status, string) {
	t.Helper()
	r := abi.NewReader(out)
	st := abi.Status(r.U32())
	if st == abi.StatusOK {
		t.Fatalf("status OK, want an error")
	}
	msg := r.Bytes()
	if r.Err() != nil {
		t.Fatalf("error response without a message: %v", r.Err())
	}
	return st, string(msg)
}

func wantError(t *testing.T, out []byte, status abi.Status, contains string) string {
	t.Helper()
	st, msg := callError(t, out)
	if st != status || !strings.Contains(msg, contains) {
		t.Fatalf("got status %d %q, want status %d with %q", st, msg, status, contains)
	}
	return msg
}

func okReader(t *testing.T, out []byte) *abi.Reader {
	t.Helper()
	r := abi.NewReader(out)
	if st := abi.Status(r.U32()); st != abi.StatusOK {
		msg := r.Bytes()
		t.Fatalf("status %d: %s", st, msg)
	}
	return r
}

func descriptorOf(t *testing.T, out []byte) abi.Descriptor {
	t.Helper()
	r := okReader(t, out)
	d, err := abi.ReadDescriptor(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Remaining() != 0 {
		t.Errorf("%d bytes after the descriptor", r.Remaining())
	}
	return d
}

type outMsg struct {
	action abi.Action
	body   string // replace
	reason string // fail
	meta   [][2]string
}

func decodeBytes(t *testing.T, out []byte, n int) []outMsg {
	t.Helper()
	r := okReader(t, out)
	if got := int(r.U32()); got != n {
		t.Fatalf("%d results for %d messages", got, n)
	}
	res := make([]outMsg, n)
	for i := range res {
		m := &res[i]
		m.action = abi.Action(r.U8())
		switch m.action {
		case abi.ActionKeep, abi.ActionDrop:
		case abi.ActionReplace:
			m.body = string(r.Bytes())
		case abi.ActionFail:
			m.reason = string(r.Bytes())
		default:
			t.Fatalf("message %d: unknown action %d", i, m.action)
		}
		for k := r.U32(); k > 0 && r.Err() == nil; k-- {
			m.meta = append(m.meta, [2]string{string(r.Bytes()), string(r.Bytes())})
		}
	}
	if r.Err() != nil || r.Remaining() != 0 {
		t.Fatalf("response: err %v, %d bytes left", r.Err(), r.Remaining())
	}
	return res
}

type colsOut struct {
	actions []abi.Action
	cols    [][]any // [field][row]: int64, float64, bool, string, time.Time; nil if unset
	fails   [][2]string
	metas   [][3]string
}

func decodeColumns(t *testing.T, out []byte, fields []abi.Field, rows int) colsOut {
	t.Helper()
	r := okReader(t, out)
	if got := int(r.U32()); got != rows {
		t.Fatalf("%d rows back for %d sent", got, rows)
	}
	var res colsOut
	for _, a := range r.Raw(rows) {
		res.actions = append(res.actions, abi.Action(a))
	}
	r.Align8()
	if r.Offset()%8 != 0 {
		t.Fatalf("actions end at %d", r.Offset())
	}
	for _, f := range fields {
		c := abi.ReadColumn(r, f.Type, rows)
		if r.Err() != nil {
			t.Fatalf("output %s: %v", f.Name, r.Err())
		}
		vals := make([]any, rows)
		for i := range vals {
			if c.Valid[i] == 0 {
				continue
			}
			if c.Valid[i] != 1 {
				t.Errorf("output %s row %d: validity byte %d, want 0 or 1", f.Name, i, c.Valid[i])
			}
			u := func() uint64 { return binary.LittleEndian.Uint64(c.Fixed[i*8:]) }
			switch f.Type {
			case abi.TypeInt:
				vals[i] = int64(u())
			case abi.TypeFloat:
				vals[i] = math.Float64frombits(u())
			case abi.TypeBool:
				vals[i] = c.Fixed[i] != 0
			case abi.TypeTime:
				vals[i] = time.Unix(0, int64(u())).UTC()
			case abi.TypeString:
				s, ok := c.Str(i)
				if !ok {
					t.Fatalf("output %s row %d: bad offsets", f.Name, i)
				}
				vals[i] = string(s)
			}
		}
		res.cols = append(res.cols, vals)
	}
	for n := r.U32(); n > 0 && r.Err() == nil; n-- {
		res.fails = append(res.fails, [2]string{strconv.Itoa(int(r.U32())), string(r.Bytes())})
	}
	for n := r.U32(); n > 0 && r.Err() == nil; n-- {
		res.metas = append(res.metas, [3]string{strconv.Itoa(int(r.U32())), string(r.Bytes()), string(r.Bytes())})
	}
	if r.Err() != nil || r.Remaining() != 0 {
		t.Fatalf("response: err %v, %d bytes left", r.Err(), r.Remaining())
	}
	return res
}

// ---- init ----

func TestInitConfig(t *testing.T) {
	type conf struct {
		Tag string `json:"tag"`
		N   int    `json:"n"`
	}
	for _, tc := range []struct {
		name, raw string
		want      conf
		err       string
	}{
		{"object", `{"tag":"x","n":3}`, conf{"x", 3}, ""},
		{"absent: untouched", ``, conf{"default", 7}, ""},
		{"null: untouched", `null`, conf{"default", 7}, ""},
		{"unknown field", `{"tga":"x"}`, conf{}, `config: json: unknown field "tga"`},
		{"wrong type", `{"tag":1}`, conf{}, "config: json: cannot unmarshal number"},
		{"not an object", `[1]`, conf{}, "config: json: cannot unmarshal array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			got := conf{"default", 7}
			var raw []byte
			OnConfig(func(c Config) error {
				raw = append([]byte(nil), c.Raw()...)
				return c.Decode(&got)
			})
			HandleMessage(func(*Message) error { return nil })
			out := Init([]byte(tc.raw))
			if string(raw) != tc.raw {
				t.Errorf("Config.Raw() = %q, want %q", raw, tc.raw)
			}
			if tc.err != "" {
				// Decode's errors are the config's: loading again with
				// it cannot succeed, so the status says not to retry.
				wantError(t, out, abi.StatusInvalidConfig, tc.err)
				return
			}
			if d := descriptorOf(t, out); d.Mode != abi.ModeBytes {
				t.Errorf("mode %d", d.Mode)
			}
			if got != tc.want {
				t.Errorf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	t.Run("no handler", func(t *testing.T) {
		fresh(t)
		wantError(t, Init(nil), abi.StatusError, "no handler registered: call sdk.HandleMessage or sdk.HandleBatch in init()")
	})
	t.Run("fields with HandleMessage", func(t *testing.T) {
		fresh(t)
		ReadInt("n")
		HandleMessage(func(*Message) error { return nil })
		wantError(t, Init(nil), abi.StatusError, "declared fields need HandleBatch")
	})
	t.Run("output fields with HandleMessage", func(t *testing.T) {
		fresh(t)
		WriteString("s")
		HandleMessage(func(*Message) error { return nil })
		wantError(t, Init(nil), abi.StatusError, "declared fields need HandleBatch")
	})
	t.Run("OnConfig error: the bytes of ABI.md", func(t *testing.T) {
		fresh(t)
		OnConfig(func(Config) error { return errors.New("bad config") })
		HandleMessage(func(*Message) error { return nil })
		sameBytes(t, "error-response", Init([]byte(`{}`)), mustDoc(t, docHex(t), "error-response"))
	})
	t.Run("config without OnConfig", func(t *testing.T) {
		for _, cfg := range []string{``, `null`, ` {} `} {
			fresh(t)
			HandleMessage(func(*Message) error { return nil })
			if d := descriptorOf(t, Init([]byte(cfg))); d.Mode != abi.ModeBytes {
				t.Errorf("config %q: mode %d", cfg, d.Mode)
			}
		}
		fresh(t)
		HandleMessage(func(*Message) error { return nil })
		wantError(t, Init([]byte(`{"tag":"x"}`)), abi.StatusInvalidConfig, "this plugin takes no config")
	})
	// What the plugin's OnConfig says of its error decides whether a run
	// that fails on it is retried (status 1) or not (status 3).
	for _, tc := range []struct {
		name   string
		err    error
		status abi.Status
	}{
		{"OnConfig error marked invalid", InvalidConfig(errors.New("config: source: \"x\" is not a source")), abi.StatusInvalidConfig},
		{"marked error wrapped further", fmt.Errorf("while configuring: %w", InvalidConfig(errors.New("bad bins"))), abi.StatusInvalidConfig},
		{"unmarked error: may pass next time", fmt.Errorf("model_file: %w", os.ErrNotExist), abi.StatusError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			OnConfig(func(Config) error { return tc.err })
			HandleMessage(func(*Message) error { return nil })
			wantError(t, Init(nil), tc.status, tc.err.Error())
		})
	}
	if InvalidConfig(nil) != nil {
		t.Error("InvalidConfig(nil) is not nil")
	}
	t.Run("OnConfig panic is fatal", func(t *testing.T) {
		fresh(t)
		OnConfig(func(Config) error { panic("config exploded") })
		HandleMessage(func(*Message) error { return nil })
		msg := wantError(t, Init(nil), abi.StatusFatal, "panic: config exploded\n")
		if !strings.Contains(msg, "goroutine ") || !strings.Contains(msg, "sdk_test.go") {
			t.Errorf("no stack in %q", msg)
		}
	})
}

func TestRegisterTwicePanics(t *testing.T) {
	fresh(t)
	HandleMessage(func(*Message) error { return nil })
	defer func() {
		r := recover()
		if r != "sdk: HandleBatch called after HandleMessage: a plugin has one handler" {
			t.Errorf("recovered %v", r)
		}
	}()
	HandleBatch(func(*Batch) error { return nil })
	t.Error("a second handler was accepted")
}

func TestInitDescriptor(t *testing.T) {
	t.Run("bytes mode: the bytes of ABI.md", func(t *testing.T) {
		fresh(t)
		HandleMessage(func(*Message) error { return nil })
		sameBytes(t, "init-response-bytes", Init(nil), mustDoc(t, docHex(t), "init-response-bytes"))
	})
	t.Run("columns mode: the bytes of ABI.md", func(t *testing.T) {
		fresh(t)
		ReadTime("ts", Required)
		WriteInt("hour")
		HandleBatch(func(*Batch) error { return nil })
		sameBytes(t, "descriptor", Init(nil), mustDoc(t, docHex(t), "descriptor"))
	})
	t.Run("every type, Required where given", func(t *testing.T) {
		fresh(t)
		ReadInt("a.n", Required)
		ReadFloat("x")
		ReadBool("b", Required)
		ReadString("s")
		ReadTime("t", Required)
		WriteInt("o.n")
		WriteFloat("o.x")
		WriteBool("o.b")
		WriteString("o.s")
		WriteTime("o.t")
		HandleBatch(func(*Batch) error { return nil })
		d := descriptorOf(t, Init(nil))
		want := abi.Descriptor{
			Mode: abi.ModeColumns,
			In: []abi.Field{
				{Name: "a.n", Type: abi.TypeInt, Required: true},
				{Name: "x", Type: abi.TypeFloat},
				{Name: "b", Type: abi.TypeBool, Required: true},
				{Name: "s", Type: abi.TypeString},
				{Name: "t", Type: abi.TypeTime, Required: true},
			},
			Out: []abi.Field{
				{Name: "o.n", Type: abi.TypeInt},
				{Name: "o.x", Type: abi.TypeFloat},
				{Name: "o.b", Type: abi.TypeBool},
				{Name: "o.s", Type: abi.TypeString},
				{Name: "o.t", Type: abi.TypeTime},
			},
		}
		if !reflect.DeepEqual(d, want) {
			t.Errorf("descriptor\n got %+v\nwant %+v", d, want)
		}
	})
	t.Run("fields declared from the config", func(t *testing.T) {
		fresh(t)
		OnConfig(func(c Config) error {
			var v struct{ Field string }
			if err := c.Decode(&v); err != nil {
				return err
			}
			ReadString(v.Field, Required)
			return nil
		})
		HandleBatch(func(*Batch) error { return nil })
		d := descriptorOf(t, Init([]byte(`{"Field":"user.name"}`)))
		if len(d.In) != 1 || d.In[0] != (abi.Field{Name: "user.name", Type: abi.TypeString, Required: true}) || len(d.Out) != 0 {
			t.Errorf("descriptor %+v", d)
		}
	})
	t.Run("columns mode without fields", func(t *testing.T) {
		fresh(t)
		HandleBatch(func(*Batch) error { return nil })
		if d := descriptorOf(t, Init(nil)); d.Mode != abi.ModeColumns || len(d.In)+len(d.Out) != 0 {
			t.Errorf("descriptor %+v", d)
		}
	})
}

// ---- bytes mode ----

func TestProcessBytes(t *testing.T) {
	fresh(t)
	HandleMessage(func(m *Message) error {
		body := string(m.Body())
		switch {
		case body == "keep":
		case body == "drop":
			m.Drop()
		case body == "fail":
			m.Fail("told to fail")
		case body == "error":
			return errors.New("handler error")
		case body == "replace-then-error":
			m.SetBody([]byte("never seen"))
			return errors.New("changed my mind")
		case strings.HasPrefix(body, "upper:"):
			m.SetBody(bytes.ToUpper(m.Body()[len("upper:"):]))
		case body == "empty":
			m.SetBody(nil)
		case body == "meta":
			v, ok := m.Meta("in")
			_, missing := m.Meta("nope")
			m.SetMeta("seen", v+strconv.FormatBool(ok)+strconv.FormatBool(missing))
			var keys []string
			m.MetaKeys(func(k, v []byte) { keys = append(keys, string(k)+"="+string(v)) })
			m.SetMeta("keys", strings.Join(keys, ","))
			m.SetMeta("", "")
		case body == "fail+meta":
			m.SetMeta("why", "because")
			m.Fail("with metadata")
		}
		return nil
	})
	if d := descriptorOf(t, Init(nil)); d.Mode != abi.ModeBytes {
		t.Fatalf("mode %d", d.Mode)
	}
	msgs := []inMsg{
		{body: "keep"},
		{body: "drop"},
		{body: "fail"},
		{body: "error"},
		{body: "replace-then-error"},
		{body: "upper:abc"},
		{body: "empty"},
		{body: "meta", meta: [][2]string{{"in", "v1"}, {"other", ""}}},
		{body: "fail+meta"},
		{body: ""},
	}
	got := decodeBytes(t, Process(bytesRequest(msgs...)), len(msgs))
	want := []outMsg{
		{action: abi.ActionKeep},
		{action: abi.ActionDrop},
		{action: abi.ActionFail, reason: "told to fail"},
		{action: abi.ActionFail, reason: "handler error"},
		{action: abi.ActionFail, reason: "changed my mind"},
		{action: abi.ActionReplace, body: "ABC"},
		{action: abi.ActionReplace, body: ""},
		{action: abi.ActionKeep, meta: [][2]string{{"seen", "v1truefalse"}, {"keys", "in=v1,other="}, {"", ""}}},
		{action: abi.ActionFail, reason: "with metadata", meta: [][2]string{{"why", "because"}}},
		{action: abi.ActionKeep},
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("message %d (%q):\n got %+v\nwant %+v", i, msgs[i].body, got[i], want[i])
		}
	}

	// The Message is reused: nothing of the last batch leaks into the next.
	got = decodeBytes(t, Process(bytesRequest(inMsg{body: "keep"})), 1)
	if !reflect.DeepEqual(got[0], outMsg{action: abi.ActionKeep}) {
		t.Errorf("second batch: %+v", got[0])
	}
}

// TestBytesDocExample runs the `tag` plugin of ABI.md §11.2 on its request.
func TestBytesDocExample(t *testing.T) {
	fresh(t)
	doc := docHex(t)
	var cfg struct {
		Tag string `json:"tag"`
	}
	OnConfig(func(c Config) error { return c.Decode(&cfg) })
	HandleMessage(func(m *Message) error {
		if string(m.Body()) == "bye" {
			m.Fail("no goodbyes")
			return nil
		}
		m.SetBody(bytes.ToUpper(m.Body()))
		m.SetMeta("tag", cfg.Tag)
		return nil
	})
	sameBytes(t, "init-response-bytes", Init(aligned(mustDoc(t, doc, "init-request"))), mustDoc(t, doc, "init-response-bytes"))
	req := mustDoc(t, doc, "bytes-request")
	sameBytes(t, "bytes-request", bytesRequest(inMsg{"hello", [][2]string{{"src", "a"}}}, inMsg{body: "bye"}), req)
	sameBytes(t, "bytes-response", Process(aligned(req)), mustDoc(t, doc, "bytes-response"))
}

func TestPanicIsFatal(t *testing.T) {
	t.Run("HandleMessage", func(t *testing.T) {
		fresh(t)
		HandleMessage(func(m *Message) error {
			if string(m.Body()) == "boom" {
				panic("boom")
			}
			if string(m.Body()) == "error value" {
				panic(errors.New("an error value"))
			}
			return nil
		})
		Init(nil)
		msg := wantError(t, Process(bytesRequest(inMsg{body: "ok"}, inMsg{body: "boom"})), abi.StatusFatal, "panic: boom\n")
		if !strings.Contains(msg, "goroutine ") || !strings.Contains(msg, "sdk_test.go") {
			t.Errorf("no stack in %q", msg)
		}
		wantError(t, Process(bytesRequest(inMsg{body: "error value"})), abi.StatusFatal, "panic: an error value\n")
		// What a recovered panic leaves behind is not the host's problem:
		// the SDK still answers the next call.
		decodeBytes(t, Process(bytesRequest(inMsg{body: "ok"})), 1)
	})
	t.Run("HandleBatch", func(t *testing.T) {
		fresh(t)
		in := ReadInt("n")
		HandleBatch(func(b *Batch) error {
			in.Get(b, b.Len()) // index out of range
			return nil
		})
		Init(nil)
		req := columnsRequest(t, inFields, [][]any{{int64(1)}})
		wantError(t, Process(req), abi.StatusFatal, "panic: runtime error: index out of range")
	})
}

// ---- columns mode ----

var (
	t0 = time.Date(2024, 3, 9, 14, 5, 0, 123456789, time.UTC)
	t2 = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
)

// TestColumnsEveryType reads every type and writes every type, with present
// and absent rows on both sides.
func TestColumnsEveryType(t *testing.T) {
	fresh(t)
	var (
		inN = ReadInt("n")
		inX = ReadFloat("x")
		inB = ReadBool("b")
		inS = ReadString("s")
		inT = ReadTime("t")

		outN = WriteInt("n2")
		outX = WriteFloat("neg_x")
		outB = WriteBool("not_b")
		outS = WriteString("s_upper")
		outT = WriteTime("t_plus_1h")
		outE = WriteString("s_echo")
	)
	type seen struct {
		ns, ts []int64
		xs     []float64
	}
	var got seen
	HandleBatch(func(b *Batch) error {
		got.ns = append([]int64(nil), inN.Values(b)...)
		got.xs = append([]float64(nil), inX.Values(b)...)
		got.ts = append([]int64(nil), inT.Values(b)...)
		for i := 0; i < b.Len(); i++ {
			if v, ok := inN.Get(b, i); ok {
				outN.Set(b, i, v*2)
			}
			if v, ok := inX.Get(b, i); ok {
				outX.Set(b, i, -v)
			}
			if v, ok := inB.Get(b, i); ok {
				outB.Set(b, i, !v)
			}
			if v, ok := inS.Get(b, i); ok {
				outS.Set(b, i, bytes.ToUpper(v))
				outE.Set(b, i, v) // aliases the request: copied into the response
			}
			if v, ok := inT.Get(b, i); ok {
				if v.Location() != time.UTC {
					t.Errorf("row %d: time in %v, want UTC", i, v.Location())
				}
				outT.Set(b, i, v.Add(time.Hour))
			}
			if !inT.Valid(b, i) {
				if n, ok := inT.Nanos(b, i); ok || n != 0 {
					t.Errorf("row %d: absent time read as %d, %v", i, n, ok)
				}
			}
		}
		return nil
	})
	descriptorOf(t, Init(nil))

	rows := [][]any{
		{int64(21), 1.5, true, "héllo", t0},
		{nil, nil, nil, nil, nil},
		{int64(math.MinInt64 / 2), -0.25, false, "", t2},
	}
	out := decodeColumns(t, Process(columnsRequest(t, inFields, rows)), outFields, len(rows))

	if want := []int64{21, 0, math.MinInt64 / 2}; !reflect.DeepEqual(got.ns, want) {
		t.Errorf("InInt.Values = %v, want %v (absent rows zero)", got.ns, want)
	}
	if want := []float64{1.5, 0, -0.25}; !reflect.DeepEqual(got.xs, want) {
		t.Errorf("InFloat.Values = %v, want %v", got.xs, want)
	}
	if want := []int64{t0.UnixNano(), 0, t2.UnixNano()}; !reflect.DeepEqual(got.ts, want) {
		t.Errorf("InTime.Values = %v, want %v", got.ts, want)
	}
	if want := []abi.Action{0, 0, 0}; !reflect.DeepEqual(out.actions, want) {
		t.Errorf("actions %v", out.actions)
	}
	wantCols := [][]any{
		{int64(42), nil, int64(math.MinInt64 / 2 * 2)},
		{-1.5, nil, 0.25},
		{false, nil, true},
		{"HÉLLO", nil, ""},
		{t0.Add(time.Hour), nil, t2.Add(time.Hour)},
		{"héllo", nil, ""},
	}
	checkOutputs(t, out.cols, wantCols)
	if len(out.fails)+len(out.metas) != 0 {
		t.Errorf("fails %v metas %v", out.fails, out.metas)
	}
}

// TestColumnsBulk: a handler that reads a string column raw and fills
// int and float outputs through Values gets the response Set would make:
// rows it marks set carry their values, the others stay unset, and a
// row absent from the request reads as an empty range.
func TestColumnsBulk(t *testing.T) {
	fresh(t)
	var (
		inS  = ReadString("s")
		outN = WriteInt("len")
		outX = WriteFloat("half")
	)
	var texts []string
	HandleBatch(func(b *Batch) error {
		valid, offs, data := inS.Raw(b)
		ns, nSet := outN.Values(b)
		xs, xSet := outX.Values(b)
		for i := range b.Len() {
			text := data[offs[i]:offs[i+1]]
			texts = append(texts, string(text))
			if valid[i] == 0 {
				continue
			}
			ns[i], nSet[i] = int64(len(text)), 1
			if len(text)%2 == 0 {
				xs[i], xSet[i] = float64(len(text))/2, 1
			}
		}
		return nil
	})
	descriptorOf(t, Init(nil))
	rows := [][]any{{"abcd"}, {nil}, {"abc"}, {""}}
	out := decodeColumns(t, Process(columnsRequest(t, inFields, rows)), outFields, len(rows))
	if want := []string{"abcd", "", "abc", ""}; !reflect.DeepEqual(texts, want) {
		t.Errorf("InString.Raw rows %q, want %q", texts, want)
	}
	wantCols := [][]any{
		{int64(4), nil, int64(3), int64(0)},
		{2.0, nil, nil, 0.0},
	}
	checkOutputs(t, out.cols, wantCols)
}

// checkOutputs compares a response's output columns with want, a row's
// nil standing for unset.
func checkOutputs(t *testing.T, got, want [][]any) {
	t.Helper()
	for c, f := range outFields {
		if !reflect.DeepEqual(got[c], want[c]) {
			t.Errorf("output %s: got %v, want %v (nil: unset)", f.Name, got[c], want[c])
		}
	}
}

func TestColumnsActions(t *testing.T) {
	fresh(t)
	in := ReadString("action", Required)
	out := WriteInt("row")
	HandleBatch(func(b *Batch) error {
		for i := 0; i < b.Len(); i++ {
			a, _ := in.Get(b, i)
			switch string(a) {
			case "drop":
				b.Drop(i)
			case "fail":
				b.Fail(i, "row "+strconv.Itoa(i)+" failed")
				b.SetMeta(i, "failed", "yes")
			case "set":
				out.Set(b, i, int64(i))
				b.SetMeta(i, "k", "v"+strconv.Itoa(i))
				b.SetMeta(i, "k2", "")
			}
		}
		return nil
	})
	descriptorOf(t, Init(nil))
	rows := [][]any{{"set"}, {"drop"}, {"fail"}, {"keep"}, {"fail"}, {"set"}}
	got := decodeColumns(t, Process(columnsRequest(t, inFields, rows)), outFields, len(rows))
	want := colsOut{
		actions: []abi.Action{abi.ActionKeep, abi.ActionDrop, abi.ActionFail, abi.ActionKeep, abi.ActionFail, abi.ActionKeep},
		cols:    [][]any{{int64(0), nil, nil, nil, nil, int64(5)}},
		fails:   [][2]string{{"2", "row 2 failed"}, {"4", "row 4 failed"}},
		metas: [][3]string{
			{"0", "k", "v0"}, {"0", "k2", ""},
			{"2", "failed", "yes"},
			{"4", "failed", "yes"},
			{"5", "k", "v5"}, {"5", "k2", ""},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}

	// Everything is reset for the next batch: no actions, failures,
	// metadata or output values carry over.
	rows = [][]any{{"keep"}, {"keep"}}
	got = decodeColumns(t, Process(columnsRequest(t, inFields, rows)), outFields, len(rows))
	want = colsOut{actions: []abi.Action{0, 0}, cols: [][]any{{nil, nil}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("next batch:\n got %+v\nwant %+v", got, want)
	}
}

// TestColumnsDocExample runs the `ts_hour` plugin of ABI.md §11.1 on its
// request.
func TestColumnsDocExample(t *testing.T) {
	fresh(t)
	doc := docHex(t)
	ts := ReadTime("ts", Required)
	hour := WriteInt("hour")
	HandleBatch(func(b *Batch) error {
		for i := 0; i < b.Len(); i++ {
			t, _ := ts.Get(b, i)
			if t.Year() < 2024 {
				b.Fail(i, "before 2024")
				continue
			}
			hour.Set(b, i, int64(t.Hour()))
		}
		return nil
	})
	sameBytes(t, "descriptor", Init(nil), mustDoc(t, doc, "descriptor"))
	req := mustDoc(t, doc, "columns-request")
	sameBytes(t, "columns-request", columnsRequest(t, inFields, [][]any{
		{time.Date(2024, 3, 9, 14, 5, 0, 0, time.UTC)},
		{time.Unix(1700000000, 0)},
	}), req)
	sameBytes(t, "columns-response", Process(aligned(req)), mustDoc(t, doc, "columns-response"))
}

func TestColumnsMixedDocRequest(t *testing.T) {
	fresh(t)
	b := ReadBool("b")
	s := ReadString("s")
	f := ReadFloat("f")
	var got []string
	HandleBatch(func(bt *Batch) error {
		for i := 0; i < bt.Len(); i++ {
			bv, bok := b.Get(bt, i)
			sv, sok := s.Get(bt, i)
			fv, fok := f.Get(bt, i)
			got = append(got, strconv.FormatBool(bv)+strconv.FormatBool(bok)+" "+string(sv)+strconv.FormatBool(sok)+" "+strconv.FormatFloat(fv, 'g', -1, 64)+strconv.FormatBool(fok))
		}
		return nil
	})
	Init(nil)
	decodeColumns(t, Process(aligned(mustDoc(t, docHex(t), "columns-request-mixed"))), nil, 2)
	if want := []string{"truetrue abtrue 0.5true", "falsetrue false 0false"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestColumnsOutputsOnly(t *testing.T) {
	fresh(t)
	out := WriteBool("odd")
	tm := WriteTime("at")
	HandleBatch(func(b *Batch) error {
		for i := 0; i < b.Len(); i++ {
			out.Set(b, i, i%2 == 1)
		}
		tm.SetNanos(b, 2, -1)
		return nil
	})
	descriptorOf(t, Init(nil))
	got := decodeColumns(t, Process(columnsRequest(t, nil, make([][]any, 3))), outFields, 3)
	if want := []any{false, true, false}; !reflect.DeepEqual(got.cols[0], want) {
		t.Errorf("odd = %v, want %v", got.cols[0], want)
	}
	if want := []any{nil, nil, time.Unix(0, -1).UTC()}; !reflect.DeepEqual(got.cols[1], want) {
		t.Errorf("at = %v, want %v", got.cols[1], want)
	}
}

func TestColumnsHandlerError(t *testing.T) {
	fresh(t)
	ReadInt("n")
	WriteInt("m")
	HandleBatch(func(*Batch) error { return errors.New("the whole batch is wrong") })
	Init(nil)
	out := Process(columnsRequest(t, inFields, [][]any{{int64(1)}, {nil}}))
	if st, msg := callError(t, out); st != abi.StatusError || msg != "the whole batch is wrong" {
		t.Errorf("got status %d %q", st, msg)
	}
}

// ---- malformed requests ----

func TestMalformedRequests(t *testing.T) {
	header := func(n uint32) []byte {
		return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, n), 0)
	}
	t.Run("bytes", func(t *testing.T) {
		fresh(t)
		called := 0
		HandleMessage(func(*Message) error { called++; return nil })
		Init(nil)
		one := bytesRequest(inMsg{body: "x", meta: [][2]string{{"k", "v"}}})
		for name, req := range map[string][]byte{
			"empty":                     nil,
			"short header":              {1, 0, 0},
			"count without messages":    header(2),
			"one message of two":        append(header(2), one[8:]...),
			"body longer than the rest": append(header(1), 9, 0, 0, 0, 'x'),
			"metadata cut short":        one[:len(one)-1],
			"huge metadata count":       append(header(1), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff),
		} {
			t.Run(name, func(t *testing.T) {
				wantError(t, Process(aligned(req)), abi.StatusError, "sdk: malformed request from host: abi: truncated")
			})
		}
		if called > 2 {
			t.Errorf("handler called %d times on malformed requests", called)
		}
	})
	t.Run("columns", func(t *testing.T) {
		fresh(t)
		ReadInt("n")
		ReadString("s")
		called := false
		HandleBatch(func(*Batch) error { called = true; return nil })
		Init(nil)
		good := columnsRequest(t, inFields, [][]any{{int64(1), "abc"}, {int64(2), nil}})
		for n := 0; n < len(good); n++ {
			wantError(t, Process(aligned(good[:n])), abi.StatusError, "sdk: malformed request from host: abi: truncated")
		}
		wantError(t, Process(aligned(header(1000))), abi.StatusError, "malformed request")
		// Row 1's string ends before it starts: s's offsets are at 40
		// (header 8, n's validity 8 and values 16, s's validity 8).
		bad := aligned(columnsRequest(t, inFields, [][]any{{int64(1), "abc"}, {int64(2), "de"}}))
		if got := binary.LittleEndian.Uint32(bad[44:]); got != 3 {
			t.Fatalf("row 1's offset is %d, want 3: the layout changed", got)
		}
		binary.LittleEndian.PutUint32(bad[44:], 6)
		wantError(t, Process(bad), abi.StatusError, `sdk: malformed request from host: input field "s" row 1: string offsets out of order`)
		if called {
			t.Error("handler called on a malformed request")
		}
		decodeColumns(t, Process(good), outFields, 2)
		if !called {
			t.Error("handler not called on the complete request")
		}
	})
	t.Run("no handler", func(t *testing.T) {
		fresh(t)
		wantError(t, Process(bytesRequest(inMsg{body: "x"})), abi.StatusError, "no handler registered")
	})
}

func TestLogOnHost(t *testing.T) {
	// Natively the SDK logs to stderr; it must not need a host import.
	Log(LevelDebug, "")
	Logf(LevelInfo, "plugin %s at level %d", "test", LevelInfo)
	for level, want := range map[Level]int32{LevelDebug: -4, LevelInfo: 0, LevelWarn: 4, LevelError: 8} {
		if int32(level) != want {
			t.Errorf("level %d, want %d (slog's)", level, want)
		}
	}
}
