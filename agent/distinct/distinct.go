// Package distinct provides the `distinct` processor: it fails every
// message whose key an earlier message of the stream already had, with a
// reason, so duplicates go to the error path (a rejects file) instead of
// being loaded twice.
//
// It does what a `cache` processor with `operator: add` on a memory cache
// does for deduplication, about 10x cheaper per message: the keys live in
// the processor (one stream, one run of a batch job, one set) as 128-bit
// hashes rather than as strings in a TTL cache behind a lock per message.
package distinct

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"runtime"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/internal/configerr"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

const (
	fKey    = "key"
	fReason = "reason"
)

// ConfigSpec is the `distinct` processor's spec.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Summary("Fails each message whose key an earlier message of the stream had: the first passes, later ones go to the error path with a reason.").
		Description(`
The keys seen are kept for the stream's life: for a scheduled pipeline, one run (each run is a new stream). They are kept as 128-bit hashes (two independently seeded 64-bit hashes) in a table at most half full, so memory is 32-64 bytes per distinct key whatever the key's length (on Linux a table past 4 MB is mapped outside the Go heap, as transparent huge pages where the kernel allows: the table is read at random, a row at a time, and small pages cost a TLB miss per row and a page fault per 4 KB), and two different keys are taken for one with a probability below 10^-20 for a billion keys.

Which of two equal messages is "the earlier" is the order the processor sees them in: run the pipeline with one thread (`+"`pipeline.threads: 1`"+`) when that must not depend on scheduling. Messages that already failed are passed on untouched and their keys are not recorded.

A frame (csv_file with `+"`frames: true`"+`) is checked row by row in its order, its rejected rows skipped and its duplicates rejected in place with the reason; a key that is one metadata value (`+"`${! @csv_raw }`"+` or `+"`${! meta(\"csv_raw\") }`"+`) is read straight from the frame's column. The hashes are split over one set per core (by hash, so equal keys share a set), and a frame's sets are filled at once, each in row order: which row is the duplicate is the same as with one set.`).
		Fields(
			service.NewInterpolatedStringField(fKey).
				Description("The message's key: equal keys are duplicates.").
				Example(`${! @csv_raw }`).
				Example(`${! json("order_id") }`),
			service.NewInterpolatedStringField(fReason).
				Description("The error a duplicate gets, as `error()` shows it; may use the message, e.g. its line.").
				Default("duplicate: an earlier message had the same key"),
		)
}

// metaOnly matches a key that is one metadata value, `${! @name }` or
// `${! meta("name") }`.
var metaOnly = regexp.MustCompile(`^\$\{!\s*(?:@([A-Za-z0-9_]+)|meta\("([^"\\]+)"\))\s*\}$`)

// Register adds the `distinct` processor to env.
func Register(env *service.Environment) error {
	return env.RegisterBatchProcessor("distinct", ConfigSpec(), func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchProcessor, error) {
		p, err := New(conf)
		if err != nil {
			return nil, configerr.Wrap(err)
		}
		return p, nil
	})
}

// Processor is a parsed `distinct` processor.
type Processor struct {
	key, reason *service.InterpolatedString
	// keyMeta is set when key is exactly one metadata value: read
	// directly, it costs a map lookup rather than a Bloblang evaluation.
	keyMeta string
	s1, s2  maphash.Seed

	mu sync.Mutex
	// seen is the keys, in shards picked by the hash's second word: a
	// frame's shards are filled at once, one goroutine each, every shard
	// in row order. Equal keys share a shard, so which row is the
	// duplicate is the same as with one set.
	seen []hashSet
	// hashes, rows (the frame row of each hash) and dup are a frame's,
	// reused.
	hashes [][2]uint64
	rows   []int32
	dup    []bool
	// parts is each shard's indexes into hashes, in order.
	parts [][]int32
}

// shards is how many sets the keys are spread over: the largest power of
// two up to the cores, at most 8. Each row's insert is a cache miss into
// a table of up to tens of MB, so the cores' misses overlap.
func shards() int {
	n := 1
	for n*2 <= min(runtime.GOMAXPROCS(0), 8) {
		n *= 2
	}
	return n
}

// shard is the set a hash goes to: by its second word, since the first
// picks the slot within the set.
func (p *Processor) shard(h1 uint64) int { return int(h1 & uint64(len(p.seen)-1)) }

// add records a key's hash in its shard and reports whether it was new.
func (p *Processor) add(h0, h1 uint64) bool { return p.seen[p.shard(h1)].add(h0, h1) }

// New parses a `distinct` config.
func New(conf *service.ParsedConfig) (*Processor, error) {
	p := &Processor{s1: maphash.MakeSeed(), s2: maphash.MakeSeed(), seen: make([]hashSet, shards())}
	var err error
	if p.key, err = conf.FieldInterpolatedString(fKey); err != nil {
		return nil, err
	}
	raw, err := conf.FieldString(fKey)
	if err != nil {
		return nil, err
	}
	if m := metaOnly.FindStringSubmatch(raw); m != nil {
		p.keyMeta = m[1] + m[2]
	}
	if p.reason, err = conf.FieldInterpolatedString(fReason); err != nil {
		return nil, err
	}
	// A large set's table is mapped outside the Go heap (newSlots): Close
	// unmaps it, and this unmaps it should a processor be dropped unclosed.
	runtime.AddCleanup(p, releaseAll, p.seen)
	return p, nil
}

