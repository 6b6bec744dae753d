package csvinput

import (
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/jsonfield"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// readFrame hands on the next rows of the current file as one frame.
func (in *input) readFrame() (service.MessageBatch, service.AckFunc, error) {
	for {
		cur, err := in.file()
		if err != nil {
			return nil, nil, err
		}
		if cur == nil {
			return in.emit(nil, 0)
		}
		body, rows, err := cur.frame(in.maxRows())
		if err != nil {
			return nil, nil, err
		}
		if body == nil {
			in.cur = nil
			continue
		}
		return in.emit(service.MessageBatch{frame.NewMessage(body)}, rows)
	}
}

// frameCols are the builders of one file's frames.
type frameCols struct {
	w      *frame.Writer
	fields []*frame.Builder // per header column
	file   *frame.Builder   // file_field, if set
	line   *frame.Builder   // line_field, if set
	// metadata, as a row's message would carry it
	metaFile, metaLine, metaRaw *frame.Builder
}

func (f *fileReader) frameCols() *frameCols {
	fc := &frameCols{w: frame.NewWriter()}
	if f.headerErr == nil {
		for i, h := range f.header {
			fc.fields = append(fc.fields, fc.w.Add(h, columnType(f.types[i]), false))
		}
		if f.in.fileField != "" {
			fc.file = fc.w.AddConst(f.in.fileField, abi.TypeString, false)
		}
		if f.in.lineField != "" {
			fc.line = fc.w.Add(f.in.lineField, abi.TypeInt, false)
		}
	}
	fc.metaFile = fc.w.AddConst("csv_file", abi.TypeString, true)
	fc.metaLine = fc.w.Add("csv_line", abi.TypeInt, true)
	fc.metaRaw = fc.w.AddRaw("csv_raw")
	return fc
}

// frame encodes up to max of the file's next rows; nil at its end. A
// file of a header and no rows is one frame of no rows: it still names
// its file (the constant columns), so an output that replaces a file's
// rows (sqlite's replace_by) empties them, and one that writes a file per
// run (parquet) writes an empty one, as pandas does for an empty frame.
func (f *fileReader) frame(max int) ([]byte, int, error) {
	if f.err != nil {
		return nil, 0, f.err
	}
	if f.done {
		return nil, 0, nil
	}
	if f.fc == nil {
		f.fc = f.frameCols()
	}
	fc := f.fc
	if f.headerErr != nil {
		f.done = true
		fc.reject(f, 1, f.head, f.headerErr)
		return f.encode()
	}
	for fc.w.Rows() < max {
		rec, line, raw, err, ok := f.record()
		if !ok {
			break
		}
		if err != nil {
			fc.reject(f, line, raw, err)
			continue
		}
		err = f.convertRow(rec)
		if err == nil && f.timestamps {
			err = f.frameTimes(rec)
		}
		if err != nil {
			fc.reject(f, line, raw, err)
			continue
		}
		for i, b := range fc.fields {
			switch c := &f.cells[i]; {
			case rec[i] == "":
				b.Null()
			case c.t == abi.TypeInt:
				b.Int(c.i)
			case c.t == abi.TypeFloat:
				b.Float(c.f)
			case c.t == abi.TypeBool:
				b.Bool(c.b)
			case c.t == abi.TypeTime:
				b.Int(c.tm.UnixNano())
			default:
				b.Text(c.s)
			}
		}
		if fc.line != nil {
			fc.line.Int(int64(line))
		}
		fc.meta(f, line, raw)
		fc.w.Accept()
	}
	if f.err != nil {
		return nil, 0, f.err
	}
	return f.encode()
}

// frameTimes says which of a converted row's timestamps a frame cannot
// hold, naming its column.
func (f *fileReader) frameTimes(rec []string) error {
	for i, c := range f.cells {
		if rec[i] != "" && c.t == abi.TypeTime && !jsonfield.InNanos(c.tm) {
			return fmt.Errorf("column %s: %q is outside the times a frame holds (1677-09-21 to 2262-04-11); read it with frames: false", f.header[i], rec[i])
		}
	}
	return nil
}

func (f *fileReader) encode() ([]byte, int, error) {
	rows := f.fc.w.Rows()
	if rows == 0 {
		if f.framed {
			return nil, 0, nil
		}
		f.fc.constants(f)
	}
	f.framed = true
	body, err := f.fc.w.Append(nil)
	if err != nil {
		return nil, 0, fmt.Errorf("csv_file %s: %w", f.name, err)
	}
	return body, rows, nil
}

func (fc *frameCols) meta(f *fileReader, line int, raw []byte) {
	fc.constants(f)
	fc.metaLine.Int(int64(line))
	fc.metaRaw.String(raw)
}

// constants sets the frame's constant columns, once per frame: a frame is
// one file's.
func (fc *frameCols) constants(f *fileReader) {
	if fc.metaFile.Len() == 0 {
		fc.metaFile.Text(f.name)
		if fc.file != nil {
			fc.file.Text(f.name)
		}
	}
}

// reject ends a row rejected for err: no values, its metadata, the reason
// a rejected JSON row would carry.
func (fc *frameCols) reject(f *fileReader, line int, raw []byte, err error) {
	for _, b := range fc.fields {
		b.Null()
	}
	if fc.line != nil {
		fc.line.Null()
	}
	fc.meta(f, line, raw)
	fc.w.Reject(f.rejection(line, err).Error())
}
