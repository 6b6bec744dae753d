package diskbuffer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// ReadBatch gives the next batch: a failed one again, else the next
// records written. Its messages are the caller's; the buffer keeps only
// their position, and reads them again if they fail. The records are
// chosen and copied out under the lock, and made into messages after it,
// so that writes and acknowledgements do not wait for the decoding.
func (b *buffer) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	stop := context.AfterFunc(ctx, b.broadcast)
	defer stop()
	b.rmu.Lock()
	defer b.rmu.Unlock()
	for {
		e, raws, err := b.next(ctx)
		if err != nil {
			return nil, nil, err
		}
		batch := make(service.MessageBatch, len(raws))
		var derr error
		for i, r := range raws {
			if batch[i], derr = (record{payload: b.rbuf[r.off:r.end]}).message(); derr != nil {
				break
			}
		}
		if derr == nil {
			return batch, b.ackFunc(e), nil
		}
		// It passed its checksum, so only a bug in the encoding explains
		// this: the batch can never be delivered.
		b.mu.Lock()
		b.log.Errorf("%s: %s: %v; dropping a batch of %d messages (%d bytes)", Name, b.dir, derr, e.msgs(), e.bytes())
		b.inFlight--
		b.markDoneLocked(b.indexLocked(e), reasonCorrupt)
		b.cond.Broadcast()
		b.mu.Unlock()
	}
}

// rawRec is a record's payload in rbuf.
type rawRec struct{ off, end int }

