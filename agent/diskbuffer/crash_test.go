package diskbuffer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	crashEnvDir  = "SLUICE_DISKBUFFER_CRASH_DIR"
	crashEnvSync = "SLUICE_DISKBUFFER_CRASH_SYNC"
	// Each written batch holds crashBatch messages; the child's reader
	// acknowledges the first crashAcked batches, then stops reading.
	crashBatch  = 10
	crashAcked  = 40
	crashWrites = 300 // batches acknowledged to the writer before the kill
)

func crashConfig(dir, sync string) config {
	c := config{Dir: dir, SegmentBytes: 16 << 10, ReadBatchMessages: 1}
	if sync == "interval" {
		c.SyncInterval = time.Hour
	}
	return c
}

// TestCrashChild is the child of TestSIGKILL: it writes batches without
// end, printing "w <batch>" when a batch is acknowledged to it, and reads
// and acknowledges the first crashAcked batches, printing "a <batch>".
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("only run by TestSIGKILL")
	}
	b, err := open(crashConfig(dir, os.Getenv(crashEnvSync)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		outMu.Unlock()
	}
	go func() {
		for i := 0; i < crashAcked; i++ {
			batch, ack, err := b.ReadBatch(context.Background())
			if err != nil {
				say("error %v", err)
				return
			}
			if err := ack(context.Background(), nil); err != nil {
				say("error %v", err)
				return
			}
			say("a %s", strings.Split(string(mustBytes(batch[0])), "-")[0])
		}
	}()
	// Writes go on until the parent kills the process; the limit is for a
	// parent that died.
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		batch := make(service.MessageBatch, crashBatch)
		for j := range batch {
			batch[j] = service.NewMessage([]byte(fmt.Sprintf("%d-%d-%s", i, j, strings.Repeat("p", 80))))
			batch[j].MetaSetMut("batch", int64(i))
		}
		err := b.WriteBatch(context.Background(), batch, func(_ context.Context, err error) error {
			if err == nil {
				say("w %d", i)
			}
			return nil
		})
		if err != nil {
			say("error %v", err)
			return
		}
	}
}

func mustBytes(m *service.Message) []byte {
	b, err := m.AsBytes()
	if err != nil {
		panic(err)
	}
	return b
}

// TestSIGKILL kills a process writing to the buffer with SIGKILL and checks
// that the reopened buffer delivers every batch acknowledged to the writer
// and not acknowledged by the reader, once, in order, with no gap.
func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, syncMode := range []string{"always", "interval"} {
		t.Run(syncMode, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvSync+"="+syncMode)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			written, acked := -1, -1
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				kind, arg, _ := strings.Cut(sc.Text(), " ")
				switch kind {
				case "w":
					written, _ = strconv.Atoi(arg)
				case "a":
					acked, _ = strconv.Atoi(arg)
				case "error":
					t.Fatalf("child: %s", arg)
				}
				if written >= crashWrites-1 && acked == crashAcked-1 {
					break
				}
			}
			if written < crashWrites-1 || acked != crashAcked-1 {
				_ = cmd.Process.Kill()
				t.Fatalf("child stopped after writing %d and acknowledging %d batches (%v)", written+1, acked+1, sc.Err())
			}
			// SIGKILL, mid-write: the child writes without pause.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("child ended with %v, not killed", err)
			}

			b := openT(t, crashConfig(dir, syncMode))
			b.EndOfInput()
			next := crashAcked // batch expected next
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
				if len(batch) != crashBatch {
					t.Fatalf("batch of %d messages, want %d", len(batch), crashBatch)
				}
				for j, m := range batch {
					want := fmt.Sprintf("%d-%d-", next, j)
					if got := string(mustBytes(m)); !strings.HasPrefix(got, want) {
						t.Fatalf("got %.20s, want %s...", got, want)
					}
					if v, _ := m.MetaGetMut("batch"); v != int64(next) {
						t.Fatalf("metadata batch %v, want %d", v, next)
					}
				}
				_ = ack(context.Background(), nil)
				next++
			}
			if next <= written {
				t.Fatalf("delivered batches %d to %d after the kill; %d was acknowledged to the writer", crashAcked, next-1, written)
			}
			t.Logf("killed after %d writes acknowledged (%d written); delivered %d to %d", written+1, next, crashAcked, next-1)
		})
	}
}
