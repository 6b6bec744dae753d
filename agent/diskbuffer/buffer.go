package diskbuffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	// maxReadBytes stops a read that merges written batches (a single
	// written batch larger than this is still read whole).
	maxReadBytes = 8 << 20
	// Redelivery of a failed batch waits retryMin, doubling up to retryMax
	// while failures continue: outputs nack at once, and without a pause a
	// down output would be called in a busy loop.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// expireBudget bounds the bytes one housekeeping pass reads to drop
	// expired messages, so that it holds the lock briefly; reads drop
	// expired messages too.
	expireBudget = 8 << 20
	// cursorSyncEvery is how often acknowledgements are fsynced.
	cursorSyncEvery = time.Second
	// tailBytes bounds the written batches kept in memory for the reader,
	// which then parses them there instead of reading them back from the
	// file: while the output keeps up, nothing is read from disk.
	tailBytes = 16 << 20
	// maxFree bounds the encoding buffers kept for reuse.
	maxFree = 8
)

// Drop reasons, the values of the dropped counter's `reason` label.
const (
	reasonFull    = "full"
	reasonMaxAge  = "max_age"
	reasonCorrupt = "corrupt"
)

// errClosed is returned by writes after Close.
var errClosed = errors.New(Name + " buffer is closed")

type entryState uint8

const (
	inFlight entryState = iota
	nacked
	done // acknowledged or dropped
)

// entry is a run of records past the ack position that was read: a batch
// in flight, a failed batch waiting to be delivered again, or records
// acknowledged or dropped behind one of those.
type entry struct {
	span
	state     entryState
	seg       *segment // holds its records, unless done
	firstTime int64    // write time of its first record
	lastTime  int64    // and of its last
	retryAt   time.Time
}

func (e *entry) bytes() int64 { return int64(e.end - e.pos) }
func (e *entry) msgs() int64  { return int64(e.endSeq - e.seq) }

// cached is a written batch kept for the reader: its encoded records,
// never written to again once cached, as in the file.
type cached struct {
	seg      *segment
	pos, end uint64
	buf      []byte
}

// waiter is a written batch waiting for the group commit.
type waiter struct {
	pos, seq uint64
	ack      service.AckFunc
}

type metrics struct {
	bytes, msgs, age *service.MetricGauge
	dropped          *service.MetricCounter
}

