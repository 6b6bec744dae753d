// Package diskbuffer provides the `sluice_disk` buffer: messages are written
// durably to an append-only log of segment files before the input is
// acknowledged, handed to the output in the order they were written, and
// removed only once the output acknowledges them. What was stored and not
// acknowledged survives a restart or a crash (SIGKILL, and with `sync:
// always` a power loss too) and is delivered again, so an output outage
// does not lose messages and does not stop the input until the buffer is
// full. docs/DISKBUFFER.md explains the format and the choices.
package diskbuffer

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Name is the buffer's name in configs.
const Name = "sluice_disk"

const (
	fPath              = "path"
	fMaxBytes          = "max_bytes"
	fMaxAge            = "max_age"
	fSegmentBytes      = "segment_bytes"
	fFullPolicy        = "full_policy"
	fSync              = "sync"
	fSyncInterval      = "sync_interval"
	fMaxInFlight       = "max_in_flight"
	fReadBatchMessages = "read_batch_messages"

	policyBlock      = "block"
	policyDropOldest = "drop_oldest"
	syncAlways       = "always"
	syncInterval     = "interval"
)

// Options are what the agent supplies when it registers the buffer.
type Options struct {
	// PipelineOf names the pipeline a buffer is part of, from the
	// resources Benthos gives the buffer; nil, or false, when unknown. The
	// name picks the default directory and tells the user which pipeline
	// holds a directory another buffer wanted.
	PipelineOf func(res *service.Resources) (string, bool)
	// Root, with PipelineOf, makes `path` optional: a buffer without one
	// uses Root/<pipeline name>. Empty makes `path` required.
	Root string
}

