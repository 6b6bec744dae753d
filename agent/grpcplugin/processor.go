// Package grpcplugin is the `grpc_plugin` processor: it runs each batch
// through a native plugin, an executable the agent starts as a child
// process and calls over gRPC with hashicorp/go-plugin. The protocol is
// plugins/native/proto/sluice/plugin/v1/plugin.proto (ABI v1's bytes mode
// as protobuf); plugins/native is the Go SDK for writing one, and
// docs/NATIVE_PLUGINS.md the guide, for Go and other languages.
//
// Lifecycle: the process is started, handshaken, health-checked and
// initialised with the step's config when the processor is built, so a
// missing binary, a wrong handshake or a refused config fails the pipeline
// at build time and in `agent lint`. If the process dies or hangs, the batch
// in flight fails (every message marked errored with the reason, so the
// pipeline's catch, try, retry or switch on errored() handle it: nothing is
// lost) and the next batch restarts it, with exponential back-off between
// consecutive failures. Close stops it. On Linux the kernel kills it if the
// agent dies without closing it (see sysProcAttr).
package grpcplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/plugins/native/pluginv1"
	"github.com/sluice-dev/sluice/state"
)

// Processor config fields.
const (
	fPath           = "path"
	fArgs           = "args"
	fEnv            = "env"
	fInheritEnv     = "inherit_env"
	fConfig         = "config"
	fTimeout        = "timeout"
	fStartTimeout   = "start_timeout"
	fMaxMessage     = "max_message_bytes"
	fRestartBackoff = "restart_backoff"
	fKey            = "key"
	fState          = "state"
	fRlimitMemory   = "rlimit_memory_bytes"
	fRlimitCPU      = "rlimit_cpu_seconds"
)

const (
	defaultStartTimeout = 10 * time.Second
	// exitGrace is how long a failed call waits for the process to be
	// reaped before it calls the failure a lost connection: a dead
	// process's pipes close at once, so this is normally milliseconds.
	exitGrace = 2 * time.Second
)