// next waits for the next batch to deliver, marks it in flight, and copies
// its records' payloads to rbuf. The caller holds rmu.
func (b *buffer) next(ctx context.Context) (*entry, []rawRec, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rbuf = b.rbuf[:0]
	for {
		if b.closed {
			return nil, nil, service.ErrEndOfBuffer
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if b.inFlight < b.conf.MaxInFlight {
			if i := b.firstNackedLocked(); i >= 0 {
				e := b.pending[i]
				if wait := e.retryAt.Sub(b.now()); wait > 0 {
					t := time.AfterFunc(wait, b.broadcast)
					b.cond.Wait()
					t.Stop()
					continue
				}
				raws, err := b.redeliverLocked(i)
				if err != nil || raws != nil {
					return e, raws, err
				}
				continue
			}
			if b.readPos < b.pubPos {
				e, raws, err := b.readNextLocked()
				if err != nil || raws != nil {
					return e, raws, err
				}
				continue
			}
			// After a failed fsync what was not published never will be.
			if b.endOfInput && len(b.pending) == 0 && (b.readPos == b.appendPos || b.failed != nil && b.readPos >= b.pubPos) {
				return nil, nil, service.ErrEndOfBuffer
			}
		}
		b.cond.Wait()
	}
}

// keep copies a record's payload to rbuf.
func (b *buffer) keep(raws []rawRec, rec record) []rawRec {
	off := len(b.rbuf)
	b.rbuf = append(b.rbuf, rec.payload...)
	return append(raws, rawRec{off, len(b.rbuf)})
}

// ackFunc is e's acknowledgement: done, or back for delivery again.
func (b *buffer) ackFunc(e *entry) service.AckFunc {
	return func(_ context.Context, err error) error {
		b.mu.Lock()
		if b.closed || e.state != inFlight {
			// After Close the records stay unacknowledged and come again
			// on the next open.
			b.mu.Unlock()
			return nil
		}
		b.inFlight--
		if err == nil {
			b.nackStreak = 0
			b.markDoneLocked(b.indexLocked(e), "")
		} else {
			e.state = nacked
			e.retryAt = b.now().Add(min(retryMin<<min(b.nackStreak, 16), retryMax))
			b.nackStreak++
			b.log.Debugf("%s: the output failed %d messages, delivering them again: %v", Name, e.msgs(), err)
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		b.removeDoomed()
		return nil
	}
}

func (b *buffer) firstNackedLocked() int {
	for i, e := range b.pending {
		if e.state == nacked {
			return i
		}
	}
	return -1
}

func (b *buffer) indexLocked(e *entry) int {
	i := sort.Search(len(b.pending), func(i int) bool { return b.pending[i].pos >= e.pos })
	if i == len(b.pending) || b.pending[i] != e {
		panic("diskbuffer: entry not pending")
	}
	return i
}

// segAtLocked gives the index of the last segment starting at or before
// pos. There is one for every position from the first segment's base on.
func (b *buffer) segAtLocked(pos uint64) int {
	return sort.Search(len(b.segs), func(i int) bool { return b.segs[i].base > pos }) - 1
}

// readLimitLocked is how far reads from readPos may go within s: not past
// its end, what was published, or a done range from the cursor.
func (b *buffer) readLimitLocked(s *segment) uint64 {
	limit := min(s.end(), b.pubPos)
	if len(b.skips) > 0 {
		limit = min(limit, b.skips[0].pos)
	}
	return limit
}

// skipSpecialLocked passes over what lies at readPos without being
// records to read: a done range from the cursor or a gap between segments.
func (b *buffer) skipSpecialLocked() (*segment, bool) {
	if len(b.skips) > 0 && b.skips[0].pos <= b.readPos {
		sp := b.skips[0]
		b.skips = b.skips[1:]
		b.appendDoneLocked(sp, "", false)
		return nil, true
	}
	i := b.segAtLocked(b.readPos)
	s := b.segs[i]
	if b.readPos < s.end() {
		return s, false
	}
	// readPos < pubPos, so a later segment exists, and it starts past
	// readPos: records are missing.
	next := b.segs[i+1]
	sp := span{pos: b.readPos, end: next.base, seq: b.readSeq, endSeq: max(next.baseSeq, b.readSeq)}
	b.log.Errorf("%s: positions %d to %d are missing between %s and %s; %d messages are lost", Name, sp.pos, sp.end, s.path, next.path, sp.endSeq-sp.seq)
	b.appendDoneLocked(sp, reasonCorrupt, true)
	return nil, true
}

// skipCorruptLocked drops the records from sp.pos to the end of what can be
// read in s, after a record there failed its checks.
func (b *buffer) skipCorruptLocked(s *segment, pos, seq uint64, cause error) {
	end := b.readLimitLocked(s)
	endSeq := b.pubSeq
	if end != b.pubPos {
		if len(b.skips) > 0 && end == b.skips[0].pos {
			endSeq = b.skips[0].seq
		} else {
			endSeq = b.segs[b.segAtLocked(s.base)+1].baseSeq
		}
	}
	sp := span{pos: pos, end: end, seq: seq, endSeq: max(endSeq, seq)}
	b.log.Errorf("%s: %s: %v; dropping the rest of the segment, %d messages (%d bytes)", Name, s.path, cause, sp.endSeq-sp.seq, sp.end-sp.pos)
	b.appendDoneLocked(sp, reasonCorrupt, true)
}

// readNextLocked reads the next batch from readPos, dropping expired
// records on the way. It gives no records when it only dropped or skipped
// some.
func (b *buffer) readNextLocked() (*entry, []rawRec, error) {
	s, skipped := b.skipSpecialLocked()
	if skipped {
		return nil, nil, nil
	}
	limit := b.readLimitLocked(s)
	var cutoff int64
	if b.conf.MaxAge > 0 {
		cutoff = b.now().UnixNano() - int64(b.conf.MaxAge)
	}
	drop := span{pos: b.readPos, end: b.readPos, seq: b.readSeq, endSeq: b.readSeq}
	e := &entry{seg: s}
	var raws []rawRec
	var bytes int64
	prevLast := false
	pos, seq, err := b.scanLocked(s, b.readPos, b.readSeq, limit, b.readHintLocked(), func(rec record, p uint64) bool {
		if len(raws) == 0 && rec.time < cutoff {
			drop.end, drop.endSeq = p+uint64(rec.size()), rec.seq+1
			return true
		}
		if prevLast && (len(raws) >= b.conf.ReadBatchMessages || bytes >= maxReadBytes) {
			return false
		}
		if len(raws) == 0 {
			e.pos, e.seq, e.firstTime = p, rec.seq, rec.time
		}
		raws = b.keep(raws, rec)
		bytes += rec.size()
		e.end, e.endSeq, e.lastTime = p+uint64(rec.size()), rec.seq+1, rec.time
		prevLast = rec.last
		return true
	})
	if drop.end > drop.pos {
		b.log.Warnf("%s: dropped %d messages (%d bytes) older than max_age (%v)", Name, drop.endSeq-drop.seq, drop.end-drop.pos, b.conf.MaxAge)
		b.appendDoneLocked(drop, reasonMaxAge, true)
	}
	if len(raws) > 0 {
		// Records after these that fail their checks are met by the next
		// read, first.
		e.state = inFlight
		b.pending = append(b.pending, e)
		b.readPos, b.readSeq = e.end, e.endSeq
		b.inFlight++
		return e, raws, nil
	}
	if err != nil {
		if !errors.Is(err, errCorrupt) {
			return nil, nil, fmt.Errorf("%s: read %s: %w", Name, s.path, err)
		}
		b.skipCorruptLocked(s, pos, seq, err)
	}
	return nil, nil, nil
}

// readHintLocked guesses the bytes of the next read from the average
// record: what is read past the batch is read again next time, and
// reading less costs a second read.
func (b *buffer) readHintLocked() int {
	avg := int64(256)
	if b.msgs > 0 {
		avg = b.bytes/b.msgs + 1
	}
	return int(min(max(avg*int64(b.conf.ReadBatchMessages)*9/8, 4<<10), maxReadBytes))
}

// redeliverLocked reads the failed batch pending[i] again, dropping its
// expired records first. It gives no records when nothing of it was left
// to deliver.
func (b *buffer) redeliverLocked(i int) ([]rawRec, error) {
	e := b.pending[i]
	var cutoff int64
	if b.conf.MaxAge > 0 {
		cutoff = b.now().UnixNano() - int64(b.conf.MaxAge)
	}
	drop := span{pos: e.pos, end: e.pos, seq: e.seq, endSeq: e.seq}
	var raws []rawRec
	first := int64(0)
	pos, _, err := b.scanLocked(e.seg, e.pos, e.seq, e.end, int(e.end-e.pos), func(rec record, p uint64) bool {
		if len(raws) == 0 && rec.time < cutoff {
			drop.end, drop.endSeq = p+uint64(rec.size()), rec.seq+1
			return true
		}
		if len(raws) == 0 {
			first = rec.time
		}
		raws = b.keep(raws, rec)
		return true
	})
	if err == nil && pos != e.end {
		err = fmt.Errorf("batch ends at %d, records at %d: %w", e.end, pos, errCorrupt)
	}
	if err != nil {
		if !errors.Is(err, errCorrupt) {
			return nil, fmt.Errorf("%s: read %s: %w", Name, e.seg.path, err)
		}
		b.log.Errorf("%s: %s: %v; dropping the batch that failed before, %d messages (%d bytes)", Name, e.seg.path, err, e.msgs(), e.bytes())
		b.markDoneLocked(i, reasonCorrupt)
		return nil, nil
	}
	if drop.end == e.end {
		b.log.Warnf("%s: dropped %d messages (%d bytes) older than max_age (%v)", Name, e.msgs(), e.bytes(), b.conf.MaxAge)
		b.markDoneLocked(i, reasonMaxAge)
		return nil, nil
	}
	if drop.end > drop.pos {
		b.log.Warnf("%s: dropped %d messages (%d bytes) older than max_age (%v)", Name, drop.endSeq-drop.seq, drop.end-drop.pos, b.conf.MaxAge)
		// Split: the expired head becomes a done entry of its own.
		head := &entry{span: drop, state: nacked}
		e.pos, e.seq = drop.end, drop.endSeq
		b.pending = append(b.pending[:i], append([]*entry{head}, b.pending[i:]...)...)
		b.markDoneLocked(i, reasonMaxAge)
	}
	e.firstTime = first
	e.state = inFlight
	b.inFlight++
	return raws, nil
}

// scanLocked reads the records of s from pos (sequence number seq), not
// reaching limit, calling visit with each and its position until visit
// returns false. It gives the position and sequence number after the last
// record visit took, and an error wrapping errCorrupt when the record
// there fails its checks. A record is valid during visit only: it is a
// view of a buffer reused by the next read.
func (b *buffer) scanLocked(s *segment, pos, seq, limit uint64, hint int, visit func(record, uint64) bool) (uint64, uint64, error) {
	hint = max(hint, 64)
	for pos < limit {
		n := int(min(limit-pos, uint64(hint)))
		var buf []byte
		fromTail := false
		if c := b.tailAtLocked(s, pos); c != nil {
			buf, fromTail = c.buf[pos-c.pos:min(limit, c.end)-c.pos], true
		} else {
			if cap(b.scratch) < n {
				b.scratch = make([]byte, n)
			}
			buf = b.scratch[:n]
		}
		if !fromTail {
			if err := b.readAtLocked(s, buf, pos); err != nil {
				return pos, seq, err
			}
		}
		off := 0
		for off < len(buf) {
			p := pos + uint64(off)
			// A cached batch is the writer's own encoding, checked on disk
			// only.
			rec, need, ok, err := parseRecord(buf[off:], int64(limit-p)-recHeaderSize, !fromTail)
			if err != nil {
				return p, seq, fmt.Errorf("record at position %d: %w", p, err)
			}
			if !ok {
				if p+uint64(need) > limit || fromTail {
					// A cached batch holds whole records.
					return p, seq, fmt.Errorf("record at position %d: %d bytes, %d readable: %w", p, need, limit-p, errCorrupt)
				}
				hint = max(hint, int(need))
				break
			}
			if rec.seq != seq {
				return p, seq, fmt.Errorf("record at position %d: sequence number %d, want %d: %w", p, rec.seq, seq, errCorrupt)
			}
			if !visit(rec, p) {
				return p, seq, nil
			}
			off += int(need)
			seq++
		}
		pos += uint64(off)
	}
	return pos, seq, nil
}

// tailAtLocked gives the cached batch holding position pos of s, if it
// is the first one cached, first forgetting those the reader is past.
func (b *buffer) tailAtLocked(s *segment, pos uint64) *cached {
	for len(b.tail) > 0 && b.tail[0].end <= b.readPos {
		b.tailBytes -= int64(len(b.tail[0].buf))
		if len(b.free) < maxFree {
			// Every record read from it was copied: the writer may reuse it.
			b.free = append(b.free, b.tail[0].buf[:0])
		}
		b.tail[0] = cached{}
		b.tail = b.tail[1:]
	}
	if len(b.tail) == 0 {
		b.tail = nil
		return nil
	}
	if c := &b.tail[0]; c.seg == s && c.pos <= pos && pos < c.end {
		return c
	}
	return nil
}

// readAtLocked reads len(buf) bytes of s's records from position pos.
func (b *buffer) readAtLocked(s *segment, buf []byte, pos uint64) error {
	if b.rseg != s {
		if b.rf != nil {
			b.rf.Close()
			b.rf, b.rseg = nil, nil
		}
		f, err := os.Open(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed by something else: its records are lost.
			return fmt.Errorf("%w: %w", err, errCorrupt)
		}
		if err != nil {
			return err
		}
		b.rf, b.rseg = f, s
	}
	n, err := b.rf.ReadAt(buf, int64(segHeaderSize+pos-s.base))
	if n < len(buf) {
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// Shorter than its records were: cut by something else.
		return fmt.Errorf("read %d bytes at position %d, got %d: %w", len(buf), pos, n, errCorrupt)
	}
	return nil
}

// appendDoneLocked records sp, which starts at readPos, as done (dropped
// for reason, or skipped as done already) and moves readPos past it.
// account takes its records out of the stored counts.
func (b *buffer) appendDoneLocked(sp span, reason string, account bool) {
	if account {
		b.bytes -= int64(sp.end - sp.pos)
		b.msgs -= int64(sp.endSeq - sp.seq)
	}
	b.countDropLocked(reason, int64(sp.endSeq-sp.seq))
	b.readPos, b.readSeq = sp.end, sp.endSeq
	if n := len(b.pending); n > 0 && b.pending[n-1].state == done {
		b.pending[n-1].end, b.pending[n-1].endSeq = sp.end, sp.endSeq
	} else {
		b.pending = append(b.pending, &entry{span: sp, state: done})
	}
	b.compactLocked()
}

// markDoneLocked records pending[i] as done: acknowledged when reason is
// empty, else dropped.
func (b *buffer) markDoneLocked(i int, reason string) {
	e := b.pending[i]
	b.bytes -= e.bytes()
	b.msgs -= e.msgs()
	b.countDropLocked(reason, e.msgs())
	e.state, e.seg = done, nil
	// Merging neighbours keeps the list, and the cursor's ranges, short.
	if i+1 < len(b.pending) && b.pending[i+1].state == done {
		e.end, e.endSeq = b.pending[i+1].end, b.pending[i+1].endSeq
		b.pending = append(b.pending[:i+1], b.pending[i+2:]...)
	}
	if i > 0 && b.pending[i-1].state == done {
		b.pending[i-1].end, b.pending[i-1].endSeq = e.end, e.endSeq
		b.pending = append(b.pending[:i], b.pending[i+1:]...)
	}
	b.compactLocked()
}

func (b *buffer) countDropLocked(reason string, n int64) {
	if reason == "" || n == 0 {
		return
	}
	b.dropped[reason] += n
	b.m.dropped.Incr(n, reason)
}

// compactLocked moves the ack position over the done entries at the head,
// deletes the segments wholly behind it, and writes the cursor.
func (b *buffer) compactLocked() {
	moved := false
	for len(b.pending) > 0 && b.pending[0].state == done {
		b.ackPos, b.ackSeq = b.pending[0].end, b.pending[0].endSeq
		b.pending[0] = nil
		b.pending = b.pending[1:]
		moved = true
	}
	if moved {
		b.deleteSegmentsLocked()
	}
	b.persistCursorLocked()
	b.updateGaugesLocked()
}

// deleteSegmentsLocked dooms the segments every record of which is
// acknowledged or dropped, except the last, which the writer appends to;
// removeDoomed removes them, outside the lock since freeing a large file
// takes a while. The cursor need not be durable first: a cursor older
// than the first segment left is moved up to it on open.
func (b *buffer) deleteSegmentsLocked() {
	for len(b.segs) > 1 && b.segs[0].end() <= b.ackPos && b.segs[1].base <= b.ackPos {
		s := b.segs[0]
		if b.rseg == s {
			b.rf.Close()
			b.rf, b.rseg = nil, nil
		}
		b.doomed = append(b.doomed, s.path)
		b.segs[0] = nil
		b.segs = b.segs[1:]
	}
}

func (b *buffer) removeDoomed() {
	b.mu.Lock()
	doomed := b.doomed
	b.doomed = nil
	b.mu.Unlock()
	for _, path := range doomed {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.log.Errorf("%s: remove acknowledged segment %s: %v", Name, path, err)
		}
	}
}

// persistCursorLocked writes the ack position and the done ranges past it
// to the cursor file, without fsync: a process crash keeps what is
// written, and what a power loss undoes is only delivered again.
func (b *buffer) persistCursorLocked() {
	if b.curFile == nil {
		return
	}
	c := cursor{ack: span{pos: b.ackPos, seq: b.ackSeq}}
	for _, e := range b.pending {
		if e.state == done {
			c.ranges = append(c.ranges, e.span)
		}
	}
	c.ranges = append(c.ranges, b.skips...)
	b.curGen++
	c.gen = b.curGen
	b.curBuf = c.encode(b.curBuf)
	if _, err := b.curFile.WriteAt(b.curBuf, int64(c.gen%2)*cursorSlotSize); err != nil {
		b.log.Errorf("%s: write cursor in %s: %v", Name, b.dir, err)
	}
	b.curDirty = true
}

// expireLocked drops failed batches and unread records written before
// cutoff, reading at most expireBudget bytes.
func (b *buffer) expireLocked(cutoff int64) {
	for i := 0; i < len(b.pending); i++ {
		if e := b.pending[i]; e.state == nacked && e.lastTime < cutoff {
			b.log.Warnf("%s: dropped %d messages (%d bytes) older than max_age (%v)", Name, e.msgs(), e.bytes(), b.conf.MaxAge)
			b.markDoneLocked(i, reasonMaxAge)
			i = -1 // merging moved the others
		}
	}
	budget := int64(expireBudget)
	var msgs, bytes int64
	defer func() {
		if msgs > 0 {
			b.log.Warnf("%s: dropped %d messages (%d bytes) older than max_age (%v)", Name, msgs, bytes, b.conf.MaxAge)
		}
	}()
	for budget > 0 && b.readPos < b.pubPos {
		if _, skipped := b.skipSpecialLocked(); skipped {
			continue
		}
		i := b.segAtLocked(b.readPos)
		s := b.segs[i]
		limit := b.readLimitLocked(s)
		if i+1 < len(b.segs) && b.segs[i+1].created < cutoff && limit == s.end() {
			// Every record of s was written before the next segment was
			// created: drop the rest of s unread.
			sp := span{pos: b.readPos, end: s.end(), seq: b.readSeq, endSeq: max(b.segs[i+1].baseSeq, b.readSeq)}
			msgs += int64(sp.endSeq - sp.seq)
			bytes += int64(sp.end - sp.pos)
			b.appendDoneLocked(sp, reasonMaxAge, true)
			continue
		}
		sp := span{pos: b.readPos, end: b.readPos, seq: b.readSeq, endSeq: b.readSeq}
		young := false
		pos, seq, err := b.scanLocked(s, b.readPos, b.readSeq, limit, 64<<10, func(rec record, p uint64) bool {
			if rec.time >= cutoff || int64(sp.end-sp.pos) >= budget {
				young = true
				return false
			}
			sp.end, sp.endSeq = p+uint64(rec.size()), rec.seq+1
			return true
		})
		budget -= int64(sp.end - sp.pos)
		if sp.end > sp.pos {
			msgs += int64(sp.endSeq - sp.seq)
			bytes += int64(sp.end - sp.pos)
			b.appendDoneLocked(sp, reasonMaxAge, true)
		}
		if err != nil {
			if errors.Is(err, errCorrupt) && pos == b.readPos {
				b.skipCorruptLocked(s, pos, seq, err)
				continue
			}
			return
		}
		if young {
			return
		}
	}
}
