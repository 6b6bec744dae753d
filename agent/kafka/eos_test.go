package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state/changelog"
)

// eosPipeline reads events exactly once and writes them, marked with
// where they came from, to out.
const eosPipeline = `
input:
  kafka:
    topics: [events]
    consumer_group: test
    client_id: %s
    max_batch_records: 100
    session_timeout: 6s
    exactly_once: true
pipeline:
  threads: 2
  processors:
    - mapping: |
        root = this
        root.from = "%%s/%%s".format(meta("kafka_partition"), meta("kafka_offset"))
output:
%s
`

const eosOutput = `  kafka:
    topic: out
    key: ${! json("user_id") }`

// TestExactlyOnceCommitsOutputsWithOffsets: every event comes out once,
// and the group's offsets, committed by the same transactions as the
// writes, reach the end of the input.
func TestExactlyOnceCommitsOutputsWithOffsets(t *testing.T) {
	addr := startBroker(t, "events", "out")
	const n, users = 3000, 50
	produce(t, addr, "events", n, users)
	w := watch(t, addr, "out")
	stop := runStream(t, addr, fmt.Sprintf(eosPipeline, "sluice", eosOutput))
	w.wait(t, n)
	stop()

	recs := drain(t, addr, "out", 3, true)
	exactlyOnce(t, recs, n)

	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(end kadm.ListedOffset) {
		c, ok := committed.Lookup("events", end.Partition)
		switch {
		case !ok:
			t.Errorf("events/%d: no committed offset, want %d", end.Partition, end.Offset)
		case c.Err != nil:
			t.Errorf("events/%d: %v", end.Partition, c.Err)
		case c.At != end.Offset:
			t.Errorf("events/%d: committed offset %d, want the end %d", end.Partition, c.At, end.Offset)
		}
	})
}

