package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// quiet discards logs; tests that assert on logs use a logTap.
var quiet = slog.New(slog.DiscardHandler)

func openAt(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, SyncWrites: true, Logger: quiet})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openTemp(t testing.TB) *Store {
	t.Helper()
	return openAt(t, t.TempDir())
}

// cold checkpoints and empties the cache: the next reads come from
// Badger's state keys alone.
func cold(t testing.TB, s *Store) {
	t.Helper()
	if err := s.coldRead(); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

func commit(t testing.TB, s *Store, ns Namespace, writes []Write, offsets ...Offset) {
	t.Helper()
	if err := s.Commit(context.Background(), ns, writes, offsets); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func load(t testing.TB, s *Store, ns Namespace, now int64, keys ...string) []Entry {
	t.Helper()
	bk := make([][]byte, len(keys))
	for i, k := range keys {
		bk[i] = []byte(k)
	}
	got, err := s.Load(ns, bk, now)
	if err != nil {
		t.Fatalf("load %q: %v", keys, err)
	}
	if len(got) != len(keys) {
		t.Fatalf("load %d keys returned %d entries", len(keys), len(got))
	}
	return got
}

// values renders entries as strings, "<absent>" for absent ones.
func values(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		if e.Value == nil {
			out[i] = "<absent>"
		} else {
			out[i] = string(e.Value)
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "users"}
	cases := []struct {
		name      string
		key       string
		value     []byte
		lastEvent int64
	}{
		{"plain", "u1", []byte(`{"count":3}`), 1_700_000_000_000_000_000},
		{"empty value is present", "u2", []byte{}, 0},
		{"nil value is present and empty", "u3", nil, 5},
		{"binary with NUL", "u4", []byte{0, 1, 0, 255}, -1},
		{"key with NUL", "u\x005", []byte("x"), 7},
		{"64 KiB value", "u6", bytes.Repeat([]byte("v"), 64<<10), 9},
	}
	var writes []Write
	for _, c := range cases {
		writes = append(writes, Write{Key: []byte(c.key), Value: c.value, LastEvent: c.lastEvent})
	}
	commit(t, s, ns, writes)

	for _, fromDisk := range []bool{false, true} {
		if fromDisk {
			cold(t, s)
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/fromDisk=%v", c.name, fromDisk), func(t *testing.T) {
				e := load(t, s, ns, 0, c.key)[0]
				if e.Value == nil {
					t.Fatalf("Load: absent, want %q", c.value)
				}
				if !bytes.Equal(e.Value, c.value) || e.LastEvent != c.lastEvent {
					t.Errorf("Load = (%q, %d), want (%q, %d)", e.Value, e.LastEvent, c.value, c.lastEvent)
				}
				g, ok, err := s.Get(ns.Name, c.key)
				if err != nil || !ok {
					t.Fatalf("Get = ok %v, err %v", ok, err)
				}
				if !bytes.Equal(g.Value, c.value) || g.Value == nil || g.LastEvent != c.lastEvent {
					t.Errorf("Get = (%q, %d), want (%q, %d)", g.Value, g.LastEvent, c.value, c.lastEvent)
				}
			})
		}
	}
}

func TestCommitCopiesInput(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	key, val := []byte("k"), []byte("before")
	commit(t, s, ns, []Write{{Key: key, Value: val}})
	copy(key, "z")
	copy(val, "AFTER!")
	if got := values(load(t, s, ns, 0, "k")); got[0] != "before" {
		t.Errorf("after the caller reused its buffers, Load(k) = %q, want %q", got[0], "before")
	}
}

func TestLoadAbsentAndOrder(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	commit(t, s, ns, []Write{
		{Key: []byte("a"), Value: []byte("A")},
		{Key: []byte("c"), Value: []byte("C")},
	})
	keys := []string{"b", "a", "c", "a", "b", "zz", "c", "a"}
	want := []string{"<absent>", "A", "C", "A", "<absent>", "<absent>", "C", "A"}
	for _, fromDisk := range []bool{true, false, false} { // cold, then partly and fully cached
		if fromDisk {
			cold(t, s)
		}
		if got := values(load(t, s, ns, 0, keys...)); !slices.Equal(got, want) {
			t.Errorf("fromDisk=%v: Load(%q) = %q, want %q", fromDisk, keys, got, want)
		}
	}
	if got := load(t, s, ns, 0); len(got) != 0 {
		t.Errorf("Load() = %v, want empty", got)
	}
	if _, ok, err := s.Get(ns.Name, "b"); ok || err != nil {
		t.Errorf("Get(absent) = ok %v, err %v; want false, nil", ok, err)
	}
}

