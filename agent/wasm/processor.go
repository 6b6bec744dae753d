package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/frame"
	"github.com/sluice-dev/sluice/state"
)

// Processor config fields.
const (
	fPath       = "path"
	fBuiltin    = "builtin"
	fConfig     = "config"
	fConfigFile = "config_file"
	fMemory     = "memory_limit"
	fTimeout    = "timeout"
	fInterrupt  = "interrupt_on_timeout"
	fClock      = "clock"
	fEnv        = "env"
	fMounts     = "mounts"
	fKey        = "key"
	fState      = "state"
	fOffsets    = "offsets"
	fReadState  = "read_state"
	fMaxCall    = "max_call_messages"
	fParallel   = "parallel_calls"
	fSkipErr    = "skip_errored"
	fSHA256     = "sha256"
)

// ConfigSpec is the `wasm` processor's spec: fields, defaults and docs.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Mapping", "Utility").
		Summary("Runs each batch through a sandboxed WebAssembly plugin that speaks the Sluice plugin ABI v1.").
		Description(`
The module is compiled once per process (and cached on disk under the agent's data dir), and each pipeline thread gets its own instance. The plugin is called once per batch, never per message.

A plugin declares at load whether it wants message bytes (simple mode) or typed columns of the fields it reads (fast mode: the host parses each message once, natively, and merges the fields the plugin writes back into the JSON).

The plugin runs in a sandbox: no files, environment variables, real clock or network unless granted below, a memory cap, and a deadline per call. A trap, panic, timeout, memory exhaustion or malformed result fails that batch's messages with the plugin's reason, so `+"`catch`, `try` and `fallback`"+` handle them, and the instance is replaced. After three consecutive failures new instances are started with exponential back-off (100ms doubling to 5s).

### Frames

A frame (csv_file with `+"`frames: true`"+`: many rows as typed columns in one message) reaches a fast-mode plugin without any JSON: its columns are the plugin's declared fields (a value-typed field gets each value's kind and text, as from JSON), the fields the plugin writes become columns, a row it fails becomes a rejected row with the reason, a row it drops leaves the frame, and metadata it sets becomes a metadata column. Each row ends up as it would have as a JSON message. Rows rejected before the step are never passed to it. A frame is split into calls of at most `+"`max_call_messages`"+` rows. Frames hold flat rows: a plugin that writes a dotted path, a bytes-mode plugin, or a keyed step rejects the frame's rows with a reason saying to put `+"`unframe`"+` before it. The step's message counters count a frame's rows.

### Hot reload

A step that loads its plugin by `+"`path`"+` picks up a new version of the file while the pipeline runs: when the file changes (it is watched, and loaded once it has been quiet for 200ms), on SIGHUP, or on `+"`POST /admin/reload`"+`. The new version is loaded beside the running one and must pass everything the first load checked: its `+"`sha256`"+` pin (a pinned step refuses any other file), compilation and the ABI, its init with the step's `+"`config`"+`, stateful or not as the step is configured, and its `+"`self_test`"+`. Then it is swapped in between batches: a batch runs wholly on the version it started with, no message is lost or run twice, the input's position does not move, and a stateful step keeps its namespace and offsets. The old version's instances are closed when the batches using them finish. A version that fails any check is refused with one error line naming the step, the file and the reason, and the running version keeps serving; a file refused because it was half written is tried again when it changes. A `+"`builtin`"+` changes only with the agent.

### Metrics

Besides the metrics a plugin defines itself, every step reports these about its plugin, labelled with the step's `+"`label` and `path`"+` (and, in the agent, its `+"`pipeline`"+`). They are updated once per call into the plugin, never per message:

- `+"`sluice_plugin_calls_total`"+` (counter): calls into the plugin, one per batch (or per `+"`max_call_messages`"+` slice of one).
- `+"`sluice_plugin_batch_latency`"+` (timer, exported to Prometheus as the histogram `+"`sluice_plugin_batch_latency_seconds`"+`): how long each call took.
- `+"`sluice_plugin_messages_in_total`"+`, `+"`sluice_plugin_messages_out_total`"+`, `+"`sluice_plugin_messages_dropped_total`"+` (counters): messages handed to the plugin, passed on by it (failed ones included), and dropped; in = out + dropped.
- `+"`sluice_plugin_messages_errored_total`"+` (counter): messages passed on with an error, whether the plugin failed them or the whole call failed.
- `+"`sluice_plugin_traps_total`"+` (counter): calls that failed with a trap, panic, exit or malformed result.
- `+"`sluice_plugin_timeouts_total`"+` (counter): calls stopped at their `+"`timeout`"+`.
- `+"`sluice_plugin_restarts_total`"+` (counter): instances discarded after a failure, to be replaced by a fresh one.
- `+"`sluice_plugin_memory_pages`"+` (gauge): the linear memory of the instance last called, in 64 KiB pages, after the call.
- `+"`sluice_plugin_reloads_total`"+` (counter, label `+"`result`"+`: `+"`ok` or `refused`"+`): new versions of a `+"`path`"+` plugin swapped in or refused by a hot reload.

A plugin's own metric names may not start with `+"`sluice_plugin_`"+`.`).
		Fields(
			service.NewStringField(fPath).
				Description("Path of the .wasm module, relative to the agent's working directory. Exactly one of `path` and `builtin` is set.").
				Example("examples/wasm/transform/transform.wasm").
				Optional(),
			service.NewStringField(fBuiltin).
				Description("Name of a plugin embedded in the agent binary.").
				Example("transform").
				Optional(),
			service.NewStringField(fSHA256).
				Description("Pin the module: the SHA-256 of its bytes, in hex, as `agent plugin inspect` prints it. A module whose bytes hash to anything else is refused at load (and by `agent lint`), so a rebuilt, swapped or corrupted file cannot silently run in the pinned one's place.").
				Example("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").
				Optional(),
			selfTestField(),
			service.NewAnyField(fConfig).
				Description("The plugin's own configuration, handed to its init as JSON. The plugin validates it; errors are reported at load and by `agent lint`.").
				Optional(),
			service.NewStringField(fConfigFile).
				Description("A YAML or JSON file holding the plugin's configuration, such as an expectation suite shared by several pipelines; `builtin:NAME` names one shipped in the agent (`builtin:suites/user_events.yaml`). Keys of `config` override the file's top-level keys. Read by the agent, not the plugin, so it needs no mount. `agent lint` reports the plugin's config errors at their line in this file.").
				Example("pipelines/suites/user_events.yaml").
				Optional(),
			service.NewStringField(fMemory).
				Description("Cap on each instance's linear memory (B, KiB, MiB or GiB). A plugin that grows past it fails the batch and is replaced.").
				Default("64MiB"),
			service.NewDurationField(fTimeout).
				Description("Deadline for one call into the plugin (one batch).").
				Default("1s"),
			service.NewBoolField(fInterrupt).
				Description("Stop a call at its deadline. This makes wazero insert a check into every loop of the guest, measured at 3-10x slower on loop-heavy code (wazero issue #2466). Without it a call that overruns is only logged, and a plugin that never returns blocks its pipeline thread. Default: true for a plugin loaded by `path`; false for a `builtin`, which ships inside the agent, tested and fuzzed like the rest of it.").
				Optional().
				Advanced(),
			service.NewIntField(fMaxCall).
				Description("Most messages handed to the plugin in one call. A larger batch (a whole file made one batch for a summary) is split into calls of at most this many, in order, so the plugin's memory and each call's `timeout` stay bounded whatever the batch size; a call that fails fails only its own messages. A plugin therefore must not compute across a whole batch (a median, a distinct count) when batches can be larger; do that in a native step. Does not apply to a stateful (`key`) step, whose batch is one state transaction.").
				Default(8192).
				Advanced(),
			service.NewIntField(fParallel).
				Description("How many calls one frame (a `csv_file` input's `frames: true`) may have running at once, each on an instance of its own: the frame's rows are cut into that many calls (of at most `max_call_messages` rows), so a step with `threads: 1` still uses every core on a large frame, and its rows come out in their order. 0 means one per core (GOMAXPROCS). Only for plugins that keep nothing from one call to the next: a plugin that says it does (its descriptor's sequential flag, `sdk.Sequential` in Go; a validate suite with a `window`) is refused at load unless this is 1. Does not apply to batches of messages or to a stateful (`key`) step.").
				Default(1).
				Advanced(),
			service.NewBoolField(fSkipErr).
				Description("Pass messages that an earlier step flagged as errored (`errored()` in Bloblang) through untouched, in their place in the batch: the plugin never sees them, so a rejected row keeps its first reason. The same as wrapping the step in a `switch` on `!errored()`, without the switch's cost per message (a Bloblang check, and splitting and reordering the batch; measured in docs/BENCHMARKS.md). Off by default, as Benthos processors see every message.").
				Default(false),
			service.NewBoolField(fClock).
				Description("Give the plugin the real wall and monotonic clocks. Without it the plugin sees a fixed time, which keeps it deterministic when input is replayed; compute time features from event timestamps instead.").
				Default(false).
				Advanced(),
			service.NewStringListField(fEnv).
				Description("Host environment variables passed to the plugin, by name. No others are visible.").
				Default([]any{}).
				Advanced(),
			service.NewObjectListField(fMounts,
				service.NewStringField("host").Description("Host directory."),
				service.NewStringField("guest").Description("Path the plugin sees it at."),
				service.NewBoolField("read_only").Description("Mount read-only.").Default(true),
			).
				Description("Host directories the plugin may open. None by default.").
				Default([]any{}).
				Advanced(),
			service.NewStringField(fKey).
				Description("For a stateful plugin: the entity each message's state belongs to, as a field path (`user_id`, `event_data.session`) or an interpolation (`${! meta(\"user\") }`). Required when the plugin keeps state.").
				Example("user_id").
				Optional(),
			service.NewObjectField(fState,
				service.NewStringField("namespace").Description("The step's own namespace in the agent's state store: letters, digits, _ and -. Two steps share state only by naming the same namespace."),
				service.NewDurationField("ttl").Description("Forget an entity idle longer than this; 0 keeps it forever.").Default("0s"),
				service.NewStringEnumField("ttl_clock", "event", "wall").Description("Measure the TTL in event time (from `event_time`, so a replay forgets the same entities) or in wall time.").Default("event"),
				service.NewStringField("event_time").Description("Field path of the event's timestamp, for an event-time TTL.").Default(""),
				changelogField(),
			).
				Description("Where a stateful plugin's per-key state lives. The states of a batch are loaded in one read before the call and committed in one transaction, with the batch's offsets, before the batch goes on.").
				Optional(),
			service.NewStringListField(fReadState).
				Description("State namespaces the plugin may read at random through the state_get and state_scan host functions (a stateful step may always read its own). Reading any other namespace is refused.").
				Example([]any{"user_profiles"}).
				Default([]any{}).
				Advanced(),
			service.NewObjectField(fOffsets,
				service.NewInterpolatedStringField("source").Description("The input the message came from.").Example(`${! meta("kafka_topic") }`),
				service.NewInterpolatedStringField("partition").Description("Its partition.").Example(`${! meta("kafka_partition") }`),
				service.NewInterpolatedStringField("offset").Description("Its offset or sequence number, increasing within a partition. An empty result means the message has no position (e.g. an event posted over HTTP into a pipeline that also reads Kafka, with `${! meta(\"kafka_offset\").or(\"\") }`): its update is always applied.").Example(`${! meta("kafka_offset") }`),
			).
				Description("Effectively-once state: the last offset applied per source and partition is committed with the state, and a redelivered message (offset not above it) is recognised: the plugin still computes its output but its state updates are not applied again.").
				Advanced().
				Optional(),
		).
		LintRule(`root = if (this.path | "") == "" && (this.builtin | "") == "" { "one of path or builtin must be set: the processor has no plugin to run" } else if (this.path | "") != "" && (this.builtin | "") != "" { "path and builtin are both set: only one plugin can run, set one of them" }`).
		Example("Seed transform step", "Derive hour_of_day, day_of_week and is_weekend from each event's timestamp.", `
pipeline:
  processors:
    - wasm:
        path: examples/wasm/transform/transform.wasm
`)
}

