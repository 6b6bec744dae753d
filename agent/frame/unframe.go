package frame

import (
	"context"
	"errors"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// RowMessage is row i of f as the message it would have been had it
// travelled alone: a copy of the frame's message (its context and
// metadata) with the row's JSON as body and its metadata columns as
// metadata; a rejected row has its reason as error and, if it was
// rejected before it had values, its original bytes (the raw column) as
// body.
func (f *Frame) RowMessage(from *service.Message, i int) *service.Message {
	msg := from.Copy()
	var body []byte
	reason, rejected := f.Reason(i)
	if raw := f.RawCol(); rejected && f.Unread(i) && raw != nil && !raw.Null(i) {
		body = append(body, raw.Bytes(i)...)
	} else {
		body = f.AppendRowJSON(nil, i)
	}
	msg.SetBytes(body)
	for c := range f.Cols {
		col := &f.Cols[c]
		if col.Meta && !col.Null(i) {
			msg.MetaSetMut(col.Name, string(col.AppendText(nil, i)))
		}
	}
	if rejected {
		msg.SetError(errors.New(reason))
	}
	return msg
}

// Which rows `unframe` hands on.
const (
	RowsAll      = "all"
	RowsAccepted = "accepted"
	RowsRejected = "rejected"
)

// UnframeSpec is the `unframe` processor's spec.
func UnframeSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Summary("Turns each frame (a columnar batch, as csv_file with `frames: true` reads) back into one message per row, for components that work on rows.").
		Description(`
Each row becomes the message it would have been had the pipeline not used frames: its fields as a JSON object in column order, the frame's metadata columns (csv_file, csv_line, csv_raw, what a plugin set) as metadata. A rejected row is an errored message with its reason as ` + "`error()`" + ` (and, if it was rejected before it had values, e.g. a CSV row that did not convert, its original bytes as body), so a ` + "`switch`" + ` on ` + "`errored()`" + ` or a rejects output works as with rows. A message that is not a frame is taken as one row (rejected if errored) and passed on unchanged if ` + "`rows`" + ` takes it.

On an output that loads only good rows from frames (sqlite, parquet), ` + "`unframe: {rows: rejected}`" + ` in a sibling output's processors hands that output only the rejects.`).
		Fields(
			service.NewStringEnumField("rows", RowsAll, RowsAccepted, RowsRejected).
				Description("Which rows become messages: all, only those not rejected, or only the rejected ones.").
				Default(RowsAll),
		)
}

// RegisterUnframe adds the `unframe` processor to env.
func RegisterUnframe(env *service.Environment) error {
	return env.RegisterBatchProcessor("unframe", UnframeSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchProcessor, error) {
		rows, err := conf.FieldString("rows")
		if err != nil {
			return nil, err
		}
		return &unframe{rows: rows}, nil
	})
}

type unframe struct{ rows string }

func (u *unframe) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	var out service.MessageBatch
	for _, msg := range batch {
		body, err := msg.AsBytes()
		if err != nil || !Is(body) {
			// A message that is not a frame is one row, rejected if errored.
			if u.wants(msg.GetError() != nil) {
				out = append(out, msg)
			}
			continue
		}
		f, err := Decode(body)
		if err != nil {
			msg.SetError(fmt.Errorf("unframe: %w", err))
			out = append(out, msg)
			continue
		}
		// A frame whose message failed as a whole: every row failed.
		failed := msg.GetError() != nil
		for i := 0; i < f.Rows; i++ {
			if !u.wants(failed || f.Rejected(i)) {
				continue
			}
			out = append(out, f.RowMessage(msg, i))
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return []service.MessageBatch{out}, nil
}

// wants reports whether a row, rejected or not, is handed on.
func (u *unframe) wants(rejected bool) bool {
	switch u.rows {
	case RowsAccepted:
		return !rejected
	case RowsRejected:
		return rejected
	}
	return true
}

func (u *unframe) Close(context.Context) error { return nil }
