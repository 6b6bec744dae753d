package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// openHeld opens a store whose background checkpoints are held, so that
// the commit log stays as the test's commits leave it.
func openHeld(t *testing.T, dir string) *Store {
	t.Helper()
	s := openAt(t, dir)
	s.holdCheckpoints.Store(true)
	return s
}

// TestReplayAfterCrash closes the store without its final checkpoint, as a
// crash would leave it: the reopened store must replay the log.
func TestReplayAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	users := Namespace{Name: "users"}
	sessions := Namespace{Name: "sessions", TTL: time.Hour, EventTime: true}
	tmp := Namespace{Name: "tmp", TTL: time.Hour}
	commit(t, s, users, []Write{{Key: []byte("a"), Value: []byte("a1")}, {Key: []byte("b"), Value: []byte("b1")}}, Offset{Source: "k", Partition: "0", Offset: 10})
	cold(t, s) // a1 and b1 are materialised; the rest stays in the log
	commit(t, s, users, []Write{{Key: []byte("a"), Value: []byte("a2")}, {Key: []byte("c\x00"), Value: []byte{}}}, Offset{Source: "k", Partition: "0", Offset: 20})
	commit(t, s, sessions, []Write{{Key: []byte("a"), Value: []byte("s"), LastEvent: 42}})
	commit(t, s, tmp, []Write{{Key: []byte("t"), Value: []byte("t")}})
	if err := s.Delete("users", "b"); err != nil {
		t.Fatal(err)
	}
	commit(t, s, users, []Write{{Key: []byte("a"), Value: []byte("a3")}}, Offset{Source: "k", Partition: "0", Offset: 30}, Offset{Source: "k", Partition: "1", Offset: 5})
	if err := s.close(false); err != nil {
		t.Fatal(err)
	}
	if n := rawCount(t, dir, []byte{kindLog}); n != 5 {
		t.Fatalf("%d log chunks on disk after the crash, want 5 records", n)
	}

	s = openAt(t, dir)
	for _, c := range []struct {
		ns   Namespace
		keys []string
		want []string
	}{
		{users, []string{"a", "b", "c\x00"}, []string{"a3", "<absent>", ""}},
		{sessions, []string{"a"}, []string{"s"}},
		{tmp, []string{"t"}, []string{"t"}},
	} {
		if got := values(load(t, s, c.ns, 0, c.keys...)); !slices.Equal(got, c.want) {
			t.Errorf("after replay, Load(%s, %q) = %q, want %q", c.ns.Name, c.keys, got, c.want)
		}
	}
	if e, _, _ := s.Get("sessions", "a"); e.LastEvent != 42 {
		t.Errorf("LastEvent after replay = %d, want 42", e.LastEvent)
	}
	if keys, _, _ := s.Scan("users", "", "", 10); !slices.Equal(keys, []string{"a", "c\x00"}) {
		t.Errorf("Scan after replay = %q", keys)
	}
	for p, want := range map[string]int64{"0": 30, "1": 5} {
		if o, ok, _ := s.Applied("k", p); !ok || o != want {
			t.Errorf("Applied(k, %s) = %d, %v; want %d", p, o, ok, want)
		}
	}
	if st := s.Stats(); st.LogRecords != 0 || st.DirtyKeys != 0 {
		t.Errorf("Open did not checkpoint the replayed log: %+v", st)
	}
	// Wall-clock expiry survives the replay: it was fixed at commit time.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := rawCount(t, dir, []byte{kindLog}); n != 0 {
		t.Errorf("%d log chunks left after a clean Close", n)
	}
}