// Register adds the `wasm` processor to env, backed by eng.
func Register(env *service.Environment, eng *Engine) error {
	return env.RegisterBatchProcessor("wasm", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchProcessor, error) {
		return newProcessor(context.Background(), eng, conf, slog.New(&benthosHandler{l: res.Logger()}), res.Metrics(), res.Label())
	})
}

// Processor is the `wasm` Benthos batch processor. Benthos shares one
// processor between a pipeline's threads, so it keeps a pool of instances:
// at most one per concurrent caller, which is one per thread.
type Processor struct {
	keyed *keyedStep
	// views is where the step offers its plugin's state view, if it has one.
	views *stateViews
	// keyedMu runs a stateful step's load and call one batch at a time:
	// two threads with the same key in flight would each load the old
	// state and one update would be lost.
	keyedMu sync.Mutex
	// last is the step's latest batch, whose commit may still be in
	// flight; guarded by keyedMu.
	last *pending
	// mod is the module first loaded; it names the plugin in messages (a
	// reload loads the same path). The module serving is gen's.
	mod    *Module
	icfg   InstanceConfig
	logger *slog.Logger
	// stats are the step's own metrics about its plugin (stepmetrics.go).
	stats *stepMetrics
	// maxCall splits a stateless step's batch into calls of this many;
	// parallel runs that many of a frame's calls at once.
	maxCall  int
	parallel int
	// parallelConf is parallel_calls as written, checked against each
	// version's descriptor.
	parallelConf int
	// skipErrored passes errored messages through without the plugin.
	skipErrored bool

	// gen is the version of the plugin serving new batches, with its
	// instances; a hot reload swaps it (reload.go).
	gen atomic.Pointer[generation]
	// reload is how to load a new version; nil for a builtin.
	reload *reloader
	// viewMu guards views, which a reload may change.
	viewMu sync.Mutex
}

