package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// writeConfig writes content to a fresh config file and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load parses args the way the agent's main would and loads the config.
func load(t *testing.T, environ []string, args ...string) (*Loaded, error) {
	t.Helper()
	flags := pflag.NewFlagSet("sluice", pflag.ContinueOnError)
	RegisterFlags(flags)
	if err := flags.Parse(args); err != nil {
		t.Fatalf("parse flags %q: %v", args, err)
	}
	return Load(flags, environ)
}

func sourceOf(t *testing.T, l *Loaded, key string) Source {
	t.Helper()
	for _, s := range l.Sources() {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("Sources() has no key %q", key)
	return Source{}
}

func TestDefaultsApplyWithoutFileEnvOrFlags(t *testing.T) {
	// Unrelated variables must not matter, only SLUICE_* ones.
	l, err := load(t, []string{"HOME=/home/x", "PATH=/bin", "SLUICEY=1"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Config, Default()) {
		t.Errorf("Config = %+v, want Default() %+v", l.Config, Default())
	}
	for _, s := range l.Sources() {
		if s.From != "default" {
			t.Errorf("%s comes from %q, want default", s.Key, s.From)
		}
	}
	// A nil flag set and environment are allowed, e.g. for tests of other
	// packages.
	if _, err := Load(nil, nil); err != nil {
		t.Errorf("Load(nil, nil): %v", err)
	}
}

func TestShippedConfigMatchesDefault(t *testing.T) {
	const path = "../../config/agent.yaml"
	l, err := load(t, nil, "-c", path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Config, Default()) {
		t.Errorf("%s loads as %+v, want Default() %+v", path, l.Config, Default())
	}
	// Every key must be in the file, so that it documents every key.
	for _, s := range l.Sources() {
		if want := "file " + path; s.From != want {
			t.Errorf("%s comes from %q, want %q: is it missing from %s?", s.Key, s.From, want, path)
		}
	}
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		key                      string
		file                     string
		env                      string
		flags                    []string
		fileVal, envVal, flagVal string
		envName, flagName        string
	}{
		{
			key:  "data_dir",
			file: "data_dir: /from/file", env: "SLUICE_DATA_DIR=/from/env", flags: []string{"--data-dir=/from/flag"},
			fileVal: "/from/file", envVal: "/from/env", flagVal: "/from/flag",
			envName: "SLUICE_DATA_DIR", flagName: "--data-dir",
		},
		{
			key:  "pipelines",
			file: "pipelines: [file.yaml]", env: "SLUICE_PIPELINES=env1.yaml,env2.yaml",
			flags:   []string{"--pipeline", "flag1.yaml", "--pipeline", "flag2.yaml"},
			fileVal: `["file.yaml"]`, envVal: `["env1.yaml", "env2.yaml"]`, flagVal: `["flag1.yaml", "flag2.yaml"]`,
			envName: "SLUICE_PIPELINES", flagName: "--pipeline",
		},
		{
			key:  "shutdown_timeout",
			file: "shutdown_timeout: 1m", env: "SLUICE_SHUTDOWN_TIMEOUT=2m", flags: []string{"--shutdown-timeout=3m"},
			fileVal: "1m0s", envVal: "2m0s", flagVal: "3m0s",
			envName: "SLUICE_SHUTDOWN_TIMEOUT", flagName: "--shutdown-timeout",
		},
		{
			key:  "log_level",
			file: "log_level: warn", env: "SLUICE_LOG_LEVEL=error", flags: []string{"--log-level=debug"},
			fileVal: "warn", envVal: "error", flagVal: "debug",
			envName: "SLUICE_LOG_LEVEL", flagName: "--log-level",
		},
		{
			// The env value equals the default: what matters is that the
			// origin still says env.
			key:  "log_format",
			file: "log_format: json", env: "SLUICE_LOG_FORMAT=text", flags: []string{"--log-format=json"},
			fileVal: "json", envVal: "text", flagVal: "json",
			envName: "SLUICE_LOG_FORMAT", flagName: "--log-format",
		},
		{
			key:  "http_address",
			file: "http_address: 127.0.0.1:1", env: "SLUICE_HTTP_ADDRESS=127.0.0.1:2", flags: []string{"--http-address=127.0.0.1:3"},
			fileVal: "127.0.0.1:1", envVal: "127.0.0.1:2", flagVal: "127.0.0.1:3",
			envName: "SLUICE_HTTP_ADDRESS", flagName: "--http-address",
		},
		{
			key:  "advertise_address",
			file: "advertise_address: 10.0.0.1:1", env: "SLUICE_ADVERTISE_ADDRESS=10.0.0.1:2", flags: []string{"--advertise-address=10.0.0.1:3"},
			fileVal: "10.0.0.1:1", envVal: "10.0.0.1:2", flagVal: "10.0.0.1:3",
			envName: "SLUICE_ADVERTISE_ADDRESS", flagName: "--advertise-address",
		},
		{
			key:  "http_token",
			file: "http_token: 0123456789abcdef", env: "SLUICE_HTTP_TOKEN=0123456789abcdef", flags: []string{"--http-token=0123456789abcdef"},
			fileVal: "(set, hidden)", envVal: "(set, hidden)", flagVal: "(set, hidden)",
			envName: "SLUICE_HTTP_TOKEN", flagName: "--http-token",
		},
		{
			key:  "kafka_brokers",
			file: "kafka_brokers: [f:9092]", env: "SLUICE_KAFKA_BROKERS=e1:9092, e2:9092", flags: []string{"--kafka-brokers=g1:9092,g2:9092"},
			fileVal: `["f:9092"]`, envVal: `["e1:9092", "e2:9092"]`, flagVal: `["g1:9092", "g2:9092"]`,
			envName: "SLUICE_KAFKA_BROKERS", flagName: "--kafka-brokers",
		},
		{
			key:  "dev_kafka",
			file: "dev_kafka: false", env: "SLUICE_DEV_KAFKA=true", flags: []string{"--dev-kafka=false"},
			fileVal: "false", envVal: "true", flagVal: "false",
			envName: "SLUICE_DEV_KAFKA", flagName: "--dev-kafka",
		},
		{
			key:  "dev_kafka_address",
			file: "dev_kafka_address: 127.0.0.1:1", env: "SLUICE_DEV_KAFKA_ADDRESS=127.0.0.1:2", flags: []string{"--dev-kafka-address=127.0.0.1:3"},
			fileVal: "127.0.0.1:1", envVal: "127.0.0.1:2", flagVal: "127.0.0.1:3",
			envName: "SLUICE_DEV_KAFKA_ADDRESS", flagName: "--dev-kafka-address",
		},
		{
			key:  "dev_kafka_partitions",
			file: "dev_kafka_partitions: 1", env: "SLUICE_DEV_KAFKA_PARTITIONS=2", flags: []string{"--dev-kafka-partitions=4"},
			fileVal: "1", envVal: "2", flagVal: "4",
			envName: "SLUICE_DEV_KAFKA_PARTITIONS", flagName: "--dev-kafka-partitions",
		},
		{
			key:  "state_memory",
			file: "state_memory: small", env: "SLUICE_STATE_MEMORY=standard", flags: []string{"--state-memory=small"},
			fileVal: "small", envVal: "standard", flagVal: "small",
			envName: "SLUICE_STATE_MEMORY", flagName: "--state-memory",
		},
		{
			key:  "once",
			file: "once: true", env: "SLUICE_ONCE=false", flags: []string{"--once"},
			fileVal: "true", envVal: "false", flagVal: "true",
			envName: "SLUICE_ONCE", flagName: "--once",
		},
	}
	defaults := (&Loaded{Config: Default()}).Sources()
	for i, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if defaults[i].Key != tc.key {
				t.Fatalf("test order differs from Sources() order: %s vs %s", tc.key, defaults[i].Key)
			}
			path := writeConfig(t, tc.file+"\n")
			layers := []struct {
				name     string
				environ  []string
				args     []string
				wantVal  string
				wantFrom string
			}{
				{"default", nil, nil, defaults[i].Value, "default"},
				{"file", nil, []string{"-c", path}, tc.fileVal, "file " + path},
				{"env over file", []string{tc.env}, []string{"-c", path}, tc.envVal, "env " + tc.envName},
				{"flag over env", []string{tc.env}, append([]string{"-c", path}, tc.flags...), tc.flagVal, "flag " + tc.flagName},
			}
			for _, layer := range layers {
				l, err := load(t, layer.environ, layer.args...)
				if err != nil {
					t.Fatalf("%s: %v", layer.name, err)
				}
				got := sourceOf(t, l, tc.key)
				if got.Value != layer.wantVal || got.From != layer.wantFrom {
					t.Errorf("%s: %s = %s (%s), want %s (%s)", layer.name, tc.key, got.Value, got.From, layer.wantVal, layer.wantFrom)
				}
				if want := layer.name == "default"; l.IsDefault(tc.key) != want {
					t.Errorf("%s: IsDefault(%s) = %v, want %v", layer.name, tc.key, !want, want)
				}
				// Setting one key must leave every other at its default.
				for _, s := range l.Sources() {
					if s.Key != tc.key && s.From != "default" {
						t.Errorf("%s: unrelated key %s comes from %q", layer.name, s.Key, s.From)
					}
				}
			}
		})
	}
}

