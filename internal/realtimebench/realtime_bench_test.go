package realtimebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"gopkg.in/yaml.v3"

	"github.com/sluice-dev/sluice/agent"
	"github.com/sluice-dev/sluice/agent/config"
	"github.com/sluice-dev/sluice/agent/kafka"
	"github.com/sluice-dev/sluice/internal/eventgen"
	"github.com/sluice-dev/sluice/pipelines"
)

// The workload, as in internal/chainbench: gen_events.py's mix over 1,000
// users. Each run first pushes warmEvents events of other users (ids above
// a million) through the stream and starts the clock only once they have
// all come out: by then the Wasm instances are built and their heaps grown,
// the consumer group has joined and the clients are connected, which a
// running agent pays once. The clock then runs over the next numEvents
// outputs, so the figure is the steady rate, not start-up.
const (
	numEvents  = 100_000
	numUsers   = 1_000
	warmEvents = 20_000
	warmUsers  = 1_000_000 // added to warm-up events' user ids
	partitions = 3         // the agent's dev_kafka_partitions default
	pollEvery  = 2 * time.Millisecond
	runTimeout = 10 * time.Minute
)

const (
	topicIn   = "user_events"
	topicPred = "predictions"
	topicDead = "dead_letters"
)

var logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// wasmCache is one compiled-code cache shared by every run's fresh data
// dir, so compiling the builtins (untimed anyway) is paid once per process.
var (
	wasmCacheOnce sync.Once
	wasmCache     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if wasmCache != "" {
		_ = os.RemoveAll(wasmCache)
	}
	os.Exit(code)
}

// shipped returns the embedded realtime pipeline, parsed.
func shipped(b testing.TB) map[string]any {
	b.Helper()
	doc, ok := pipelines.Lookup("realtime")
	if !ok {
		b.Fatal("no builtin realtime pipeline")
	}
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		b.Fatal(err)
	}
	return m
}

func marshal(b testing.TB, m map[string]any) string {
	b.Helper()
	out, err := yaml.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return string(out)
}

// kafkaPipeline is the shipped pipeline with its broker input holding the
// kafka input alone (http_ingest dropped: it would only listen on a port)
// and its output as shipped.
func kafkaPipeline(b testing.TB) map[string]any {
	b.Helper()
	m := shipped(b)
	broker := m["input"].(map[string]any)["broker"].(map[string]any)
	var kept []any
	for _, in := range broker["inputs"].([]any) {
		if _, ok := in.(map[string]any)["kafka"]; ok {
			kept = append(kept, in)
		}
	}
	if len(kept) != 1 {
		b.Fatalf("the realtime pipeline's broker has %d kafka inputs, want 1", len(kept))
	}
	broker["inputs"] = kept
	return m
}

// filesPipeline is the shipped pipeline with files in place of Kafka: the
// input reads NDJSON lines, batched by 1024 as the kafka input's
// max_batch_records, and each case of the output switch writes a file
// instead of its topic (the dead-letter case keeps its mapping).
func filesPipeline(b testing.TB, in, pred, dead string) map[string]any {
	b.Helper()
	m := shipped(b)
	m["input"] = map[string]any{"broker": map[string]any{
		"inputs": []any{map[string]any{"file": map[string]any{
			"paths": []any{in},
			"codec": "lines",
		}}},
		"batching": map[string]any{"count": 1024, "period": "20ms"},
	}}
	paths := map[string]string{topicPred: pred, topicDead: dead}
	cases := m["output"].(map[string]any)["switch"].(map[string]any)["cases"].([]any)
	for _, c := range cases {
		out := c.(map[string]any)["output"].(map[string]any)
		k, ok := out["kafka"].(map[string]any)
		if !ok {
			b.Fatalf("output case %v writes no kafka topic", c)
		}
		path, ok := paths[k["topic"].(string)]
		if !ok {
			b.Fatalf("output case writes topic %v, want %s or %s", k["topic"], topicPred, topicDead)
		}
		delete(out, "kafka")
		out["file"] = map[string]any{"path": path, "codec": "lines"}
	}
	return m
}