func TestWritesOfOneKeyApplyInOrder(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	commit(t, s, ns, []Write{
		{Key: []byte("k"), Value: []byte("1")},
		{Key: []byte("k"), Value: []byte("2")},
		{Key: []byte("d"), Value: []byte("x")},
		{Key: []byte("d"), Delete: true},
	})
	want := []string{"2", "<absent>"}
	if got := values(load(t, s, ns, 0, "k", "d")); !slices.Equal(got, want) {
		t.Errorf("cached: %q, want %q", got, want)
	}
	cold(t, s)
	if got := values(load(t, s, ns, 0, "k", "d")); !slices.Equal(got, want) {
		t.Errorf("from disk: %q, want %q", got, want)
	}
}

func TestCommitWithOffsetsIsDurable(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	ns := Namespace{Name: "counts"}

	if _, ok, err := s.Applied("kafka:events", "0"); ok || err != nil {
		t.Fatalf("Applied before any commit = ok %v, err %v; want false, nil", ok, err)
	}
	commit(t, s, ns, []Write{{Key: []byte("u1"), Value: []byte("1"), LastEvent: 10}},
		Offset{Source: "kafka:events", Partition: "0", Offset: 41},
		Offset{Source: "kafka:events", Partition: "1", Offset: 7})
	commit(t, s, ns, []Write{{Key: []byte("u2"), Value: []byte("2"), LastEvent: 20}},
		Offset{Source: "kafka:events", Partition: "0", Offset: 99},
		Offset{Source: "file:in.jsonl", Partition: "", Offset: 3})

	check := func(t *testing.T, s *Store) {
		t.Helper()
		for _, c := range []struct {
			source, partition string
			want              int64
		}{
			{"kafka:events", "0", 99},
			{"kafka:events", "1", 7},
			{"file:in.jsonl", "", 3},
		} {
			got, ok, err := s.Applied(c.source, c.partition)
			if err != nil || !ok || got != c.want {
				t.Errorf("Applied(%q, %q) = %d, %v, %v; want %d, true, nil", c.source, c.partition, got, ok, err, c.want)
			}
		}
		if _, ok, _ := s.Applied("kafka:events", "2"); ok {
			t.Error("Applied of a partition never committed: ok = true")
		}
		if got := values(load(t, s, ns, 0, "u1", "u2")); !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("Load = %q, want [1 2]", got)
		}
	}
	check(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(t, openAt(t, dir))
}

func TestCommitValidationWritesNothing(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	good := Write{Key: []byte("k"), Value: []byte("v")}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name    string
		ctx     context.Context
		ns      Namespace
		writes  []Write
		offsets []Offset
		want    string
	}{
		{"empty key", context.Background(), ns, []Write{good, {Key: nil, Value: []byte("v")}}, nil, "write[1]: entity key is empty"},
		{"huge key", context.Background(), ns, []Write{good, {Key: make([]byte, 65000)}}, nil, "write[1]: entity key is 65000 bytes"},
		{"source with NUL", context.Background(), ns, []Write{good}, []Offset{{Source: "a\x00b", Offset: 1}}, "offset[0]: offset source \"a\\x00b\" contains a NUL byte"},
		{"empty source", context.Background(), ns, []Write{good}, []Offset{{Offset: 1}}, "offset source is empty"},
		{"canceled", canceled, ns, []Write{good}, nil, context.Canceled.Error()},
		{"bad namespace", context.Background(), Namespace{Name: "Bad"}, []Write{good}, nil, `namespace name "Bad"`},
		{"negative ttl", context.Background(), Namespace{Name: "n", TTL: -time.Second}, []Write{good}, nil, "is negative"},
		{"sub-second wall ttl", context.Background(), Namespace{Name: "n", TTL: 500 * time.Millisecond}, []Write{good}, nil, "whole seconds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Commit(c.ctx, c.ns, c.writes, c.offsets)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Commit error = %v, want one containing %q", err, c.want)
			}
			if _, ok, _ := s.Get("n", "k"); ok {
				t.Error("a rejected commit wrote its valid write")
			}
		})
	}
	// An event-time namespace may have a sub-second TTL: it is not Badger's.
	commit(t, s, Namespace{Name: "n", TTL: time.Millisecond, EventTime: true}, []Write{good})
}

