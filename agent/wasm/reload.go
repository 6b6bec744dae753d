package wasm

// Hot reload of `path:` plugins. A step serves batches from its current
// generation: one compiled version of its plugin with its own pool of
// instances. A reload builds the next generation completely (read, pin
// check, compile, instantiate, descriptor check, self-test) beside the one
// serving, then swaps it in with one pointer store. A batch holds the
// generation it started with until it ends, so the swap falls between
// batches; the old generation's instances are closed when the last batch
// holding it lets go.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/internal/filewatch"
	"github.com/sluice-dev/sluice/internal/pluginfixture"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// MetricReloads counts a step's reload attempts that found a new version
// of its plugin, labelled result="ok" (swapped in) or result="refused"
// (the running version kept serving).
const MetricReloads = "sluice_plugin_reloads_total"

// Results of a reload, as ReloadResult.Result says them.
const (
	ReloadOK        = "reloaded"  // the new version serves from the next batch on
	ReloadUnchanged = "unchanged" // the file holds the version already serving
	ReloadRefused   = "refused"   // the new version failed; the old one keeps serving
)

// reloadDebounce is how long a watched file must stay quiet before it is
// loaded: a copy or a build writes a module in several writes, and loading
// the first of them would only be refused.
const reloadDebounce = 200 * time.Millisecond

// ReloadResult is what a reload did to one step.
type ReloadResult struct {
	// Step is the processor's label; empty if it has none.
	Step string `json:"step"`
	// Plugin is the module's path.
	Plugin string `json:"plugin"`
	Result string `json:"result"`
	// Error is why a new version was refused.
	Error string `json:"error,omitempty"`
	// SHA256 is the hash of the module serving after the reload.
	SHA256 string `json:"sha256"`
}

// generation is one loaded version of a step's plugin and its instances.
type generation struct {
	mod *Module
	sum [sha256.Size]byte
	// stateView says whether this version offers a state view.
	stateView bool

	mu       sync.Mutex
	idle     []*Instance
	failures int
	retryAt  time.Time
	// holds counts the batches (and state views) using the generation;
	// once retired, the last to let go closes its instances.
	holds   int
	retired bool
	closed  bool
	// replaced says the module's cache entry is to be released once the
	// generation is closed: it was replaced by a reload, not stopped with
	// its pipeline (which keeps the compiled module warm for a restart).
	replaced bool
	eng      *Engine
}

func newGeneration(eng *Engine, mod *Module, sum [sha256.Size]byte, first *Instance) *generation {
	g := &generation{eng: eng, mod: mod, sum: sum, stateView: first.Descriptor().StateView, idle: []*Instance{first}}
	first.gen = g
	return g
}

// hold returns the generation serving now, held until unhold; nil once
// the step is closed.
func (p *Processor) hold() *generation {
	for {
		g := p.gen.Load()
		g.mu.Lock()
		if !g.retired {
			g.holds++
			g.mu.Unlock()
			return g
		}
		g.mu.Unlock()
		if p.gen.Load() == g {
			return nil // retired with no successor: the step is closed
		}
	}
}

func (g *generation) unhold(ctx context.Context) {
	g.mu.Lock()
	g.holds--
	g.mu.Unlock()
	g.closeIfDrained(ctx)
}

// retire stops g from being handed to new batches; its instances are
// closed once the batches holding it finish.
func (g *generation) retire(ctx context.Context, releaseModule bool) {
	g.mu.Lock()
	g.retired, g.replaced = true, releaseModule
	g.mu.Unlock()
	g.closeIfDrained(ctx)
}

func (g *generation) closeIfDrained(ctx context.Context) error {
	g.mu.Lock()
	if !g.retired || g.holds > 0 || g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	idle := g.idle
	g.idle = nil
	g.mu.Unlock()
	var errs []error
	for _, inst := range idle {
		errs = append(errs, inst.Close(ctx))
	}
	if g.replaced {
		errs = append(errs, g.eng.releaseModule(ctx, g.mod))
	}
	return errors.Join(errs...)
}

