package kafka

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/state/changelog"
)

const (
	fTopic           = "topic"
	fKey             = "key"
	fPartitioner     = "partitioner"
	fCompression     = "compression"
	fIdempotent      = "idempotent_write"
	fMetadata        = "metadata"
	fTimeout         = "timeout"
	fMaxMessageBytes = "max_message_bytes"
	fMaxInFlight     = "max_in_flight"
	fBatching        = "batching"
)

func outputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Writes messages to Kafka; a batch is acknowledged only after the brokers have acknowledged every record in it.").
		Description(`
The record key comes from `+"`key`"+`, so all of one key's records go to one partition (with the default `+"`murmur2_hash`"+` partitioner, the partition a Java client would choose). The producer is idempotent by default: a retried send is not written twice. Every record waits for all in-sync replicas.

### Exactly-once

Messages read by a `+"`kafka`"+` input with `+"`exactly_once: true`"+` carry the input's open transaction, and this output writes them in it, through the input's transactional producer: they become visible to `+"`read_committed`"+` consumers only when the transaction commits, together with the input's offsets, and never if it aborts. A transaction covers one cluster, so this output's `+"`seed_brokers`"+` must be the input's (a batch fails otherwise). The producer partitions by key with `+"`murmur2_hash`"+`, and its own settings apply, not this output's `+"`partitioner`"+`, `+"`compression`"+`, `+"`idempotent_write`"+` and `+"`max_message_bytes`"+`. A write that fails dooms the transaction rather than failing the batch: nothing of it commits, and the input reads its records again. A batch whose transaction is already doomed is not written. A batch may not mix messages of different transactions, or messages with a transaction and without (as from two inputs): it fails.`).
		Fields(connectionFields()...).
		Fields(
			service.NewInterpolatedStringField(fTopic).Description("Topic to write to.").Example("predictions").Example(`${! meta("kafka_topic") }-out`),
			service.NewInterpolatedStringField(fKey).Description("Record key; empty leaves the record unkeyed.").Example(`${! json("user_id") }`).Default(""),
			service.NewStringEnumField(fPartitioner, "murmur2_hash", "round_robin", "least_backup").Description("How records are spread over partitions: `murmur2_hash` hashes the key as Kafka's Java client does (unkeyed records stick to one partition per batch); `round_robin` ignores the key; `least_backup` picks the partition with the fewest records waiting.").Default("murmur2_hash").Advanced(),
			service.NewStringEnumField(fCompression, "none", "gzip", "snappy", "lz4", "zstd").Description("Compression of record batches.").Default("none"),
			service.NewBoolField(fIdempotent).Description("Idempotent producer: the brokers drop a retried batch they already wrote. Needs the IDEMPOTENT_WRITE permission on clusters with ACLs.").Default(true).Advanced(),
			service.NewMetadataFilterField(fMetadata).Description("Which metadata to write as record headers; none by default.").Optional(),
			service.NewDurationField(fTimeout).Description("How long a batch may wait for the brokers before it fails and is retried.").Default("10s").Advanced(),
			service.NewIntField(fMaxMessageBytes).Description("Largest record batch sent to a broker, in bytes.").Default(1048576).Advanced(),
			service.NewOutputMaxInFlightField().Default(64),
			service.NewBatchPolicyField(fBatching),
		)
}

type output struct {
	opts    []kgo.Opt
	brokers []string
	topic   *service.InterpolatedString
	key     *service.InterpolatedString
	hasKey  bool
	meta    *service.MetadataFilter
	timeout time.Duration
	mu      sync.RWMutex
	cl      *kgo.Client

	log *service.Logger
	// murmur2: the output's partitioner is the transactional producer's.
	murmur2  bool
	warnPart sync.Once
	// The last transactional client checked against brokers, and the
	// result: an input keeps one client across its transactions.
	txnMu    sync.Mutex
	txnCl    *kgo.Client
	txnClErr error
}

func newOutput(conf *service.ParsedConfig, mgr *service.Resources, d Defaults) (service.BatchOutput, service.BatchPolicy, int, error) {
	var pol service.BatchPolicy
	opts, brokers, err := clientOpts(conf, d)
	if err != nil {
		return nil, pol, 0, err
	}
	o := &output{brokers: brokers, log: mgr.Logger()}
	if o.topic, err = conf.FieldInterpolatedString(fTopic); err != nil {
		return nil, pol, 0, err
	}
	keyStr, err := conf.FieldString(fKey)
	if err != nil {
		return nil, pol, 0, err
	}
	if o.hasKey = keyStr != ""; o.hasKey {
		if o.key, err = conf.FieldInterpolatedString(fKey); err != nil {
			return nil, pol, 0, err
		}
	}
	if conf.Contains(fMetadata) {
		if o.meta, err = conf.FieldMetadataFilter(fMetadata); err != nil {
			return nil, pol, 0, err
		}
	}
	if o.timeout, err = conf.FieldDuration(fTimeout); err != nil {
		return nil, pol, 0, err
	}
	part, err := conf.FieldString(fPartitioner)
	if err != nil {
		return nil, pol, 0, err
	}
	o.murmur2 = part == "murmur2_hash"
	switch part {
	case "murmur2_hash":
		opts = append(opts, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	case "round_robin":
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	case "least_backup":
		opts = append(opts, kgo.RecordPartitioner(kgo.LeastBackupPartitioner()))
	}
	comp, err := conf.FieldString(fCompression)
	if err != nil {
		return nil, pol, 0, err
	}
	codec := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}[comp]
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	idem, err := conf.FieldBool(fIdempotent)
	if err != nil {
		return nil, pol, 0, err
	}
	if !idem {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	maxBytes, err := conf.FieldInt(fMaxMessageBytes)
	if err != nil {
		return nil, pol, 0, err
	}
	opts = append(opts, kgo.ProducerBatchMaxBytes(int32(maxBytes)), kgo.RequiredAcks(kgo.AllISRAcks()),
		// Benthos batches; waiting longer in the client only adds latency.
		kgo.ProducerLinger(0))
	o.opts = opts
	maxInFlight, err := conf.FieldMaxInFlight()
	if err != nil {
		return nil, pol, 0, err
	}
	if pol, err = conf.FieldBatchPolicy(fBatching); err != nil {
		return nil, pol, 0, err
	}
	return o, pol, maxInFlight, nil
}

func (o *output) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cl != nil {
		return nil
	}
	cl, err := kgo.NewClient(o.opts...)
	if err != nil {
		return fmt.Errorf("kafka output: %w", err)
	}
	if err := ping(ctx, cl, o.brokers); err != nil {
		cl.Close()
		return err
	}
	o.cl = cl
	return nil
}