// ProcessBatch implements service.BatchProcessor.
func (p *Processor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, msg := range batch {
		if msg.GetError() != nil {
			continue
		}
		if body, err := msg.AsBytes(); err == nil && frame.Is(body) {
			p.processFrame(msg, body)
			continue
		}
		// Message-level interpolation: the batch-level one costs a pass
		// over the batch per call.
		var k string
		var err error
		if p.keyMeta != "" {
			var ok bool
			if k, ok = msg.MetaGet(p.keyMeta); !ok {
				err = fmt.Errorf("metadata %q is not set", p.keyMeta)
			}
		} else {
			k, err = p.key.TryString(msg)
		}
		if err != nil {
			msg.SetError(fmt.Errorf("distinct: key: %w", err))
			continue
		}
		if p.add(maphash.String(p.s1, k), maphash.String(p.s2, k)) {
			continue
		}
		reason, err := p.reason.TryString(msg)
		if err != nil {
			reason = fmt.Sprintf("duplicate (reason: %v)", err)
		}
		msg.SetError(errors.New(reason))
	}
	return []service.MessageBatch{batch}, nil
}

// processFrame checks a frame's rows not yet rejected, in order, and
// rejects the duplicates. A key that is one metadata value is read from
// the frame's column of that name; any other key is interpolated on the
// row's message, as it would be had the row travelled alone.
func (p *Processor) processFrame(msg *service.Message, body []byte) {
	f, err := frame.Decode(body)
	if err != nil {
		msg.SetError(fmt.Errorf("distinct: %w", err))
		return
	}
	var col *frame.Column
	if p.keyMeta != "" {
		if col = f.Col(p.keyMeta); col != nil && !col.Meta {
			col = nil
		}
	}
	// The keys' hashes first, then the shards at once, then the reasons:
	// rows already rejected, or whose key fails, have no hash and stay
	// out of the sets.
	var buf []byte // a key built for the row; never the frame's bytes
	changed := false
	p.hashes, p.rows = p.hashes[:0], p.rows[:0]
	for i := 0; i < f.Rows; i++ {
		if f.Rejected(i) {
			continue
		}
		var key []byte
		switch {
		case col != nil && !col.Null(i) && col.Type == abi.TypeString:
			// The row's bytes in the frame, hashed where they lie.
			key = col.Bytes(i)
		case col != nil && !col.Null(i):
			buf = col.AppendText(buf[:0], i)
			key = buf
		case p.keyMeta != "":
			f.Reject(i, fmt.Sprintf("distinct: key: metadata %q is not set", p.keyMeta))
			changed = true
			continue
		default:
			k, err := p.key.TryString(f.RowMessage(msg, i))
			if err != nil {
				f.Reject(i, fmt.Sprintf("distinct: key: %v", err))
				changed = true
				continue
			}
			buf = append(buf[:0], k...)
			key = buf
		}
		p.hashes = append(p.hashes, [2]uint64{maphash.Bytes(p.s1, key), maphash.Bytes(p.s2, key)})
		p.rows = append(p.rows, int32(i))
	}
	p.markDuplicates()
	for j, i := range p.rows {
		if !p.dup[j] {
			continue
		}
		reason, err := p.reason.TryString(f.RowMessage(msg, int(i)))
		if err != nil {
			reason = fmt.Sprintf("duplicate (reason: %v)", err)
		}
		f.Reject(int(i), reason)
		changed = true
	}
	if changed {
		frame.Update(msg, body, f)
	}
}

// parallelRows is the fewest hashes worth a goroutine per shard.
const parallelRows = 2048

// markDuplicates adds p.hashes to their shards and sets p.dup to which
// were there already: each shard takes its hashes in order, the shards
// at once when there are enough of them.
func (p *Processor) markDuplicates() {
	n := len(p.hashes)
	if cap(p.dup) < n {
		p.dup = make([]bool, n)
	}
	p.dup = p.dup[:n]
	if len(p.parts) != len(p.seen) {
		p.parts = make([][]int32, len(p.seen))
	}
	for s := range p.parts {
		p.parts[s] = p.parts[s][:0]
	}
	for j, h := range p.hashes {
		s := p.shard(h[1])
		p.parts[s] = append(p.parts[s], int32(j))
	}
	if len(p.seen) == 1 || n < parallelRows {
		for s := range p.seen {
			p.seen[s].addAll(p.hashes, p.parts[s], p.dup)
		}
		return
	}
	var wg sync.WaitGroup
	for s := 1; s < len(p.seen); s++ {
		wg.Go(func() { p.seen[s].addAll(p.hashes, p.parts[s], p.dup) })
	}
	p.seen[0].addAll(p.hashes, p.parts[0], p.dup)
	wg.Wait()
}

// releaseAll empties the sets and gives back their tables' memory.
func releaseAll(seen []hashSet) {
	for i := range seen {
		seen[i].release()
	}
}

// Close implements service.BatchProcessor.
func (p *Processor) Close(context.Context) error {
	p.mu.Lock()
	releaseAll(p.seen)
	p.hashes, p.rows, p.dup, p.parts = nil, nil, nil, nil
	p.mu.Unlock()
	return nil
}