// ConfigSpec is the `grpc_plugin` processor's spec: fields, defaults and
// docs.
func ConfigSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping", "Utility").
		Summary("Runs each batch through a native plugin: an executable the agent starts as a child process and calls over gRPC (hashicorp/go-plugin).").
		Description(`
Use it for a step the `+"`wasm`"+` processor cannot run: a native ML runtime, cgo, a model file anywhere on disk, a plugin in Python. It costs a gRPC round trip and a copy of each batch per call (see docs/BENCHMARKS.md), and the plugin is not sandboxed: it runs with the agent's user and, unless limited below, its resources.

The plugin speaks plugins/native/proto/sluice/plugin/v1/plugin.proto; plugins/native is the Go SDK and docs/NATIVE_PLUGINS.md the guide. The process is started when the pipeline is built (a missing binary, a wrong handshake or a config the plugin refuses fails the pipeline, and `+"`agent lint`"+`), and called once per batch; batches of several pipeline threads run concurrently in one process, except on a keyed step.

If the process dies, hangs past `+"`timeout`"+` or loses its connection, every message of the batch in flight fails with the reason (`+"`plugin process exited: signal: killed`"+`), so `+"`catch`, `retry`"+` and `+"`switch`"+` on `+"`errored()`"+` handle it, and the next batch restarts the process, waiting `+"`restart_backoff`"+` between consecutive failures. On Linux the process gets SIGKILL if the agent dies (it cannot outlive a killed agent) and runs in its own process group, which is killed with it.`).
		Fields(
			service.NewStringField(fPath).
				Description("Path of the plugin executable, relative to the agent's working directory.").
				Example("examples/native/scorer/scorer"),
			service.NewStringListField(fArgs).
				Description("Command-line arguments for the plugin.").
				Default([]any{}).
				Advanced(),
			service.NewStringMapField(fEnv).
				Description("Environment variables set for the plugin, on top of the agent's own (see `inherit_env`); they override inherited ones of the same name.").
				Default(map[string]any{}).
				Advanced(),
			service.NewBoolField(fInheritEnv).
				Description("Pass the agent's environment to the plugin. Turn it off to give the plugin only `env` (and go-plugin's handshake variables), e.g. to keep the agent's credentials from it.").
				Default(true).
				Advanced(),
			service.NewAnyField(fConfig).
				Description("The plugin's own configuration, handed to its Init as JSON at every start. The plugin validates it; errors fail the pipeline and are reported by `agent lint`.").
				Optional(),
			service.NewDurationField(fTimeout).
				Description("Deadline of one call (one batch, or one chunk of a batch split by `max_message_bytes`). A call past it fails its batch, and the process, which may be stuck, is killed and restarted.").
				Default("5s"),
			service.NewDurationField(fStartTimeout).
				Description("How long a starting plugin has to complete go-plugin's handshake (print its address line). Slow starters, such as a Python interpreter importing a large library, may need more. Init then runs under `timeout`.").
				Default("10s").
				Advanced(),
			service.NewStringField(fMaxMessage).
				Description("Largest gRPC message either side sends or accepts (B, KiB, MiB or GiB), passed to the plugin in SLUICE_PLUGIN_MAX_MESSAGE_BYTES. A batch larger than this is sent in several calls, in order; one message that alone is larger fails with its size, and the rest of the batch goes on. A response larger than this fails its batch. Each call holds up to about twice this in memory on each side.").
				Default("64MiB").
				Advanced(),
			service.NewObjectField(fRestartBackoff,
				service.NewDurationField("initial").Description("Wait before the first restart after a failure.").Default("100ms"),
				service.NewDurationField("max").Description("Longest wait: the wait doubles with each consecutive failure (a death, a hang, a failed start) up to this. A successful call resets it.").Default("5s"),
			).
				Description("Back-off between restarts of a plugin that keeps failing, so a crash loop costs little. The batch that needs the restarted process waits for it.").
				Advanced(),
			service.NewInterpolatedStringField(fKey).
				Description("For a stateful plugin: the entity each message's state belongs to, such as `${! json(\"user_id\") }`. Each message is sent with its key and the key's state from the agent's state store, and the state changes the plugin returns are committed, in one transaction, before the batch goes on. Keyed batches run one at a time. A message whose key is empty or cannot be read fails and is not sent.").
				Example(`${! json("user_id") }`).
				Optional(),
			service.NewObjectField(fState,
				service.NewStringField("namespace").Description("The step's own namespace in the agent's state store: letters, digits, _ and -. Two steps share state only by naming the same namespace."),
				service.NewDurationField("ttl").Description("Forget an entity not updated for this long, in wall time (whole seconds; at least 1s); 0 keeps it forever.").Default("0s"),
			).
				Description("Where a keyed step's state lives. Required with `key`.").
				Optional(),
			service.NewStringField(fRlimitMemory).
				Description("Linux only: cap the plugin's writable private memory (RLIMIT_DATA: heap, anonymous mappings, stacks), as 512MiB or a number of bytes. A plugin past it fails to allocate (a Go plugin then dies and is restarted). Set right after the handshake, so the plugin's start-up runs without it.").
				Example("512MiB").
				Optional().
				Advanced(),
			service.NewIntField(fRlimitCPU).
				Description("Linux only: seconds of CPU the plugin process may use over its whole life (RLIMIT_CPU; SIGXCPU at the limit, SIGKILL a second later). A budget against a runaway plugin, not a per-call limit (that is `timeout`): a plugin that reaches it is killed and restarted, failing the batch in flight, and its budget starts over.").
				Optional().
				Advanced(),
		).
		LintRule(`root = if this.exists("key") != this.exists("state") { "key and state go together: a keyed step needs the entity key and the state namespace" }`).
		Example("A native scorer", "Score each event with the example native plugin and its model file.", `
pipeline:
  processors:
    - grpc_plugin:
        path: examples/native/scorer/scorer
        config:
          model_file: examples/native/scorer/model.json
`)
}

// Register adds the `grpc_plugin` processor to env. store is the agent's
// state store, for keyed steps; nil refuses them.
func Register(env *service.Environment, store *state.Store) error {
	return env.RegisterBatchProcessor("grpc_plugin", ConfigSpec(), func(conf *service.ParsedConfig, res *service.Resources) (service.BatchProcessor, error) {
		return NewProcessor(conf, res, store)
	})
}

// settings are the parsed fields of a `grpc_plugin` config.
type settings struct {
	launch
	config         []byte // JSON; nil when none
	timeout        time.Duration
	backoffInitial time.Duration
	backoffMax     time.Duration
	keyed          *keyedStep
}

