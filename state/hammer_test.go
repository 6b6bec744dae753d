package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestHammer runs the processor's call pattern from several goroutines at
// once: each owns a set of keys and does Load -> increment -> Commit rounds,
// while readers Load random keys of everyone. Every counter must end exact,
// through the cache and from disk.
func TestHammer(t *testing.T) {
	if testing.Short() {
		t.Skip("hammer")
	}
	// A tiny cache evicts all the time, which is when a Load's read of
	// Badger can race with a commit's value leaving memory.
	for _, cacheKeys := range []int{0, 7} {
		t.Run(fmt.Sprintf("cache=%d", cacheKeys), func(t *testing.T) { hammer(t, cacheKeys) })
	}
}

func hammer(t *testing.T, cacheKeys int) {
	const (
		writers = 6
		readers = 3
		keysPer = 40
		rounds  = 60
	)
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, SyncWrites: true, CacheKeys: cacheKeys, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ns := Namespace{Name: "hammer"}
	key := func(w, i int) []byte { return fmt.Appendf(nil, "w%d-k%d", w, i) }

	var wg sync.WaitGroup
	errs := make(chan error, writers+readers+1)
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := make([][]byte, keysPer)
			for i := range keys {
				keys[i] = key(w, i)
			}
			for r := range rounds {
				es, err := s.Load(ns, keys, 0)
				if err != nil {
					errs <- err
					return
				}
				writes := make([]Write, len(keys))
				for i, e := range es {
					var n uint64
					if e.Value != nil {
						n = binary.BigEndian.Uint64(e.Value)
					}
					if n != uint64(r) {
						errs <- fmt.Errorf("writer %d round %d: key %s reads %d", w, r, keys[i], n)
						return
					}
					writes[i] = Write{Key: keys[i], Value: binary.BigEndian.AppendUint64(nil, n+1)}
				}
				err = s.Commit(context.Background(), ns, writes, []Offset{{Source: "hammer", Partition: fmt.Sprint(w), Offset: int64(r)}})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var rg sync.WaitGroup
	// Checkpoints race with everything, far more often than the
	// background loop would run them.
	rg.Add(1)
	go func() {
		defer rg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.checkpoint(); err != nil {
				errs <- err
				return
			}
		}
	}()
	for rd := range readers {
		rg.Add(1)
		go func() {
			defer rg.Done()
			rng := rand.New(rand.NewPCG(uint64(rd), 9))
			keys := make([][]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range keys {
					keys[i] = key(rng.IntN(writers), rng.IntN(keysPer))
				}
				if _, err := s.Load(ns, keys, 0); err != nil {
					errs <- err
					return
				}
				if cacheKeys == 0 && rng.IntN(20) == 0 {
					s.purgeCache() // force misses racing with commits
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	check := func(s *Store, how string) {
		for w := range writers {
			for i := range keysPer {
				e := load(t, s, ns, 0, string(key(w, i)))[0]
				if e.Value == nil || binary.BigEndian.Uint64(e.Value) != rounds {
					t.Fatalf("%s: key %s = %x, want %d", how, key(w, i), e.Value, rounds)
				}
			}
			if off, ok, _ := s.Applied("hammer", fmt.Sprint(w)); !ok || off != rounds-1 {
				t.Errorf("%s: Applied(writer %d) = %d, %v", how, w, off, ok)
			}
		}
	}
	check(s, "cached")
	// Leave some of the log for replay, as a crash would.
	commit(t, s, ns, []Write{{Key: []byte("extra"), Value: []byte("x")}})
	if err := s.close(false); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir)
	check(s, "replayed")
	cold(t, s)
	check(s, "from disk")
}

// TestHammerSameKeys has goroutines commit to the same keys at once, with
// loads in between. Which commit wins is Badger's order; the cache must
// agree with the disk whatever it is.
func TestHammerSameKeys(t *testing.T) {
	const (
		writers = 6
		rounds  = 80
		nkeys   = 16
	)
	if testing.Short() {
		t.Skip("hammer")
	}
	dir := t.TempDir()
	s := openAt(t, dir)
	ns := Namespace{Name: "shared"}
	keys := make([][]byte, nkeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	stop := make(chan struct{})
	var cg sync.WaitGroup
	cg.Add(1)
	go func() {
		defer cg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.checkpoint(); err != nil {
				errs <- err
				return
			}
			s.purgeCache()
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for r := range rounds {
				var writes []Write
				for _, k := range keys {
					switch rng.IntN(4) {
					case 0:
						writes = append(writes, Write{Key: k, Delete: true})
					case 1:
						// skip the key this round
					default:
						writes = append(writes, Write{Key: k, Value: fmt.Appendf(nil, "w%d-r%d", w, r)})
					}
				}
				if err := s.Commit(context.Background(), ns, writes, nil); err != nil {
					errs <- err
					return
				}
				if _, err := s.Load(ns, keys, 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	cg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cachedView, err := s.Load(ns, keys, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		disk, ok, err := s.Get(ns.Name, string(k))
		if err != nil {
			t.Fatal(err)
		}
		if ok != (cachedView[i].Value != nil) || !bytes.Equal(disk.Value, cachedView[i].Value) {
			t.Errorf("key %s: Load %q, Get %q (present %v)", k, cachedView[i].Value, disk.Value, ok)
		}
	}
	// And the disk, replayed after a crash, agrees with what Load said.
	if err := s.close(false); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir)
	cold(t, s)
	replayed := load(t, s, ns, 0, func() []string {
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = string(k)
		}
		return out
	}()...)
	for i, k := range keys {
		if !bytes.Equal(replayed[i].Value, cachedView[i].Value) || (replayed[i].Value == nil) != (cachedView[i].Value == nil) {
			t.Errorf("key %s: before the crash %q, replayed %q", k, cachedView[i].Value, replayed[i].Value)
		}
	}
}
