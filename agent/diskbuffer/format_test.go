package diskbuffer

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func encodeRecords(t testing.TB, seq uint64, last bool, contents ...string) []byte {
	t.Helper()
	var out []byte
	for i, c := range contents {
		var err error
		out, err = appendRecord(out, seq+uint64(i), 1, last && i == len(contents)-1, service.NewMessage([]byte(c)))
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestTornTail writes two batches, damages the end of the last segment as
// a crash would, and checks that the reopened buffer cuts the damage,
// delivers the two batches, and goes on writing after them.
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		// tail gives what to append to the segment, or cut gives how many
		// bytes to remove from its end.
		tail func(t *testing.T) []byte
		cut  int64
		// unfinished is the batch whose write was interrupted, gone after
		// the reopen.
	}{
		{name: "garbage", tail: func(t *testing.T) []byte { return []byte("\x13\x37garbage that is no record at all") }},
		{name: "zeros", tail: func(t *testing.T) []byte { return make([]byte, 4096) }},
		{name: "half a record", tail: func(t *testing.T) []byte {
			r := encodeRecords(t, 2, true, "torn")
			return r[:len(r)/2]
		}},
		{name: "half a header", tail: func(t *testing.T) []byte { return encodeRecords(t, 2, true, "torn")[:5] }},
		{name: "checksum mismatch", tail: func(t *testing.T) []byte {
			r := encodeRecords(t, 2, true, "torn")
			r[len(r)-1] ^= 0xff
			return r
		}},
		{name: "batch without its end", tail: func(t *testing.T) []byte {
			// Two whole records of a three-record batch.
			return encodeRecords(t, 2, false, "x1", "x2")
		}},
		{name: "wrong sequence number", tail: func(t *testing.T) []byte { return encodeRecords(t, 7, true, "x") }},
		{name: "last record cut", cut: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := config{Dir: dir, ReadBatchMessages: 1}
			b := openT(t, conf)
			write(t, b, "a")
			write(t, b, "b")
			closeT(t, b)
			seg := lastSegment(t, dir)
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			goodSize := st.Size()
			want := "a,b"
			if tc.cut > 0 {
				if err := os.Truncate(seg, goodSize-tc.cut); err != nil {
					t.Fatal(err)
				}
				goodSize -= recOverhead + 1
				want = "a"
			} else {
				appendToFile(t, seg, tc.tail(t))
			}

			b = openT(t, conf)
			if st, err := os.Stat(seg); err != nil || st.Size() != goodSize {
				t.Fatalf("segment is %d bytes after reopen (%v), want %d", st.Size(), err, goodSize)
			}
			write(t, b, "c")
			b.EndOfInput()
			var got []string
			for range strings.Count(want, ",") + 2 {
				got = append(got, readAck(t, b)...)
			}
			if join(got) != want+",c" {
				t.Fatalf("read %v, want %s,c", got, want)
			}
			expectEnd(t, b)
		})
	}
}

func TestTornSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	conf := config{Dir: dir, ReadBatchMessages: 1}
	b := openT(t, conf)
	write(t, b, "a")
	closeT(t, b)
	// A crash while the next segment was being created.
	torn := filepath.Join(dir, segmentName(1000))
	if err := os.WriteFile(torn, []byte(segMagic[:5]), 0o644); err != nil {
		t.Fatal(err)
	}
	b = openT(t, conf)
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Fatalf("torn segment still there: %v", err)
	}
	write(t, b, "b")
	b.EndOfInput()
	if got := append(readAck(t, b), readAck(t, b)...); join(got) != "a,b" {
		t.Fatalf("read %v", got)
	}
}

// TestCorruptSealedSegment damages a record in the middle of the log: the
// rest of its segment is dropped and counted, the next segments are
// delivered.
func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	conf := config{Dir: dir, SegmentBytes: 100, ReadBatchMessages: 1}
	b := openT(t, conf)
	for _, c := range seqStrings("m", 0, 6) {
		// 28 bytes each: three to a segment.
		write(t, b, c)
	}
	closeT(t, b)
	segs := segmentFiles(t, dir)
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// The content of the second record.
	data[segHeaderSize+(recOverhead+2)+recOverhead] ^= 0xff
	if err := os.WriteFile(segs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	b = openT(t, conf)
	b.EndOfInput()
	var got []string
	for range 4 {
		got = append(got, readAck(t, b)...)
	}
	if join(got) != "m0,m3,m4,m5" {
		t.Fatalf("read %v, want m0,m3,m4,m5", got)
	}
	expectEnd(t, b)
	if n := b.droppedCount(reasonCorrupt); n != 2 {
		t.Fatalf("dropped %d as corrupt, want 2", n)
	}
}

func TestUnknownFormatVersion(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, config{Dir: dir})
	write(t, b, "a")
	write(t, b, "b")
	closeT(t, b)
	seg := lastSegment(t, dir)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeSegHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	hdr := h.encode()
	binary.LittleEndian.PutUint32(hdr[8:], 2)
	binary.LittleEndian.PutUint32(hdr[40:], crc32c(hdr[:40]))
	copy(data, hdr)
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = open(config{Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "format version 2, this build reads version 1") {
		t.Fatalf("open: %v", err)
	}
}