// Settings are the parsed fields of a `wasm` processor config.
type Settings struct {
	keyed     *keyedStep
	Name      string
	Bin       []byte
	Load      LoadOptions
	Instance  InstanceConfig
	ConfigRaw []byte
	// MaxCall is the most messages of a stateless step per plugin call.
	MaxCall int
	// Parallel is how many calls of one frame may run at once.
	Parallel int
	// parallelConf is parallel_calls as written (0: one per core), for
	// refusing it to a sequential plugin on any machine alike.
	parallelConf int
	// SkipErrored passes errored messages through without the plugin.
	SkipErrored bool
	// selfTest is the test every version of the plugin must pass; nil if
	// none is declared.
	selfTest *selfTest
}

// ParseSettings reads a parsed `wasm` config, resolving the module bytes.
func ParseSettings(eng *Engine, conf *service.ParsedConfig) (Settings, error) {
	var s Settings
	var err error
	if s.Name, s.Bin, s.Load, err = moduleOf(eng, conf); err != nil {
		return s, err
	}
	if s.selfTest, err = parseSelfTest(conf); err != nil {
		return s, err
	}
	if s.Instance.Timeout, err = conf.FieldDuration(fTimeout); err != nil {
		return s, err
	}
	if s.MaxCall, err = conf.FieldInt(fMaxCall); err != nil {
		return s, err
	}
	if s.Parallel, err = conf.FieldInt(fParallel); err != nil {
		return s, err
	}
	if s.Parallel < 0 {
		return s, fmt.Errorf("%s must be 0 (one per core) or more, got %d", fParallel, s.Parallel)
	}
	s.parallelConf = s.Parallel
	if s.Parallel == 0 {
		s.Parallel = runtime.GOMAXPROCS(0)
	}
	if s.SkipErrored, err = conf.FieldBool(fSkipErr); err != nil {
		return s, err
	}
	if s.MaxCall <= 0 {
		return s, fmt.Errorf("%s must be positive, got %d", fMaxCall, s.MaxCall)
	}
	if s.Instance.Timeout <= 0 {
		return s, fmt.Errorf("%s must be positive, got %s", fTimeout, s.Instance.Timeout)
	}
	if s.Instance.Grants.Clock, err = conf.FieldBool(fClock); err != nil {
		return s, err
	}
	if s.Instance.Grants.Env, err = conf.FieldStringList(fEnv); err != nil {
		return s, err
	}
	mounts, err := conf.FieldObjectList(fMounts)
	if err != nil {
		return s, err
	}
	for i, m := range mounts {
		var mt Mount
		if mt.Host, err = m.FieldString("host"); err != nil {
			return s, fmt.Errorf("%s[%d]: %w", fMounts, i, err)
		}
		if st, err := os.Stat(mt.Host); err != nil || !st.IsDir() {
			return s, fmt.Errorf("%s[%d]: host %q is not a directory", fMounts, i, mt.Host)
		}
		if mt.Guest, err = m.FieldString("guest"); err != nil {
			return s, fmt.Errorf("%s[%d]: %w", fMounts, i, err)
		}
		if mt.ReadOnly, err = m.FieldBool("read_only"); err != nil {
			return s, fmt.Errorf("%s[%d]: %w", fMounts, i, err)
		}
		s.Instance.Grants.Mounts = append(s.Instance.Grants.Mounts, mt)
	}
	if s.Instance.Config, err = pluginConfig(eng, conf); err != nil {
		return s, err
	}
	s.Instance.LookupEnv = os.LookupEnv
	if s.keyed, err = parseKeyed(eng, conf); err != nil {
		return s, err
	}
	if s.keyed != nil && s.SkipErrored {
		// A stateful step's batch is one state transaction and carries
		// the offsets its changelog records: it sees the whole batch.
		return s, fmt.Errorf("%s is for a stateless step; put this keyed step behind a switch on !errored() instead", fSkipErr)
	}
	if s.Instance.ReadState, err = conf.FieldStringList(fReadState); err != nil {
		return s, err
	}
	for _, ns := range s.Instance.ReadState {
		if err := (state.Namespace{Name: ns}).Validate(); err != nil {
			return s, fmt.Errorf("%s: %w", fReadState, err)
		}
	}
	if len(s.Instance.ReadState) > 0 && eng.cfg.State == nil {
		return s, fmt.Errorf("%s: this agent has no state store", fReadState)
	}
	if s.keyed != nil {
		s.Instance.ReadState = append(s.Instance.ReadState, s.keyed.ns.Name)
	}
	s.Instance.Store = eng.cfg.State
	return s, nil
}

