package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DevConfig is how the embedded dev broker starts.
type DevConfig struct {
	// Address is where it listens, host:port; clients are told to connect
	// to exactly this address. Port 0 picks a free port.
	Address string
	// DataDir, when set, keeps topics and committed offsets across
	// restarts, so a restarted agent resumes where its group left off.
	DataDir string
	// Partitions is the partition count of every topic it creates.
	Partitions int
	// Topics are created at start; others are created when first used.
	Topics []string
	Logger *slog.Logger
}

// DevBroker is an in-process, single-node, Kafka-protocol broker for
// development and tests. It speaks the real protocol (any Kafka client,
// kcat included, works against it) but is not a production broker: one
// node, no replication.
type DevBroker struct {
	c    *kfake.Cluster
	addr string
}

// StartDevBroker starts the broker and creates cfg.Topics.
func StartDevBroker(cfg DevConfig) (*DevBroker, error) {
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("dev kafka address %q: %w", cfg.Address, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("dev kafka address %q: clients are told to connect to this address, so it needs a host they can reach, not %s", cfg.Address, host)
	}
	parts := max(cfg.Partitions, 1)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake picks 127.0.0.1 and the port; listen where we were asked.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, cfg.Address)
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(parts),
		kfake.ClusterID("sluice-dev"),
	}
	if len(cfg.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(parts), cfg.Topics...))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Clean(cfg.DataDir)), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start dev kafka broker on %s: %w", cfg.Address, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("start dev kafka broker on %s: it listens nowhere", cfg.Address)
	}
	if cfg.Logger != nil {
		cfg.Logger.Info("dev Kafka broker listening", "address", addrs[0], "partitions", parts, "topics", cfg.Topics, "data_dir", cfg.DataDir)
	}
	return &DevBroker{c: c, addr: addrs[0]}, nil
}

// Addr is the broker's address, host:port.
func (d *DevBroker) Addr() string { return d.addr }

// Close stops the broker, flushing its data dir.
func (d *DevBroker) Close() { d.c.Close() }