// parseSettings reads a parsed config and reports every problem at once.
func parseSettings(conf *service.ParsedConfig, store *state.Store) (settings, error) {
	var s settings
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	var err error
	s.path, err = conf.FieldString(fPath)
	add(fPath, err)
	if err == nil && s.path == "" {
		add(fPath, errors.New("empty: name the plugin executable"))
	}
	s.args, err = conf.FieldStringList(fArgs)
	add(fArgs, err)
	env, err := conf.FieldStringMap(fEnv)
	add(fEnv, err)
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add(fEnv, fmt.Errorf("%q is not a variable name", k))
		}
		s.env = append(s.env, k+"="+v)
	}
	s.inheritEnv, err = conf.FieldBool(fInheritEnv)
	add(fInheritEnv, err)
	if conf.Contains(fConfig) {
		v, err := conf.FieldAny(fConfig)
		if err == nil {
			s.config, err = json.Marshal(v)
		}
		add(fConfig, err)
	}
	s.timeout, err = conf.FieldDuration(fTimeout)
	add(fTimeout, err)
	if err == nil && s.timeout <= 0 {
		add(fTimeout, fmt.Errorf("must be positive, got %s", s.timeout))
	}
	s.startTimeout, err = conf.FieldDuration(fStartTimeout)
	add(fStartTimeout, err)
	if err == nil && s.startTimeout <= 0 {
		add(fStartTimeout, fmt.Errorf("must be positive, got %s", s.startTimeout))
	}
	maxStr, err := conf.FieldString(fMaxMessage)
	add(fMaxMessage, err)
	if err == nil {
		n, err := parseBytes(maxStr)
		switch {
		case err != nil:
			add(fMaxMessage, err)
		case n < 1<<10 || n > 1<<31-1:
			add(fMaxMessage, fmt.Errorf("%s is outside 1KiB..2GiB (gRPC's limit)", maxStr))
		default:
			s.maxBytes = int(n)
		}
	}
	s.backoffInitial, s.backoffMax = 100*time.Millisecond, 5*time.Second
	if conf.Contains(fRestartBackoff) {
		b := conf.Namespace(fRestartBackoff)
		s.backoffInitial, err = b.FieldDuration("initial")
		add(fRestartBackoff+".initial", err)
		s.backoffMax, err = b.FieldDuration("max")
		add(fRestartBackoff+".max", err)
		if s.backoffInitial <= 0 || s.backoffMax < s.backoffInitial {
			add(fRestartBackoff, fmt.Errorf("want 0 < initial <= max, got initial %s, max %s", s.backoffInitial, s.backoffMax))
		}
	}
	if conf.Contains(fRlimitMemory) {
		str, err := conf.FieldString(fRlimitMemory)
		if err == nil {
			var n int64
			if n, err = parseBytes(str); err == nil && n < 1<<20 {
				err = fmt.Errorf("%s is below 1MiB: no process starts in that", str)
			}
			s.rlimitMem = uint64(n)
		}
		add(fRlimitMemory, err)
	}
	if conf.Contains(fRlimitCPU) {
		n, err := conf.FieldInt(fRlimitCPU)
		if err == nil && n <= 0 {
			err = fmt.Errorf("must be positive, got %d", n)
		}
		add(fRlimitCPU, err)
		s.rlimitCPU = uint64(max(n, 0))
	}
	if !rlimitsSupported && (s.rlimitMem > 0 || s.rlimitCPU > 0) {
		errs = append(errs, fmt.Errorf("%s and %s are only supported on Linux", fRlimitMemory, fRlimitCPU))
	}
	s.keyed, err = parseKeyed(conf, store)
	if err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// parseBytes reads a size such as "64MiB", "512KiB", "1GiB" or "65536": the
// syntax of the wasm processor's memory_limit.
func parseBytes(orig string) (int64, error) {
	s := strings.TrimSpace(orig)
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
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", orig)
	}
	return n * mult, nil
}