// builtinName prefixes the name of a builtin plugin.
const builtinName = "builtin:"

// ErrPinMismatch means a module's bytes do not hash to the sha256 its
// processor pins.
var ErrPinMismatch = errors.New("plugin does not match its pinned sha256")

// checkPin refuses a module whose bytes do not hash to the processor's
// `sha256`, before anything of it is compiled or run: the pin exists so
// that a file replaced after review never executes.
func checkPin(conf *service.ParsedConfig, name string, bin []byte) error {
	want, err := parsePin(conf)
	if err != nil {
		return err
	}
	return matchPin(want, name, bin)
}

// parsePin returns the step's `sha256` in lower-case hex, or "" if the
// module is not pinned.
func parsePin(conf *service.ParsedConfig) (string, error) {
	if !conf.Contains(fSHA256) {
		return "", nil
	}
	raw, err := conf.FieldString(fSHA256)
	if err != nil {
		return "", err
	}
	want := strings.ToLower(strings.TrimSpace(raw))
	if _, err := hex.DecodeString(want); err != nil || len(want) != 2*sha256.Size {
		return "", fmt.Errorf("%s: %q is not a SHA-256 (want 64 hex digits, as `agent plugin inspect` prints)", fSHA256, raw)
	}
	return want, nil
}

// matchPin refuses bin unless it hashes to want; an empty want pins
// nothing.
func matchPin(want, name string, bin []byte) error {
	if want == "" {
		return nil
	}
	sum := sha256.Sum256(bin)
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("%w: plugin %s: expected sha256 %s, the module's is %s; it changed since it was pinned (if the new module is the one to run, pin sha256: %s)", ErrPinMismatch, name, want, got, got)
	}
	return nil
}

