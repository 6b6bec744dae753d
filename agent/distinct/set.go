package distinct

// hashSet holds the keys seen, as 128-bit hashes, in one open-addressed
// table (linear probing, at most half full): finding a key and adding it
// is one probe sequence over a flat array, usually one cache miss, where
// a Go map's lookup and insert are two and its growth moves groups about.
// The hashes are uniform already, so the first word is the slot.
type hashSet struct {
	slots []uint64 // pairs (h0, h1); (0, 0) is an empty slot
	free  func()   // unmaps slots; nil for slots on the heap
	n     int
	zero  bool // whether (0, 0) itself was added
	// warm keeps addAll's reads of the slots from being optimised away.
	warm uint64
}

// add adds the hash (h0, h1) and reports whether it was new.
func (s *hashSet) add(h0, h1 uint64) bool {
	if h0 == 0 && h1 == 0 {
		added := !s.zero
		s.zero = true
		return added
	}
	if 4*(s.n+1) > len(s.slots) {
		s.grow()
	}
	if s.put(h0, h1) {
		s.n++
		return true
	}
	return false
}

// addAll adds hs[j] for each j of idx, in order, and sets dup[j] for
// those that were there already. The table grows first, so one mask
// serves the batch; then every hash's home slot is read, the loads
// independent of one another, before any is probed. A probe's read is a
// cache miss into a table of tens of MB, and add after add cannot start
// the next miss until the last probe's branch resolves; reads with
// nothing waiting on them overlap, as many at once as the core can
// track, and leave the batch's slots in cache for the probes
// (BenchmarkFrames, docs/BENCHMARKS.md session 24).
func (s *hashSet) addAll(hs [][2]uint64, idx []int32, dup []bool) {
	for 4*(s.n+len(idx)) > len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots)/2 - 1)
	var sum uint64
	for _, j := range idx {
		sum += s.slots[2*(hs[j][0]&mask)]
	}
	s.warm = sum
	for _, j := range idx {
		dup[j] = !s.add(hs[j][0], hs[j][1])
	}
}

// put finds (h0, h1)'s slot, filling it if empty, and reports whether it
// was empty.
func (s *hashSet) put(h0, h1 uint64) bool {
	mask := uint64(len(s.slots)/2 - 1)
	for i := h0 & mask; ; i = (i + 1) & mask {
		a, b := s.slots[2*i], s.slots[2*i+1]
		if a == 0 && b == 0 {
			s.slots[2*i], s.slots[2*i+1] = h0, h1
			return true
		}
		if a == h0 && b == h1 {
			return false
		}
	}
}

// grow doubles the table (from 4096 slots) and puts every hash back.
func (s *hashSet) grow() {
	old, free := s.slots, s.free
	s.slots, s.free = newSlots(max(2*len(old), 2*4096))
	if s.free == nil {
		prefault(s.slots)
	}
	for i := 0; i < len(old); i += 2 {
		if old[i] != 0 || old[i+1] != 0 {
			s.put(old[i], old[i+1])
		}
	}
	if free != nil {
		free()
	}
}

// release gives back the table's memory; the set is empty after.
func (s *hashSet) release() {
	if s.free != nil {
		s.free()
	}
	*s = hashSet{}
}

// len is the number of hashes added.
func (s *hashSet) len() int {
	if s.zero {
		return s.n + 1
	}
	return s.n
}

// prefault writes to every page of a table just made. A table this large
// is fresh memory from the OS, and put's first touch of each page is a
// read: the kernel maps its shared zero page, then put's write faults
// again to copy it, and that copy flushes the TLB of every core running
// the process (an interrupt to each; dear in a VM). Writing first takes
// one plain fault per page. In a perf profile of the whole sales ETL
// these copy faults were most of the process's page faults, nearly all
// of them here (docs/bench/distinct-prefault-s18.txt).
func prefault(slots []uint64) {
	const perPage = 4096 / 8
	for i := 0; i < len(slots); i += perPage {
		slots[i] = 0
	}
}
