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
	const (
		writers = 6
		readers = 3
		keysPer = 40
		rounds  = 60
	)
	if testing.Short() {
		t.Skip("hammer")
	}
	dir := t.TempDir()
	s := openAt(t, dir)
	ns := Namespace{Name: "hammer"}
	key := func(w, i int) []byte { return fmt.Appendf(nil, "w%d-k%d", w, i) }

	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
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
				if rng.IntN(20) == 0 {
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
	s.purgeCache()
	check(s, "from disk")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openAt(t, dir), "reopened")
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
	s := openTemp(t)
	ns := Namespace{Name: "shared"}
	keys := make([][]byte, nkeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
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
			t.Errorf("key %s: cache %q, disk %q (present %v)", k, cachedView[i].Value, disk.Value, ok)
		}
	}
}
