package frame

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestUnframe(t *testing.T) {
	env := service.NewEnvironment()
	if err := RegisterUnframe(env); err != nil {
		t.Fatal(err)
	}
	plainErr := service.NewMessage([]byte(`plain bad`))
	plainErr.SetError(errors.New("earlier"))
	// A frame whose message failed as a whole: each of its rows failed,
	// with its own reason if it had one, else the message's.
	frameErr := service.NewMessage(sample(t, nil))
	frameErr.SetError(errors.New("whole frame"))
	for _, tc := range []struct {
		rows string
		want []string
	}{
		{RowsAll, []string{`row 1 ok`, `2,abc,, ! price: "abc" is not a number`, `row -3 ok`, `plain ok ok`, `plain bad ! earlier`,
			`row 1 ! whole frame`, `2,abc,, ! price: "abc" is not a number`, `row -3 ! whole frame`}},
		{RowsAccepted, []string{`row 1 ok`, `row -3 ok`, `plain ok ok`}},
		{RowsRejected, []string{`2,abc,, ! price: "abc" is not a number`, `plain bad ! earlier`,
			`row 1 ! whole frame`, `2,abc,, ! price: "abc" is not a number`, `row -3 ! whole frame`}},
	} {
		t.Run(tc.rows, func(t *testing.T) {
			conf, err := UnframeSpec().ParseYAML("rows: "+tc.rows, nil)
			if err != nil {
				t.Fatal(err)
			}
			rows, _ := conf.FieldString("rows")
			u := &unframe{rows: rows}
			batch := service.MessageBatch{service.NewMessage(sample(t, nil)), service.NewMessage([]byte("plain ok")), plainErr, frameErr}
			out, err := u.ProcessBatch(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range out[0] {
				b, _ := m.AsBytes()
				s := string(b)
				if strings.HasPrefix(s, "{") {
					id := strings.SplitN(strings.TrimPrefix(s, `{"id":`), ",", 2)[0]
					s = "row " + id
				}
				if err := m.GetError(); err != nil {
					s += " ! " + err.Error()
				} else {
					s += " ok"
				}
				got = append(got, s)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