func TestEventTimeTTL(t *testing.T) {
	s := openTemp(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	ns := Namespace{Name: "sessions", TTL: 5 * time.Minute, EventTime: true}
	commit(t, s, ns, []Write{
		{Key: []byte("idle"), Value: []byte("old"), LastEvent: now - (10 * time.Minute).Nanoseconds()},
		{Key: []byte("active"), Value: []byte("new"), LastEvent: now - time.Minute.Nanoseconds()},
		{Key: []byte("edge"), Value: []byte("edge"), LastEvent: now - (5 * time.Minute).Nanoseconds()},
	})
	cases := []struct {
		name string
		ns   Namespace
		now  int64
		want []string
	}{
		{"ttl 5m", ns, now, []string{"<absent>", "new", "edge"}},
		{"now 0 skips the check", ns, 0, []string{"old", "new", "edge"}},
		{"an earlier batch sees the idle one", ns, now - (6 * time.Minute).Nanoseconds(), []string{"old", "new", "edge"}},
		{"ttl 0 is forever", Namespace{Name: "sessions", EventTime: true}, now, []string{"old", "new", "edge"}},
		{"wall-clock namespace ignores now", Namespace{Name: "sessions"}, now, []string{"old", "new", "edge"}},
	}
	for _, fromDisk := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/fromDisk=%v", c.name, fromDisk), func(t *testing.T) {
				if fromDisk {
					cold(t, s)
				}
				if got := values(load(t, s, c.ns, c.now, "idle", "active", "edge")); !slices.Equal(got, c.want) {
					t.Errorf("Load = %q, want %q", got, c.want)
				}
			})
		}
	}
	// Get has no event time: it returns the raw entry for the caller to judge.
	if e, ok, err := s.Get("sessions", "idle"); err != nil || !ok || e.LastEvent != now-(10*time.Minute).Nanoseconds() {
		t.Errorf("Get(idle) = %+v, %v, %v; want the stored entry", e, ok, err)
	}
}