// TestExactlyOnceAbortHidesWrites: the 2nd and 5th batches fail their
// transaction after the kafka output wrote them. The aborted writes stay
// in the topic, where a read_uncommitted consumer sees them, but a
// read_committed one sees each event once: the aborted records were read
// again and written in a later transaction.
func TestExactlyOnceAbortHidesWrites(t *testing.T) {
	addr := startBroker(t, "events", "out")
	const n, users = 1000, 20
	produce(t, addr, "events", n, users)
	var batches, failed, noTxn atomic.Int64
	failer := func(env *service.Environment) {
		err := env.RegisterBatchOutput("fail_txn", service.NewConfigSpec(),
			func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
				return writeFunc(func(b service.MessageBatch) error {
					txn := changelog.TxnFromContext(b[0].Context())
					if txn == nil {
						noTxn.Add(1)
						return nil
					}
					if k := batches.Add(1); k == 2 || k == 5 {
						txn.Fail(fmt.Errorf("test fails batch %d", k))
						failed.Add(1)
					}
					return nil
				}), service.BatchPolicy{}, 1, nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	// fan_out_sequential: the kafka output has written a batch before
	// fail_txn fails its transaction.
	out := `  broker:
    pattern: fan_out_sequential
    outputs:
      - kafka:
          topic: out
          key: ${! json("user_id") }
      - fail_txn: {}`
	w := watch(t, addr, "out")
	stop := runStreamWith(t, addr, fmt.Sprintf(eosPipeline, "sluice", out), failer)
	w.wait(t, n)
	stop()

	if noTxn.Load() > 0 {
		t.Fatalf("%d batches reached the output with no transaction", noTxn.Load())
	}
	if failed.Load() != 2 {
		t.Fatalf("failed %d transactions, want 2", failed.Load())
	}
	exactlyOnce(t, drain(t, addr, "out", 3, true), n)
	if all := drain(t, addr, "out", 3, false); len(all) <= n {
		t.Errorf("read_uncommitted sees %d records, want more than the %d events: the failed transactions' writes should be in the topic, aborted", len(all), n)
	}
}

// TestExactlyOnceNackAborts: a batch that fails downstream after the kafka
// output wrote it (another output of a switch failed) aborts its
// transaction, and its events come out once. The input is registered
// without AutoRetryNacksBatched, which would retry the batch into the same
// transaction and write it twice.
func TestExactlyOnceNackAborts(t *testing.T) {
	addr := startBroker(t, "events", "out")
	const n, users = 1000, 20
	produce(t, addr, "events", n, users)
	var batches atomic.Int64
	setup := func(env *service.Environment) {
		err := env.RegisterBatchInput("kafka_unwrapped", inputSpec(), func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			return newInput(conf, mgr, Defaults{Brokers: func() []string { return []string{addr} }})
		})
		if err != nil {
			t.Fatal(err)
		}
		err = env.RegisterBatchOutput("fail_third", service.NewConfigSpec(),
			func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
				return writeFunc(func(service.MessageBatch) error {
					if batches.Add(1) == 3 {
						return errors.New("test fails batch 3")
					}
					return nil
				}), service.BatchPolicy{}, 1, nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A switch does not retry a failed output itself: the batch is
	// nacked to the input.
	yaml := strings.Replace(fmt.Sprintf(eosPipeline, "sluice", `  switch:
    cases:
      - output:
          kafka:
            topic: out
            key: ${! json("user_id") }
        continue: true
      - output:
          fail_third: {}`), "  kafka:\n    topics", "  kafka_unwrapped:\n    topics", 1)
	w := watch(t, addr, "out")
	stop := runStreamWith(t, addr, yaml, setup)
	w.wait(t, n)
	stop()
	exactlyOnce(t, drain(t, addr, "out", 3, true), n)
	if all := drain(t, addr, "out", 3, false); len(all) <= n {
		t.Errorf("read_uncommitted sees %d records, want more than the %d events: the failed batch's writes should be in the topic, aborted", len(all), n)
	}
}

// TestExactlyOnceRebalance: a second agent joins the group while events
// flow and takes half the partitions; their open transactions abort and
// the new owner reads from the committed offsets, so each event still
// comes out once.
func TestExactlyOnceRebalance(t *testing.T) {
	addr := startBrokerN(t, 6, "events", "out")
	const users = 60
	// Events are produced until the test has seen processing go on after
	// the rebalance, so the rebalance falls in the middle of the stream.
	var produced atomic.Int64
	stopProducing, producerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(producerDone)
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(0))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := 0; ; i += 50 {
			select {
			case <-stopProducing:
				return
			default:
			}
			recs := make([]*kgo.Record, 0, 50)
			for j := i; j < i+50; j++ {
				u := j % users
				recs = append(recs, &kgo.Record{Topic: "events", Key: []byte(strconv.Itoa(u)), Value: fmt.Appendf(nil, `{"user_id":%d,"n":%d}`, u, j)})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Error(err)
				return
			}
			produced.Store(int64(i + 50))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	w := watch(t, addr, "out")
	// Stopped by the end of the test, or on a failure before it.
	stopA := sync.OnceFunc(runStream(t, addr, fmt.Sprintf(eosPipeline, "a", eosOutput)))
	defer stopA()
	w.wait(t, 500)
	stopB := sync.OnceFunc(runStream(t, addr, fmt.Sprintf(eosPipeline, "b", eosOutput)))
	defer stopB()
	waitMembers(t, addr, "test", 2)
	w.wait(t, w.count()+1000)
	close(stopProducing)
	<-producerDone
	n := int(produced.Load())
	w.wait(t, n)
	stopB()
	stopA()
	all := drain(t, addr, "out", 6, false)
	t.Logf("%d events; %d records written, %d of them in aborted transactions", n, len(all), len(all)-n)
	exactlyOnce(t, drain(t, addr, "out", 6, true), n)
}

// waitMembers returns once group has k members, each with partitions.
func waitMembers(t *testing.T, addr, group string, k int) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatalf("group %s did not reach %d members with partitions: %v", group, k, err)
		}
		g := gs[group]
		assigned := 0
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); ok && len(c.Topics) > 0 {
				assigned++
			}
		}
		if g.State == "Stable" && assigned == k {
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("group %s did not reach %d members with partitions: %d, state %s", group, k, assigned, g.State)
		}
	}
}

