package config

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Config is the agent's effective configuration.
type Config struct {
	DataDir         string        `koanf:"data_dir"`
	Pipelines       []string      `koanf:"pipelines"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	LogLevel        string        `koanf:"log_level"`
	LogFormat       string        `koanf:"log_format"`
	HTTPAddress     string        `koanf:"http_address"`
	HTTPToken       string        `koanf:"http_token"`
	// AdvertiseAddress is the HTTP address other agents reach this one
	// at, for state lookups of keys it owns. Empty: http_address, unless
	// that listens on every interface (then none is advertised).
	AdvertiseAddress string `koanf:"advertise_address"`
	// KafkaBrokers is the cluster a pipeline's kafka components use when
	// they name no seed_brokers. Empty: the embedded dev broker, if on.
	KafkaBrokers       []string `koanf:"kafka_brokers"`
	DevKafka           bool     `koanf:"dev_kafka"`
	DevKafkaAddress    string   `koanf:"dev_kafka_address"`
	DevKafkaPartitions int      `koanf:"dev_kafka_partitions"`
	// StateMemory sizes the state store's memory: "standard" or "small".
	StateMemory string `koanf:"state_memory"`
	// Once runs each scheduled pipeline once (with its retries and
	// timeout) instead of on its every or cron, and the agent then exits:
	// for a job that an outside scheduler starts.
	Once bool `koanf:"once"`
}

// Advertised is the address to advertise to other agents: the
// advertise_address, or the http_address when it names one host.
func (c Config) Advertised() string {
	if c.AdvertiseAddress != "" {
		return c.AdvertiseAddress
	}
	host, _, err := net.SplitHostPort(c.HTTPAddress)
	if err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
		return ""
	}
	return c.HTTPAddress
}

// Default returns the built-in configuration, the bottom layer of Load.
// Each call returns a fresh value, so callers may modify it freely.
func Default() Config {
	return Config{
		DataDir:            ".sluice",
		Pipelines:          []string{"builtin:realtime"},
		ShutdownTimeout:    10 * time.Second,
		LogLevel:           "info",
		LogFormat:          "text",
		HTTPAddress:        "127.0.0.1:4195",
		KafkaBrokers:       []string{},
		DevKafka:           true,
		DevKafkaAddress:    "127.0.0.1:9092",
		DevKafkaPartitions: 3,
		StateMemory:        "standard",
	}
}

const (
	envPrefix  = "SLUICE_"
	envConfig  = envPrefix + "CONFIG"
	flagConfig = "config"
)

// logLevels and logFormats are functions so that no caller can append to a
// shared slice.
func logLevels() []string  { return []string{"debug", "info", "warn", "error"} }
func logFormats() []string { return []string{"text", "json"} }

// StateMemories are the state_memory choices.
func StateMemories() []string { return []string{"standard", "small"} }

// keySpec ties a config key to its flag, its help text, how it prints and
// what makes its value invalid, so that adding a key means adding one entry
// here rather than touching loading, validation and printing separately.
type keySpec struct {
	key   string
	flag  string
	usage string
	// format renders the key's value from c for Sources and Print.
	format func(c Config) string
	// check returns what is wrong with the key's value in c, if anything.
	check func(c Config) []string
}

// envVar is derived rather than listed so that the file key and the
// variable cannot disagree.
func (s keySpec) envVar() string { return envPrefix + strings.ToUpper(s.key) }

// keySpecs lists the keys in the order Sources and Print report them.
// It is a function, not a package variable, so nothing can mutate it.
func keySpecs() []keySpec {
	return []keySpec{
		{
			key:    "data_dir",
			flag:   "data-dir",
			usage:  "directory where the agent keeps its state",
			format: func(c Config) string { return formatString(c.DataDir) },
			check: func(c Config) []string {
				if strings.TrimSpace(c.DataDir) == "" {
					return []string{"must not be empty: the agent needs somewhere to keep its state"}
				}
				return nil
			},
		},
		{
			key:    "pipelines",
			flag:   "pipeline",
			usage:  "pipeline to run: a YAML file, a directory of *.yaml/*.yml files, or builtin:NAME (repeatable; replaces the configured list)",
			format: func(c Config) string { return formatList(c.Pipelines) },
			check: func(c Config) []string {
				if len(c.Pipelines) == 0 {
					return []string{"no pipelines given: the agent would have nothing to run"}
				}
				var probs []string
				for i, p := range c.Pipelines {
					if strings.TrimSpace(p) == "" {
						probs = append(probs, fmt.Sprintf("entry %d is empty", i))
					}
				}
				return probs
			},
		},
		{
			key:    "shutdown_timeout",
			flag:   "shutdown-timeout",
			usage:  "how long to wait for pipelines to drain on shutdown before giving up",
			format: func(c Config) string { return c.ShutdownTimeout.String() },
			check: func(c Config) []string {
				if c.ShutdownTimeout <= 0 {
					return []string{fmt.Sprintf("must be greater than zero, got %s", c.ShutdownTimeout)}
				}
				return nil
			},
		},
		{
			key:    "log_level",
			flag:   "log-level",
			usage:  "least severe log level written: " + strings.Join(logLevels(), ", "),
			format: func(c Config) string { return formatString(c.LogLevel) },
			check: func(c Config) []string {
				return checkEnum(c.LogLevel, "log level", logLevels())
			},
		},
		{
			key:    "log_format",
			flag:   "log-format",
			usage:  "log output format: " + strings.Join(logFormats(), ", "),
			format: func(c Config) string { return formatString(c.LogFormat) },
			check: func(c Config) []string {
				return checkEnum(c.LogFormat, "log format", logFormats())
			},
		},
		{
			key:    "http_address",
			flag:   "http-address",
			usage:  "address of the agent's HTTP server (health, state lookup); empty disables it",
			format: func(c Config) string { return formatString(c.HTTPAddress) },
			check: func(c Config) []string {
				if c.HTTPAddress == "" {
					return nil
				}
				if _, _, err := net.SplitHostPort(c.HTTPAddress); err != nil {
					return []string{fmt.Sprintf("%q is not host:port: %v", c.HTTPAddress, err)}
				}
				return nil
			},
		},
		{
			key:    "advertise_address",
			flag:   "advertise-address",
			usage:  "host:port other agents in the consumer group reach this agent's HTTP server at, to forward state lookups of keys whose partition it owns; empty: http_address unless it binds every interface",
			format: func(c Config) string { return formatString(c.AdvertiseAddress) },
			check: func(c Config) []string {
				if c.AdvertiseAddress == "" {
					return nil
				}
				if _, _, err := net.SplitHostPort(c.AdvertiseAddress); err != nil {
					return []string{fmt.Sprintf("%q is not host:port: %v", c.AdvertiseAddress, err)}
				}
				return nil
			},
		},
		{
			key:   "http_token",
			flag:  "http-token",
			usage: "bearer token every HTTP endpoint but /healthz and /readyz requires; empty turns those endpoints off",
			// The token is a secret: say whether it is set, never what it is.
			format: func(c Config) string {
				if c.HTTPToken == "" {
					return `""`
				}
				return "(set, hidden)"
			},
			check: func(c Config) []string {
				if c.HTTPToken != "" && len(c.HTTPToken) < 16 {
					return []string{"is shorter than 16 characters: too easy to guess"}
				}
				return nil
			},
		},
		{
			key:    "kafka_brokers",
			flag:   "kafka-brokers",
			usage:  "Kafka cluster (host:port, ...) for pipelines' kafka components that name no seed_brokers; empty uses the dev broker",
			format: func(c Config) string { return formatList(c.KafkaBrokers) },
			check: func(c Config) []string {
				var probs []string
				for i, b := range c.KafkaBrokers {
					if _, _, err := net.SplitHostPort(b); err != nil {
						probs = append(probs, fmt.Sprintf("entry %d, %q, is not host:port", i, b))
					}
				}
				return probs
			},
		},
		{
			key:    "dev_kafka",
			flag:   "dev-kafka",
			usage:  "when kafka_brokers is empty and a pipeline uses kafka, run an embedded Kafka-protocol broker for it (development only)",
			format: func(c Config) string { return strconv.FormatBool(c.DevKafka) },
			check:  func(Config) []string { return nil },
		},
		{
			key:    "dev_kafka_address",
			flag:   "dev-kafka-address",
			usage:  "where the dev broker listens; clients connect to exactly this host:port",
			format: func(c Config) string { return formatString(c.DevKafkaAddress) },
			check: func(c Config) []string {
				host, _, err := net.SplitHostPort(c.DevKafkaAddress)
				if err != nil {
					return []string{fmt.Sprintf("%q is not host:port: %v", c.DevKafkaAddress, err)}
				}
				if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
					return []string{fmt.Sprintf("%q: clients are told to connect to this address, so it needs a host they can reach, not %s", c.DevKafkaAddress, host)}
				}
				return nil
			},
		},
		{
			key:    "dev_kafka_partitions",
			flag:   "dev-kafka-partitions",
			usage:  "partitions of each topic the dev broker creates",
			format: func(c Config) string { return strconv.Itoa(c.DevKafkaPartitions) },
			check: func(c Config) []string {
				if c.DevKafkaPartitions < 1 {
					return []string{fmt.Sprintf("must be at least 1, got %d", c.DevKafkaPartitions)}
				}
				return nil
			},
		},
		{
			key:    "state_memory",
			flag:   "state-memory",
			usage:  "memory of the state store: standard (64 MiB write buffer, 256 MiB block cache) or small (8 MiB, 16 MiB: edge agents, sidecars)",
			format: func(c Config) string { return formatString(c.StateMemory) },
			check: func(c Config) []string {
				return checkEnum(c.StateMemory, "state memory size", StateMemories())
			},
		},
		{
			key:    "once",
			flag:   "once",
			usage:  "run each scheduled pipeline once (its retries and timeout apply) instead of on its every or cron, then exit: for a job started by cron, a Kubernetes CronJob or Airflow",
			format: func(c Config) string { return strconv.FormatBool(c.Once) },
			check:  func(Config) []string { return nil },
		},
	}
}

func checkEnum(v, what string, allowed []string) []string {
	if slices.Contains(allowed, v) {
		return nil
	}
	return []string{fmt.Sprintf("%q is not a %s; use one of %s", v, what, strings.Join(allowed, ", "))}
}

// formatString quotes only the empty string, which would otherwise print as
// nothing at all and look like a formatting bug.
func formatString(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// formatList quotes each entry so that entries containing commas or spaces
// stay unambiguous.
func formatList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// RegisterFlags adds -c/--config and the per-key flags to fs. The flags'
// defaults are the built-in ones, for --help; Load only takes flags the user
// actually set, so these defaults never override the file or environment.
func RegisterFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.StringP(flagConfig, "c", "", "agent config file (YAML); env "+envConfig+"; without either, only defaults, env and flags apply")
	for _, s := range keySpecs() {
		usage := s.usage + "; env " + s.envVar()
		switch s.key {
		case "data_dir":
			fs.String(s.flag, d.DataDir, usage)
		case "pipelines":
			// A string array, not a string slice, so a path is taken
			// literally even if it contains a comma.
			fs.StringArray(s.flag, d.Pipelines, usage+", comma-separated")
		case "shutdown_timeout":
			fs.Duration(s.flag, d.ShutdownTimeout, usage)
		case "log_level":
			fs.String(s.flag, d.LogLevel, usage)
		case "log_format":
			fs.String(s.flag, d.LogFormat, usage)
		case "http_address":
			fs.String(s.flag, d.HTTPAddress, usage)
		case "http_token":
			fs.String(s.flag, d.HTTPToken, usage)
		case "advertise_address":
			fs.String(s.flag, d.AdvertiseAddress, usage)
		case "kafka_brokers":
			fs.StringSlice(s.flag, d.KafkaBrokers, usage+", comma-separated")
		case "dev_kafka":
			fs.Bool(s.flag, d.DevKafka, usage)
		case "dev_kafka_address":
			fs.String(s.flag, d.DevKafkaAddress, usage)
		case "dev_kafka_partitions":
			fs.Int(s.flag, d.DevKafkaPartitions, usage)
		case "state_memory":
			fs.String(s.flag, d.StateMemory, usage)
		case "once":
			fs.Bool(s.flag, d.Once, usage)
		default:
			panic("config: no flag type for key " + s.key)
		}
	}
}

// Loaded is the effective configuration together with where each key's
// value came from.
type Loaded struct {
	Config Config
	// from maps each key to the description of the layer that set it, as
	// reported by Source.From; keys missing from it came from the defaults.
	from map[string]string
}

// Source is one key's effective value and its origin: "default",
// "file <path>", "env SLUICE_X" or "flag --x".
type Source struct {
	Key   string
	Value string
	From  string
}

// Sources returns every key, in a stable order, with its effective value and
// where that value came from, so an operator can see why the agent behaves as
// it does.
func (l *Loaded) Sources() []Source {
	specs := keySpecs()
	out := make([]Source, 0, len(specs))
	for _, s := range specs {
		from := l.from[s.key]
		if from == "" {
			from = originDefault
		}
		out = append(out, Source{Key: s.key, Value: s.format(l.Config), From: from})
	}
	return out
}

// IsDefault says whether key's value is the built-in default, set by no
// file, environment variable or flag.
func (l *Loaded) IsDefault(key string) bool {
	from := l.from[key]
	return from == "" || from == originDefault
}

// Print writes the effective configuration to w as aligned lines of
// `key = value  (from)`.
func (l *Loaded) Print(w io.Writer) error {
	srcs := l.Sources()
	keyW, valW := 0, 0
	for _, s := range srcs {
		keyW = max(keyW, len(s.Key))
		valW = max(valW, len(s.Value))
	}
	var b strings.Builder
	for _, s := range srcs {
		fmt.Fprintf(&b, "%-*s = %-*s  (%s)\n", keyW, s.Key, valW, s.Value, s.From)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	return nil
}