func TestLayersMergePerKey(t *testing.T) {
	path := writeConfig(t, "data_dir: /var/lib/sluice\nlog_level: warn\npipelines:\n  - a.yaml\n  - b.yaml\n")
	l, err := load(t,
		[]string{"SLUICE_LOG_LEVEL=debug", "SLUICE_SHUTDOWN_TIMEOUT=1m30s"},
		"--config", path, "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir:            "/var/lib/sluice",
		Pipelines:          []string{"a.yaml", "b.yaml"},
		ShutdownTimeout:    90 * time.Second,
		LogLevel:           "debug",
		LogFormat:          "json",
		HTTPAddress:        "127.0.0.1:4195",
		KafkaBrokers:       []string{},
		DevKafka:           true,
		DevKafkaAddress:    "127.0.0.1:9092",
		DevKafkaPartitions: 3,
		StateMemory:        "standard",
	}
	if !reflect.DeepEqual(l.Config, want) {
		t.Errorf("Config = %+v, want %+v", l.Config, want)
	}
	wantSources := []Source{
		{"data_dir", "/var/lib/sluice", "file " + path},
		{"pipelines", `["a.yaml", "b.yaml"]`, "file " + path},
		{"shutdown_timeout", "1m30s", "env SLUICE_SHUTDOWN_TIMEOUT"},
		{"log_level", "debug", "env SLUICE_LOG_LEVEL"},
		{"log_format", "json", "flag --log-format"},
		{"http_address", "127.0.0.1:4195", "default"},
		{"advertise_address", `""`, "default"},
		{"http_token", `""`, "default"},
		{"kafka_brokers", "[]", "default"},
		{"dev_kafka", "true", "default"},
		{"dev_kafka_address", "127.0.0.1:9092", "default"},
		{"dev_kafka_partitions", "3", "default"},
		{"state_memory", "standard", "default"},
		{"once", "false", "default"},
	}
	if got := l.Sources(); !reflect.DeepEqual(got, wantSources) {
		t.Errorf("Sources() = %+v\nwant %+v", got, wantSources)
	}
}

