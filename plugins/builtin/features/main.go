// Command features is the builtin `features` plugin: per-user real-time
// features in event time (the seed's RealTimeDataProcessor and session
// features, plus sliding windows), kept in keyed state. README.md lists its
// config and every feature; the logic lives in plugins/builtin/lib/features.
//
// It shows a stateful fast-mode plugin whose fields come from its config:
// OnConfig declares one input column per field the config reads and one
// output column per feature it writes, and the handler decodes each user's
// state once per batch and stores it once, after the user's last event.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o features.wasm .
package main

import (
	"github.com/sluice-dev/sluice/plugins/builtin/lib/features"
	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	// The view lets the agent's state lookup show a user's online
	// features as JSON rather than the state's bytes.
	state = sdk.UseState().View(func(dst, _, st []byte) ([]byte, error) {
		return cfg.StateJSON(dst, st)
	})

	cfg     *features.Config
	inputs  []input
	outputs []output
	event   *features.Event
	vec     *features.Vector
	users   features.Users
	buf     []byte
)

func init() {
	sdk.OnConfig(func(c sdk.Config) error {
		cfg = features.Default()
		if err := c.Decode(cfg); err != nil {
			return err
		}
		for _, f := range cfg.Inputs() {
			inputs = append(inputs, declareInput(f))
		}
		for _, o := range cfg.Outputs() {
			outputs = append(outputs, declareOutput(o))
		}
		event, vec = cfg.NewEvent(), cfg.NewVector()
		return nil
	})
	sdk.HandleBatch(handle)
}

func handle(b *sdk.Batch) error {
	users.Reset()
	for i := 0; i < b.Len(); i++ {
		u, fresh := users.Get(state.Key(b, i))
		if fresh {
			// Decoded once per batch: the user's later rows update this
			// copy, which is stored once, after the loop.
			u.Err = cfg.Decode(&u.State, state.Get(b, i))
		}
		if u.Err != nil {
			b.Fail(i, "stored state: "+u.Err.Error())
			continue
		}
		for j := range inputs {
			inputs[j].read(b, i, &event.Values[j])
		}
		if b.Replayed(i) {
			// Applied before a restart: report its features without
			// counting it twice.
			cfg.Eval(&u.State, event, vec)
		} else {
			if err := cfg.Update(&u.State, event, vec); err != nil {
				// Late, so not applied. The message keeps its bytes and
				// goes down the error path; the metadata lets a pipeline
				// route it to a dead-letter output.
				b.Fail(i, err.Error())
				b.SetMeta(i, "sluice_reason", "late")
				continue
			}
			// The SDK ignores Set on replayed rows: store with a row that
			// changed the state.
			u.Row = i
		}
		for j := range outputs {
			if vec.Valid[j] {
				outputs[j].write(b, i, vec, j)
			}
		}
	}
	users.Each(func(u *features.User) {
		if u.Row >= 0 {
			buf = cfg.Encode(buf[:0], &u.State)
			state.Set(b, u.Row, buf)
		}
	})
	return nil
}

// input is a declared input column; one of the handles is set, by type.
type input struct {
	typ  features.Type
	time sdk.InTime
	str  sdk.InString
	num  sdk.InFloat
	int  sdk.InInt
}

func declareInput(f features.Field) input {
	var opts []sdk.FieldOption
	if f.Required {
		opts = append(opts, sdk.Required)
	}
	in := input{typ: f.Type}
	switch f.Type {
	case features.TypeTime:
		in.time = sdk.ReadTime(f.Path, opts...)
	case features.TypeString:
		in.str = sdk.ReadString(f.Path, opts...)
	case features.TypeNumber:
		in.num = sdk.ReadFloat(f.Path, opts...)
	case features.TypeInt:
		in.int = sdk.ReadInt(f.Path, opts...)
	}
	return in
}

func (in *input) read(b *sdk.Batch, i int, v *features.Value) {
	switch in.typ {
	case features.TypeTime:
		v.Int, v.Ok = in.time.Nanos(b, i)
	case features.TypeString:
		v.Str, v.Ok = in.str.Get(b, i)
	case features.TypeNumber:
		v.Num, v.Ok = in.num.Get(b, i)
	case features.TypeInt:
		v.Int, v.Ok = in.int.Get(b, i)
	}
}

// output is a declared output column; one of the handles is set, by kind.
type output struct {
	kind features.Kind
	int  sdk.OutInt
	flt  sdk.OutFloat
	bool sdk.OutBool
	time sdk.OutTime
}

func declareOutput(o features.Output) output {
	out := output{kind: o.Kind}
	switch o.Kind {
	case features.KindInt:
		out.int = sdk.WriteInt(o.Name)
	case features.KindFloat:
		out.flt = sdk.WriteFloat(o.Name)
	case features.KindBool:
		out.bool = sdk.WriteBool(o.Name)
	case features.KindTime:
		out.time = sdk.WriteTime(o.Name)
	}
	return out
}

func (out *output) write(b *sdk.Batch, i int, v *features.Vector, j int) {
	switch out.kind {
	case features.KindInt:
		out.int.Set(b, i, v.Int[j])
	case features.KindFloat:
		out.flt.Set(b, i, v.Float[j])
	case features.KindBool:
		out.bool.Set(b, i, v.Int[j] != 0)
	case features.KindTime:
		out.time.SetNanos(b, i, v.Int[j])
	}
}

func main() {}
