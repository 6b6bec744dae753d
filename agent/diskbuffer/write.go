package diskbuffer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// WriteBatch stores the batch and acknowledges it to the input once it is
// durable (sync: always) or written (sync: interval). It keeps no
// reference to the messages.
func (b *buffer) WriteBatch(ctx context.Context, batch service.MessageBatch, ackFn service.AckFunc) error {
	if len(batch) == 0 {
		return ackFn(ctx, nil)
	}
	b.wmu.Lock()
	now := b.now().UnixNano()
	seq := b.appendSeq
	if b.enc == nil {
		// The last buffer went to the tail cache: one the reader is done
		// with, or a new one sized after the last.
		b.mu.Lock()
		if n := len(b.free); n > 0 {
			b.enc, b.free[n-1] = b.free[n-1], nil
			b.free = b.free[:n-1]
		}
		b.mu.Unlock()
		if b.enc == nil {
			b.enc = make([]byte, 0, b.lastEnc+b.lastEnc/8)
		}
	}
	b.enc = b.enc[:0]
	for i, msg := range batch {
		var err error
		if b.enc, err = appendRecord(b.enc, seq+uint64(i), now, i == len(batch)-1, msg); err != nil {
			b.wmu.Unlock()
			return fmt.Errorf("%s: message %d: %w", Name, i, err)
		}
	}
	size := int64(len(b.enc))
	if size > b.conf.MaxBytes {
		b.wmu.Unlock()
		return fmt.Errorf("%s: a batch of %d messages takes %d bytes, more than max_bytes (%d): it can never be stored", Name, len(batch), size, b.conf.MaxBytes)
	}
	b.mu.Lock()
	err := b.reserveLocked(ctx, size, int64(len(batch)))
	b.mu.Unlock()
	if err != nil {
		b.wmu.Unlock()
		return err
	}
	s, err := b.activeFor(now, uint64(size))
	if err == nil {
		err = b.appendTo(s)
	}
	if err != nil {
		b.mu.Lock()
		b.bytes -= size
		b.msgs -= int64(len(batch))
		b.updateGaugesLocked()
		b.cond.Broadcast()
		b.mu.Unlock()
		b.wmu.Unlock()
		return err
	}
	if b.conf.inlineSync {
		if err := s.f.Sync(); err != nil {
			err = fmt.Errorf("fsync %s: %w", s.path, err)
			b.mu.Lock()
			b.failLocked(err)
			b.mu.Unlock()
			b.wmu.Unlock()
			// Stored but not known durable: acknowledged with the error,
			// so the input sends it again; a duplicate at worst.
			_ = ackFn(ctx, err)
			return nil
		}
	}
	b.mu.Lock()
	if b.tailBytes+size <= tailBytes {
		b.tail = append(b.tail, cached{seg: s, pos: b.appendPos, end: b.appendPos + uint64(size), buf: b.enc})
		b.tailBytes += size
		b.lastEnc, b.enc = len(b.enc), nil
	}
	s.size += uint64(size)
	b.appendPos += uint64(size)
	b.appendSeq += uint64(len(batch))
	group := b.conf.SyncInterval == 0 && !b.conf.inlineSync
	if group {
		b.unsynced = append(b.unsynced, waiter{pos: b.appendPos, seq: b.appendSeq, ack: ackFn})
	} else {
		b.pubPos, b.pubSeq = b.appendPos, b.appendSeq
		b.cond.Broadcast()
	}
	b.mu.Unlock()
	b.wmu.Unlock()
	if group {
		select {
		case b.wake <- struct{}{}:
		default:
		}
		return nil
	}
	return ackFn(ctx, nil)
}

