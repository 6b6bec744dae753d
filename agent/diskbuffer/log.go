package diskbuffer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/internal/atomicfile"
)

// segment is one file of the log.
type segment struct {
	base, baseSeq uint64
	created       int64
	path          string
	// size counts the record bytes written to it. It changes only for the
	// last segment, by the writer, under Buffer.mu.
	size uint64
	// f is the writer's handle while this is the active segment, nil once
	// sealed (fsynced and closed). Changed under Buffer.wmu and Buffer.smu;
	// the syncer uses it under smu.
	f *os.File
}

func (s *segment) end() uint64 { return s.base + s.size }

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentSuffix) }

// loaded is what openLog finds on disk.
type loaded struct {
	segs                []*segment
	appendPos, appendSq uint64
	cur                 cursor
	curFile             *os.File
	curGen              uint64
}

// openLog reads the directory: segment headers, the tail of the last
// segment (cutting a torn or partly written batch), and the cursor. warn
// reports what was repaired.
func openLog(dir string, warn func(format string, args ...any)) (l loaded, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return l, fmt.Errorf("read buffer directory %s: %w", dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) || e.IsDir() {
			continue
		}
		base, perr := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if perr != nil {
			continue
		}
		l.segs = append(l.segs, &segment{base: base, path: filepath.Join(dir, name)})
	}
	sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].base < l.segs[j].base })
	for i := 0; i < len(l.segs); i++ {
		s := l.segs[i]
		last := i == len(l.segs)-1
		size, herr := readSegmentHeader(s)
		if herr != nil {
			var verr errVersion
			if last && errors.Is(herr, errCorrupt) && !errors.As(herr, &verr) {
				// A crash while the segment was being created: no record of
				// it was ever acknowledged.
				warn("removing %s, whose header is incomplete (a crash while creating it): %v", s.path, herr)
				if rerr := os.Remove(s.path); rerr != nil {
					return l, fmt.Errorf("remove %s: %w", s.path, rerr)
				}
				l.segs = l.segs[:i]
				break
			}
			return l, fmt.Errorf("segment %s: %w (move the file away to start without it)", s.path, herr)
		}
		s.size = size
		if i > 0 && l.segs[i-1].end() > s.base {
			return l, fmt.Errorf("segments %s and %s overlap: the first ends at position %d after the second begins (move one away)", l.segs[i-1].path, s.path, l.segs[i-1].end())
		}
	}

	if l.curFile, l.cur, err = openCursor(filepath.Join(dir, cursorFileName), warn); err != nil {
		return l, err
	}
	l.curGen = l.cur.gen
	if len(l.segs) == 0 {
		// Everything was acknowledged and deleted: positions continue from
		// the cursor so that it stays meaningful.
		l.appendPos, l.appendSq = l.cur.ack.pos, l.cur.ack.seq
		return l, nil
	}
	last := l.segs[len(l.segs)-1]
	if l.appendPos, l.appendSq, err = repairTail(last, warn); err != nil {
		l.curFile.Close()
		return l, err
	}
	return l, nil
}

// readSegmentHeader decodes s's header into s and returns its record bytes.
func readSegmentHeader(s *segment) (uint64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	buf := make([]byte, segHeaderSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read header: %w", err)
	}
	h, err := decodeSegHeader(buf[:n])
	if err != nil {
		return 0, err
	}
	if h.base != s.base {
		return 0, fmt.Errorf("header says base position %d, the name %d: %w", h.base, s.base, errCorrupt)
	}
	s.baseSeq, s.created = h.baseSeq, h.created
	return uint64(st.Size() - segHeaderSize), nil
}

// repairTail reads the last segment's records and truncates it after the
// last whole written batch: a torn record, garbage, or the records of a
// batch whose write did not finish. None of those were acknowledged to
// the input (with sync: always), which sends them again. It returns the
// log's end position and next sequence number.
func repairTail(s *segment, warn func(string, ...any)) (uint64, uint64, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", s.path, err)
	}
	defer f.Close()
	good, seq, cause, err := scanTail(f, s.size, s.baseSeq)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", s.path, err)
	}
	if good < s.size {
		warn("truncating %s from %d to %d record bytes, dropping a batch whose write did not finish (a crash or a full disk; its input was not acknowledged): %v", s.path, s.size, good, cause)
		if err := f.Truncate(int64(segHeaderSize + good)); err != nil {
			return 0, 0, fmt.Errorf("truncate %s: %w", s.path, err)
		}
		s.size = good
	}
	// What a killed process left in the page cache is durable from here
	// on, so that the cursor never passes what a power loss keeps.
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("fsync %s: %w", s.path, err)
	}
	return s.end(), seq, nil
}