// Processor is the `grpc_plugin` Benthos batch processor. Benthos shares
// one processor between a pipeline's threads; they share its one process.
type Processor struct {
	s    settings
	name string // "plugin PATH", the prefix of call errors
	step string // label or path, the prefix of messages' own failures
	log  *service.Logger
	m    metrics

	// keyedMu runs a keyed step's batches one at a time: two batches with
	// the same key in flight would each load the old state, and one
	// update would be lost.
	keyedMu sync.Mutex

	// startMu serialises (re)starts, so threads that find the process
	// dead start one new process, not one each.
	startMu sync.Mutex

	mu       sync.Mutex
	cur      *proc // nil when none is running
	failures int   // consecutive; 0 after a successful call
	retryAt  time.Time
	closed   bool
}

type metrics struct {
	calls    *service.MetricCounter
	errors   *service.MetricCounter
	restarts *service.MetricCounter
	latency  *service.MetricTimer
}

// NewProcessor starts the plugin and initialises it with the config, so
// that a missing binary, a failed handshake or a refused config fails the
// pipeline when it is built.
func NewProcessor(conf *service.ParsedConfig, res *service.Resources, store *state.Store) (*Processor, error) {
	s, err := parseSettings(conf, store)
	if err != nil {
		return nil, err
	}
	if s.keyed != nil {
		// A keyed step opens the agent's state dir when it is built: one
		// it cannot have fails the pipeline now, not its first batch.
		if err := store.Ready(context.Background()); err != nil {
			return nil, err
		}
	}
	p := &Processor{s: s, name: "plugin " + s.path, step: s.path}
	if label := res.Label(); label != "" {
		p.name = fmt.Sprintf("plugin %s (step %s)", s.path, label)
		p.step = label
	}
	p.log = res.Logger().With("step", p.step)
	if m := res.Metrics(); m != nil {
		p.m = metrics{
			calls:    m.NewCounter("sluice_plugin_calls_total"),
			errors:   m.NewCounter("sluice_plugin_call_errors_total"),
			restarts: m.NewCounter("sluice_plugin_restarts_total"),
			latency:  m.NewTimer("sluice_plugin_call"),
		}
	}
	pr, err := p.start(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	p.cur = pr
	return p, nil
}

// start starts a process and runs Init with the step's config.
func (p *Processor) start(ctx context.Context) (*proc, error) {
	pr, err := start(p.s.launch, p.log)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	resp, err := pr.rpc.Init(cctx, &pluginv1.InitRequest{ConfigJson: p.s.config, Step: p.step, Keyed: p.s.keyed != nil})
	if err == nil && resp.GetError() != "" {
		err = errors.New(resp.GetError())
	}
	if err == nil {
		switch stateful := resp.GetStateful(); {
		case stateful && p.s.keyed == nil:
			err = errors.New("the plugin keeps per-key state: configure key and state.namespace")
		case !stateful && p.s.keyed != nil:
			err = errors.New("the plugin keeps no state (it does not declare itself stateful): remove key and state")
		}
	}
	if err != nil {
		pr.kill()
		return nil, fmt.Errorf("init: %w", err)
	}
	p.log.Debugf("plugin started, pid %d", pr.pid)
	return pr, nil
}

// PID returns the running plugin process's id, or 0 if none is running.
// It is for diagnostics and tests.
func (p *Processor) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.pid
}

// errClosed fails batches that arrive after Close.
var errClosed = errors.New("the processor is closed")

// acquire returns the running process, restarting it if it has died,
// after the back-off.
func (p *Processor) acquire(ctx context.Context) (*proc, error) {
	p.mu.Lock()
	if pr := p.cur; pr != nil && !pr.exited() {
		p.mu.Unlock()
		return pr, nil
	}
	p.mu.Unlock()

	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errClosed
	}
	dead := p.cur
	if dead != nil && !dead.exited() {
		p.mu.Unlock() // another thread restarted it meanwhile
		return dead, nil
	}
	if dead != nil {
		// It died between batches: a failure like any other, so a plugin
		// that keeps dying is restarted ever more slowly.
		p.cur = nil
		p.recordFailureLocked()
	}
	wait := time.Until(p.retryAt)
	p.mu.Unlock()
	if dead != nil {
		how, _ := dead.waitExit(0)
		p.log.Warnf("plugin process exited between batches (%s); restarting it", how)
		dead.kill()
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting to restart the plugin: %w", ctx.Err())
		}
	}
	pr, err := p.start(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.recordFailureLocked()
		return nil, fmt.Errorf("restart: %w", err)
	}
	if p.closed {
		pr.kill()
		return nil, errClosed
	}
	p.cur = pr
	p.incr(p.m.restarts)
	p.log.Infof("plugin restarted, pid %d", pr.pid)
	return pr, nil
}