// acquire takes an idle instance or starts one; the caller holds g.
func (g *generation) acquire(ctx context.Context, icfg InstanceConfig) (*Instance, error) {
	g.mu.Lock()
	if n := len(g.idle); n > 0 {
		inst := g.idle[n-1]
		g.idle = g.idle[:n-1]
		g.mu.Unlock()
		return inst, nil
	}
	wait := time.Until(g.retryAt)
	g.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	inst, err := g.mod.Instantiate(ctx, icfg)
	if err != nil {
		g.recordFailure()
		return nil, fmt.Errorf("plugin %s: start instance: %w", g.mod.Name(), err)
	}
	inst.gen = g
	return inst, nil
}

// release returns inst to the pool after a call that returned err, or
// closes it if the call left it unsound.
func (g *generation) release(ctx context.Context, inst *Instance, err error, stats *stepMetrics) {
	if err == nil || !inst.Broken() {
		g.mu.Lock()
		g.idle = append(g.idle, inst)
		if err == nil {
			g.failures, g.retryAt = 0, time.Time{}
		}
		g.mu.Unlock()
		if err != nil {
			g.recordFailure()
		}
		return
	}
	_ = inst.Close(ctx)
	stats.restart()
	g.recordFailure()
}

func (g *generation) recordFailure() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
	if g.failures >= backoffAfter {
		d := backoffMin << min(g.failures-backoffAfter, 10)
		g.retryAt = time.Now().Add(min(d, backoffMax))
	}
}

// reloader is what a `path:` step needs to load a new version of its
// plugin. Builtins have none: they change only with the agent.
type reloader struct {
	eng   *Engine
	label string
	path  string
	pin   string // lower-case hex; "" if not pinned
	load  LoadOptions
	test  *selfTest
	// files are the absolute paths whose change triggers a reload: the
	// module and the self-test's files.
	files []string

	counter *service.MetricCounter // nil without pipeline metrics

	// mu runs one reload of the step at a time.
	mu     sync.Mutex
	closed bool
	// refused is the digest of the module and self-test files last
	// refused, so a watched directory's unrelated churn does not log the
	// same refusal again.
	refused [sha256.Size]byte
}

// Reload loads the step's plugin file again and, if it holds a new version
// that passes every check, swaps it in between batches. A version that
// fails is refused, logged and counted; the running one keeps serving.
func (p *Processor) Reload(ctx context.Context) ReloadResult {
	return p.reloadPlugin(ctx, false)
}

func (p *Processor) reloadPlugin(ctx context.Context, watched bool) ReloadResult {
	r := p.reload
	cur := p.gen.Load()
	res := ReloadResult{Plugin: p.mod.Name(), Result: ReloadUnchanged, SHA256: hex.EncodeToString(cur.sum[:])}
	if r == nil {
		return res
	}
	res.Step = r.label
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return res
	}
	cur = p.gen.Load()
	res.SHA256 = hex.EncodeToString(cur.sum[:])
	bin, err := os.ReadFile(r.path)
	if err != nil {
		// A file being replaced may be missing for a moment; the event that
		// puts it back triggers another reload.
		return p.refuse(res, [sha256.Size]byte{}, fmt.Errorf("read plugin: %w", err))
	}
	sum := sha256.Sum256(bin)
	if sum == cur.sum {
		return res
	}
	digest := r.digest(sum)
	if watched && digest == r.refused {
		res.Result, res.Error = ReloadRefused, "refused before, unchanged since"
		return res
	}
	g, err := p.build(ctx, bin, sum)
	if err != nil {
		return p.refuse(res, digest, err)
	}
	old := p.gen.Swap(g)
	p.viewChanged(g)
	old.retire(ctx, true)
	r.refused = [sha256.Size]byte{}
	res.Result, res.SHA256 = ReloadOK, hex.EncodeToString(sum[:])
	if r.counter != nil {
		r.counter.Incr(1, "ok")
	}
	p.logger.Info("plugin reloaded: the new version serves from the next batch", "step", r.label, "file", r.path,
		"sha256", res.SHA256, "previous_sha256", hex.EncodeToString(old.sum[:]))
	return res
}