func parseKeyed(eng *Engine, conf *service.ParsedConfig) (*keyedStep, error) {
	hasKey, hasState := conf.Contains(fKey), conf.Contains(fState)
	switch {
	case !hasKey && !hasState:
		if conf.Contains(fOffsets) {
			return nil, errors.New("offsets is set without key and state: offsets only apply to stateful steps")
		}
		return nil, nil
	case hasKey != hasState:
		return nil, errors.New("key and state go together: a stateful step needs both")
	}
	if eng.cfg.State == nil {
		return nil, errors.New("this agent has no state store (the engine was built without one)")
	}
	k := &keyedStep{store: eng.cfg.State}
	keyStr, err := conf.FieldString(fKey)
	if err != nil {
		return nil, err
	}
	if strings.Contains(keyStr, "${!") {
		if k.key.interp, err = service.NewInterpolatedString(keyStr); err != nil {
			return nil, fmt.Errorf("%s: %w", fKey, err)
		}
	} else {
		if err := checkPath(keyStr); err != nil {
			return nil, fmt.Errorf("%s: %w", fKey, err)
		}
		k.key.path = keyStr
	}
	sc := conf.Namespace(fState)
	if k.ns.Name, err = sc.FieldString("namespace"); err != nil {
		return nil, err
	}
	if err := (state.Namespace{Name: k.ns.Name}).Validate(); err != nil {
		return nil, fmt.Errorf("state.namespace: %w", err)
	}
	if k.ns.TTL, err = sc.FieldDuration("ttl"); err != nil {
		return nil, err
	}
	clock, err := sc.FieldString("ttl_clock")
	if err != nil {
		return nil, err
	}
	if k.eventTime, err = sc.FieldString("event_time"); err != nil {
		return nil, err
	}
	k.ns.EventTime = clock == "event" && k.ns.TTL > 0
	if k.ns.EventTime && k.eventTime == "" {
		return nil, errors.New("state: an event-time ttl needs event_time, the field holding each event's timestamp (or set ttl_clock: wall)")
	}
	if k.eventTime != "" {
		if err := checkPath(k.eventTime); err != nil {
			return nil, fmt.Errorf("state.event_time: %w", err)
		}
	}
	if conf.Contains(fOffsets) {
		oc := conf.Namespace(fOffsets)
		k.offsets = &offsetReaders{}
		if k.offsets.source, err = oc.FieldInterpolatedString("source"); err != nil {
			return nil, err
		}
		if k.offsets.partition, err = oc.FieldInterpolatedString("partition"); err != nil {
			return nil, err
		}
		if k.offsets.offset, err = oc.FieldInterpolatedString("offset"); err != nil {
			return nil, err
		}
	}
	if sc.Contains(fChangelog) {
		if k.offsets == nil {
			return nil, errors.New("state.changelog needs offsets: each message's source topic and partition say whose state it is")
		}
		if k.changelog, err = eng.newChangelog(k.ns, sc.Namespace(fChangelog)); err != nil {
			return nil, fmt.Errorf("state.changelog: %w", err)
		}
	}
	return k, nil
}

// NewProcessor loads the plugin and starts one instance, so a missing
// module, a wrong ABI version or a config the plugin rejects fails the
// pipeline at build time rather than on the first batch.
func NewProcessor(ctx context.Context, eng *Engine, conf *service.ParsedConfig, logger *slog.Logger) (*Processor, error) {
	return NewProcessorWithMetrics(ctx, eng, conf, logger, nil)
}

// NewProcessorWithMetrics is NewProcessor with the pipeline's metrics, which
// receive the plugin's own metrics (the metric import, ABI.md §8.10).
func NewProcessorWithMetrics(ctx context.Context, eng *Engine, conf *service.ParsedConfig, logger *slog.Logger, metrics *service.Metrics) (*Processor, error) {
	return newProcessor(ctx, eng, conf, logger, metrics, "")
}