// scanTail reads records from the start of f's records, checking each, and
// gives the offset after the last record ending a written batch, the
// sequence number after it, and why the scan stopped before size.
func scanTail(f io.ReaderAt, size, seq uint64) (good, goodSeq uint64, cause, err error) {
	const chunk = 1 << 20
	var buf []byte
	var bufPos uint64 // offset of buf[0] among the records
	pos := uint64(0)
	good, goodSeq = 0, seq
	for pos < size {
		off := int(pos - bufPos)
		rec, need, ok, perr := parseRecord(buf[off:], int64(size-pos)-recHeaderSize, true)
		if perr != nil {
			return good, goodSeq, fmt.Errorf("at record byte %d: %w", pos, perr), nil
		}
		if !ok {
			if pos+uint64(need) > size {
				return good, goodSeq, fmt.Errorf("at record byte %d: a record of %d bytes, %d left: %w", pos, need, size-pos, errCorrupt), nil
			}
			n := min(size-pos, uint64(max(need, chunk)))
			buf = make([]byte, n)
			if _, rerr := f.ReadAt(buf, int64(segHeaderSize+pos)); rerr != nil {
				return 0, 0, nil, rerr
			}
			bufPos = pos
			continue
		}
		if rec.seq != seq {
			return good, goodSeq, fmt.Errorf("at record byte %d: sequence number %d, want %d: %w", pos, rec.seq, seq, errCorrupt), nil
		}
		pos += uint64(need)
		seq++
		if rec.last {
			good, goodSeq = pos, seq
		}
	}
	if good < size {
		return good, goodSeq, errors.New("the last batch has no end mark"), nil
	}
	return good, goodSeq, nil, nil
}

// openCursor opens or creates the cursor file and reads its newest valid
// slot.
func openCursor(path string, warn func(string, ...any)) (*os.File, cursor, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, cursor{}, fmt.Errorf("open cursor %s: %w", path, err)
	}
	buf := make([]byte, cursorFileLength)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, cursor{}, fmt.Errorf("read cursor %s: %w", path, err)
	}
	if n == 0 {
		return f, cursor{}, nil
	}
	var best cursor
	found := false
	for slot := range 2 {
		lo := slot * cursorSlotSize
		if lo >= n {
			continue
		}
		c, err := decodeCursor(buf[lo:min(n, lo+cursorSlotSize)])
		var verr errVersion
		if errors.As(err, &verr) {
			f.Close()
			return nil, cursor{}, fmt.Errorf("cursor %s: %w", path, err)
		}
		if err == nil && (!found || c.gen > best.gen) {
			best, found = c, true
		}
	}
	if !found {
		// Only duplicates follow from this: everything stored is delivered
		// again.
		warn("cursor %s is unreadable; delivering everything stored again", path)
	}
	return f, best, nil
}

// createSegment creates the file of a new segment with its header.
func createSegment(dir string, h segHeader) (*segment, error) {
	s := &segment{base: h.base, baseSeq: h.baseSeq, created: h.created, path: filepath.Join(dir, segmentName(h.base))}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create segment %s: it exists already, which only another writer on this directory explains: %w", s.path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", s.path, err)
	}
	if _, err := f.Write(h.encode()); err != nil {
		f.Close()
		_ = os.Remove(s.path)
		return nil, fmt.Errorf("write header of %s: %w", s.path, err)
	}
	// The file's own content is fsynced with its first records; its name
	// needs the directory fsynced.
	if err := atomicfile.SyncDir(dir); err != nil {
		f.Close()
		_ = os.Remove(s.path)
		return nil, fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	s.f = f
	return s, nil
}