// buffer is the `sluice_disk` buffer. Positions (pos) are byte offsets in
// the log of records, sequence numbers (seq) count records; a span names a
// run of records by both.
//
// Locks, taken in this order: rmu (one reader at a time) or wmu (one
// writer at a time: encoding, rolling, appending), then mu (all state, and
// disk reads).
// smu orders the syncer's fsync of the active segment against sealing it;
// it is never held with mu.
type buffer struct {
	conf config
	dir  string
	log  *service.Logger
	m    metrics
	now  func() time.Time // replaced in tests
	lock *os.File

	// rmu serialises readers: rbuf holds the records of the batch being
	// read, copied out of the lock.
	rmu  sync.Mutex
	rbuf []byte

	wmu     sync.Mutex
	enc     []byte // the batch being written, encoded; under wmu
	lastEnc int    // the size of the last one, to size the next

	smu sync.Mutex

	mu   sync.Mutex
	cond *sync.Cond
	segs []*segment

	appendPos, appendSeq uint64 // end of what was written
	pubPos, pubSeq       uint64 // end of what may be read: fsynced with sync: always
	readPos, readSeq     uint64 // next record to read for the first time
	ackPos, ackSeq       uint64 // every record before is acknowledged or dropped

	pending []*entry // read, from ackPos to readPos, in order
	skips   []span   // done ranges from the cursor, past readPos
	bytes   int64    // stored and neither acknowledged nor dropped
	msgs    int64

	inFlight   int
	nackStreak int
	unsynced   []waiter // written, waiting for the group commit's fsync
	endOfInput bool
	closed     bool
	failed     error // a write or fsync failed: nothing more is written
	dropped    map[string]int64

	rseg      *segment // the segment rf reads
	rf        *os.File
	scratch   []byte   // disk reads; records are copied out of it
	free      [][]byte // encoding buffers the reader is done with
	tail      []cached // written batches from about readPos on, in order
	tailBytes int64
	doomed    []string // segments to remove, outside the lock

	curFile  *os.File
	curGen   uint64
	curBuf   []byte
	curDirty bool // written since the last fsync

	wake      chan struct{} // a waiter for the group commit
	stop      chan struct{}
	bg        sync.WaitGroup
	ackCtx    context.Context // for the group commit's acknowledgements
	cancelAck context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// open opens the buffer in c.Dir, creating it if need be, and delivers
// what an earlier run left unacknowledged.
func open(c config, res *service.Resources) (*buffer, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if res == nil {
		res = service.MockResources()
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("buffer directory %s: %w", c.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create buffer directory %s: %w", dir, err)
	}
	owner := ""
	if c.owner != "" {
		owner = strconv.Quote(c.owner)
	}
	lock, err := lockDir(filepath.Join(dir, lockFileName), owner)
	if err != nil {
		return nil, err
	}
	b := &buffer{
		conf:    c,
		dir:     dir,
		log:     res.Logger(),
		now:     c.now,
		lock:    lock,
		dropped: map[string]int64{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	b.cond = sync.NewCond(&b.mu)
	mt := res.Metrics()
	b.m = metrics{
		bytes:   mt.NewGauge("sluice_buffer_bytes"),
		msgs:    mt.NewGauge("sluice_buffer_messages"),
		age:     mt.NewGauge("sluice_buffer_oldest_age_seconds"),
		dropped: mt.NewCounter("sluice_buffer_dropped_total", "reason"),
	}
	if err := b.load(); err != nil {
		lock.Close()
		return nil, err
	}
	b.ackCtx, b.cancelAck = context.WithCancel(context.Background())
	if c.SyncInterval > 0 {
		b.bg.Add(1)
		go b.intervalSyncer()
	} else if !c.inlineSync {
		b.bg.Add(1)
		go b.groupSyncer()
	}
	b.bg.Add(1)
	go b.housekeeping()
	return b, nil
}

// load sets the state from the files.
func (b *buffer) load() error {
	l, err := openLog(b.dir, func(f string, args ...any) { b.log.Warnf(Name+": "+f, args...) })
	if err != nil {
		return err
	}
	b.segs, b.curFile, b.curGen = l.segs, l.curFile, l.curGen
	b.appendPos, b.appendSeq = l.appendPos, l.appendSq
	b.pubPos, b.pubSeq = l.appendPos, l.appendSq
	b.ackPos, b.ackSeq = l.cur.ack.pos, l.cur.ack.seq
	if len(b.segs) > 0 {
		if first := b.segs[0]; b.ackPos < first.base {
			// Acknowledged up to a deleted segment, the cursor written
			// before the deletion was lost: start at what is left.
			b.ackPos, b.ackSeq = first.base, first.baseSeq
		}
	}
	if b.ackPos > b.appendPos || b.ackSeq > b.appendSeq {
		// With sync: interval, acknowledged records past what a power loss
		// kept: they are gone, and new ones must not be taken as acked.
		b.ackPos, b.ackSeq = b.appendPos, b.appendSeq
	}
	b.readPos, b.readSeq = b.ackPos, b.ackSeq
	b.bytes = int64(b.appendPos - b.ackPos)
	b.msgs = int64(b.appendSeq - b.ackSeq)
	prev := b.ackPos
	for _, r := range l.cur.ranges {
		if r.pos < prev || r.end <= r.pos || r.end > b.appendPos || r.endSeq < r.seq || r.endSeq > b.appendSeq {
			break
		}
		b.skips = append(b.skips, r)
		b.bytes -= int64(r.end - r.pos)
		b.msgs -= int64(r.endSeq - r.seq)
		prev = r.end
	}
	if n := len(b.segs); n > 0 {
		last := b.segs[n-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			b.curFile.Close()
			return fmt.Errorf("open segment %s: %w", last.path, err)
		}
		last.f = f
	}
	b.mu.Lock()
	b.deleteSegmentsLocked()
	b.persistCursorLocked()
	b.updateGaugesLocked()
	b.mu.Unlock()
	b.removeDoomed()
	if b.msgs > 0 {
		b.log.Infof("%s: %s holds %d messages (%d bytes) not acknowledged before; delivering them first", Name, b.dir, b.msgs, b.bytes)
	}
	return nil
}

// housekeeping drops expired messages, sets the age gauge and fsyncs the
// cursor.
func (b *buffer) housekeeping() {
	defer b.bg.Done()
	every := cursorSyncEvery
	if a := b.conf.MaxAge; a > 0 && a/4 < every {
		every = max(a/4, 10*time.Millisecond)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-t.C:
		case <-b.stop:
			return
		}
		b.mu.Lock()
		now := b.now()
		if b.conf.MaxAge > 0 {
			b.expireLocked(now.UnixNano() - int64(b.conf.MaxAge))
		}
		b.updateAgeLocked(now)
		syncCursor := b.curDirty && time.Since(lastSync) >= cursorSyncEvery
		if syncCursor {
			b.curDirty = false
		}
		b.mu.Unlock()
		b.removeDoomed()
		if syncCursor {
			lastSync = time.Now()
			if err := b.curFile.Sync(); err != nil {
				b.log.Errorf("%s: fsync cursor in %s: %v", Name, b.dir, err)
			}
		}
	}
}

func (b *buffer) broadcast() {
	b.mu.Lock()
	b.cond.Broadcast()
	b.mu.Unlock()
}

// updateAgeLocked sets the age gauge from the oldest record stored.
func (b *buffer) updateAgeLocked(now time.Time) {
	oldest := int64(0)
	for _, e := range b.pending {
		if e.state != done {
			oldest = e.firstTime
			break
		}
	}
	if oldest == 0 && b.readPos < b.pubPos && (len(b.skips) == 0 || b.skips[0].pos > b.readPos) {
		s := b.segs[b.segAtLocked(b.readPos)]
		if b.readPos+recHeaderSize+recFixedSize <= s.end() {
			var hdr [recHeaderSize + recFixedSize]byte
			if err := b.readAtLocked(s, hdr[:], b.readPos); err == nil {
				oldest = int64(binary.LittleEndian.Uint64(hdr[recHeaderSize+8:]))
			}
		}
	}
	age := int64(0)
	if oldest > 0 {
		age = max(0, int64(now.Sub(time.Unix(0, oldest))/time.Second))
	}
	b.m.age.Set(age)
}

func (b *buffer) updateGaugesLocked() {
	b.m.bytes.Set(b.bytes)
	b.m.msgs.Set(b.msgs)
}

// EndOfInput says no more writes come: once everything stored is
// acknowledged, ReadBatch gives service.ErrEndOfBuffer.
func (b *buffer) EndOfInput() {
	b.mu.Lock()
	b.endOfInput = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// Close stops the buffer: pending writes are fsynced and acknowledged, the
// cursor is fsynced, and files are released. Batches in flight stay
// stored, and are delivered again on the next open.
func (b *buffer) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.close(ctx) })
	return b.closeErr
}

func (b *buffer) close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	// Writers are done once wmu is free: later ones see closed.
	b.wmu.Lock()
	defer b.wmu.Unlock()
	close(b.stop)
	stopped := make(chan struct{})
	go func() { b.bg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		// An input not taking its acknowledgement must not hold Close.
		b.cancelAck()
		<-stopped
	}
	b.cancelAck()
	var errs []error
	b.mu.Lock()
	var last *segment
	if n := len(b.segs); n > 0 {
		last = b.segs[n-1]
	}
	b.mu.Unlock()
	if last != nil && last.f != nil {
		errs = append(errs, b.seal(last))
	}
	b.removeDoomed()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tail, b.tailBytes, b.free = nil, 0, nil
	b.persistCursorLocked()
	if err := b.curFile.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("fsync cursor in %s: %w", b.dir, err))
	}
	if err := b.curFile.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close cursor in %s: %w", b.dir, err))
	}
	b.curFile = nil
	if b.rf != nil {
		b.rf.Close()
		b.rf, b.rseg = nil, nil
	}
	errs = append(errs, b.lock.Close())
	return errors.Join(errs...)
}