// event is one generated event's Kafka record parts.
type event struct {
	key  []byte
	body []byte
}

func genEvents(n, users int, seed uint64, userOffset int) []event {
	evs := eventgen.Generate(n, users, seed)
	out := make([]event, len(evs))
	for i, e := range evs {
		e.User += userOffset
		out[i] = event{key: strconv.AppendInt(nil, int64(e.User), 10), body: e.AppendJSON(nil)}
	}
	return out
}

// rig is one run's fresh world: a data dir, an agent on it (state store,
// Wasm engine, environment with every Sluice component), and for the Kafka
// variants a fresh dev broker with the pipeline's topics.
type rig struct {
	dir    string
	broker *kafka.DevBroker
	agent  *agent.Agent
}

func newRig(b testing.TB, withKafka, brokerOnDisk bool) *rig {
	b.Helper()
	wasmCacheOnce.Do(func() {
		dir, err := os.MkdirTemp("", "realtimebench-wasm-cache-")
		if err != nil {
			b.Fatal(err)
		}
		wasmCache = dir
	})
	dir, err := os.MkdirTemp("", "realtimebench-")
	if err != nil {
		b.Fatal(err)
	}
	r := &rig{dir: dir}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink(wasmCache, filepath.Join(data, "wasm-cache")); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = data
	cfg.HTTPAddress = ""
	cfg.DevKafka = false
	cfg.Pipelines = nil
	if withKafka {
		dc := kafka.DevConfig{Address: "127.0.0.1:0", Partitions: partitions, Topics: []string{topicIn, topicPred, topicDead}}
		if brokerOnDisk {
			// As the agent starts its dev broker: a data dir, each
			// produced batch fsynced.
			dc.DataDir = filepath.Join(dir, "kafka")
		}
		if r.broker, err = kafka.StartDevBroker(dc); err != nil {
			r.close()
			b.Fatal(err)
		}
		cfg.KafkaBrokers = []string{r.broker.Addr()}
	}
	if r.agent, err = agent.New(context.Background(), cfg, logger, agent.Options{}); err != nil {
		r.close()
		b.Fatal(err)
	}
	return r
}

func (r *rig) close() {
	if r.agent != nil {
		_ = r.agent.Close(context.Background())
	}
	if r.broker != nil {
		r.broker.Close()
	}
	_ = os.RemoveAll(r.dir)
}

// start builds the pipeline on the rig's environment and runs it; stop
// drains it.
func (r *rig) start(b *testing.B, yamlConf string) (stop func(), done <-chan error) {
	b.Helper()
	sb := r.agent.Environment().NewStreamBuilder()
	if err := sb.SetYAML(yamlConf); err != nil {
		b.Fatal(err)
	}
	sb.SetLogger(logger)
	s, err := sb.Build()
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- s.Run(context.Background()) }()
	return func() {
		if err := s.StopWithin(20 * time.Second); err != nil {
			b.Errorf("stop stream: %v", err)
		}
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			b.Error("stream did not stop")
		}
	}, ch
}

func (r *rig) client(b *testing.B, opts ...kgo.Opt) *kgo.Client {
	b.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.broker.Addr())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

// produce writes events to user_events keyed by user, so each user's events
// sit in one partition in order (features rejects an event an hour behind
// its user's latest).
func produce(b *testing.B, cl *kgo.Client, evs []event) {
	b.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Topic: topicIn, Key: e.key, Value: e.body}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
}

// outputs counts what has come out of a run: predictions and dead letters.
type outputs interface {
	count(ctx context.Context) (pred, dead int64, err error)
}

// topicEnds counts records on the output topics by their end offsets, which
// costs one small request per poll where consuming would read every record.
type topicEnds struct{ cl *kgo.Client }