func (p *Processor) refuse(res ReloadResult, digest [sha256.Size]byte, err error) ReloadResult {
	r := p.reload
	res.Result, res.Error = ReloadRefused, err.Error()
	if digest != ([sha256.Size]byte{}) {
		r.refused = digest
	}
	if r.counter != nil {
		r.counter.Incr(1, "refused")
	}
	p.logger.Error("plugin reload refused; the running version keeps serving", "step", r.label, "file", r.path,
		"serving_sha256", res.SHA256, "reason", oneLine(res.Error))
	return res
}

// digest identifies what a reload attempt would test: the module and the
// self-test's files as they are now.
func (r *reloader) digest(sum [sha256.Size]byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(sum[:])
	if r.test != nil {
		for _, f := range []string{r.test.input, r.test.expect} {
			b, _ := os.ReadFile(f)
			s := sha256.Sum256(b)
			h.Write(s[:])
		}
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// build loads bin as the step's next generation and runs every check the
// first load ran.
func (p *Processor) build(ctx context.Context, bin []byte, sum [sha256.Size]byte) (*generation, error) {
	r := p.reload
	if err := matchPin(r.pin, r.path, bin); err != nil {
		return nil, err
	}
	mod, err := r.eng.Load(ctx, r.path, bin, r.load)
	if err != nil {
		return nil, err
	}
	inst, err := mod.Instantiate(ctx, p.icfg)
	if err == nil {
		err = checkDescriptor(r.path, inst.Descriptor(), p.keyed, p.parallelConf)
		if err != nil {
			_ = inst.Close(ctx)
		}
	}
	if err == nil && r.test != nil {
		if err = r.test.run(ctx, mod, p.icfg, p.keyed, p.maxCall); err != nil {
			_ = inst.Close(ctx)
		}
	}
	if err != nil {
		_ = r.eng.releaseModule(ctx, mod)
		return nil, fmt.Errorf("plugin %s: %w", r.path, err)
	}
	return newGeneration(r.eng, mod, sum, inst), nil
}

// viewChanged offers or withdraws the step's state view when a new version
// adds or drops one.
func (p *Processor) viewChanged(g *generation) {
	if p.keyed == nil {
		return
	}
	has := g.stateView
	p.viewMu.Lock()
	defer p.viewMu.Unlock()
	switch {
	case has && p.views == nil:
		p.views = &p.reload.eng.views
		p.views.add(p.keyed.ns.Name, p)
	case !has && p.views != nil:
		p.views.remove(p.keyed.ns.Name, p)
		p.views = nil
	}
}

// oneLine folds a multi-line reason (a self-test's diff) into one log line.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n  ", " ")
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

// checkDescriptor refuses a plugin whose kind does not match the step's
// config: state is configured for exactly the plugins that keep it.
func checkDescriptor(name string, desc abi.Descriptor, keyed *keyedStep, parallel int) error {
	switch stateful := desc.Stateful; {
	case stateful && keyed == nil:
		return fmt.Errorf("plugin %s keeps per-key state: configure key and state.namespace", name)
	case !stateful && keyed != nil:
		return fmt.Errorf("plugin %s keeps no state (it never calls sdk.UseState): remove key and state", name)
	case desc.Sequential && parallel != 1 && keyed == nil && desc.Mode == abi.ModeColumns:
		// Each parallel call has an instance of its own, which would see
		// only its share of the rows. (A keyed or bytes-mode step takes no
		// frames, so it never calls in parallel.)
		return fmt.Errorf("plugin %s keeps what it saw from one call to the next (a window, a running count), so its calls cannot run on separate instances: set %s: 1 (it is %d)", name, fParallel, parallel)
	}
	return nil
}

// Self-test config fields.
const (
	fSelfTest = "self_test"
	fSTInput  = "input"
	fSTExpect = "expect"
)

func selfTestField() *service.ConfigField {
	return service.NewObjectField(fSelfTest,
		service.NewStringField(fSTInput).Description("Messages to run through the plugin, one body per line (JSON lines, usually), as `agent plugin test --input` reads them.").Example("plugins/tally/events.jsonl"),
		service.NewStringField(fSTExpect).Description("What the plugin must do to each: one JSON record per input message, as `agent plugin test --json` prints them and `--expect` reads them.").Example("plugins/tally/expected.jsonl"),
	).Description("A test every version of the plugin must pass before it serves: at load, so a pipeline with a failing plugin does not start (and `agent lint` reports it), and before a hot reload swaps a new version in, which is refused if it fails. The input goes through a fresh instance of the new version as one batch (split by `max_call_messages`) and never through the state store: a stateful plugin sees every key with no state, and nothing it writes is kept. Both files are read again at every load; when a new version changes the output, change `expect` in the same deployment (before or after the module: a version refused for its self-test is tried again when either file changes).").
		Optional()
}

// selfTest is a step's declared self-test: the files, read at each run.
type selfTest struct {
	input, expect string
}

func parseSelfTest(conf *service.ParsedConfig) (*selfTest, error) {
	if !conf.Contains(fSelfTest) {
		return nil, nil
	}
	sc := conf.Namespace(fSelfTest)
	var st selfTest
	var err error
	if st.input, err = sc.FieldString(fSTInput); err != nil {
		return nil, fmt.Errorf("%s: %w", fSelfTest, err)
	}
	if st.expect, err = sc.FieldString(fSTExpect); err != nil {
		return nil, fmt.Errorf("%s: %w", fSelfTest, err)
	}
	return &st, nil
}

// run runs the self-test against mod on an instance of its own, so what
// the test does to the plugin's memory never reaches a serving instance.
func (st *selfTest) run(ctx context.Context, mod *Module, icfg InstanceConfig, keyed *keyedStep, maxCall int) error {
	input, err := os.ReadFile(st.input)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	expect, err := os.ReadFile(st.expect)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	lines := pluginfixture.SplitInput(input)
	batch := pluginfixture.Messages(lines)
	in := slices.Clone(batch)
	var inst *Instance
	defer func() {
		if inst != nil {
			_ = inst.Close(ctx)
		}
	}()
	call := func(part service.MessageBatch, kin *KeyedInput) service.MessageBatch {
		if inst == nil {
			if inst, err = mod.Instantiate(ctx, icfg); err != nil {
				return failAll(part, fmt.Errorf("start instance: %w", err))
			}
		}
		var out service.MessageBatch
		var cerr error
		if kin != nil {
			out, cerr = inst.ProcessKeyed(ctx, part, kin)
		} else {
			out, cerr = inst.ProcessBatch(ctx, part)
		}
		if cerr != nil {
			if inst.Broken() {
				_ = inst.Close(ctx)
				inst = nil
			}
			return failAll(part, cerr)
		}
		return out
	}
	var passed service.MessageBatch
	if keyed != nil {
		passed = call(batch, selfTestKeys(batch, keyed))
	} else {
		for start := 0; start < len(batch); start += maxCall {
			passed = append(passed, call(batch[start:min(start+maxCall, len(batch))], nil)...)
		}
	}
	got, err := pluginfixture.Describe(lines, in, passed, mod.Name())
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	diff, err := pluginfixture.Compare(got, expect, st.expect)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	if diff != "" {
		return fmt.Errorf("self-test failed: %s", diff)
	}
	return nil
}

// selfTestKeys is the state side of a stateful plugin's self-test: every
// key starts with no state, and nothing is loaded from or kept in the
// store, so the test gives the same answer whatever the agent has seen.
func selfTestKeys(batch service.MessageBatch, k *keyedStep) *KeyedInput {
	kin := &KeyedInput{KeyIdx: make([]int, len(batch)), Replayed: make([]bool, len(batch)), own: k.ns.Name, storeNS: k.ns.Name}
	index := map[string]int{}
	for idx, msg := range batch {
		kin.KeyIdx[idx] = -1
		key, err := k.key.read(msg)
		if err != nil {
			msg.SetError(err)
			continue
		}
		j, ok := index[string(key)]
		if !ok {
			j = len(kin.Keys)
			index[string(key)] = j
			kin.Keys = append(kin.Keys, key)
		}
		kin.KeyIdx[idx] = j
	}
	kin.State = make([][]byte, len(kin.Keys))
	return kin
}

// reloadRegistry is every live `path:` step of an engine, for Reload and
// the file watcher.
type reloadRegistry struct {
	mu    sync.Mutex
	steps []*Processor
	w     *fileWatcher // nil unless WatchFiles runs
}

func (e *Engine) register(p *Processor) {
	e.reloads.mu.Lock()
	defer e.reloads.mu.Unlock()
	e.reloads.steps = append(e.reloads.steps, p)
	if w := e.reloads.w; w != nil {
		w.watch(p)
	}
}

func (e *Engine) unregister(p *Processor) {
	e.reloads.mu.Lock()
	defer e.reloads.mu.Unlock()
	if i := slices.Index(e.reloads.steps, p); i >= 0 {
		e.reloads.steps = slices.Delete(e.reloads.steps, i, i+1)
	}
	if w := e.reloads.w; w != nil {
		w.unwatch(p)
	}
}

// Reload reloads the plugin of every running `path:` step (see
// Processor.Reload), one after another, and says what happened to each.
func (e *Engine) Reload(ctx context.Context) []ReloadResult {
	e.reloads.mu.Lock()
	steps := slices.Clone(e.reloads.steps)
	e.reloads.mu.Unlock()
	out := make([]ReloadResult, 0, len(steps))
	for _, p := range steps {
		out = append(out, p.Reload(ctx))
	}
	return out
}

// WatchFiles reloads a step's plugin when its module or self-test files
// change, until ctx is done or stop is called. It watches their
// directories, since editors, cp and mv replace a file rather than write
// it, and waits for a file to stay quiet for a moment before loading it.
func (e *Engine) WatchFiles(ctx context.Context, logger *slog.Logger) (stop func(), err error) {
	fw, err := filewatch.New(ctx, logger.With("watching", "plugin files"), reloadDebounce)
	if err != nil {
		return nil, fmt.Errorf("watch plugin files: %w", err)
	}
	w := &fileWatcher{fw: fw, logger: logger, subs: map[*Processor]func(){}}
	e.reloads.mu.Lock()
	if e.reloads.w != nil {
		e.reloads.mu.Unlock()
		_ = fw.Close()
		return nil, errors.New("watch plugin files: already watching")
	}
	e.reloads.w = w
	for _, p := range e.reloads.steps {
		w.watch(p)
	}
	e.reloads.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.reloads.mu.Lock()
			e.reloads.w = nil
			e.reloads.mu.Unlock()
			// Outside the registry's mutex: Close waits for a reload in
			// progress, which can take as long as a compile, and steps
			// starting or stopping meanwhile need the mutex.
			_ = fw.Close()
		})
	}, nil
}