func TestCursorSlots(t *testing.T) {
	dir := t.TempDir()
	conf := config{Dir: dir, ReadBatchMessages: 1}
	b := openT(t, conf)
	for _, c := range []string{"a", "b", "c"} {
		write(t, b, c)
	}
	readAck(t, b)
	readAck(t, b)
	closeT(t, b)
	path := filepath.Join(dir, cursorFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Tear the newest slot: the other, older, wins.
	c0, err0 := decodeCursor(data[:cursorSlotSize])
	c1, err1 := decodeCursor(data[cursorSlotSize:])
	if err0 != nil || err1 != nil {
		t.Fatalf("slots: %v, %v", err0, err1)
	}
	newest, older := 0, c1
	if c1.gen > c0.gen {
		newest, older = 1, c0
	}
	data[newest*cursorSlotSize+30] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "b", "c"}[older.ack.seq:]
	b = openT(t, conf)
	b.EndOfInput()
	var got []string
	for range want {
		got = append(got, readAck(t, b)...)
	}
	if join(got) != join(want) {
		t.Fatalf("read %v, want %v, from the older slot", got, want)
	}
	expectEnd(t, b)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func TestLintRules(t *testing.T) {
	env := service.NewEnvironment()
	if err := Register(env, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"valid", "path: /tmp/x\n", ""},
		{"segment above max", "path: /tmp/x\nmax_bytes: 1000\nsegment_bytes: 2000\n", "segment_bytes is larger than max_bytes"},
		{"interval without interval sync", "path: /tmp/x\nsync_interval: 5s\n", "sync_interval has no effect"},
		{"path required", "max_bytes: 1000\n", "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := env.NewStreamBuilder()
			err := b.SetYAML("input:\n  generate:\n    mapping: root = 1\nbuffer:\n  sluice_disk:\n" + indent(tc.conf) + "output:\n  drop: {}\n")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("lint: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDefaultDir: with a root and a pipeline name, `path` may be left out;
// without either it is required, and every problem is reported at once.
func TestDefaultDir(t *testing.T) {
	root := t.TempDir()
	opts := Options{Root: root, PipelineOf: func(*service.Resources) (string, bool) { return "orders", true }}
	dir, err := opts.dirFor("orders")
	if err != nil || dir != filepath.Join(root, "orders") {
		t.Fatalf("dirFor: %q, %v", dir, err)
	}
	c, err := parseConfig(mustParse(t, ConfigSpec(opts), "max_bytes: 1000\n"), dir)
	if err != nil || c.Dir != dir {
		t.Fatalf("dir %q, %v; want %q", c.Dir, err, dir)
	}
	c, err = parseConfig(mustParse(t, ConfigSpec(opts), "path: ./mine\n"), dir)
	if err != nil || c.Dir != "./mine" {
		t.Fatalf("an explicit path: %q, %v", c.Dir, err)
	}
	for _, name := range []string{"", ".", "..", "a/b"} {
		if _, err := opts.dirFor(name); err == nil || !strings.Contains(err.Error(), "path is required") {
			t.Errorf("pipeline name %q: %v", name, err)
		}
	}
	if _, err := parseConfig(mustParse(t, ConfigSpec(Options{}), "path: \"\"\nmax_in_flight: 0\nread_batch_messages: 0\n"), ""); err == nil ||
		!strings.Contains(err.Error(), "path is required: the directory") || !strings.Contains(err.Error(), "max_in_flight") || !strings.Contains(err.Error(), "read_batch_messages") {
		t.Fatalf("every problem at once: %v", err)
	}
	// The linter knows whether `path` is needed.
	for _, tc := range []struct {
		opts Options
		ok   bool
	}{{opts, true}, {Options{}, false}} {
		env := service.NewEnvironment()
		if err := Register(env, tc.opts); err != nil {
			t.Fatal(err)
		}
		err := env.NewStreamBuilder().SetYAML("input:\n  generate:\n    mapping: root = 1\nbuffer:\n  sluice_disk: {}\noutput:\n  drop: {}\n")
		if (err == nil) != tc.ok {
			t.Errorf("root %q: lint of a buffer without path: %v", tc.opts.Root, err)
		}
	}
}

func mustParse(t *testing.T, spec *service.ConfigSpec, yaml string) *service.ParsedConfig {
	t.Helper()
	pc, err := spec.ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func indent(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			out.WriteString("    " + l)
		}
	}
	return out.String()
}

// FuzzScanTail feeds arbitrary bytes after valid records: the scan never
// panics, keeps the valid batches, and stops at a batch end.
func FuzzScanTail(f *testing.F) {
	f.Add([]byte("garbage"))
	f.Add(make([]byte, 64))
	f.Add(encodeRecords(f, 2, true, "next"))
	f.Fuzz(func(t *testing.T, tail []byte) {
		good := encodeRecords(t, 0, true, "a", "b")
		data := append(make([]byte, segHeaderSize), good...)
		data = append(data, tail...)
		pos, seq, _, err := scanTail(bytes.NewReader(data), uint64(len(data)-segHeaderSize), 0)
		if err != nil {
			t.Fatal(err)
		}
		if pos < uint64(len(good)) || seq < 2 {
			t.Fatalf("lost valid records: pos %d seq %d", pos, seq)
		}
		if pos > uint64(len(data)-segHeaderSize) {
			t.Fatalf("position %d past the data", pos)
		}
	})
}

// FuzzRecordMessage decodes arbitrary payloads that pass the checksum:
// errors, never panics.
func FuzzRecordMessage(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 1, 'k', 's', 1, 'v', 'x'})
	f.Add([]byte{1, 1, 'k', 'j', 3, '{', '}', '['})
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, _ = record{payload: payload}.message()
	})
}