// reserveLocked counts size bytes and n messages in, once there is room.
func (b *buffer) reserveLocked(ctx context.Context, size, n int64) error {
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	var droppedMsgs, droppedBytes int64
	defer func() {
		if droppedMsgs > 0 {
			b.log.Warnf("%s: buffer full (max_bytes %d): dropped the %d oldest messages (%d bytes)", Name, b.conf.MaxBytes, droppedMsgs, droppedBytes)
		}
	}()
	for {
		if b.closed {
			return errClosed
		}
		if b.failed != nil {
			return b.failed
		}
		if b.bytes+size <= b.conf.MaxBytes {
			b.bytes += size
			b.msgs += n
			b.updateGaugesLocked()
			return nil
		}
		if b.conf.DropOldest {
			m, by, progress := b.dropOldestLocked(b.bytes + size - b.conf.MaxBytes)
			droppedMsgs += m
			droppedBytes += by
			if progress {
				continue
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if stop == nil {
			stop = context.AfterFunc(ctx, b.broadcast)
			if b.conf.onFull != nil {
				b.conf.onFull()
			}
		}
		b.cond.Wait()
	}
}

// activeFor gives the segment the next size bytes go to, rolling to a new
// one if the active one is full. The caller holds wmu.
func (b *buffer) activeFor(now int64, size uint64) (*segment, error) {
	b.mu.Lock()
	var s *segment
	if n := len(b.segs); n > 0 {
		s = b.segs[n-1]
	}
	pos, seq := b.appendPos, b.appendSeq
	b.mu.Unlock()
	if s != nil && s.f != nil && (s.size == 0 || s.size+size <= uint64(b.conf.SegmentBytes)) {
		return s, nil
	}
	if s != nil && s.f != nil {
		if err := b.seal(s); err != nil {
			return nil, err
		}
	}
	ns, err := createSegment(b.dir, segHeader{base: pos, baseSeq: seq, created: now})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.segs = append(b.segs, ns)
	// The previous segment may be acknowledged already.
	b.deleteSegmentsLocked()
	b.mu.Unlock()
	b.removeDoomed()
	return ns, nil
}

// seal makes a segment the writer is done with durable and closes it.
func (b *buffer) seal(s *segment) error {
	b.smu.Lock()
	defer b.smu.Unlock()
	err := s.f.Sync()
	if err != nil {
		err = fmt.Errorf("fsync %s: %w", s.path, err)
		// Before f is nil: the syncer takes a nil f for sealed, so durable.
		b.mu.Lock()
		b.failLocked(err)
		b.mu.Unlock()
	}
	if cerr := s.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", s.path, cerr)
	}
	s.f = nil
	return err
}

// appendTo writes the encoded batch at the end of s. A failed write is cut
// off again, so that the log never holds part of a batch it reported as
// failed (a full disk, say, which clears up).
func (b *buffer) appendTo(s *segment) error {
	if _, err := s.f.Write(b.enc); err != nil {
		err = fmt.Errorf("write to %s: %w", s.path, err)
		if terr := s.f.Truncate(int64(segHeaderSize + s.size)); terr != nil {
			b.mu.Lock()
			b.failLocked(fmt.Errorf("%w; then truncating it back: %w", err, terr))
			b.mu.Unlock()
		}
		return err
	}
	return nil
}

// failLocked stops all writing: the log's state on disk is unknown.
func (b *buffer) failLocked(err error) {
	if b.failed == nil {
		b.failed = fmt.Errorf("%s: %s cannot be written any more, restart to recover: %w", Name, b.dir, err)
		b.log.Errorf("%v", b.failed)
	}
	b.cond.Broadcast()
}

// groupSyncer fsyncs what was written, then publishes it to the reader and
// acknowledges it to the input: one fsync for all batches written while
// the previous one ran.
func (b *buffer) groupSyncer() {
	defer b.bg.Done()
	fs := newGroupFsync()
	defer fs.close()
	stopping := false
	for {
		if !stopping {
			select {
			case <-b.wake:
			case <-b.stop:
				stopping = true
			}
		}
		b.mu.Lock()
		ws := b.unsynced
		b.unsynced = nil
		var s *segment
		if len(ws) > 0 {
			s = b.segs[b.segAtLocked(ws[len(ws)-1].pos-1)]
		}
		b.mu.Unlock()
		if len(ws) == 0 {
			if stopping {
				return
			}
			continue
		}
		b.smu.Lock()
		var err error
		if s.f != nil {
			if err = fs.sync(s.f); err != nil {
				err = fmt.Errorf("fsync %s: %w", s.path, err)
			}
		}
		b.smu.Unlock()
		b.mu.Lock()
		if err != nil {
			b.failLocked(err)
		}
		if err = b.failed; err == nil {
			last := ws[len(ws)-1]
			b.pubPos, b.pubSeq = last.pos, last.seq
			b.cond.Broadcast()
		}
		b.mu.Unlock()
		for _, w := range ws {
			_ = w.ack(b.ackCtx, err)
		}
	}
}

// intervalSyncer fsyncs the active segment every sync_interval.
func (b *buffer) intervalSyncer() {
	defer b.bg.Done()
	t := time.NewTicker(b.conf.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.stop:
			return
		}
		b.mu.Lock()
		var s *segment
		if n := len(b.segs); n > 0 {
			s = b.segs[n-1]
		}
		b.mu.Unlock()
		if s == nil {
			continue
		}
		b.smu.Lock()
		var err error
		if s.f != nil {
			err = s.f.Sync()
		}
		b.smu.Unlock()
		if err != nil {
			b.mu.Lock()
			b.failLocked(fmt.Errorf("fsync %s: %w", s.path, err))
			b.mu.Unlock()
		}
	}
}

// dropOldestLocked drops the oldest records not in flight, at least need
// bytes of them if there are. It gives what it dropped for being full,
// and whether it moved at all (passing a range done already counts).
func (b *buffer) dropOldestLocked(need int64) (msgs, bytes int64, progress bool) {
	if i := b.firstNackedLocked(); i >= 0 {
		e := b.pending[i]
		msgs, bytes = e.msgs(), e.bytes()
		b.markDoneLocked(i, reasonFull)
		return msgs, bytes, true
	}
	if b.readPos >= b.pubPos {
		return 0, 0, false
	}
	s, skipped := b.skipSpecialLocked()
	if skipped {
		return 0, 0, true
	}
	startBytes, startMsgs, startPos := b.bytes, b.msgs, b.readPos
	sp := span{pos: b.readPos, end: b.readPos, seq: b.readSeq, endSeq: b.readSeq}
	pos, seq, err := b.scanLocked(s, b.readPos, b.readSeq, b.readLimitLocked(s), 64<<10, func(rec record, p uint64) bool {
		if int64(sp.end-sp.pos) >= need {
			return false
		}
		sp.end, sp.endSeq = p+uint64(rec.size()), rec.seq+1
		return true
	})
	if sp.end > sp.pos {
		b.appendDoneLocked(sp, reasonFull, true)
		msgs, bytes = startMsgs-b.msgs, startBytes-b.bytes
	}
	if err != nil && pos == b.readPos {
		if errors.Is(err, errCorrupt) {
			b.skipCorruptLocked(s, pos, seq, err)
		} else {
			b.log.Errorf("%s: read %s: %v", Name, s.path, err)
		}
	}
	return msgs, bytes, b.readPos != startPos
}