func (t topicEnds) count(ctx context.Context) (pred, dead int64, err error) {
	req := kmsg.NewPtrListOffsetsRequest()
	for _, topic := range []string{topicPred, topicDead} {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := int32(0); p < partitions; p++ {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p
			rp.Timestamp = -1 // the end
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, t.cl)
	if err != nil {
		return 0, 0, err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return 0, 0, fmt.Errorf("%s/%d: %w", rt.Topic, rp.Partition, err)
			}
			if rt.Topic == topicPred {
				pred += rp.Offset
			} else {
				dead += rp.Offset
			}
		}
	}
	return pred, dead, nil
}

// fileLines counts the lines written to the two output files so far,
// reading only what was appended since the last poll.
type fileLines struct {
	paths [2]string
	off   [2]int64
	n     [2]int64
	buf   []byte
}

func (f *fileLines) count(context.Context) (pred, dead int64, err error) {
	for i, p := range f.paths {
		fh, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		for {
			if f.buf == nil {
				f.buf = make([]byte, 1<<20)
			}
			k, err := fh.ReadAt(f.buf, f.off[i])
			// Count whole lines only; a partial one is read again.
			end := bytes.LastIndexByte(f.buf[:k], '\n') + 1
			f.n[i] += int64(bytes.Count(f.buf[:end], []byte{'\n'}))
			f.off[i] += int64(end)
			if err == io.EOF || k < len(f.buf) || end == 0 {
				break
			}
			if err != nil {
				_ = fh.Close()
				return 0, 0, err
			}
		}
		_ = fh.Close()
	}
	return f.n[0], f.n[1], nil
}

// groupCommitted counts the events whose transactions committed, by the
// input group's committed offsets (all as predictions).
type groupCommitted struct {
	cl    *kgo.Client
	group string
}

func (g groupCommitted) count(ctx context.Context) (pred, dead int64, err error) {
	offs, err := kadm.NewClient(g.cl).FetchOffsets(ctx, g.group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0, 0, nil // the input has not joined yet
	}
	if err != nil {
		return 0, 0, err
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topicIn && o.Err == nil {
			pred += o.At
		}
	})
	return pred, 0, nil
}

// committedRecords reads both output topics read_committed to their end.
func committedRecords(r *rig, b *testing.B) (pred, dead int64, err error) {
	cl := r.client(b, kgo.ConsumeTopics(topicPred, topicDead), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(context.Background(), topicPred, topicDead)
	if err != nil {
		return 0, 0, err
	}
	left := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if left[o.Topic] == nil {
				left[o.Topic] = map[int32]int64{}
			}
			left[o.Topic][o.Partition] = o.Offset
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	// Transaction markers take offsets: kept, so the last offset is seen.
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return pred, dead, fmt.Errorf("read the outputs: %v left: %w", left, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			switch {
			case rec.Attrs.IsControl():
			case rec.Topic == topicPred:
				pred++
			default:
				dead++
			}
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= left[p.Topic][p.Partition] {
				delete(left[p.Topic], p.Partition)
				if len(left[p.Topic]) == 0 {
					delete(left, p.Topic)
				}
			}
		})
	}
	return pred, dead, nil
}

// timer is what a run starts and stops around its measured window: the
// benchmark's timer, or nothing for the latency benchmark's calibration.
type timer interface {
	StartTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) StartTimer() {}
func (noTimer) StopTimer()  {}

// watch polls out until total events have come out, starting t once warm
// have, and returns the window, the final counts and other processes' CPU
// share over the window. done reports the stream stopping early.
func watch(b *testing.B, out outputs, warm, total int64, t timer, done <-chan error) (elapsed time.Duration, pred, dead int64, others float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var (
		start time.Time
		cpu0  cpuSample
	)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		pred, dead, err := out.count(ctx)
		if err != nil {
			b.Fatalf("count outputs: %v", err)
		}
		n := pred + dead
		if start.IsZero() && n >= warm {
			t.StartTimer()
			start = time.Now()
			cpu0 = sampleCPU()
		}
		if n >= total {
			t.StopTimer()
			return time.Since(start), pred, dead, othersPercent(cpu0, sampleCPU())
		}
		select {
		case err := <-done:
			b.Fatalf("the stream stopped after %d of %d events: %v", n, total, err)
		case <-ctx.Done():
			b.Fatalf("%d of %d events out after %v", n, total, runTimeout)
		case <-tick.C:
		}
	}
}

