package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// startBroker runs a dev broker for one test, with three partitions per
// topic.
func startBroker(t *testing.T, topics ...string) string {
	t.Helper()
	return startBrokerN(t, 3, topics...)
}

func startBrokerN(t testing.TB, partitions int, topics ...string) string {
	t.Helper()
	b, err := StartDevBroker(DevConfig{Address: "127.0.0.1:0", Partitions: partitions, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// produce writes events {"user_id": i%users, "n": i} keyed by user.
func produce(t *testing.T, addr, topic string, n, users int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		u := i % users
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(u)), Value: fmt.Appendf(nil, `{"user_id":%d,"n":%d}`, u, i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consume reads n records of topic from the start, outside any group.
func consume(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records from %s: %v", len(out), n, topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// runStream runs a pipeline on an environment with the kafka components
// until stop is called.
func runStream(t testing.TB, addr, yaml string) (stop func()) {
	t.Helper()
	return runStreamWith(t, addr, yaml, nil)
}

// runStreamWith is runStream with setup, if not nil, adding components of
// the test's own to the environment.
func runStreamWith(t testing.TB, addr, yaml string, setup func(*service.Environment)) (stop func()) {
	t.Helper()
	env := service.NewEnvironment()
	if err := Register(env, Defaults{Brokers: func() []string { return []string{addr} }}); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(env)
	}
	sb := env.NewStreamBuilder()
	if err := sb.SetYAML(yaml); err != nil {
		t.Fatal(err)
	}
	sb.SetLoggerYAML("level: warn")
	s, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.StopWithin(10 * time.Second); err != nil {
			t.Errorf("stop stream: %v", err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			t.Error("stream did not stop")
		}
	}
}

const passThrough = `
input:
  kafka:
    topics: [events]
    consumer_group: test
    max_batch_records: 16
pipeline:
  threads: 2
  processors:
    - mapping: |
        root = this
        root.from = "%s/%s/%s".format(meta("kafka_topic"), meta("kafka_partition"), meta("kafka_offset"))
        root.key = meta("kafka_key")
output:
  kafka:
    topic: out
    key: ${! json("user_id") }
    compression: lz4
    metadata:
      include_patterns: ["^kafka_partition$"]
`

func TestKafkaInOutAtLeastOnce(t *testing.T) {
	addr := startBroker(t, "events", "out")
	const n, users = 300, 7
	produce(t, addr, "events", n, users)
	stop := runStream(t, addr, passThrough)
	recs := consume(t, addr, "out", n)
	stop()

	seen := map[int]bool{}
	userPartition := map[string]int32{}
	for _, r := range recs {
		var ev struct {
			UserID int    `json:"user_id"`
			N      int    `json:"n"`
			From   string `json:"from"`
			Key    string `json:"key"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("output record %q: %v", r.Value, err)
		}
		if seen[ev.N] {
			t.Errorf("event %d written twice with no failure", ev.N)
		}
		seen[ev.N] = true
		if ev.Key != strconv.Itoa(ev.UserID) || string(r.Key) != ev.Key {
			t.Errorf("event %d: input key %q, output key %q, want user %d", ev.N, ev.Key, r.Key, ev.UserID)
		}
		if p, ok := userPartition[ev.Key]; ok && p != r.Partition {
			t.Errorf("user %s written to partitions %d and %d: a key must stay on one partition", ev.Key, p, r.Partition)
		}
		userPartition[ev.Key] = r.Partition
		if len(r.Headers) != 1 || r.Headers[0].Key != "kafka_partition" {
			t.Errorf("event %d: headers %v, want only kafka_partition", ev.N, r.Headers)
		}
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct events, want %d", len(seen), n)
	}

	// The group committed everything acknowledged: a second run of the
	// same group reads only what is produced after.
	produce(t, addr, "events", 1, 1)
	stop = runStream(t, addr, passThrough)
	// Had the group started over, the marker's partition would repeat its
	// earlier records before the marker: per-partition order.
	consume(t, addr, "out", n+1)
	stop()
	if got := endOffsets(t, addr, "out", 3); got != n+1 {
		t.Fatalf("after a restart of the group the output holds %d records, want %d: committed offsets were not honoured", got, n+1)
	}
}

// endOffsets sums the end offsets of a topic's partitions: how many
// records it holds.
func endOffsets(t *testing.T, addr, topic string, partitions int32) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1 // -1: the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("list offsets %s/%d: %v", topic, rp.Partition, err)
			}
			total += int(rp.Offset)
		}
	}
	return total
}

// TestKafkaPartitionOrderAcrossThreads: with four pipeline threads and the
// first batch held up, a partition's records still come out in offset
// order, because a partition has one batch downstream at a time.
func TestKafkaPartitionOrderAcrossThreads(t *testing.T) {
	addr := startBrokerN(t, 1, "events", "out")
	const n = 200
	produce(t, addr, "events", n, 5)
	stop := runStream(t, addr, `
input:
  kafka:
    topics: [events]
    consumer_group: test
    max_batch_records: 10
pipeline:
  threads: 4
  processors:
    - sleep:
        duration: '${! if meta("kafka_offset") == "0" { "300ms" } else { "0s" } }'
    - mapping: 'root = this.merge({"offset": meta("kafka_offset").number()})'
output:
  kafka:
    topic: out
`)
	recs := consume(t, addr, "out", n)
	stop()
	for i, r := range recs {
		var ev struct{ Offset int }
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Offset != i {
			t.Fatalf("output record %d came from offset %d: the partition's order was not kept", i, ev.Offset)
		}
	}
}

// TestKafkaSASL: the input and output authenticate with each mechanism the
// fields offer against a broker that requires SASL, and a wrong password
// fails at connect with the broker's reason.
func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "sluice", "s3cret"),
				kfake.SeedTopics(1, "events", "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			addr := c.ListenAddrs()[0]
			auth := fmt.Sprintf("\n    seed_brokers: [%s]\n    sasl: [{mechanism: %s, username: sluice, password: s3cret}]", addr, mech)
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.SASL(saslFor(t, mech, "s3cret")))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "events", Value: []byte(`{"n":1}`)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			stop := runStream(t, "", `
input:
  kafka:
    topics: [events]
    consumer_group: g`+auth+`
output:
  kafka:
    topic: out`+auth+`
`)
			cl.AddConsumeTopics("out")
			var got []*kgo.Record
			for len(got) == 0 && ctx.Err() == nil {
				got = append(got, cl.PollFetches(ctx).Records()...)
			}
			stop()
			if len(got) != 1 || string(got[0].Value) != `{"n":1}` {
				t.Fatalf("through a SASL %s broker: got %v", mech, got)
			}

			conf, err := inputSpec().ParseYAML(`topics: [events]
consumer_group: g`+strings.NewReplacer("s3cret", "wrong", "\n    ", "\n").Replace(auth)+"\n", nil)
			if err != nil {
				t.Fatal(err)
			}
			in, err := newInput(conf, service.MockResources(), Defaults{})
			if err != nil {
				t.Fatal(err)
			}
			if err := in.Connect(ctx); err == nil || !strings.Contains(err.Error(), "reach kafka brokers") {
				t.Errorf("connect with a wrong password: %v, want an authentication failure", err)
			} else {
				t.Logf("wrong password: %v", err)
			}
		})
	}
}

func saslFor(t *testing.T, mech, pass string) sasl.Mechanism {
	t.Helper()
	switch mech {
	case "PLAIN":
		return plain.Auth{User: "sluice", Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: "sluice", Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: "sluice", Pass: pass}.AsSha512Mechanism()
}

// TestKafkaTLS: with `tls` pointing at the cluster's CA, the input and
// output talk to a broker that only speaks TLS.
func TestKafkaTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events", "out"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "events", Value: []byte(`{"n":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	conn := fmt.Sprintf("\n    seed_brokers: [%s]\n    tls: {enabled: true, root_cas_file: %q}", addr, caFile)
	stop := runStream(t, "", "input:\n  kafka:\n    topics: [events]\n    consumer_group: g"+conn+"\noutput:\n  kafka:\n    topic: out"+conn+"\n")
	cl.AddConsumeTopics("out")
	var got []*kgo.Record
	for len(got) == 0 && ctx.Err() == nil {
		got = append(got, cl.PollFetches(ctx).Records()...)
	}
	stop()
	if len(got) != 1 || string(got[0].Value) != `{"n":1}` {
		t.Fatalf("through a TLS broker: got %v", got)
	}
}

// BenchmarkKafkaPassThroughLatency is produce-to-consume latency through
// the kafka input and output alone (a pass-through mapping between them),
// at about 1000 events/s: what the components add before any processing.
// Each op is one event; run with -benchtime 2000x.
func BenchmarkKafkaPassThroughLatency(b *testing.B) {
	addr := startBrokerN(b, 3, "in", "out")
	stop := runStream(b, addr, `
input:
  kafka: {topics: [in], consumer_group: bench}
pipeline:
  processors:
    - mapping: 'root = this'
output:
  kafka: {topic: out, key: '${! json("k") }'}
`)
	defer stop()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("out"))
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(lat) < b.N {
			fs := cons.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var ev struct{ Sent int64 }
				if json.Unmarshal(r.Value, &ev) == nil {
					lat = append(lat, now.Sub(time.Unix(0, ev.Sent)))
				}
			})
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		prod.Produce(ctx, &kgo.Record{Topic: "in", Value: fmt.Appendf(nil, `{"k":%d,"sent":%d}`, i%50, time.Now().UnixNano())}, nil)
		time.Sleep(time.Millisecond)
	}
	<-done
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99_ms")
}

// TestBatchMergesPolls: a partition's batch takes its records from every
// poll buffered for it, in order, up to max_batch_records, not one poll at
// a time (which made batches of a few records at moderate rates).
func TestBatchMergesPolls(t *testing.T) {
	recs := func(p int32, offs ...int64) []*kgo.Record {
		var out []*kgo.Record
		for _, o := range offs {
			out = append(out, &kgo.Record{Topic: "t", Partition: p, Offset: o})
		}
		return out
	}
	a, b := topicPartition{"t", 0}, topicPartition{"t", 1}
	in := &input{maxBatch: 4, owned: map[topicPartition]*partition{}, wake: make(chan struct{})}
	in.ready = []polled{{a, recs(0, 1, 2)}, {b, recs(1, 7)}, {a, recs(0, 3, 4, 5)}}
	in.buffered = 6
	batch, _ := in.next()
	var got []string
	for _, m := range batch {
		off, _ := m.MetaGet("kafka_offset")
		part, _ := m.MetaGet("kafka_partition")
		got = append(got, part+"/"+off)
	}
	if strings.Join(got, " ") != "0/1 0/2 0/3 0/4" {
		t.Errorf("first batch %v, want partition 0's offsets 1-4 from both polls", got)
	}
	if len(in.ready) != 2 || in.ready[0].tp != b || in.ready[1].tp != a || len(in.ready[1].records) != 1 || in.buffered != 2 {
		t.Errorf("left ready %+v (buffered %d), want partition 1's poll, then offset 5", in.ready, in.buffered)
	}
	// Partition 0 has a batch downstream: the next batch is partition 1's.
	if batch, _ := in.next(); len(batch) != 1 {
		t.Errorf("second batch has %d records, want partition 1's one", len(batch))
	}
}