// moduleOf reads which module a step runs and how it is compiled: its
// name for messages, its bytes (checked against a `sha256` pin) and the
// runtime-wide options.
func moduleOf(eng *Engine, conf *service.ParsedConfig) (name string, bin []byte, load LoadOptions, err error) {
	path, _ := conf.FieldString(fPath)
	builtin, _ := conf.FieldString(fBuiltin)
	switch {
	case path != "" && builtin != "":
		return "", nil, load, errors.New("path and builtin are both set: set one of them")
	case path != "":
		if bin, err = os.ReadFile(path); err != nil {
			return "", nil, load, fmt.Errorf("read plugin: %w", err)
		}
		name = path
	case builtin != "":
		var ok bool
		if bin, ok = eng.Builtin(builtin); !ok {
			return "", nil, load, fmt.Errorf("no builtin plugin named %q", builtin)
		}
		name = builtinName + builtin
	default:
		return "", nil, load, errors.New("one of path or builtin must be set")
	}
	if err := checkPin(conf, name, bin); err != nil {
		return "", nil, load, err
	}
	memStr, err := conf.FieldString(fMemory)
	if err != nil {
		return "", nil, load, err
	}
	memBytes, err := ParseBytes(memStr)
	if err != nil {
		return "", nil, load, fmt.Errorf("%s: %w", fMemory, err)
	}
	if load.MemoryLimitPages, err = pagesFor(memBytes); err != nil {
		return "", nil, load, fmt.Errorf("%s: %w", fMemory, err)
	}
	load.Interrupt = builtin == ""
	if conf.Contains(fInterrupt) {
		if load.Interrupt, err = conf.FieldBool(fInterrupt); err != nil {
			return "", nil, load, err
		}
	}
	return name, bin, load, nil
}

// Prefetch starts compiling (or loading from the compilation cache) the
// builtin module a `wasm` step's conf names, in the background, so that
// building the step finds it ready: a pipeline's builtins then load at
// once, beside the rest of its start, instead of one after another as
// Benthos builds its steps. It does nothing for a conf that names no
// builtin (the step reports a bad one when it is built), nor for a `path`
// module: those are released by count when a hot reload replaces them,
// and a Load no step owns would keep the old version compiled. done is
// closed when the load is over, whether it succeeded or not; it is nil
// when there is nothing to load.
func (e *Engine) Prefetch(ctx context.Context, conf *service.ParsedConfig) (done <-chan struct{}) {
	if b, _ := conf.FieldString(fBuiltin); b == "" {
		return nil
	}
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		// Here rather than before: reading a builtin out of the binary
		// copies some MB, which the agent's start need not wait for.
		name, bin, load, err := moduleOf(e, conf)
		if err != nil {
			return
		}
		// The compiled module stays cached for the step, as a stopped
		// pipeline's modules stay for its restart.
		_, _ = e.Load(context.WithoutCancel(ctx), name, bin, load)
	}()
	return loaded
}

// newProcessor builds a step labelled label (for reload results).
func newProcessor(ctx context.Context, eng *Engine, conf *service.ParsedConfig, logger *slog.Logger, metrics *service.Metrics, label string) (*Processor, error) {
	s, err := ParseSettings(eng, conf)
	if err != nil {
		return nil, err
	}
	if st := eng.cfg.State; st != nil && (s.keyed != nil || len(s.Instance.ReadState) > 0) {
		// The agent opens its state dir for the first step that needs
		// it: one it cannot have fails the pipeline now, not its first
		// batch.
		if err := st.Ready(ctx); err != nil {
			return nil, err
		}
	}
	s.Instance.metrics = newPluginMetrics(metrics)
	mod, err := eng.Load(ctx, s.Name, s.Bin, s.Load)
	if err != nil {
		return nil, err
	}
	s.Instance.Logger = logger.With("plugin", s.Name)
	inst, err := mod.Instantiate(ctx, s.Instance)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", s.Name, err)
	}
	if err := checkDescriptor(s.Name, inst.Descriptor(), s.keyed, s.parallelConf); err != nil {
		_ = inst.Close(ctx)
		return nil, err
	}
	if s.selfTest != nil {
		if err := s.selfTest.run(ctx, mod, s.Instance, s.keyed, s.MaxCall); err != nil {
			_ = inst.Close(ctx)
			return nil, fmt.Errorf("plugin %s: %w", s.Name, err)
		}
	}
	p := &Processor{keyed: s.keyed, mod: mod, icfg: s.Instance, logger: s.Instance.Logger, maxCall: s.MaxCall, parallel: s.Parallel, parallelConf: s.parallelConf, skipErrored: s.SkipErrored, stats: newStepMetrics(metrics)}
	p.gen.Store(newGeneration(eng, mod, sha256.Sum256(s.Bin), inst))
	if !strings.HasPrefix(s.Name, builtinName) {
		if p.reload, err = newReloader(eng, conf, s, label, metrics); err != nil {
			_ = inst.Close(ctx)
			return nil, err
		}
	}
	if s.keyed != nil && s.keyed.changelog != nil {
		observeChangelog(s.keyed.changelog, metrics)
		eng.logs.add(s.keyed.ns.Name, s.keyed.changelog)
		s.keyed.logs = &eng.logs
		s.keyed.logger = s.Instance.Logger
	}
	if inst.Descriptor().StateView {
		p.views = &eng.views
		p.views.add(s.keyed.ns.Name, p)
	}
	if p.reload != nil {
		eng.register(p)
	}
	return p, nil
}