func TestPipelineFlagReplacesList(t *testing.T) {
	path := writeConfig(t, "pipelines: [a.yaml, b.yaml]\n")
	l, err := load(t, []string{"SLUICE_PIPELINES=c.yaml"}, "-c", path, "--pipeline", "d,with,commas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A flag value is taken literally, commas and all.
	if want := []string{"d,with,commas.yaml"}; !reflect.DeepEqual(l.Config.Pipelines, want) {
		t.Errorf("Pipelines = %q, want %q", l.Config.Pipelines, want)
	}
}

func TestPipelinesEnvSplitsOnCommas(t *testing.T) {
	tests := []struct {
		env     string
		want    []string
		wantErr string
	}{
		{env: "one.yaml", want: []string{"one.yaml"}},
		{env: "a.yaml,pipelines/,builtin:demo", want: []string{"a.yaml", "pipelines/", "builtin:demo"}},
		{env: " a.yaml , b.yaml ", want: []string{"a.yaml", "b.yaml"}},
		{env: "", wantErr: "env SLUICE_PIPELINES: pipelines: no pipelines given"},
		{env: "a.yaml,,b.yaml", wantErr: "env SLUICE_PIPELINES: pipelines: entry 1 is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			l, err := load(t, []string{"SLUICE_PIPELINES=" + tc.env})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l.Config.Pipelines, tc.want) {
				t.Errorf("Pipelines = %q, want %q", l.Config.Pipelines, tc.want)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	// In file and want, $FILE stands for the config file's path.
	tests := []struct {
		name    string
		file    string // no config file if empty
		environ []string
		args    []string
		want    []string
	}{
		{
			name: "unknown key in file",
			file: "data_dir: /tmp/x\n\nshutdown_timout: 5s\n",
			want: []string{`file $FILE line 3: unknown key "shutdown_timout"`},
		},
		{
			name: "nested key in flat file",
			file: "log:\n  level: debug\n",
			want: []string{`file $FILE line 1: unknown key "log"`},
		},
		{
			name:    "unknown SLUICE variable",
			environ: []string{"SLUICE_LOG_LEVLE=debug"},
			want:    []string{"env SLUICE_LOG_LEVLE: unknown variable"},
		},
		{
			name: "bad duration in file",
			file: "log_level: info\nshutdown_timeout: soon\n",
			want: []string{`file $FILE line 2: shutdown_timeout: invalid duration "soon"`},
		},
		{
			name: "duration without unit in file",
			file: "shutdown_timeout: 30\n",
			want: []string{"file $FILE line 1: shutdown_timeout: duration 30 has no unit"},
		},
		{
			name:    "duration without unit in env",
			environ: []string{"SLUICE_SHUTDOWN_TIMEOUT=30"},
			want:    []string{`env SLUICE_SHUTDOWN_TIMEOUT: shutdown_timeout: invalid duration "30"`},
		},
		{
			name:    "negative duration in env",
			environ: []string{"SLUICE_SHUTDOWN_TIMEOUT=-5s"},
			want:    []string{"env SLUICE_SHUTDOWN_TIMEOUT: shutdown_timeout: must be greater than zero, got -5s"},
		},
		{
			name: "zero duration flag",
			args: []string{"--shutdown-timeout=0s"},
			want: []string{"flag --shutdown-timeout: shutdown_timeout: must be greater than zero"},
		},
		{
			name: "bad log level in file",
			file: "log_level: verbose\n",
			want: []string{`file $FILE line 1: log_level: "verbose" is not a log level; use one of debug, info, warn, error`},
		},
		{
			name:    "log level is case-sensitive",
			environ: []string{"SLUICE_LOG_LEVEL=INFO"},
			want:    []string{`env SLUICE_LOG_LEVEL: log_level: "INFO" is not a log level`},
		},
		{
			name: "bad log level flag",
			args: []string{"--log-level=trace"},
			want: []string{`flag --log-level: log_level: "trace" is not a log level`},
		},
		{
			name:    "bad log format",
			environ: []string{"SLUICE_LOG_FORMAT=xml"},
			want:    []string{`env SLUICE_LOG_FORMAT: log_format: "xml" is not a log format; use one of text, json`},
		},
		{
			name: "number where a string is wanted",
			file: "data_dir: 2024\n",
			want: []string{"file $FILE line 1: data_dir: want a string, got the number 2024; quote it"},
		},
		{
			name: "single string where a list is wanted",
			file: "pipelines: a.yaml\n",
			want: []string{`file $FILE line 1: pipelines: want a list, got the single string "a.yaml"`},
		},
		{
			name: "wrong type in list",
			file: "pipelines: [a.yaml, {b: 1}]\n",
			want: []string{"file $FILE line 1: pipelines[1]: want a string, got a mapping"},
		},
		{
			name: "empty pipeline list",
			file: "pipelines: []\n",
			want: []string{"file $FILE line 1: pipelines: no pipelines given"},
		},
		{
			name: "key without value",
			file: "data_dir:\n",
			want: []string{"file $FILE line 1: data_dir: no value given"},
		},
		{
			name: "empty data dir flag",
			args: []string{"--data-dir="},
			want: []string{"flag --data-dir: data_dir: must not be empty"},
		},
		{
			// A mistake in the file is a mistake even when a flag happens to
			// override it today.
			name: "bad value overridden by a higher layer",
			file: "shutdown_timeout: soon\n",
			args: []string{"--shutdown-timeout=5s"},
			want: []string{`file $FILE line 1: shutdown_timeout: invalid duration "soon"`},
		},
		{
			name: "top level is not a mapping",
			file: "- data_dir\n- log_level\n",
			want: []string{`parse config file "$FILE": line 1: want a mapping`},
		},
		{
			name: "yaml syntax error",
			file: "data_dir: [unclosed\n",
			want: []string{`parse config file "$FILE"`},
		},
		{
			name: "duplicate key",
			file: "log_level: info\nlog_level: debug\n",
			want: []string{`parse config file "$FILE"`, "already defined"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			path := ""
			if tc.file != "" {
				path = writeConfig(t, tc.file)
				args = append([]string{"-c", path}, args...)
			}
			l, err := load(t, tc.environ, args...)
			if err == nil {
				t.Fatalf("Load succeeded with %+v, want an error", l.Config)
			}
			t.Log(err) // shows the wording with go test -v
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "$FILE", path)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	path := writeConfig(t, "data_dir: /tmp/x\nlog_levle: debug\nlog_format: xml\n")
	_, err := load(t,
		[]string{"SLUICE_SHUTDOWN_TIMEOUT=forever", "SLUICE_DATADIR=/tmp/y"},
		"-c", path, "--log-level", "loud")
	if err == nil {
		t.Fatal("Load succeeded, want an error")
	}
	t.Log(err)
	want := []string{
		`file ` + path + ` line 2: unknown key "log_levle"`,
		`file ` + path + ` line 3: log_format: "xml" is not a log format`,
		`env SLUICE_DATADIR: unknown variable`,
		`env SLUICE_SHUTDOWN_TIMEOUT: shutdown_timeout: invalid duration "forever"`,
		`flag --log-level: log_level: "loud" is not a log level`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "invalid config: 5 problems:") {
		t.Errorf("error does not start with the problem count:\n%v", err)
	}
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) || len(multi.Unwrap()) != len(want) {
		t.Errorf("error does not unwrap to %d problems: %#v", len(want), err)
	}
}

func TestMissingConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	tests := []struct {
		name    string
		environ []string
		args    []string
		want    string
	}{
		{"named by flag", nil, []string{"--config", missing}, "(named by flag --config)"},
		{"named by env", []string{"SLUICE_CONFIG=" + missing}, nil, "(named by env SLUICE_CONFIG)"},
		{"flag wins over env", []string{"SLUICE_CONFIG=/elsewhere.yaml"}, []string{"-c", missing}, "(named by flag --config)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.environ, tc.args...)
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("err = %v, want one wrapping fs.ErrNotExist", err)
			}
			for _, w := range []string{`read config file "` + missing + `"`, tc.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestEmptyConfigFlagReadsNoFile(t *testing.T) {
	// An explicit empty --config is how to ignore a SLUICE_CONFIG in the
	// environment.
	l, err := load(t, []string{"SLUICE_CONFIG=/does/not/exist.yaml"}, "--config=")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Config, Default()) {
		t.Errorf("Config = %+v, want Default()", l.Config)
	}
}

func TestEmptyConfigFileSetsNothing(t *testing.T) {
	for _, content := range []string{"", "# only a comment\n", "---\n"} {
		l, err := load(t, nil, "-c", writeConfig(t, content))
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if !reflect.DeepEqual(l.Config, Default()) {
			t.Errorf("%q: Config = %+v, want Default()", content, l.Config)
		}
	}
}

func TestForeignFlagsIgnored(t *testing.T) {
	// The agent's main may share the flag set with flags of its own.
	flags := pflag.NewFlagSet("sluice", pflag.ContinueOnError)
	RegisterFlags(flags)
	verbose := flags.BoolP("verbose", "v", false, "")
	if err := flags.Parse([]string{"-v", "--log-level=warn"}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(flags, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !*verbose || l.Config.LogLevel != "warn" {
		t.Errorf("verbose = %v, log_level = %q; want true, warn", *verbose, l.Config.LogLevel)
	}
}

func TestPrint(t *testing.T) {
	l, err := load(t, []string{"SLUICE_PIPELINES=a.yaml,b.yaml", "SLUICE_DEV_KAFKA=false"}, "--log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := l.Print(&b); err != nil {
		t.Fatal(err)
	}
	want := `data_dir             = .sluice               (default)
pipelines            = ["a.yaml", "b.yaml"]  (env SLUICE_PIPELINES)
shutdown_timeout     = 10s                   (default)
log_level            = debug                 (flag --log-level)
log_format           = text                  (default)
http_address         = 127.0.0.1:4195        (default)
advertise_address    = ""                    (default)
http_token           = ""                    (default)
kafka_brokers        = []                    (default)
dev_kafka            = false                 (env SLUICE_DEV_KAFKA)
dev_kafka_address    = 127.0.0.1:9092        (default)
dev_kafka_partitions = 3                     (default)
state_memory         = standard              (default)
once                 = false                 (default)
`
	if b.String() != want {
		t.Errorf("Print wrote:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestHTTPSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string // a problem to report, or "" for none
	}{
		{"token from env", []string{"SLUICE_HTTP_TOKEN=0123456789abcdef"}, ""},
		{"short token", []string{"SLUICE_HTTP_TOKEN=short"}, "shorter than 16"},
		{"server off", []string{"SLUICE_HTTP_ADDRESS="}, ""},
		{"bad address", []string{"SLUICE_HTTP_ADDRESS=localhost"}, "not host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := load(t, tc.env)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range l.Sources() {
					if s.Key == "http_token" && strings.Contains(s.Value, "0123456789abcdef") {
						t.Errorf("Sources shows the token: %q", s.Value)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