// dirFor is the default directory of the named pipeline's buffer.
func (o Options) dirFor(pipeline string) (string, error) {
	if o.Root == "" {
		return "", nil
	}
	if pipeline == "" {
		return "", fmt.Errorf("%s is required here: the pipeline's name, which picks the default directory under %s, is not known", fPath, o.Root)
	}
	if pipeline == "." || pipeline == ".." || strings.ContainsAny(pipeline, `/\`+"\x00") {
		return "", fmt.Errorf("%s is required: the pipeline name %q cannot name a directory under %s", fPath, pipeline, o.Root)
	}
	return filepath.Join(o.Root, pipeline), nil
}

// ConfigSpec is the buffer's spec.
func ConfigSpec(opts Options) *service.ConfigSpec {
	pathDesc := "The directory holding the buffer's files, created if missing. A relative path is relative to the agent's working directory. One buffer per directory: a second buffer (in this process or another) opening it fails, naming the pipeline that holds it. Changing it starts an empty buffer; what was left in the old directory stays there."
	if opts.Root != "" {
		pathDesc += " When not set, it is `" + filepath.Join(opts.Root, "<pipeline name>") + "`: the agent's data dir, `buffers`, then the pipeline's name (its file name without `.yaml`), so each pipeline has its own; two pipeline files of the same name in different directories would share one, and the second fails to start until one of them sets `path`."
	}
	path := service.NewStringField(fPath).
		Description(pathDesc).
		Example("./data/buffers/orders").
		Example("/var/lib/sluice/buffers/orders")
	if opts.Root != "" {
		path = path.Optional()
	}
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Summary("Stores messages durably on disk before acknowledging them to the input, and removes them only once the output acknowledges them; what is stored survives restarts and crashes.").
		Description(`
A buffer sits between the input and the pipeline's processors. With `+"`sluice_disk`"+`, the input is acknowledged once its messages are on disk, so an output outage does not stop the input until the buffer is full, and nothing stored is lost when the agent restarts or is killed. Messages keep their metadata.

### Delivery

Delivery is at least once. A batch is removed only once the output acknowledges it; a batch the output fails is delivered again, before anything newer, after a pause that grows from 100ms to 5s while failures continue. After a restart or a crash, everything stored and not acknowledged is delivered again, so the batches that were in flight at the time may be delivered twice. A written batch cut short by a crash (a torn write) is discarded when the buffer reopens; its input was not acknowledged and sends it again. A batch written whole but not yet acknowledged to its input when the process died is kept, and may come twice if the input sends it again.

### Order

The buffer keeps one global order, the order of writes, which implies the order of every key. With `+"`max_in_flight: 1`"+` (the default) the output receives batches strictly in that order, retries included. With more in flight the output may complete them out of order, and a failed batch can be delivered after later ones that succeeded.

### Batches

A read takes whole written batches, in order, while it holds fewer than `+"`read_batch_messages`"+` messages, never waiting for more: when the output is behind, small written batches (an HTTP input gives one message each) reach it merged into large ones. Set `+"`read_batch_messages: 1`"+` to keep the batches as written. Count-based `+"`batching`"+` at the output is usually unnecessary and, with few batches in flight, waits for its `+"`period`"+` each time.

### Durability and cost

With `+"`sync: always`"+` the input is acknowledged only after the batch's file is fsynced, and the output only sees fsynced messages. Concurrent writes share an fsync (group commit), and the write returns before the fsync, its acknowledgement following it. With `+"`sync: interval`"+` the input is acknowledged as soon as the batch is written to the operating system: a process crash loses nothing, but a power loss or kernel crash loses up to `+"`sync_interval`"+` of acknowledged messages.

The output's acknowledgements are written to a small cursor file at once (surviving a process crash) and fsynced every second, so a power loss can bring back up to a second of acknowledged messages. Disk use can exceed `+"`max_bytes`"+` by up to `+"`segment_bytes`"+` (a segment is deleted only once all its messages are acknowledged or dropped), more when a batch stays in flight while later messages are dropped.

### When full

`+"`max_bytes`"+` counts the stored bytes of messages neither acknowledged nor dropped. With `+"`full_policy: block`"+` a write waits until acknowledgements free enough room, which stops the input (back pressure). With `+"`drop_oldest`"+` the oldest messages not in flight are dropped to make room, each drop logged with its count and bytes; a write still waits when everything stored is in flight.

### Metrics

`+"`sluice_buffer_bytes`"+`, `+"`sluice_buffer_messages`"+` and `+"`sluice_buffer_oldest_age_seconds`"+` (gauges: what is stored and neither acknowledged nor dropped), and `+"`sluice_buffer_dropped_total`"+` (counter) with a `+"`reason`"+` label: `+"`full`"+` (drop_oldest), `+"`max_age`"+`, or `+"`corrupt`"+` (a record failing its checksum when read, with the rest of its segment).`).
		Example("Survive an output outage", "An HTTP input whose messages wait on disk while the output is down.", `
input:
  http_server:
    path: /events
buffer:
  sluice_disk:
    path: ./data/buffers/events
    max_bytes: 2147483648
    max_age: 24h
    full_policy: drop_oldest
output:
  http_client:
    url: https://collector.example.com/ingest
    verb: POST
`).
		LintRule(`root = [
  if this.segment_bytes.or(67108864) > this.max_bytes.or(1073741824) { "segment_bytes is larger than max_bytes: a segment would be deleted only after the whole buffer was acknowledged, so disk use would double; lower segment_bytes" },
  if this.exists("sync_interval") && this.sync.or("always") != "interval" { "sync_interval has no effect unless sync is interval" },
].filter(e -> e != null)`).
		Fields(
			path,
			service.NewIntField(fMaxBytes).
				Description("The most bytes of messages (with their metadata and 26 bytes of framing each) stored and neither acknowledged nor dropped. What happens at the limit is `full_policy`. A written batch larger than this fails.").
				Default(1<<30).
				Example(256<<20),
			service.NewDurationField(fMaxAge).
				Description("Messages stored longer than this are dropped instead of delivered (counted with reason `max_age`). Checked when messages are read and every second; a batch in flight is never dropped. Empty keeps messages until delivered.").
				Optional().
				Example("24h").
				Example("15m"),
			service.NewIntField(fSegmentBytes).
				Description("The size at which a segment file is closed and the next begun. Smaller segments free disk sooner after acknowledgement; larger ones mean fewer files. A written batch is never split between segments, so a batch larger than this gets a segment of its own.").
				Default(64<<20).
				Advanced(),
			service.NewStringEnumField(fFullPolicy, policyBlock, policyDropOldest).
				Description("What a write does when `max_bytes` is reached: `block` waits for acknowledgements to free room (back pressure on the input); `drop_oldest` drops the oldest messages not in flight.").
				Default(policyBlock),
			service.NewStringEnumField(fSync, syncAlways, syncInterval).
				Description("When stored messages are fsynced: `always` before the input is acknowledged (concurrent writes share an fsync); `interval` every `sync_interval`, acknowledging at once, which is faster but loses up to `sync_interval` of acknowledged messages in a power loss or kernel crash (not in a process crash).").
				Default(syncAlways),
			service.NewDurationField(fSyncInterval).
				Description("With `sync: interval`, how often the active segment is fsynced; 1s when not set.").
				Optional().
				Example("100ms").
				Advanced(),
			service.NewIntField(fMaxInFlight).
				Description("The most batches handed to the output and not yet acknowledged. 1 keeps the output strictly in order even across failures; more lets outputs with `max_in_flight` of their own send concurrently, at the cost of order when a batch fails (see Order).").
				Default(1),
			service.NewIntField(fReadBatchMessages).
				Description("A read takes whole written batches while it holds fewer messages than this; 1 hands batches to the output as they were written. A read also stops at 8MiB, unless a single written batch is larger.").
				Default(1024).
				Advanced(),
		)
}

// Register adds the `sluice_disk` buffer to env.
func Register(env *service.Environment, opts Options) error {
	return env.RegisterBatchBuffer(Name, ConfigSpec(opts), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchBuffer, error) {
		var pipeline string
		if opts.PipelineOf != nil {
			pipeline, _ = opts.PipelineOf(res)
		}
		def, defErr := opts.dirFor(pipeline)
		c, err := parseConfig(conf, def)
		if err != nil {
			if c.Dir == "" && defErr != nil {
				err = errors.Join(defErr, err)
			}
			return nil, err
		}
		c.owner = pipeline
		return open(c, res)
	})
}

// config is the buffer's configuration, as parsed from its spec.
type config struct {
	Dir               string
	MaxBytes          int64
	MaxAge            time.Duration // 0: no limit
	SegmentBytes      int64
	DropOldest        bool
	SyncInterval      time.Duration // 0: sync: always
	MaxInFlight       int
	ReadBatchMessages int

	// owner names the pipeline the buffer is part of, if known, for the
	// lock file.
	owner string
	// inlineSync fsyncs inside each WriteBatch instead of through the group
	// commit goroutine: only for the benchmark that measures the
	// difference.
	inlineSync bool
	// now is the clock, replaced in tests of max_age.
	now func() time.Time
	// onFull, if set, is called (under the lock) when a write starts
	// waiting for room: tests see that it blocks without guessing a delay.
	onFull func()
}

// parseConfig reads the config; defaultDir is the directory when `path` is
// not set ("": `path` is required).
func parseConfig(conf *service.ParsedConfig, defaultDir string) (config, error) {
	var errs []error
	str := func(f string) string {
		v, err := conf.FieldString(f)
		errs = append(errs, err)
		return v
	}
	num := func(f string) int {
		v, err := conf.FieldInt(f)
		errs = append(errs, err)
		return v
	}
	dur := func(f string) time.Duration {
		v, err := conf.FieldDuration(f)
		errs = append(errs, err)
		return v
	}
	c := config{
		MaxBytes:          int64(num(fMaxBytes)),
		SegmentBytes:      int64(num(fSegmentBytes)),
		DropOldest:        str(fFullPolicy) == policyDropOldest,
		MaxInFlight:       num(fMaxInFlight),
		ReadBatchMessages: num(fReadBatchMessages),
	}
	c.Dir = defaultDir
	if conf.Contains(fPath) {
		// Empty, validate reports it with the other problems.
		c.Dir = str(fPath)
	}
	if conf.Contains(fMaxAge) {
		c.MaxAge = dur(fMaxAge)
	}
	if str(fSync) == syncInterval {
		c.SyncInterval = time.Second
		if conf.Contains(fSyncInterval) {
			c.SyncInterval = dur(fSyncInterval)
		}
		if c.SyncInterval <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", fSyncInterval, c.SyncInterval))
		}
	}
	if err := errors.Join(append(errs, c.validate())...); err != nil {
		return config{Dir: c.Dir}, err
	}
	return c, nil
}

// validate reports every problem at once.
func (c config) validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, fmt.Errorf("%s is required: the directory holding the buffer's files", fPath))
	}
	if c.MaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("%s must be positive, got %d", fMaxBytes, c.MaxBytes))
	}
	if c.SegmentBytes <= 0 {
		errs = append(errs, fmt.Errorf("%s must be positive, got %d", fSegmentBytes, c.SegmentBytes))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%s must not be negative, got %v", fMaxAge, c.MaxAge))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", fMaxInFlight, c.MaxInFlight))
	}
	if c.ReadBatchMessages < 1 {
		errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", fReadBatchMessages, c.ReadBatchMessages))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of a config built in code.
func (c config) withDefaults() config {
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1
	}
	if c.ReadBatchMessages == 0 {
		c.ReadBatchMessages = 1024
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}