// Failure back-off: the first failures replace the instance at once so a
// single poison batch costs nothing; a plugin that keeps failing is retried
// ever more slowly instead of spinning.
const (
	backoffAfter = 3
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// ProcessBatch implements service.BatchProcessor.
func (p *Processor) ProcessBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	if slices.ContainsFunc(batch, isFrame) {
		return p.processFrames(ctx, batch)
	}
	first := -1
	if p.skipErrored {
		first = slices.IndexFunc(batch, func(m *service.Message) bool { return m.GetError() != nil })
	}
	if first < 0 {
		return p.processBatch(ctx, batch)
	}
	todo := slices.Clone(batch[:first])
	for _, m := range batch[first+1:] {
		if m.GetError() == nil {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return []service.MessageBatch{batch}, nil
	}
	res, err := p.processBatch(ctx, todo)
	if err != nil {
		return nil, err
	}
	var done service.MessageBatch
	if len(res) > 0 {
		done = res[0]
	}
	return []service.MessageBatch{interleave(batch, todo, done)}, nil
}

func isFrame(m *service.Message) bool {
	body, err := m.AsBytes()
	return err == nil && frame.Is(body)
}

// processFrames runs each frame of batch through the plugin (frames.go)
// and the other messages as a batch of rows, keeping their order.
func (p *Processor) processFrames(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	var rows service.MessageBatch
	for _, m := range batch {
		body, err := m.AsBytes()
		if err != nil || !frame.Is(body) {
			rows = append(rows, m)
			continue
		}
		if p.skipErrored && m.GetError() != nil {
			continue
		}
		g := p.hold()
		if g == nil {
			m.SetError(fmt.Errorf("plugin %s: %w", p.mod.Name(), errClosed))
			continue
		}
		p.processFrame(ctx, g, m, body)
		g.unhold(ctx)
	}
	if len(rows) == 0 {
		return []service.MessageBatch{batch}, nil
	}
	res, err := p.ProcessBatch(ctx, rows)
	if err != nil {
		return nil, err
	}
	var done service.MessageBatch
	if len(res) > 0 {
		done = res[0]
	}
	return []service.MessageBatch{interleave(batch, rows, done)}, nil
}

// interleave puts the messages of batch that were not processed back in
// their places among done: what processing todo (the rest of batch, in
// order) kept, in order, without the ones it dropped.
func interleave(batch, todo, done service.MessageBatch) service.MessageBatch {
	out := make(service.MessageBatch, 0, len(batch))
	t, d := 0, 0
	for _, m := range batch {
		if t < len(todo) && todo[t] == m {
			t++
			if d < len(done) && done[d] == m {
				out = append(out, m)
				d++
			}
			continue
		}
		out = append(out, m)
	}
	return append(out, done[d:]...)
}

func (p *Processor) processBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	// The whole batch runs on the version serving at its start, so a hot
	// reload falls between batches.
	g := p.hold()
	if g == nil {
		return result(failAll(batch, fmt.Errorf("plugin %s: %w", p.mod.Name(), errClosed))), nil
	}
	defer g.unhold(ctx)
	if p.keyed == nil {
		if len(batch) <= p.maxCall {
			out, _ := p.run(ctx, g, batch, nil)
			return result(out), nil
		}
		var all service.MessageBatch
		for start := 0; start < len(batch); start += p.maxCall {
			out, _ := p.run(ctx, g, batch[start:min(start+p.maxCall, len(batch))], nil)
			all = append(all, out...)
		}
		return result(all), nil
	}
	// Load, call and record run one batch at a time; the commit runs
	// outside the lock, so the next batch computes while this one's commit
	// waits for the disk (see pending).
	p.keyedMu.Lock()
	prev := inFlight(p.last)
	kin, eventTimes, maxOffset, err := p.keyed.prepare(ctx, batch, prev)
	if err != nil {
		p.keyedMu.Unlock()
		if dropRevoked(p.logger, err) {
			return nil, nil
		}
		return result(failAll(batch, fmt.Errorf("plugin %s: load state: %w", p.mod.Name(), err))), nil
	}
	out, ok := p.run(ctx, g, batch, kin)
	if !ok {
		p.keyedMu.Unlock()
		return result(out), nil
	}
	kin.mergeRandom()
	cur := newPending(prev, kin, eventTimes, maxOffset)
	p.last = cur
	p.keyedMu.Unlock()

	err = cur.waitPrev()
	if err == nil {
		err = p.keyed.commit(ctx, kin, eventTimes, maxOffset)
	}
	cur.err = err
	close(cur.done)
	if err != nil {
		if dropRevoked(p.logger, err) {
			return nil, nil
		}
		// Nothing of this batch's state is stored: fail it so it is not
		// passed on as if it had been counted.
		p.logger.Error("state commit failed", "error", err)
		return result(failAll(out, err)), nil
	}
	return result(out), nil
}

