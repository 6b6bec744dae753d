package grpcplugin_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHammer runs batches from several goroutines, as a pipeline's threads
// do, while the plugin process is killed again and again. Every batch must
// either go through whole or fail whole with a death's reason; afterwards
// the step works, and of every process it started only the current one is
// left.
func TestHammer(t *testing.T) {
	p, _ := mustProcessor(t, "path: "+plugins["echo"]+"\nrestart_backoff: {initial: 5ms, max: 20ms}", nil)
	const workers, batches, kills = 4, 60, 6
	var mu sync.Mutex
	pids := map[int]bool{p.PID(): true}
	var failed, passed int
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for range kills {
			select {
			case <-ctx.Done():
				return
			case <-time.After(40 * time.Millisecond):
			}
			if pid := p.PID(); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range batches {
				in := batchOf(fmt.Sprintf("upper:w%d-%d-a", w, i), "sleep:2ms", fmt.Sprintf("upper:w%d-%d-b", w, i))
				out := run(t, p, in)
				if len(out) != 3 {
					t.Errorf("worker %d batch %d: %d messages back", w, i, len(out))
					return
				}
				errs := 0
				for _, m := range out {
					if e := errText(m); e != "" {
						errs++
						if !strings.Contains(e, "plugin process exited") && !strings.Contains(e, "plugin connection lost") {
							t.Errorf("worker %d batch %d: unexpected failure %q", w, i, e)
						}
					}
				}
				mu.Lock()
				switch errs {
				case 0:
					passed++
					pid, _ := strconv.Atoi(metaOf(out[0], "pid"))
					pids[pid] = true
					if body(t, out[0]) != strings.ToUpper(fmt.Sprintf("w%d-%d-a", w, i)) {
						t.Errorf("worker %d batch %d: %s", w, i, body(t, out[0]))
					}
				case 3:
					failed++
				default:
					t.Errorf("worker %d batch %d: %d of 3 messages failed, want all or none", w, i, errs)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	cancel()
	killer.Wait()
	// The killer's last SIGKILL can land just before it stops, after the
	// workers' last batch: the process is dead but not yet seen to be, so
	// the first batch after the hammer may fail with that death, as any
	// batch in flight does. The next one must restart the plugin and pass.
	out := run(t, p, batchOf("final"))
	if e := errText(out[0]); e != "" {
		if !strings.Contains(e, "plugin process exited") && !strings.Contains(e, "plugin connection lost") {
			t.Fatalf("after the hammer: unexpected failure %q", e)
		}
		t.Logf("first batch after the hammer met the last kill: %s", e)
		if out = run(t, p, batchOf("final")); errText(out[0]) != "" {
			t.Fatalf("after the hammer and a restart: %s", errText(out[0]))
		}
	}
	cur := p.PID()
	pids[cur] = true
	for pid := range pids {
		if pid != cur {
			waitGone(t, pid, 5*time.Second)
		}
	}
	t.Logf("%d batches passed, %d failed, %d processes", passed, failed, len(pids))
	if len(pids) < 2 {
		t.Error("no kill landed: the test tested nothing")
	}
}

func metaOf(m interface{ MetaGet(string) (string, bool) }, k string) string {
	v, _ := m.MetaGet(k)
	return v
}