func TestWallClockTTL(t *testing.T) {
	s := openTemp(t)
	// 2s, not 1s: Badger keeps expiry in whole seconds, so a 1s TTL may
	// already be over by the first Load.
	ns := Namespace{Name: "tmp", TTL: 2 * time.Second}
	commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("v")}})
	commit(t, s, Namespace{Name: "keep"}, []Write{{Key: []byte("k"), Value: []byte("v")}})
	if got := values(load(t, s, ns, 0, "k")); got[0] != "v" {
		t.Fatalf("right after commit: Load = %q, want v", got[0])
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cachedGone := load(t, s, ns, 0, "k")[0].Value == nil
		_, onDisk, err := s.Get("tmp", "k")
		if err != nil {
			t.Fatal(err)
		}
		if cachedGone && !onDisk {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after a 2s TTL: Load absent %v, Get present %v", cachedGone, onDisk)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cold(t, s)
	if got := values(load(t, s, ns, 0, "k")); got[0] != "<absent>" {
		t.Errorf("expired key read from disk: %q", got[0])
	}
	if keys, _, _ := s.Scan("tmp", "", "", 10); len(keys) != 0 {
		t.Errorf("Scan lists expired keys: %q", keys)
	}
	if got := values(load(t, s, Namespace{Name: "keep"}, 0, "k")); got[0] != "v" {
		t.Errorf("a namespace without TTL lost its key: %q", got[0])
	}
}

func TestNamespaceIsolation(t *testing.T) {
	s := openTemp(t)
	// Each (namespace, key) holds its own value. The tricky ones: a
	// namespace that is a prefix of another, and keys with NUL bytes that
	// look like the separator or like another namespace's key.
	pairs := []struct{ ns, key string }{
		{"user", "a"},
		{"user_x", "a"},
		{"user", "_x\x00a"},
		{"user", "\x00"},
		{"user", "\x00\x00"},
		{"user", "a\x00"},
		{"user_x", "\x00a"},
		{"use", "r\x00a"},
		{"u", "ser_x\x00a"},
	}
	for _, p := range pairs {
		commit(t, s, Namespace{Name: p.ns}, []Write{{Key: []byte(p.key), Value: []byte(p.ns + "|" + p.key)}})
	}
	for _, fromDisk := range []bool{false, true} {
		if fromDisk {
			cold(t, s)
		}
		for _, owner := range pairs {
			for _, reader := range []string{"user", "user_x", "use", "u"} {
				got := load(t, s, Namespace{Name: reader}, 0, owner.key)[0].Value
				var want []byte
				for _, p := range pairs {
					if p.ns == reader && p.key == owner.key {
						want = []byte(p.ns + "|" + p.key)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("fromDisk=%v: Load(ns %q, key %q) = %q, want %q", fromDisk, reader, owner.key, got, want)
				}
			}
		}
	}
	for _, ns := range []string{"user", "user_x", "use", "u"} {
		keys, next, err := s.Scan(ns, "", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, p := range pairs {
			if p.ns == ns {
				want = append(want, p.key)
			}
		}
		slices.Sort(want)
		if !slices.Equal(keys, want) || next != "" {
			t.Errorf("Scan(%q) = %q, next %q; want %q", ns, keys, next, want)
		}
	}
	if err := s.Delete("user", "a"); err != nil {
		t.Fatal(err)
	}
	if got := values(load(t, s, Namespace{Name: "user_x"}, 0, "a")); got[0] != "user_x|a" {
		t.Errorf("Delete in user removed user_x's key: %q", got[0])
	}
}

func TestNamespaceNames(t *testing.T) {
	s := openTemp(t)
	cases := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"user_x", true},
		{"session-features", true},
		{"v2", true},
		{strings.Repeat("a", 64), true},
		// A source partition's part of a namespace (PartitionNamespace).
		{"user_features.p0", true},
		{"user_features.p17", true},
		{"", false},
		{".p1", false},
		{"a.p", false},
		{"a.q1", false},
		{"a.p-1", false},
		{"a.p1.p2", false},
		{"User", false},
		{"a b", false},
		{"a/b", false},
		{"a.b", false},
		{"a\x00", false},
		{"é", false},
		{strings.Repeat("a", 65), false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q", c.name), func(t *testing.T) {
			ns := Namespace{Name: c.name}
			k := [][]byte{[]byte("k")}
			errs := map[string]error{}
			_, errs["Load"] = s.Load(ns, k, 0)
			errs["Commit"] = s.Commit(context.Background(), ns, []Write{{Key: k[0], Value: []byte("v")}}, nil)
			_, _, errs["Get"] = s.Get(c.name, "k")
			_, _, errs["Scan"] = s.Scan(c.name, "", "", 1)
			errs["Delete"] = s.Delete(c.name, "k")
			for op, err := range errs {
				if c.ok && err != nil {
					t.Errorf("%s: %v", op, err)
				}
				if !c.ok && (err == nil || !strings.Contains(err.Error(), "namespace name")) {
					t.Errorf("%s: error %v, want a namespace name error", op, err)
				}
			}
		})
	}
}