func (p *Processor) recordFailureLocked() {
	p.failures++
	d := min(p.s.backoffInitial<<min(p.failures-1, 20), p.s.backoffMax)
	p.retryAt = time.Now().Add(d)
}

// retire takes pr out of service after a call on it failed in a way that
// leaves it unusable, and kills it.
func (p *Processor) retire(pr *proc) {
	p.mu.Lock()
	if p.cur == pr {
		p.cur = nil
		p.recordFailureLocked()
	}
	p.mu.Unlock()
	pr.killNow()
}

func (p *Processor) succeeded() {
	p.mu.Lock()
	p.failures, p.retryAt = 0, time.Time{}
	p.mu.Unlock()
}

func (p *Processor) incr(c *service.MetricCounter) {
	if c != nil {
		c.Incr(1)
	}
}

// call runs one Process call, classifying failures: the process is killed
// when it is dead, hung or unreachable, and kept when the call itself
// failed.
func (p *Processor) call(ctx context.Context, req *pluginv1.ProcessRequest) (*pluginv1.ProcessResponse, error) {
	pr, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	p.incr(p.m.calls)
	cctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	t0 := time.Now()
	resp, err := pr.rpc.Process(cctx, req)
	if p.m.latency != nil {
		p.m.latency.Timing(time.Since(t0).Nanoseconds())
	}
	if err == nil {
		if resp.GetError() != "" {
			p.incr(p.m.errors)
			return nil, errors.New(resp.GetError())
		}
		return resp, nil
	}
	p.incr(p.m.errors)
	switch {
	case ctx.Err() != nil:
		// The pipeline gave up on the batch (shutdown): the process is
		// not at fault.
		return nil, ctx.Err()
	case errors.Is(cctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		p.retire(pr)
		return nil, fmt.Errorf("plugin call exceeded its deadline (%s); the process was killed and will be restarted", p.s.timeout)
	case status.Code(err) == codes.Unavailable || pr.exited():
		if how, ok := pr.waitExit(exitGrace); ok {
			p.retire(pr)
			return nil, fmt.Errorf("plugin process exited: %s", how)
		}
		p.retire(pr)
		return nil, fmt.Errorf("plugin connection lost, the process was killed and will be restarted: %w", err)
	}
	return nil, fmt.Errorf("plugin call failed: %w", err)
}

// ProcessBatch implements service.BatchProcessor.
func (p *Processor) ProcessBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	var kin *keyedBatch
	if p.s.keyed != nil {
		p.keyedMu.Lock()
		defer p.keyedMu.Unlock()
		var err error
		if kin, err = p.s.keyed.prepare(batch); err != nil {
			return result(failAll(batch, fmt.Errorf("%s: load state: %w", p.name, err))), nil
		}
	}
	results, err := p.run(ctx, batch, kin)
	if err != nil {
		p.log.Errorf("plugin failed a batch of %d messages: %v", len(batch), err)
		return result(failAll(batch, fmt.Errorf("%s: %w", p.name, err))), nil
	}
	p.succeeded()
	if kin != nil {
		if err := p.s.keyed.commit(ctx, kin); err != nil {
			// Nothing of this batch's state is stored: fail it whole so
			// it is not passed on as if it had been counted.
			p.log.Errorf("state commit failed: %v", err)
			return result(failAll(batch, fmt.Errorf("%s: %w", p.name, err))), nil
		}
	}
	out := make(service.MessageBatch, 0, len(batch))
	for i, m := range batch {
		r := results[i]
		if r == nil { // failed before it was sent
			out = append(out, m)
			continue
		}
		switch r.GetOutcome() {
		case pluginv1.Outcome_OUTCOME_DROP:
			continue
		case pluginv1.Outcome_OUTCOME_REPLACE:
			m.SetBytes(r.GetValue())
		case pluginv1.Outcome_OUTCOME_ERROR:
			m.SetError(errors.New(p.step + ": " + r.GetError()))
		}
		for k, v := range r.GetMetadata() {
			m.MetaSetMut(k, v)
		}
		out = append(out, m)
	}
	return result(out), nil
}

