package frame

import (
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Values is one column of a frame as Go values, one per row: nil for a
// null; int or int64 for an int column; float64, bool, string ([]byte
// too) for the others; time.Time for a time column. Tests and tools build
// frames from them.
type Values struct {
	Name string
	Type abi.Type
	Meta bool
	Rows []any
}

// FromValues encodes a frame of cols, all of the same length. A row with
// a reason in rejected is rejected as csv_file rejects a row that did not
// convert: its values stand for nothing but its reason and metadata.
func FromValues(cols []Values, rejected map[int]string) ([]byte, error) {
	if len(cols) == 0 {
		return nil, fmt.Errorf("a frame needs a column")
	}
	w := NewWriter()
	bs := make([]*Builder, len(cols))
	for c, col := range cols {
		if len(col.Rows) != len(cols[0].Rows) {
			return nil, fmt.Errorf("column %q has %d rows, column %q %d", col.Name, len(col.Rows), cols[0].Name, len(cols[0].Rows))
		}
		bs[c] = w.Add(col.Name, col.Type, col.Meta)
	}
	for i := range cols[0].Rows {
		for c, col := range cols {
			if err := appendValue(bs[c], col.Rows[i]); err != nil {
				return nil, fmt.Errorf("column %q row %d: %w", col.Name, i, err)
			}
		}
		if why, ok := rejected[i]; ok {
			w.Reject(why)
		} else {
			w.Accept()
		}
	}
	return w.Append(nil)
}

// appendValue appends v, which must suit the builder's type: a builder
// takes any value's bytes, and a frame of mismatched bytes would not
// decode.
func appendValue(b *Builder, v any) error {
	ok := true
	switch v := v.(type) {
	case nil:
		b.Null()
	case int:
		ok = b.Type == abi.TypeInt
		b.Int(int64(v))
	case int64:
		ok = b.Type == abi.TypeInt
		b.Int(v)
	case float64:
		ok = b.Type == abi.TypeFloat
		b.Float(v)
	case bool:
		ok = b.Type == abi.TypeBool
		b.Bool(v)
	case string:
		ok = b.Type == abi.TypeString
		b.Text(v)
	case []byte:
		ok = b.Type == abi.TypeString
		b.String(v)
	case time.Time:
		ok = b.Type == abi.TypeTime
		b.Int(v.UnixNano())
	default:
		return fmt.Errorf("a %T is no frame value", v)
	}
	if !ok {
		return fmt.Errorf("a %T in a %s column", v, b.Type)
	}
	return nil
}
