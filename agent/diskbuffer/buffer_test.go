package diskbuffer

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// recOverhead is the bytes a record without metadata takes besides its
// content.
const recOverhead = recHeaderSize + recFixedSize + 1

func TestWriteReadAckInOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		conf      config
		wantReads [][]string
	}{
		{
			name:      "sync always merges written batches",
			conf:      config{},
			wantReads: [][]string{{"a1", "a2", "b1", "c1", "c2", "c3"}},
		},
		{
			name:      "sync interval",
			conf:      config{SyncInterval: 10 * time.Millisecond},
			wantReads: [][]string{{"a1", "a2", "b1", "c1", "c2", "c3"}},
		},
		{
			name:      "inline fsync",
			conf:      config{inlineSync: true},
			wantReads: [][]string{{"a1", "a2", "b1", "c1", "c2", "c3"}},
		},
		{
			name:      "batches as written",
			conf:      config{ReadBatchMessages: 1},
			wantReads: [][]string{{"a1", "a2"}, {"b1"}, {"c1", "c2", "c3"}},
		},
		{
			// A written batch is never split: the read stops after the
			// batch that reached the count.
			name:      "merged up to a count",
			conf:      config{ReadBatchMessages: 3},
			wantReads: [][]string{{"a1", "a2", "b1"}, {"c1", "c2", "c3"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.conf.Dir = t.TempDir()
			b := openT(t, tc.conf)
			write(t, b, "a1", "a2")
			write(t, b, "b1")
			write(t, b, "c1", "c2", "c3")
			if msgs, bytes := b.stored(); msgs != 6 || bytes != 6*(recOverhead+2) {
				t.Fatalf("stored %d messages, %d bytes", msgs, bytes)
			}
			b.EndOfInput()
			for _, want := range tc.wantReads {
				if got := readAck(t, b); !reflect.DeepEqual(got, want) {
					t.Fatalf("read %v, want %v", got, want)
				}
			}
			expectEnd(t, b)
			if msgs, bytes := b.stored(); msgs != 0 || bytes != 0 {
				t.Fatalf("stored %d messages, %d bytes after acknowledging all", msgs, bytes)
			}
		})
	}
}

func TestMetadataSurvives(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, config{Dir: dir})
	msg := service.NewMessage([]byte(`{"id":1}`))
	want := map[string]any{
		"kafka_key":    "k1",
		"empty":        "",
		"count":        int64(-42),
		"big":          uint64(1 << 63),
		"ratio":        0.25,
		"ok":           true,
		"none":         nil,
		"structured":   map[string]any{"a": []any{1.0, "x"}},
		"unicode_ключ": "значение",
	}
	for k, v := range want {
		msg.MetaSetMut(k, v)
	}
	if err := writeBatch(b, service.MessageBatch{msg}); err != nil {
		t.Fatal(err)
	}
	closeT(t, b)
	// Read back after a reopen: what is checked is what the file holds.
	b = openT(t, config{Dir: dir})
	batch, _, err := b.ReadBatch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	_ = batch[0].MetaWalkMut(func(k string, v any) error { got[k] = v; return nil })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("metadata\n got %#v\nwant %#v", got, want)
	}
	if c := contentsOf(t, batch)[0]; c != `{"id":1}` {
		t.Fatalf("content %q", c)
	}
}

func TestNackRedeliversInOrder(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxInFlight int
		// steps run against the batches read so far; the final reads
		// must give want.
		run  func(t *testing.T, b *buffer)
		want [][]string
	}{
		{
			name:        "one in flight",
			maxInFlight: 1,
			run: func(t *testing.T, b *buffer) {
				got, ack := read(t, b)
				if join(got) != "a" {
					t.Fatalf("read %v", got)
				}
				// The next batch waits for this one.
				expectNothing(t, b)
				_ = ack(context.Background(), errors.New("output down"))
			},
			want: [][]string{{"a"}, {"b"}, {"c"}},
		},
		{
			name:        "failed first, later acknowledged",
			maxInFlight: 2,
			run: func(t *testing.T, b *buffer) {
				_, ackA := read(t, b)
				_, ackB := read(t, b)
				_ = ackB(context.Background(), nil)
				_ = ackA(context.Background(), errors.New("output down"))
			},
			want: [][]string{{"a"}, {"c"}},
		},
		{
			name:        "both failed, redelivered oldest first",
			maxInFlight: 2,
			run: func(t *testing.T, b *buffer) {
				_, ackA := read(t, b)
				_, ackB := read(t, b)
				_ = ackB(context.Background(), errors.New("down"))
				_ = ackA(context.Background(), errors.New("down"))
			},
			want: [][]string{{"a"}, {"b"}, {"c"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openT(t, config{Dir: t.TempDir(), MaxInFlight: tc.maxInFlight, ReadBatchMessages: 1})
			write(t, b, "a")
			write(t, b, "b")
			write(t, b, "c")
			tc.run(t, b)
			b.EndOfInput()
			for _, want := range tc.want {
				if got := readAck(t, b); !reflect.DeepEqual(got, want) {
					t.Fatalf("read %v, want %v", got, want)
				}
			}
			expectEnd(t, b)
		})
	}
}