// TestExactlyOnceClose: Close commits the open transaction when every
// batch handed out was acknowledged, up to the first record not handed
// out, which the group's next member reads first; with a batch still
// downstream it aborts, and nothing of the transaction is seen.
func TestExactlyOnceClose(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ack        bool
		wantOffset int64 // committed, -1 for none
		wantOut    int
	}{
		{"acknowledged", true, 10, 10},
		{"downstream", false, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startBrokerN(t, 1, "events", "out")
			produce(t, addr, "events", 40, 1)
			in := eosInput(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			batch, ack, err := in.ReadBatch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			in.mu.Lock()
			buffered := in.buffered
			in.mu.Unlock()
			if len(batch) != 10 || buffered == 0 {
				t.Fatalf("first batch of %d records, %d left buffered: want 10, and some left", len(batch), buffered)
			}
			txn := changelog.TxnFromContext(batch[0].Context())
			recs := make([]*kgo.Record, len(batch))
			for i, m := range batch {
				v, _ := m.AsBytes()
				recs[i] = &kgo.Record{Topic: "out", Value: v}
			}
			if err := txn.Client().ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var ended []bool
			txn.OnEnd(func(committed bool) { ended = append(ended, committed) })
			if tc.ack {
				if err := ack(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := in.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if len(ended) != 1 || ended[0] != tc.ack {
				t.Errorf("transaction hooks told %v, want [%v]", ended, tc.ack)
			}
			committed, err := kadm.NewClient(newClient(t, addr)).FetchOffsets(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			got := int64(-1)
			if o, ok := committed.Lookup("events", 0); ok {
				got = o.At
			}
			if got != tc.wantOffset {
				t.Errorf("committed offset %d, want %d", got, tc.wantOffset)
			}
			if out := drain(t, addr, "out", 1, true); len(out) != tc.wantOut {
				t.Errorf("read_committed sees %d records, want %d", len(out), tc.wantOut)
			}

			// The group's next member starts where the commit stopped.
			next := eosInput(t, addr)
			defer next.Close(ctx)
			batch, _, err = next.ReadBatch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if off, _ := batch[0].MetaGet("kafka_offset"); off != strconv.FormatInt(max(tc.wantOffset, 0), 10) {
				t.Errorf("the next member starts at offset %s, want %d", off, max(tc.wantOffset, 0))
			}
		})
	}
}

func eosInput(t *testing.T, addr string) *input {
	t.Helper()
	conf, err := inputSpec().ParseYAML("topics: [events]\nconsumer_group: g\nmax_batch_records: 10\nsession_timeout: 6s\nexactly_once: true\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newInput(conf, service.MockResources(), Defaults{Brokers: func() []string { return []string{addr} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestExactlyOnceConfig: the transactional ID's default, and the checks
// on what an output writes in a transaction.
func TestExactlyOnceConfig(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml, advertise, want string
	}{
		{"default", "", "", fmt.Sprintf("grp-sluice-%s-%d", host, os.Getpid())},
		{"client id", "client_id: edge\n", "", fmt.Sprintf("grp-edge-%s-%d", host, os.Getpid())},
		{"advertised", "", "10.0.0.7:8080", "grp-sluice-10.0.0.7:8080"},
		{"set", "transactional_id: fraud-1\n", "10.0.0.7:8080", "fraud-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := inputSpec().ParseYAML("seed_brokers: [127.0.0.1:1]\ntopics: [events]\nconsumer_group: grp\nexactly_once: true\n"+tc.yaml, nil)
			if err != nil {
				t.Fatal(err)
			}
			in, err := newInput(conf, service.MockResources(), Defaults{Advertise: tc.advertise})
			if err != nil {
				t.Fatal(err)
			}
			if in.txnID != tc.want {
				t.Errorf("transactional id %q, want %q", in.txnID, tc.want)
			}
		})
	}

	t.Run("lint", func(t *testing.T) {
		env := service.NewEnvironment()
		if err := Register(env, Defaults{Brokers: func() []string { return []string{"127.0.0.1:1"} }}); err != nil {
			t.Fatal(err)
		}
		err := env.NewStreamBuilder().SetYAML("input:\n  kafka: {topics: [events], consumer_group: g, transactional_id: x}\noutput:\n  drop: {}\n")
		if err == nil || !strings.Contains(err.Error(), "only with exactly_once") {
			t.Errorf("transactional_id without exactly_once: %v, want a lint error", err)
		}
	})

	conf, err := outputSpec().ParseYAML("seed_brokers: ['broker-1:9092,broker-2']\ntopic: out\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	bo, _, _, err := newOutput(conf, service.MockResources(), Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	o := bo.(*output)
	txnOn := func(seeds ...string) *changelog.Txn {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return changelog.NewTxn(cl)
	}
	for _, tc := range []struct {
		seeds   []string
		wantErr bool
	}{
		{[]string{"broker-2:9092", "broker-1"}, false},
		{[]string{"broker-1:9092"}, true},
		{[]string{"broker-1:9092", "broker-3:9092"}, true},
	} {
		err := o.checkTxn(txnOn(tc.seeds...))
		if (err != nil) != tc.wantErr {
			t.Errorf("output on broker-1,broker-2, transaction on %v: %v, want an error: %v", tc.seeds, err, tc.wantErr)
		} else if err != nil && (!strings.Contains(err.Error(), "broker-1:9092,broker-2") || !strings.Contains(err.Error(), strings.Join(tc.seeds, ","))) {
			t.Errorf("error %q names not both broker lists", err)
		}
	}

	a, b := txnOn("broker-1:9092"), txnOn("broker-1:9092")
	msg := func(txn *changelog.Txn) *service.Message {
		m := service.NewMessage([]byte("{}"))
		if txn == nil {
			return m
		}
		return m.WithContext(changelog.ContextWithTxn(context.Background(), txn))
	}
	for _, tc := range []struct {
		name  string
		batch service.MessageBatch
		want  string
	}{
		{"two transactions", service.MessageBatch{msg(a), msg(a), msg(b)}, "message 2:"},
		{"one without", service.MessageBatch{msg(a), msg(nil)}, "message 1:"},
		{"none first", service.MessageBatch{msg(nil), msg(a)}, "message 1:"},
	} {
		if _, err := batchTxn(tc.batch); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error on %q", tc.name, err, tc.want)
		}
	}
	if txn, err := batchTxn(service.MessageBatch{msg(a), msg(a)}); txn != a || err != nil {
		t.Errorf("one transaction: %v, %v", txn, err)
	}
}

// writeFunc is an output that writes a batch by calling itself.
type writeFunc func(service.MessageBatch) error

func (writeFunc) Connect(context.Context) error { return nil }
func (f writeFunc) WriteBatch(_ context.Context, b service.MessageBatch) error {
	return f(b)
}
func (writeFunc) Close(context.Context) error { return nil }

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// watcher counts the distinct events a read_committed consumer of a topic
// has seen.
type watcher struct {
	mu      sync.Mutex
	seen    map[int]bool
	changed chan struct{}
}

func watch(t *testing.T, addr, topic string) *watcher {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	w := &watcher{seen: map[int]bool{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			w.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				var ev struct{ N int }
				if json.Unmarshal(r.Value, &ev) == nil {
					w.seen[ev.N] = true
				}
			})
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// wait returns once k distinct events are seen.
func (w *watcher) wait(t *testing.T, k int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		w.mu.Lock()
		got, changed := len(w.seen), w.changed
		w.mu.Unlock()
		if got >= k {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("read_committed saw %d distinct events of %d", got, k)
		}
	}
}

// drain reads a topic's records from the start, read_committed or not,
// up to markers it writes at the end of each partition: once it has read
// them all it has read everything before them.
func drain(t *testing.T, addr, topic string, partitions int32, committed bool) []*kgo.Record {
	t.Helper()
	const markerKey = "eos-test-marker"
	token := strconv.FormatInt(time.Now().UnixNano(), 10)
	prod := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range partitions {
		r := &kgo.Record{Topic: topic, Partition: p, Headers: []kgo.RecordHeader{{Key: markerKey, Value: []byte(token)}}}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cons := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso))
	var out []*kgo.Record
	markers := map[int32]bool{}
	for len(markers) < int(partitions) {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("drain %s: markers of %d partitions of %d read: %v", topic, len(markers), partitions, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Headers) > 0 && r.Headers[0].Key == markerKey {
				if string(r.Headers[0].Value) == token {
					markers[r.Partition] = true
				}
				return
			}
			out = append(out, r)
		})
	}
	return out
}

// exactlyOnce fails unless recs hold events 0 to n-1 once each.
func exactlyOnce(t *testing.T, recs []*kgo.Record, n int) {
	t.Helper()
	count := map[int]int{}
	for _, r := range recs {
		var ev struct {
			N    *int
			From string
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil || ev.N == nil || ev.From == "" {
			t.Fatalf("output record %q is no processed event (%v)", r.Value, err)
		}
		count[*ev.N]++
	}
	var dup, lost []int
	for i := range n {
		switch c := count[i]; {
		case c == 0:
			lost = append(lost, i)
		case c > 1:
			dup = append(dup, i)
		}
	}
	if len(dup)+len(lost) > 0 || len(recs) != n {
		t.Fatalf("%d records for %d events: %d events duplicated (first %v), %d lost (first %v)",
			len(recs), n, len(dup), dup[:min(len(dup), 10)], len(lost), lost[:min(len(lost), 10)])
	}
}