// run sends the batch's messages in as few calls as max_message_bytes
// allows and returns each message's result (nil for a message that was
// not sent because it failed already). Any failed call fails the whole
// batch: results are applied only when every call succeeded, so a failed
// batch keeps its messages as they came.
func (p *Processor) run(ctx context.Context, batch service.MessageBatch, kin *keyedBatch) ([]*pluginv1.Result, error) {
	results := make([]*pluginv1.Result, len(batch))
	chunk := make([]*pluginv1.Message, 0, len(batch))
	idxs := make([]int, 0, len(batch))
	next := 0
	for next < len(batch) {
		chunk, idxs = chunk[:0], idxs[:0]
		size := 0
		for next < len(batch) {
			m := batch[next]
			if kin != nil && kin.keyIdx[next] < 0 {
				next++ // its key could not be read: failed in prepare
				continue
			}
			pm, err := toProto(m)
			if err != nil {
				m.SetError(fmt.Errorf("%s: read message: %w", p.name, err))
				next++
				continue
			}
			if kin != nil {
				j := kin.keyIdx[next]
				pm.Key, pm.State = string(kin.keys[j]), kin.cur[j]
			}
			n := proto.Size(pm)
			framed := protowire.SizeTag(1) + protowire.SizeBytes(n)
			if framed > p.s.maxBytes {
				body, _ := m.AsBytes()
				m.SetError(fmt.Errorf("%s: message is %d bytes encoded (body %d bytes), over max_message_bytes (%d): it cannot be sent to the plugin", p.name, framed, len(body), p.s.maxBytes))
				if kin != nil {
					kin.keyIdx[next] = -1
				}
				next++
				continue
			}
			if size+framed > p.s.maxBytes {
				break // the next call takes it, with the state this one leaves
			}
			chunk, idxs = append(chunk, pm), append(idxs, next)
			size += framed
			next++
		}
		if len(chunk) == 0 {
			continue
		}
		resp, err := p.call(ctx, &pluginv1.ProcessRequest{Messages: chunk})
		if err != nil {
			return nil, err
		}
		if err := p.check(resp, len(chunk), kin != nil); err != nil {
			return nil, err
		}
		for k, r := range resp.GetResults() {
			results[idxs[k]] = r
			if kin != nil {
				kin.apply(kin.keyIdx[idxs[k]], r)
			}
		}
	}
	return results, nil
}

// check validates a response against its request.
func (p *Processor) check(resp *pluginv1.ProcessResponse, n int, keyed bool) error {
	rs := resp.GetResults()
	if len(rs) != n {
		return fmt.Errorf("malformed response: %d results for %d messages (want one per message, in order)", len(rs), n)
	}
	for i, r := range rs {
		switch r.GetOutcome() {
		case pluginv1.Outcome_OUTCOME_KEEP, pluginv1.Outcome_OUTCOME_DROP, pluginv1.Outcome_OUTCOME_REPLACE, pluginv1.Outcome_OUTCOME_ERROR:
		default:
			return fmt.Errorf("malformed response: result %d: unknown outcome %d", i, r.GetOutcome())
		}
		setsState := r.StateSet != nil || r.GetStateDelete()
		switch {
		case r.StateSet != nil && r.GetStateDelete():
			return fmt.Errorf("malformed response: result %d both sets and deletes state", i)
		case setsState && !keyed:
			return fmt.Errorf("malformed response: result %d changes state, but the step has no key", i)
		}
	}
	return nil
}

// toProto copies a message's body and metadata into a request message.
// The body is shared with the Benthos message, not copied: it is only read,
// by the encoder, before the call returns.
func toProto(m *service.Message) (*pluginv1.Message, error) {
	body, err := m.AsBytes()
	if err != nil {
		return nil, err
	}
	pm := &pluginv1.Message{Value: body}
	_ = m.MetaWalk(func(k, v string) error {
		if pm.Metadata == nil {
			pm.Metadata = map[string]string{}
		}
		pm.Metadata[k] = v
		return nil
	})
	return pm, nil
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

// Close implements service.BatchProcessor: it stops the plugin process
// (asking it to shut down, then killing it after 2s) and its process
// group.
func (p *Processor) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	pr := p.cur
	p.cur = nil
	p.mu.Unlock()
	if pr != nil {
		pr.kill()
	}
	return nil
}