// fileWatcher reloads a step when one of its files changes: the module or
// a self-test file, or any entry of their directories created, renamed or
// removed (see filewatch.Watcher.Add). A spurious reload costs a read and
// a hash: the version is unchanged. Its map is guarded by the registry's
// mutex.
type fileWatcher struct {
	fw     *filewatch.Watcher
	logger *slog.Logger
	subs   map[*Processor]func() // step -> its unwatch
}

func (w *fileWatcher) watch(p *Processor) {
	unwatch, err := w.fw.Add(p.reload.files, func(ctx context.Context) { p.reloadPlugin(ctx, true) })
	if err != nil {
		w.logger.Warn("cannot watch plugin directory; reload this step with SIGHUP or POST /admin/reload", "step", p.reload.label, "error", err)
	}
	w.subs[p] = unwatch
}

func (w *fileWatcher) unwatch(p *Processor) {
	if unwatch := w.subs[p]; unwatch != nil {
		unwatch()
		delete(w.subs, p)
	}
}

// newReloader prepares reloads of a `path:` step.
func newReloader(eng *Engine, conf *service.ParsedConfig, s Settings, label string, metrics *service.Metrics) (*reloader, error) {
	r := &reloader{eng: eng, label: label, path: s.Name, load: s.Load, test: s.selfTest}
	var err error
	if r.pin, err = parsePin(conf); err != nil {
		return nil, err
	}
	for _, f := range []string{s.Name, selfTestFile(s.selfTest, true), selfTestFile(s.selfTest, false)} {
		if f == "" {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", f, err)
		}
		r.files = append(r.files, abs)
	}
	if metrics != nil {
		r.counter = metrics.NewCounter(MetricReloads, "result")
	}
	return r, nil
}

func selfTestFile(st *selfTest, input bool) string {
	switch {
	case st == nil:
		return ""
	case input:
		return st.input
	default:
		return st.expect
	}
}