func (o *output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.RLock()
	cl := o.cl
	o.mu.RUnlock()
	if cl == nil {
		return service.ErrNotConnected
	}
	txn, err := batchTxn(batch)
	if err != nil {
		return err
	}
	if txn != nil {
		if err := o.checkTxn(txn); err != nil {
			return err
		}
		if err := txn.Err(); err != nil {
			// It aborts, and the input reads these records again.
			o.log.Debugf("kafka output: %d messages not written, their transaction aborts: %v", len(batch), err)
			return nil
		}
	}
	recs := make([]*kgo.Record, len(batch))
	topics := batch.InterpolationExecutor(o.topic)
	var keys *service.MessageBatchInterpolationExecutor
	if o.hasKey {
		keys = batch.InterpolationExecutor(o.key)
	}
	for i, msg := range batch {
		topic, err := topics.TryString(i)
		if err != nil {
			return fmt.Errorf("topic of message %d: %w", i, err)
		}
		if topic == "" {
			return fmt.Errorf("topic of message %d: the expression gave an empty topic", i)
		}
		value, err := msg.AsBytes()
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		rec := &kgo.Record{Topic: topic, Value: value}
		if keys != nil {
			k, err := keys.TryBytes(i)
			if err != nil {
				return fmt.Errorf("key of message %d: %w", i, err)
			}
			if len(k) > 0 {
				rec.Key = k
			}
		}
		if o.meta != nil {
			_ = o.meta.WalkMut(msg, func(k string, v any) error {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: headerValue(v)})
				return nil
			})
		}
		recs[i] = rec
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if txn != nil {
		if err := txn.Client().ProduceSync(ctx, recs...).FirstErr(); err != nil {
			// Nothing of a failed transaction commits, its offsets
			// neither, so the group reads these records again. An error
			// would have Benthos retry the batch into a transaction
			// that can only abort, forever.
			txn.Fail(fmt.Errorf("kafka output: produce %d records: %w", len(recs), err))
		}
		return nil
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records: %w", len(recs), err)
	}
	return nil
}

// batchTxn is the transaction of the batch's messages, nil if none has
// one.
func batchTxn(batch service.MessageBatch) (*changelog.Txn, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	txn := changelog.TxnFromContext(batch[0].Context())
	for i, msg := range batch[1:] {
		if t := changelog.TxnFromContext(msg.Context()); t != txn {
			return nil, fmt.Errorf("message %d: its Kafka transaction is not message 0's: a batch is written in one transaction, so it cannot mix messages of two exactly-once inputs, or of one and of another input", i+1)
		}
	}
	return txn, nil
}

// checkTxn fails a transaction on a cluster other than this output's, and
// warns, once, when the transaction's partitioner is not the one this
// output was configured with.
func (o *output) checkTxn(txn *changelog.Txn) error {
	if !o.murmur2 {
		o.warnPart.Do(func() {
			o.log.Warn("kafka output: messages of an exactly-once kafka input are written by its transactional producer, which partitions by key with murmur2_hash, not this output's partitioner")
		})
	}
	cl := txn.Client()
	o.txnMu.Lock()
	defer o.txnMu.Unlock()
	if cl != o.txnCl {
		o.txnCl, o.txnClErr = cl, nil
		seeds, _ := cl.OptValue(kgo.SeedBrokers).([]string)
		if !sameBrokers(o.brokers, seeds) {
			o.txnClErr = fmt.Errorf("kafka output: writes to brokers %s, but the input's transaction is on %s: a transaction covers one cluster (give the output and the input the same seed_brokers)", strings.Join(o.brokers, ","), strings.Join(seeds, ","))
		}
	}
	return o.txnClErr
}

// sameBrokers compares seed broker lists as sets, the port defaulting to
// 9092 as franz-go's does.
func sameBrokers(a, b []string) bool {
	norm := func(bs []string) []string {
		out := make([]string, 0, len(bs))
		for _, b := range bs {
			b = strings.TrimSpace(b)
			if _, _, err := net.SplitHostPort(b); err != nil {
				b = net.JoinHostPort(strings.Trim(b, "[]"), "9092")
			}
			out = append(out, b)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func (o *output) Close(context.Context) error {
	o.mu.Lock()
	cl := o.cl
	o.cl = nil
	o.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}

func headerValue(v any) []byte {
	switch t := v.(type) {
	case []byte:
		return t
	case string:
		return []byte(t)
	default:
		return fmt.Append(nil, t)
	}
}