// variant is one way of running the pipeline.
type variant struct {
	name         string
	kafka        bool
	brokerOnDisk bool
	// threads, when set, overrides the pipeline's thread count.
	threads int
	// changelog keeps the features step's state per partition, backed by
	// a changelog topic (state.changelog), as for scale-out.
	changelog bool
	// exactlyOnce runs the kafka input in exactly-once mode: a Kafka
	// transaction per poll cycle.
	exactlyOnce bool
	// events and warm are how many events are measured, after how many
	// warm-up ones: fewer for the shipped pipeline, which is slow.
	events, warm int
}

func (v variant) conf(b testing.TB, files ...string) string {
	b.Helper()
	var m map[string]any
	if v.kafka {
		m = kafkaPipeline(b)
	} else {
		m = filesPipeline(b, files[0], files[1], files[2])
	}
	if v.threads > 0 {
		m["pipeline"].(map[string]any)["threads"] = v.threads
	}
	if v.changelog {
		featuresState(b, m)["changelog"] = map[string]any{}
	}
	if v.exactlyOnce {
		kafkaInput(b, m)["exactly_once"] = true
	}
	return marshal(b, m)
}

// kafkaInput is the config of the kafka pipeline's kafka input.
func kafkaInput(b testing.TB, m map[string]any) map[string]any {
	b.Helper()
	for _, in := range m["input"].(map[string]any)["broker"].(map[string]any)["inputs"].([]any) {
		if k, ok := in.(map[string]any)["kafka"].(map[string]any); ok {
			return k
		}
	}
	b.Fatal("the pipeline has no kafka input")
	return nil
}

// featuresState is the state block of the pipeline's stateful wasm step.
func featuresState(b testing.TB, m map[string]any) map[string]any {
	b.Helper()
	for _, p := range m["pipeline"].(map[string]any)["processors"].([]any) {
		sw, ok := p.(map[string]any)["switch"].([]any)
		if !ok {
			continue
		}
		for _, c := range sw {
			for _, q := range c.(map[string]any)["processors"].([]any) {
				if w, ok := q.(map[string]any)["wasm"].(map[string]any); ok {
					if st, ok := w["state"].(map[string]any); ok {
						return st
					}
				}
			}
		}
	}
	b.Fatal("the realtime pipeline has no stateful wasm step")
	return nil
}

var variants = []variant{
	{name: "shipped/kafka", kafka: true, events: 20_000, warm: 5_000},
	{name: "shipped/files", events: 20_000, warm: 5_000},
	{name: "shipped/kafka-broker-fsync", kafka: true, brokerOnDisk: true, events: 20_000, warm: 5_000},
	{name: "shipped/kafka-changelog", kafka: true, changelog: true, events: 20_000, warm: 5_000},
	{name: "shipped/kafka-changelog-exactly-once", kafka: true, changelog: true, exactlyOnce: true, events: 20_000, warm: 5_000},
	{name: "shipped/files-threads=1", threads: 1, events: 20_000, warm: 5_000},
}

// workloadFor is the warm-up events followed by the measured ones.
func workloadFor(v variant) []event {
	return append(genEvents(v.warm, numUsers, 43, warmUsers), genEvents(v.events, numUsers, 42, 0)...)
}

