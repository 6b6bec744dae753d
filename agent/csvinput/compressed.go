package csvinput

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/klauspost/compress/zstd"
)

// file is what decompressed reads: an open file.
type file interface {
	io.Reader
	io.ReaderAt
}

// decompressed reads f as the CSV text it holds: gzip, zstd and bzip2
// files are recognised by their first bytes, as pandas' read_csv
// recognises them by their names, so an export compressed for transfer
// reads as it is (a name can lie; magic bytes do not). Formats the Go
// library cannot read (xz, zip) are refused by name rather than read as
// garbage. A plain file is f itself: the first bytes are read with ReadAt,
// so its rows do not pass through one more buffer. The returned closer, if
// not nil, releases the decoder.
func decompressed(name string, f file) (io.Reader, io.Closer, error) {
	magic := make([]byte, 6)
	n, err := f.ReadAt(magic, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("csv_file: read %s: %w", name, err)
	}
	magic = magic[:n]
	compressed := func() io.Reader {
		return bufio.NewReaderSize(io.NewSectionReader(f, 0, math.MaxInt64), 64<<10)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(compressed())
		if err != nil {
			return nil, nil, fmt.Errorf("csv_file: %s: gzip: %w", name, err)
		}
		return zr, zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One goroutine: files are read one at a time, in order.
		zr, err := zstd.NewReader(compressed(), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("csv_file: %s: zstd: %w", name, err)
		}
		return zr, closerFunc(zr.Close), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(compressed()), nil, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, nil, fmt.Errorf("csv_file: %s is xz-compressed, which is not read: decompress it, or recompress it with gzip or zstd", name)
	case bytes.HasPrefix(magic, []byte("PK\x03\x04")):
		return nil, nil, fmt.Errorf("csv_file: %s is a zip archive, which is not read: extract its CSV files", name)
	}
	return f, nil, nil
}

type closerFunc func()

func (c closerFunc) Close() error { c(); return nil }
