package diskbuffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// testClock is a clock tests move forward.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration) { c.off.Add(int64(d)) }

func openT(t testing.TB, c config) *buffer {
	t.Helper()
	b, err := open(c, nil)
	if err != nil {
		t.Fatalf("open %s: %v", c.Dir, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func closeT(t testing.TB, b *buffer) {
	t.Helper()
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func batchOf(contents ...string) service.MessageBatch {
	batch := make(service.MessageBatch, len(contents))
	for i, c := range contents {
		batch[i] = service.NewMessage([]byte(c))
	}
	return batch
}

// write stores the contents as one batch and waits for its
// acknowledgement.
func write(t testing.TB, b *buffer, contents ...string) {
	t.Helper()
	if err := writeBatch(b, batchOf(contents...)); err != nil {
		t.Fatalf("write %v: %v", contents, err)
	}
}

func writeBatch(b *buffer, batch service.MessageBatch) error {
	acked := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WriteBatch(ctx, batch, func(_ context.Context, err error) error {
		acked <- err
		return nil
	}); err != nil {
		return err
	}
	select {
	case err := <-acked:
		return err
	case <-ctx.Done():
		return errors.New("no acknowledgement")
	}
}

// read reads one batch and gives its contents and acknowledgement.
func read(t testing.TB, b *buffer) ([]string, service.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch, ack, err := b.ReadBatch(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return contentsOf(t, batch), ack
}

func contentsOf(t testing.TB, batch service.MessageBatch) []string {
	t.Helper()
	out := make([]string, len(batch))
	for i, m := range batch {
		bs, err := m.AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(bs)
	}
	return out
}

// readAck reads one batch, acknowledges it and gives its contents.
func readAck(t testing.TB, b *buffer) []string {
	t.Helper()
	got, ack := read(t, b)
	if err := ack(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return got
}

// expectNothing asserts that no batch is ready: ReadBatch gives up on an
// already cancelled context only after finding nothing to return.
func expectNothing(t testing.TB, b *buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	batch, _, err := b.ReadBatch(ctx)
	if err == nil {
		t.Fatalf("expected nothing to read, got %v", contentsOf(t, batch))
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("expected nothing to read, got %v", err)
	}
}

// expectEnd asserts that the buffer reports its end.
func expectEnd(t testing.TB, b *buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch, _, err := b.ReadBatch(ctx)
	if !errors.Is(err, service.ErrEndOfBuffer) {
		t.Fatalf("expected the end of the buffer, got %v, %v", contentsOf(t, batch), err)
	}
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	segs := segmentFiles(t, dir)
	if len(segs) == 0 {
		t.Fatal("no segment")
	}
	return segs[len(segs)-1]
}

func appendToFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func (b *buffer) droppedCount(reason string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped[reason]
}

func (b *buffer) stored() (msgs, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgs, b.bytes
}

func seqStrings(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func join(s []string) string { return strings.Join(s, ",") }