// runThroughput is one run of v over evs (the first warm of them warm-up)
// on a fresh rig. The timer runs only over the measured window; it returns
// the window, how many events became dead letters and other processes' CPU
// share over the window.
func runThroughput(b *testing.B, v variant, evs []event, warm int, t timer) (elapsed time.Duration, dead int64, others float64) {
	b.Helper()
	r := newRig(b, v.kafka, v.brokerOnDisk)
	defer r.close()
	var (
		conf string
		out  outputs
	)
	if v.kafka {
		cl := r.client(b)
		defer cl.Close()
		produce(b, cl, evs)
		conf = v.conf(b)
		out = topicEnds{cl}
		if v.exactlyOnce {
			// The output topics' end offsets count transaction markers
			// too; the group's offsets, committed with each transaction,
			// count the events whose outputs are committed.
			out = groupCommitted{cl, kafkaInput(b, kafkaPipeline(b))["consumer_group"].(string)}
		}
	} else {
		in := filepath.Join(r.dir, "events.jsonl")
		var buf bytes.Buffer
		for _, e := range evs {
			buf.Write(e.body)
			buf.WriteByte('\n')
		}
		if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		fl := &fileLines{paths: [2]string{filepath.Join(r.dir, "predictions.jsonl"), filepath.Join(r.dir, "dead_letters.jsonl")}}
		conf = v.conf(b, in, fl.paths[0], fl.paths[1])
		out = fl
	}
	stop, done := r.start(b, conf)
	elapsed, pred, dead, others := watch(b, out, int64(warm), int64(len(evs)), t, done)
	stop()
	if v.exactlyOnce {
		// What a read_committed consumer sees.
		p, d, err := committedRecords(r, b)
		if err != nil {
			b.Fatal(err)
		}
		pred, dead = p, d
	} else if p, d, err := out.count(context.Background()); err != nil || p != pred || d != dead {
		// Once drained, nothing more may come out: each event exactly once.
		b.Fatalf("after the run: %d predictions, %d dead letters (%v); at the end of the window %d, %d", p, d, err, pred, dead)
	}
	if pred+dead != int64(len(evs)) {
		b.Fatalf("%d predictions + %d dead letters for %d events", pred, dead, len(evs))
	}
	return elapsed, dead, others
}

// BenchmarkRealtime is events per second through the real-time pipeline:
// from the user_events topic of the dev broker to its predictions and
// dead_letters topics (kafka: the broker in memory, as in tests;
// kafka-broker-fsync: with a data dir and each batch fsynced, as the agent
// starts it), and the same processors between files (files). shipped is
// pipelines/realtime.yaml's processors as they are. Every run is on a
// fresh data dir, state store and broker, with the events produced before
// the stream starts.
func BenchmarkRealtime(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			evs := workloadFor(v)
			var dead int64
			var others float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_, d, o := runThroughput(b, v, evs, v.warm, b)
				dead += d
				others += o
			}
			b.ReportMetric(float64(b.N*v.events)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(dead)/float64(b.N), "dead/op")
			b.ReportMetric(others/float64(b.N), "others_cpu_%")
		})
	}
}

// TestVariants checks, without running anything, that every variant's
// pipeline is what the benchmarks claim: valid on the agent's environment,
// the shipped processors, and only the input and output swapped.
func TestVariants(t *testing.T) {
	r := newRig(t, false, false)
	defer r.close()
	shippedProcs, err := yaml.Marshal(shipped(t)["pipeline"])
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		conf := v.conf(t, "/in.jsonl", "/pred.jsonl", "/dead.jsonl")
		if err := r.agent.Environment().NewStreamBuilder().SetYAML(conf); err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(conf), &m); err != nil {
			t.Fatal(err)
		}
		if v.exactlyOnce {
			in := kafkaInput(t, m)
			if in["exactly_once"] != true {
				t.Errorf("%s: the kafka input is not exactly_once", v.name)
			}
			delete(in, "exactly_once")
		}
		if v.changelog {
			st := featuresState(t, m)
			if _, ok := st["changelog"]; !ok {
				t.Errorf("%s: the features step has no changelog", v.name)
			}
			delete(st, "changelog")
		}
		pl := m["pipeline"].(map[string]any)
		if v.threads > 0 {
			if pl["threads"] != v.threads {
				t.Errorf("%s: threads %v, want %d", v.name, pl["threads"], v.threads)
			}
			delete(pl, "threads")
		}
		procs, err := yaml.Marshal(pl)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(procs, shippedProcs) {
			t.Errorf("%s: processors differ from the shipped ones:\n%s", v.name, procs)
		}
	}
}