func TestFormatVersion(t *testing.T) {
	t.Run("other version", func(t *testing.T) {
		dir := t.TempDir()
		s := openAt(t, dir)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		rawSet(t, dir, metaFormatKey, encodeFormat(7))
		_, err := Open(context.Background(), Options{Dir: dir, Logger: quiet})
		if err == nil {
			t.Fatal("Open of a version-7 store succeeded")
		}
		for _, want := range []string{dir, "format version 7", fmt.Sprintf("speaks format version %d", FormatVersion)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
	t.Run("foreign badger database", func(t *testing.T) {
		dir := t.TempDir()
		rawSet(t, dir, []byte("somebody else's key"), []byte("x"))
		_, err := Open(context.Background(), Options{Dir: dir, Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "not a sluice state store") {
			t.Fatalf("Open = %v, want a 'not a sluice state store' error", err)
		}
	})
	t.Run("new store is stamped", func(t *testing.T) {
		dir := t.TempDir()
		s := openAt(t, dir)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := rawGet(t, dir, metaFormatKey); !bytes.Equal(got, encodeFormat(FormatVersion)) {
			t.Errorf("stored format version = %x, want %x", got, encodeFormat(FormatVersion))
		}
	})
}

func rawSet(t *testing.T, dir string, key, val []byte) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, dir string, key []byte) []byte {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawCount counts the live Badger keys with a prefix, store closed.
func rawCount(t *testing.T, dir string, prefix []byte) int {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestErrLocked(t *testing.T) {
	dir := t.TempDir()
	openAt(t, dir)
	_, err := Open(context.Background(), Options{Dir: dir, Logger: quiet})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "another agent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestOpenLazy: a lazy store takes nothing on disk until it is used; its
// first use opens the dir, and a dir held by another store fails that use
// (and Ready) with ErrLocked, which a later Ready retries once it is free.
func TestOpenLazy(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	lazy, err := OpenLazy(Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if st := lazy.Stats(); st.Commits != 0 || st.LSMBytes != 0 {
		t.Errorf("Stats of an unopened store = %+v", st)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dir after OpenLazy and Stats: %v; want it not created", err)
	}
	// Another store takes the dir first: the lazy one's first use fails.
	held := openAt(t, dir)
	ns := Namespace{Name: "users"}
	if err := held.Commit(ctx, ns, []Write{{Key: []byte("u1"), Value: []byte("v1")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lazy.Get("users", "u1"); !errors.Is(err, ErrLocked) {
		t.Errorf("Get on a lazy store whose dir is held = %v, want ErrLocked", err)
	}
	if err := lazy.Ready(ctx); !errors.Is(err, ErrLocked) {
		t.Errorf("Ready on a held dir = %v, want ErrLocked", err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	// Free now: the first operation opens it and sees the other's commit.
	e, ok, err := lazy.Get("users", "u1")
	if err != nil || !ok || string(e.Value) != "v1" {
		t.Fatalf("Get after the dir was freed = %q, %v, %v; want v1", e.Value, ok, err)
	}
	if err := lazy.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lazy.Ready(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Ready after Close = %v, want the store closed", err)
	}
	// A lazy store never used closes without touching the disk.
	unused, err := OpenLazy(Options{Dir: filepath.Join(t.TempDir(), "never"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Errorf("Close of an unopened store = %v", err)
	}
	if _, _, err := unused.Get("users", "u1"); err == nil {
		t.Error("Get after Close succeeded")
	}
}

func TestOptions(t *testing.T) {
	_, err := Open(context.Background(), Options{GCInterval: -1, CacheKeys: -1})
	if err == nil {
		t.Fatal("Open with bad options succeeded")
	}
	for _, want := range []string{"dir is empty", "gc interval", "cache keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, Options{Dir: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a canceled context = %v", err)
	}
	if _, err := Open(context.Background(), Options{Dir: t.TempDir(), InMemory: true}); err == nil || !strings.Contains(err.Error(), "in-memory") {
		t.Errorf("Open in memory with a dir = %v, want it refused", err)
	}
}

// TestInMemory: an in-memory store commits, loads and records offsets like
// a durable one, for benchmarks that price durability on the same path.
func TestInMemory(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ns := Namespace{Name: "n"}
	if err := st.Commit(ctx, ns, []Write{{Key: []byte("k"), Value: []byte("v")}}, []Offset{{Source: "s", Partition: "0", Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	if e, ok, err := st.Get("n", "k"); err != nil || !ok || string(e.Value) != "v" {
		t.Errorf("Get = %q %v %v", e.Value, ok, err)
	}
	if off, ok, err := st.Applied("s", "0"); err != nil || !ok || off != 7 {
		t.Errorf("Applied = %d %v %v", off, ok, err)
	}
}

func TestCacheNeverStale(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	step := func(want string) {
		t.Helper()
		if got := values(load(t, s, ns, 0, "k")); got[0] != want {
			t.Fatalf("Load(k) = %q, want %q", got[0], want)
		}
	}
	step("<absent>") // caches the absence
	commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("v1")}})
	step("v1")
	commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("v2")}})
	step("v2")
	if err := s.Delete("n", "k"); err != nil {
		t.Fatal(err)
	}
	step("<absent>")
	if _, ok, _ := s.Get("n", "k"); ok {
		t.Error("Get after Delete: present")
	}
	commit(t, s, ns, []Write{{Key: []byte("k"), Value: []byte("v3")}})
	step("v3")
	commit(t, s, ns, []Write{{Key: []byte("k"), Delete: true}})
	step("<absent>")

	st := s.Stats()
	if st.CacheHits == 0 || st.KeysCached == 0 {
		t.Errorf("the cache was never used: %+v", st)
	}
	if st.Commits != 5 || st.Writes != 5 {
		t.Errorf("Stats commits %d writes %d, want 5 and 5", st.Commits, st.Writes)
	}
}

func TestCacheEviction(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), CacheKeys: 10, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := Namespace{Name: "n"}
	var writes []Write
	var keys []string
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		writes = append(writes, Write{Key: []byte(k), Value: []byte(k)})
	}
	commit(t, s, ns, writes)
	// Committed keys are pinned until a checkpoint writes them out.
	if st := s.Stats(); st.KeysCached != 100 || st.DirtyKeys != 100 {
		t.Errorf("before checkpoint: KeysCached %d, DirtyKeys %d; want 100, 100", st.KeysCached, st.DirtyKeys)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.KeysCached != 10 || st.DirtyKeys != 0 {
		t.Errorf("after checkpoint: KeysCached %d, DirtyKeys %d; want the bound 10, 0", st.KeysCached, st.DirtyKeys)
	}
	if got := values(load(t, s, ns, 0, keys...)); !slices.Equal(got, keys) {
		t.Errorf("Load of evicted keys = %q", got)
	}
}

func TestScanPagination(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	var writes []Write
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		writes = append(writes, Write{Key: []byte(k), Value: []byte("v")})
	}
	writes = append(writes, Write{Key: []byte("j"), Value: []byte("v")}, Write{Key: []byte("l"), Value: []byte("v")})
	commit(t, s, ns, writes)
	commit(t, s, Namespace{Name: "n_other"}, []Write{{Key: []byte("k99"), Value: []byte("v")}})

	var got []string
	var pages []int
	after := ""
	for {
		keys, next, err := s.Scan("n", "k", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys...)
		pages = append(pages, len(keys))
		if next == "" {
			break
		}
		if next != keys[len(keys)-1] {
			t.Fatalf("next %q is not the page's last key %q", next, keys[len(keys)-1])
		}
		after = next
		if len(pages) > 10 {
			t.Fatal("Scan does not end")
		}
	}
	if !slices.Equal(got, want) || !slices.Equal(pages, []int{10, 10, 5}) {
		t.Errorf("pages %v of %q, want [10 10 5] of %q", pages, got, want)
	}

	cases := []struct {
		name, prefix, after string
		limit               int
		want                []string
		next                string
	}{
		{"exact fit ends", "k", "k19", 5, []string{"k20", "k21", "k22", "k23", "k24"}, ""},
		{"after before the prefix", "k", "a", 2, []string{"k00", "k01"}, "k01"},
		{"after past the prefix", "k", "z", 5, nil, ""},
		{"after not a key", "k", "k05x", 2, []string{"k06", "k07"}, "k07"},
		{"no prefix", "", "k23", 10, []string{"k24", "l"}, ""},
		{"no match", "x", "", 10, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, next, err := s.Scan("n", c.prefix, c.after, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, c.want) || next != c.next {
				t.Errorf("Scan(%q, after %q, %d) = %q, next %q; want %q, next %q", c.prefix, c.after, c.limit, keys, next, c.want, c.next)
			}
		})
	}
	if _, _, err := s.Scan("n", "", "", 0); err == nil {
		t.Error("Scan with limit 0 succeeded")
	}
}

func TestBackupRestore(t *testing.T) {
	// The backup holds the commit log when taken before a checkpoint:
	// Restore must replay it.
	for _, checkpointed := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkpointed=%v", checkpointed), func(t *testing.T) { backupRestore(t, checkpointed) })
	}
}

func backupRestore(t *testing.T, checkpointed bool) {
	src := openTemp(t)
	src.holdCheckpoints.Store(true)
	nss := []Namespace{{Name: "a"}, {Name: "a_b", TTL: time.Hour}, {Name: "events", TTL: time.Minute, EventTime: true}}
	rng := rand.New(rand.NewPCG(1, 2))
	type ref struct{ ns, key string }
	var all []ref
	for _, ns := range nss {
		var writes []Write
		for i := range 300 {
			k := fmt.Sprintf("key-%d-\x00-%d", i, rng.IntN(1000))
			v := make([]byte, rng.IntN(200))
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			writes = append(writes, Write{Key: []byte(k), Value: v, LastEvent: rng.Int64()})
			all = append(all, ref{ns.Name, k})
		}
		commit(t, src, ns, writes, Offset{Source: "src-" + ns.Name, Partition: "3", Offset: int64(len(writes))})
	}
	if err := src.Delete("a", all[0].key); err != nil {
		t.Fatal(err)
	}

	if checkpointed {
		cold(t, src)
	}
	if got := src.Stats().LogRecords; (got == 0) != checkpointed {
		t.Fatalf("%d log records before the backup", got)
	}
	var buf bytes.Buffer
	if err := src.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	dst := openTemp(t)
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		e1, ok1, err1 := src.Get(r.ns, r.key)
		e2, ok2, err2 := dst.Get(r.ns, r.key)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if ok1 != ok2 || !bytes.Equal(e1.Value, e2.Value) || e1.LastEvent != e2.LastEvent {
			t.Fatalf("Get(%q, %q): source (%v, %x, %d), restored (%v, %x, %d)", r.ns, r.key, ok1, e1.Value, e1.LastEvent, ok2, e2.Value, e2.LastEvent)
		}
	}
	if _, ok, _ := dst.Get("a", all[0].key); ok {
		t.Error("a key deleted before the backup came back")
	}
	for _, ns := range nss {
		k1, _, _ := src.Scan(ns.Name, "", "", 1000)
		k2, _, _ := dst.Scan(ns.Name, "", "", 1000)
		if !slices.Equal(k1, k2) {
			t.Errorf("Scan(%q): %d keys in source, %d restored", ns.Name, len(k1), len(k2))
		}
		o, ok, err := dst.Applied("src-"+ns.Name, "3")
		if err != nil || !ok || o != 300 {
			t.Errorf("restored Applied(src-%s) = %d, %v, %v; want 300", ns.Name, o, ok, err)
		}
	}
	// The restored store keeps working: commit on top, reopen-safe stamp.
	commit(t, dst, nss[0], []Write{{Key: []byte("new"), Value: []byte("v")}})
}

func TestClosed(t *testing.T) {
	s := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	ns := Namespace{Name: "n"}
	errs := map[string]error{}
	_, errs["Load"] = s.Load(ns, [][]byte{[]byte("k")}, 0)
	errs["Commit"] = s.Commit(context.Background(), ns, []Write{{Key: []byte("k")}}, nil)
	_, _, errs["Applied"] = s.Applied("s", "p")
	_, _, errs["Get"] = s.Get("n", "k")
	_, _, errs["Scan"] = s.Scan("n", "", "", 1)
	errs["Delete"] = s.Delete("n", "k")
	errs["Backup"] = s.Backup(&bytes.Buffer{})
	errs["Restore"] = s.Restore(&bytes.Buffer{})
	for op, err := range errs {
		if !errors.Is(err, errClosed) {
			t.Errorf("%s on a closed store = %v, want errClosed", op, err)
		}
	}
	_ = s.Stats() // must not panic
}

// logTap records log records so tests can assert on warnings.
type logTap struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l *logTap) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logTap) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logTap) WithGroup(string) slog.Handler      { return l }

func TestCommitTooBigIsSplitAndStaysAtomic(t *testing.T) {
	// Badger's limit is 15% of the 64 MiB memtable: 14 x 900 KiB does not fit.
	var writes []Write
	for i := range 14 {
		writes = append(writes, Write{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{byte(i)}, 900<<10)})
	}
	ns := Namespace{Name: "big"}
	off := Offset{Source: "s", Partition: "p", Offset: 1}

	t.Run("lands whole", func(t *testing.T) {
		tap := &logTap{}
		s, err := Open(context.Background(), Options{Dir: t.TempDir(), Logger: slog.New(tap)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		commit(t, s, ns, writes, off)
		if got := s.Stats().SplitCommits; got != 1 {
			t.Errorf("SplitCommits = %d, want 1", got)
		}
		if o, ok, _ := s.Applied("s", "p"); !ok || o != 1 {
			t.Errorf("Applied = %d, %v; want 1", o, ok)
		}
		cold(t, s)
		for i, e := range load(t, s, ns, 0, "k0", "k13") {
			if len(e.Value) != 900<<10 {
				t.Errorf("entry %d: %d bytes", i, len(e.Value))
			}
		}
		tap.mu.Lock()
		defer tap.mu.Unlock()
		if !slices.ContainsFunc(tap.msgs, func(m string) bool { return strings.Contains(m, "still atomic") }) {
			t.Errorf("the split was not logged: %q", tap.msgs)
		}
	})
	t.Run("crash before the header", func(t *testing.T) {
		dir := t.TempDir()
		s := openAt(t, dir)
		s.fault = func(stage string) error {
			if stage == "header" {
				return errors.New("injected crash")
			}
			return nil
		}
		if err := s.Commit(context.Background(), ns, writes, []Offset{off}); err == nil {
			t.Fatal("Commit with a fault succeeded")
		}
		if err := s.close(false); err != nil {
			t.Fatal(err)
		}
		if n := rawCount(t, dir, []byte{kindLog}); n == 0 {
			t.Fatal("the fault left no chunks behind; the test does not test anything")
		}
		s = openAt(t, dir)
		if _, ok, _ := s.Applied("s", "p"); ok {
			t.Error("offsets of a commit whose header never landed are there")
		}
		if got := values(load(t, s, ns, 0, "k0", "k13")); !slices.Equal(got, []string{"<absent>", "<absent>"}) {
			t.Errorf("values of a commit whose header never landed: %q", got)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rawCount(t, dir, []byte{kindLog}); n != 0 {
			t.Errorf("%d orphan chunks left after Open", n)
		}
	})
}

func TestValueLogGCRuns(t *testing.T) {
	// A tick with nothing to rewrite must end cleanly and log nothing.
	tap := &logTap{}
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), GCInterval: 10 * time.Millisecond, Logger: slog.New(tap)})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, Namespace{Name: "n"}, []Write{{Key: []byte("k"), Value: []byte("v")}})
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, m := range tap.msgs {
		if strings.Contains(m, "gc") {
			t.Errorf("unexpected gc log: %s", m)
		}
	}
}

// TestLoadManyCold reads a batch big enough to be spread over several
// read transactions.
func TestLoadManyCold(t *testing.T) {
	s := openTemp(t)
	ns := Namespace{Name: "n"}
	var writes []Write
	for i := range 3000 {
		writes = append(writes, Write{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	commit(t, s, ns, writes)
	cold(t, s)
	var keys, want []string
	for i := range 2000 {
		j := (i * 7919) % 4000 // some absent, some repeated
		keys = append(keys, fmt.Sprintf("k%d", j))
		if j < 3000 {
			want = append(want, fmt.Sprintf("v%d", j))
		} else {
			want = append(want, "<absent>")
		}
	}
	keys = append(keys, keys[:500]...)
	want = append(want, want[:500]...)
	if got := values(load(t, s, ns, 0, keys...)); !slices.Equal(got, want) {
		t.Errorf("Load of %d cold keys differs from what was committed", len(keys))
	}
}