func TestEndOfBufferWaitsForAcks(t *testing.T) {
	b := openT(t, config{Dir: t.TempDir()})
	write(t, b, "a")
	b.EndOfInput()
	_, ack := read(t, b)
	// In flight: the end is not reached, since it may fail.
	expectNothing(t, b)
	_ = ack(context.Background(), errors.New("down"))
	if got := readAck(t, b); join(got) != "a" {
		t.Fatalf("read %v", got)
	}
	expectEnd(t, b)
}

func TestReopenDeliversUnacked(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf config
	}{
		{"sync always", config{ReadBatchMessages: 1}},
		{"sync interval", config{ReadBatchMessages: 1, SyncInterval: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.conf.Dir = t.TempDir()
			b := openT(t, tc.conf)
			for _, c := range []string{"a", "b", "c", "d"} {
				write(t, b, c)
			}
			if got := readAck(t, b); join(got) != "a" {
				t.Fatalf("read %v", got)
			}
			if got, _ := read(t, b); join(got) != "b" {
				// Left in flight.
				t.Fatalf("read %v", got)
			}
			closeT(t, b)

			b = openT(t, tc.conf)
			if msgs, _ := b.stored(); msgs != 3 {
				t.Fatalf("reopened with %d messages stored, want 3", msgs)
			}
			b.EndOfInput()
			var got []string
			for range 3 {
				got = append(got, readAck(t, b)...)
			}
			if join(got) != "b,c,d" {
				t.Fatalf("after reopen read %v, want b,c,d", got)
			}
			expectEnd(t, b)
		})
	}
}

func TestReopenKeepsOutOfOrderAcks(t *testing.T) {
	dir := t.TempDir()
	conf := config{Dir: dir, MaxInFlight: 3, ReadBatchMessages: 1}
	b := openT(t, conf)
	for _, c := range []string{"a", "b", "c", "d"} {
		write(t, b, c)
	}
	_, ackA := read(t, b)
	_, ackB := read(t, b)
	_, ackC := read(t, b)
	_ = ackB(context.Background(), nil)
	_ = ackA(context.Background(), errors.New("down"))
	_ = ackC(context.Background(), nil)
	closeT(t, b)

	// b and c were acknowledged past the failed a: the cursor's done
	// ranges keep them from coming back.
	b = openT(t, conf)
	b.EndOfInput()
	var got []string
	for range 2 {
		got = append(got, readAck(t, b)...)
	}
	if join(got) != "a,d" {
		t.Fatalf("after reopen read %v, want a,d", got)
	}
	expectEnd(t, b)
}

func TestLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	openT(t, config{Dir: dir, owner: "orders"})
	_, err := open(config{Dir: dir, owner: "payments"}, nil)
	if err == nil || !strings.Contains(err.Error(), "in use by another sluice_disk buffer (pipeline \"orders\", in this process)") {
		t.Fatalf("second open: %v", err)
	}
}

func TestSegmentsDeletedAfterAck(t *testing.T) {
	dir := t.TempDir()
	// Each batch is one 200-byte message, 226 bytes stored: four to a
	// segment.
	b := openT(t, config{Dir: dir, SegmentBytes: 1000, ReadBatchMessages: 1})
	content := strings.Repeat("x", 200)
	for range 20 {
		write(t, b, content)
	}
	if n := len(segmentFiles(t, dir)); n != 5 {
		t.Fatalf("%d segment files after 20 writes, want 5", n)
	}
	for i := range 20 {
		readAck(t, b)
		// A segment goes once its last record is acknowledged; the last
		// segment stays for the writer.
		want := max(5-(i+1)/4, 1)
		if n := len(segmentFiles(t, dir)); n != want {
			t.Fatalf("after %d acks: %d segment files, want %d", i+1, n, want)
		}
	}
	// A batch larger than a segment gets one of its own; the acknowledged
	// segment goes at the roll.
	write(t, b, strings.Repeat("y", 2000))
	write(t, b, "z")
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segment files, want 2", n)
	}
}

func TestMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name string
		// expire makes the old messages go: by reading, or by the
		// housekeeping pass while nothing reads.
		expire func(t *testing.T, b *buffer)
	}{
		{"dropped when read", func(t *testing.T, b *buffer) {}},
		{"dropped by housekeeping", func(t *testing.T, b *buffer) {
			waitFor(t, func() bool { return b.droppedCount(reasonMaxAge) == 3 })
			if msgs, _ := b.stored(); msgs != 1 {
				t.Fatalf("%d messages stored after expiry, want 1", msgs)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &testClock{}
			b := openT(t, config{Dir: t.TempDir(), MaxAge: time.Hour, now: clock.now})
			write(t, b, "old1", "old2")
			write(t, b, "old3")
			clock.advance(90 * time.Minute)
			write(t, b, "new")
			tc.expire(t, b)
			b.EndOfInput()
			if got := readAck(t, b); join(got) != "new" {
				t.Fatalf("read %v, want only new", got)
			}
			expectEnd(t, b)
			if n := b.droppedCount(reasonMaxAge); n != 3 {
				t.Fatalf("dropped %d for max_age, want 3", n)
			}
		})
	}
}

func TestMaxAgeOfFailedBatch(t *testing.T) {
	clock := &testClock{}
	b := openT(t, config{Dir: t.TempDir(), MaxAge: time.Hour, now: clock.now})
	write(t, b, "old")
	_, ack := read(t, b)
	clock.advance(2 * time.Hour)
	write(t, b, "new")
	_ = ack(context.Background(), errors.New("down"))
	b.EndOfInput()
	if got := readAck(t, b); join(got) != "new" {
		t.Fatalf("read %v, want new", got)
	}
	expectEnd(t, b)
	if n := b.droppedCount(reasonMaxAge); n != 1 {
		t.Fatalf("dropped %d for max_age, want 1", n)
	}
}

func TestFullBlocks(t *testing.T) {
	full := make(chan struct{}, 1)
	// Room for two 10-byte messages.
	b := openT(t, config{Dir: t.TempDir(), MaxBytes: 2 * (recOverhead + 10), ReadBatchMessages: 1,
		onFull: func() { full <- struct{}{} }})
	write(t, b, "0123456789")
	write(t, b, "abcdefghij")
	returned := make(chan error, 1)
	go func() { returned <- writeBatch(b, batchOf("ABCDEFGHIJ")) }()
	<-full
	got, ack := read(t, b)
	// Read is not enough: the space is freed by the acknowledgement.
	select {
	case err := <-returned:
		t.Fatalf("the write returned (%v) with the buffer full", err)
	default:
	}
	if join(got) != "0123456789" {
		t.Fatalf("read %v", got)
	}
	_ = ack(context.Background(), nil)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	b.EndOfInput()
	if got := readAck(t, b); join(got) != "abcdefghij" {
		t.Fatalf("read %v", got)
	}
	if got := readAck(t, b); join(got) != "ABCDEFGHIJ" {
		t.Fatalf("read %v", got)
	}
	expectEnd(t, b)
}

func TestFullBlockedWriteCancelled(t *testing.T) {
	full := make(chan struct{}, 1)
	b := openT(t, config{Dir: t.TempDir(), MaxBytes: recOverhead + 1, onFull: func() { full <- struct{}{} }})
	write(t, b, "a")
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() {
		returned <- b.WriteBatch(ctx, batchOf("b"), func(context.Context, error) error { return nil })
	}()
	<-full
	cancel()
	if err := <-returned; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	if msgs, _ := b.stored(); msgs != 1 {
		t.Fatalf("%d messages stored, want 1", msgs)
	}
}