func TestCheckpointCoalesces(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	ns := Namespace{Name: "n"}
	for i := range 10 {
		commit(t, s, ns, []Write{{Key: []byte("hot"), Value: fmt.Appendf(nil, "v%d", i)}, {Key: fmt.Appendf(nil, "cold%d", i%2), Value: []byte("c")}})
	}
	if st := s.Stats(); st.LogRecords != 10 || st.DirtyKeys != 3 {
		t.Errorf("before checkpoint: %d log records, %d dirty keys; want 10, 3", st.LogRecords, st.DirtyKeys)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.LogRecords != 0 || st.DirtyKeys != 0 || st.LogBytes != 0 {
		t.Errorf("after checkpoint: %+v", st)
	}
	if err := s.close(false); err != nil {
		t.Fatal(err)
	}
	if n := rawCount(t, dir, []byte{kindState}); n != 3 {
		t.Errorf("%d state keys on disk, want 3", n)
	}
	if n := rawCount(t, dir, []byte{kindLog}); n != 0 {
		t.Errorf("%d log chunks on disk, want 0", n)
	}
	v, _, err := decodeValue(rawGet(t, dir, appendStateKey(nil, "n", []byte("hot"))))
	if err != nil || string(v) != "v9" {
		t.Errorf("materialised hot = %q, %v; want v9", v, err)
	}
}

// TestFailStop injects a commit failure after which the record did or did
// not reach the disk. The store must refuse further commits, and the next
// Open must tell which it was, keeping state and offsets together.
func TestFailStop(t *testing.T) {
	for _, c := range []struct {
		stage  string
		landed bool
	}{
		{"before", false},
		{"after", true},
	} {
		t.Run(c.stage, func(t *testing.T) {
			dir := t.TempDir()
			s := openHeld(t, dir)
			ns := Namespace{Name: "n"}
			commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("1")}}, Offset{Source: "s", Partition: "p", Offset: 1})
			injected := errors.New("injected disk failure")
			s.fault = func(stage string) error {
				if stage == c.stage {
					return injected
				}
				return nil
			}
			err := s.Commit(context.Background(), ns, []Write{{Key: []byte("k"), Value: []byte("2")}}, []Offset{{Source: "s", Partition: "p", Offset: 2}})
			if !errors.Is(err, injected) {
				t.Fatalf("Commit = %v, want the injected error", err)
			}
			s.fault = nil
			err = s.Commit(context.Background(), ns, []Write{{Key: []byte("x"), Value: []byte("x")}}, nil)
			if !errors.Is(err, injected) || !strings.Contains(err.Error(), "restart") {
				t.Errorf("Commit after a failure = %v, want it refused, saying to restart", err)
			}
			if err := s.Delete("n", "k"); err == nil {
				t.Error("Delete after a failure succeeded")
			}
			if got := values(load(t, s, ns, 0, "k")); got[0] != "1" {
				t.Errorf("Load after the failed commit = %q, want the last good value 1", got[0])
			}
			if err := s.checkpoint(); err != nil || s.Stats().Checkpoints != 0 {
				t.Errorf("a checkpoint ran after the failure: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openAt(t, dir)
			wantVal, wantOff := "1", int64(1)
			if c.landed {
				wantVal, wantOff = "2", 2
			}
			if got := values(load(t, s, ns, 0, "k")); got[0] != wantVal {
				t.Errorf("after restart, k = %q, want %q", got[0], wantVal)
			}
			if o, _, _ := s.Applied("s", "p"); o != wantOff {
				t.Errorf("after restart, Applied = %d, want %d", o, wantOff)
			}
			if _, ok, _ := s.Get("n", "x"); ok {
				t.Error("a refused commit's write is there")
			}
			commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("3")}})
		})
	}
}

func TestCorruptLogRefusesOpen(t *testing.T) {
	for _, c := range []struct {
		name string
		key  []byte
		val  []byte
		want string
	}{
		{"missing chunk", logKey(5, 0), append([]byte{0, 0, 0, 2}, appendRecord(nil, "n", nil, 0)...), "log record 5: 1 of 2 chunks present"},
		{"garbage record", logKey(5, 0), []byte{0, 0, 0, 1, 9, 9}, "log record 5: log record has format 9"},
		{"truncated record", logKey(5, 0), append([]byte{0, 0, 0, 1}, appendRecord(nil, "n", []Write{{Key: []byte("k"), Value: []byte("v")}}, 0)[:8]...), "malformed log record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openAt(t, dir)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rawSet(t, dir, c.key, c.val)
			_, err := Open(context.Background(), Options{Dir: dir, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open = %v, want an error naming the dir and containing %q", err, c.want)
			}
		})
	}
}

// TestScanSeesUncheckpointedCommits mixes keys only in Badger, keys only in
// the log, and log deletions of Badger keys.
func TestScanSeesUncheckpointedCommits(t *testing.T) {
	s := openHeld(t, t.TempDir())
	ns := Namespace{Name: "n"}
	commit(t, s, ns, []Write{{Key: []byte("a"), Value: []byte("v")}, {Key: []byte("c"), Value: []byte("v")}, {Key: []byte("e"), Value: []byte("v")}, {Key: []byte("g"), Value: []byte("v")}})
	cold(t, s)
	commit(t, s, ns, []Write{{Key: []byte("b"), Value: []byte("v")}, {Key: []byte("f"), Value: []byte("v")}, {Key: []byte("h"), Value: []byte("v")}})
	if err := s.Delete("n", "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("n", "zz-never-existed"); err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "b", "e", "f", "g", "h"}
	for _, limit := range []int{1, 2, 4, 6, 100} {
		var got []string
		after := ""
		for range 20 {
			keys, next, err := s.Scan("n", "", after, limit)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, keys...)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: Scan pages give %q, want %q", limit, got, want)
		}
	}
	cold(t, s)
	if keys, _, _ := s.Scan("n", "", "", 100); !slices.Equal(keys, want) {
		t.Errorf("after checkpoint: %q, want %q", keys, want)
	}
}