// run calls the plugin on batch with an instance from g's pool. If the
// call fails, every message of the batch is failed with the reason and ok
// is false.
func (p *Processor) run(ctx context.Context, g *generation, batch service.MessageBatch, kin *KeyedInput) (out service.MessageBatch, ok bool) {
	inst, err := g.acquire(ctx, p.icfg)
	if err != nil {
		p.stats.messages(len(batch), len(batch), len(batch))
		return failAll(batch, err), false
	}
	start := time.Now()
	if kin != nil {
		out, err = inst.ProcessKeyed(ctx, batch, kin)
	} else {
		out, err = inst.ProcessBatch(ctx, batch)
	}
	p.stats.call(batch, out, int64(time.Since(start)), err, inst.Broken(), inst.MemoryPages())
	g.release(ctx, inst, err, p.stats)
	if err != nil {
		p.logger.Error("plugin failed a batch", "messages", len(batch), "error", err)
		return failAll(batch, fmt.Errorf("plugin %s: %w", p.mod.Name(), err)), false
	}
	return out, true
}

// result is what ProcessBatch hands Benthos: no batch when every message
// was dropped.
func result(out service.MessageBatch) []service.MessageBatch {
	if len(out) == 0 {
		return nil
	}
	return []service.MessageBatch{out}
}

func failAll(batch service.MessageBatch, err error) service.MessageBatch {
	for _, m := range batch {
		m.SetError(err)
	}
	return batch
}

// errClosed fails a batch that reaches a step after it was closed.
var errClosed = errors.New("the step is closed")

// acquire takes an instance of the version serving now, for a call outside
// ProcessBatch (a state view); give it back with release.
func (p *Processor) acquire(ctx context.Context) (*Instance, error) {
	g := p.hold()
	if g == nil {
		return nil, fmt.Errorf("plugin %s: %w", p.mod.Name(), errClosed)
	}
	inst, err := g.acquire(ctx, p.icfg)
	if err != nil {
		g.unhold(ctx)
		return nil, err
	}
	return inst, nil
}

// release gives back an instance from acquire after a call that returned
// err.
func (p *Processor) release(ctx context.Context, inst *Instance, err error) {
	g := inst.gen
	g.release(ctx, inst, err, p.stats)
	g.unhold(ctx)
}

// Close implements service.BatchProcessor.
func (p *Processor) Close(ctx context.Context) error {
	if r := p.reload; r != nil {
		r.eng.unregister(p)
		// Wait out a reload in progress, and keep any from starting: the
		// version it would swap in would never be closed.
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
	}
	p.viewMu.Lock()
	if p.views != nil {
		p.views.remove(p.keyed.ns.Name, p)
		p.views = nil
	}
	p.viewMu.Unlock()
	if p.keyed != nil && p.keyed.changelog != nil {
		p.keyed.closeChangelog()
	}
	// Benthos closes a step after its last batch, so nothing holds the
	// generation and its instances close now.
	g := p.gen.Load()
	g.mu.Lock()
	g.retired = true
	g.mu.Unlock()
	return g.closeIfDrained(ctx)
}

// ParseBytes reads a size such as "64MiB", "512KiB", "1GiB" or "65536".
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
	}
	return n * mult, nil
}

// benthosHandler lets instance code log through slog while the lines land
// in the pipeline's Benthos logger, with its labels.
type benthosHandler struct {
	l     *service.Logger
	attrs []any
}

func (h *benthosHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *benthosHandler) Handle(_ context.Context, r slog.Record) error {
	kv := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		kv = append(kv, a.Key, a.Value.String())
		return true
	})
	l := h.l
	if len(kv) > 0 {
		l = l.With(kv...)
	}
	switch {
	case r.Level >= slog.LevelError:
		l.Error(r.Message)
	case r.Level >= slog.LevelWarn:
		l.Warn(r.Message)
	case r.Level >= slog.LevelInfo:
		l.Info(r.Message)
	default:
		l.Debug(r.Message)
	}
	return nil
}

func (h *benthosHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &benthosHandler{l: h.l, attrs: append([]any(nil), h.attrs...)}
	for _, a := range attrs {
		n.attrs = append(n.attrs, a.Key, a.Value.String())
	}
	return n
}

func (h *benthosHandler) WithGroup(string) slog.Handler { return h }