func TestFullDropOldest(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before the write that overflows, with m0..m3 written
		setup       func(t *testing.T, b *buffer) (finish func())
		wantDropped int64
		want        []string
	}{
		{
			name:        "nothing in flight",
			setup:       func(t *testing.T, b *buffer) func() { return func() {} },
			wantDropped: 1,
			want:        []string{"m1", "m2", "m3", "m4"},
		},
		{
			name: "oldest in flight is kept",
			setup: func(t *testing.T, b *buffer) func() {
				got, ack := read(t, b)
				if join(got) != "m0" {
					t.Fatalf("read %v", got)
				}
				return func() { _ = ack(context.Background(), nil) }
			},
			wantDropped: 1,
			want:        []string{"m2", "m3", "m4"},
		},
		{
			name: "failed batch is the oldest",
			setup: func(t *testing.T, b *buffer) func() {
				_, ack := read(t, b)
				_ = ack(context.Background(), errors.New("down"))
				return func() {}
			},
			wantDropped: 1,
			want:        []string{"m1", "m2", "m3", "m4"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openT(t, config{Dir: t.TempDir(), MaxBytes: 4 * (recOverhead + 2), DropOldest: true, ReadBatchMessages: 1})
			for _, c := range seqStrings("m", 0, 4) {
				write(t, b, c)
			}
			finish := tc.setup(t, b)
			write(t, b, "m4")
			finish()
			if n := b.droppedCount(reasonFull); n != tc.wantDropped {
				t.Fatalf("dropped %d, want %d", n, tc.wantDropped)
			}
			b.EndOfInput()
			var got []string
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				batch, ack, err := b.ReadBatch(ctx)
				cancel()
				if errors.Is(err, service.ErrEndOfBuffer) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, contentsOf(t, batch)...)
				_ = ack(context.Background(), nil)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("read %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDropOldestManyForOne(t *testing.T) {
	b := openT(t, config{Dir: t.TempDir(), MaxBytes: 10 * (recOverhead + 2), DropOldest: true, ReadBatchMessages: 1})
	for _, c := range seqStrings("m", 0, 10) {
		write(t, b, c)
	}
	// Room for 6 is made by dropping the 6 oldest, no more.
	write(t, b, "aa", "bb", "cc", "dd", "ee", "ff")
	if n := b.droppedCount(reasonFull); n != 6 {
		t.Fatalf("dropped %d, want 6", n)
	}
	if got := readAck(t, b); join(got) != "m6" {
		t.Fatalf("read %v, want m6", got)
	}
}

func TestBatchLargerThanMaxBytes(t *testing.T) {
	b := openT(t, config{Dir: t.TempDir(), MaxBytes: 100})
	err := b.WriteBatch(context.Background(), batchOf(strings.Repeat("x", 200)), func(context.Context, error) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "more than max_bytes") {
		t.Fatalf("write: %v", err)
	}
}

// TestHammer runs writers, a reader that fails batches at random, and
// checks that every message arrives, each writer's in order.
func TestHammer(t *testing.T) {
	const writers, perWriter = 4, 200
	b := openT(t, config{Dir: t.TempDir(), SegmentBytes: 4096, ReadBatchMessages: 7})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i += 2 {
				if err := writeBatch(b, batchOf(seqStrings(string(rune('a'+w)), i, i+2)...)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); b.EndOfInput() }()
	next := map[byte]int{}
	seen := 0
	for n := 0; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		batch, ack, err := b.ReadBatch(ctx)
		cancel()
		if errors.Is(err, service.ErrEndOfBuffer) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n%5 == 4 {
			_ = ack(context.Background(), errors.New("flaky output"))
			continue
		}
		for _, c := range contentsOf(t, batch) {
			w := c[0]
			if want := seqStrings(string(w), next[w], next[w]+1)[0]; c != want {
				t.Fatalf("got %s, want %s", c, want)
			}
			next[w]++
			seen++
		}
		_ = ack(context.Background(), nil)
	}
	if seen != writers*perWriter {
		t.Fatalf("saw %d messages, want %d", seen, writers*perWriter)
	}
	if msgs, bytes := b.stored(); msgs != 0 || bytes != 0 {
		t.Fatalf("left %d messages, %d bytes", msgs, bytes)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseReleasesFiles(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, config{Dir: dir})
	write(t, b, "a")
	closeT(t, b)
	if err := b.WriteBatch(context.Background(), batchOf("b"), func(context.Context, error) error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("write after close: %v", err)
	}
	// Released: it opens again, and the directory can go.
	b = openT(t, config{Dir: dir})
	closeT(t, b)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

// TestReadBeyondTail writes more than the reader's in-memory tail holds
// before reading: the rest is read back from the files.
func TestReadBeyondTail(t *testing.T) {
	b := openT(t, config{Dir: t.TempDir(), SegmentBytes: 4 << 20, ReadBatchMessages: 1})
	const n = 24 // 1MiB each, against a 16MiB tail
	for i := range n {
		write(t, b, strings.Repeat(string(rune('a'+i)), 1<<20))
	}
	b.mu.Lock()
	cached := len(b.tail)
	b.mu.Unlock()
	if cached == 0 || cached >= n {
		t.Fatalf("%d of %d batches cached", cached, n)
	}
	b.EndOfInput()
	for i := range n {
		got := readAck(t, b)
		if want := strings.Repeat(string(rune('a'+i)), 1<<20); len(got) != 1 || got[0] != want {
			t.Fatalf("batch %d differs", i)
		}
	}
	expectEnd(t, b)
}
