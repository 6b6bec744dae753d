// Command agent is the Sluice agent: it runs YAML pipelines whose ML steps
// are sandboxed Wasm plugins.
//
//	agent [run]            run the configured pipelines (the default)
//	agent lint [FILE...]   check pipeline files, or the config and every pipeline it names
//	agent config           print the effective configuration and where each value came from
//	agent version          print the version
//
// A running agent loads changed pipeline and plugin files on SIGHUP (and
// when they change, and on POST /admin/reload).
//
// With no config file, no flags and no SLUICE_* variables it runs the
// embedded demo pipeline over embedded sample events and exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	// A schedule's CRON_TZ zone resolves where the machine has no zoneinfo
	// database (slim and distroless images).
	_ "time/tzdata"

	"github.com/spf13/pflag"

	"github.com/sluice-dev/sluice/agent"
	"github.com/sluice-dev/sluice/agent/config"
	"github.com/sluice-dev/sluice/internal/gcpause"
	"github.com/sluice-dev/sluice/internal/memlimit"
	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// startHeapLimit bounds the heap while the collector is held off during
// the start. A run-once sales ETL's start (its builtins from the
// compilation cache) allocates about 50 MB and collects once or not at
// all; a module compiled afresh (a cache miss) allocates far more, which
// the collector then keeps near the limit: the default real-time job's
// cold start peaked at 245 MB RSS with 64 MiB, 363 MB with 256 MiB, and
// 321 MB without the hold (docs/bench/startup-s20.txt).
const startHeapLimit = 64 << 20

const usage = `usage: agent [run|lint|config|version] [flags] [FILE...]

  run       run the configured pipelines (default)
  lint      check the named pipeline files, or else the agent config and
            every pipeline it names; exits 1 if there is any problem
  config    print the effective configuration and where each value came from
  version   print the version
  state get NAMESPACE KEY          print one key's state (JSON)
  state list NAMESPACE [PREFIX [AFTER]]  list keys, 100 a page; "next" is the AFTER of the next page
  state stats                      print the state store's counters
  state backup FILE                write a full backup of the state store
  state restore FILE               load a backup (into a fresh data dir)
  plugin new NAME [--lang go|c]    scaffold a Wasm plugin with a fixture and a test
  plugin build [DIR]               build it reproducibly; prints its sha256
  plugin test X.wasm --input F     run it on fixtures (--config, --expect, --state)
  plugin inspect X.wasm            ABI, fields, imports and grants, sha256

flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	if len(args) > 0 && args[0] == "plugin" { // before the agent's flags: plugin commands have their own
		return pluginCmd(ctx, args[1:], stdout, stderr)
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	cmd, rest := "run", fs.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "run", "config":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "agent %s takes no arguments, got %q\n", cmd, rest)
			return 2
		}
	case "lint", "state":
	default:
		fmt.Fprintf(stderr, "agent: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}

	loaded, err := config.Load(fs, environ)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cfg := loaded.Config
	if cmd == "config" {
		if err := loaded.Print(stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	logger := newLogger(stderr, cfg)
	release := func() {}
	if cmd == "run" {
		if set := memlimit.Apply(environ, "/proc/self/cgroup", "/sys/fs/cgroup", debug.SetMemoryLimit); set.Limit > 0 {
			logger.Info("Go memory limit set from the cgroup's limit", "limit_bytes", set.Limit, "from", set.Why)
		}
		// Until the pipelines' plugins are loaded: the start is mostly
		// allocation into a small heap (internal/gcpause).
		release = gcpause.Hold(startHeapLimit)
	}
	a, err := agent.New(ctx, cfg, logger, agent.Options{
		ScratchState: cmd == "lint", Prefetch: cmd == "run", LazyState: cmd == "run",
		DefaultHTTPAddress: loaded.IsDefault("http_address"), Prefetched: release,
	})
	if err != nil {
		release()
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer a.Close(context.Background())

	if cmd == "state" {
		return stateCmd(a, rest, stdout, stderr)
	}

	if cmd == "lint" {
		sources := rest
		if len(sources) == 0 {
			sources = cfg.Pipelines
		}
		probs := a.Lint(ctx, sources)
		for _, p := range probs {
			fmt.Fprintln(stdout, p)
		}
		if len(probs) > 0 {
			fmt.Fprintf(stderr, "%d problem(s)\n", len(probs))
			return 1
		}
		return 0
	}

	stopHangup := reloadOnHangup(ctx, a, logger)
	defer stopHangup()
	if err := a.Run(ctx); err != nil {
		logger.Error("agent finished with failures", "error", err)
		return 1
	}
	return 0
}

// reloadOnHangup makes SIGHUP load changed pipeline and plugin files, the
// daemon convention (systemctl reload sends it), until stop is called.
func reloadOnHangup(ctx context.Context, a *agent.Agent, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-hup:
				logger.Info("SIGHUP: reloading changed pipeline and plugin files")
				a.Reload(ctx)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

func stateCmd(a *agent.Agent, args []string, stdout, stderr io.Writer) int {
	want := map[string][2]int{"get": {2, 2}, "list": {1, 3}, "stats": {0, 0}, "backup": {1, 1}, "restore": {1, 1}}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agent state: want one of get, list, stats, backup, restore")
		return 2
	}
	n, ok := want[args[0]]
	if !ok || len(args)-1 < n[0] || len(args)-1 > n[1] {
		fmt.Fprintf(stderr, "agent state: bad arguments %q (see agent --help)\n", args)
		return 2
	}
	var err error
	switch args[0] {
	case "get":
		err = a.StateGet(stdout, args[1], args[2])
	case "list":
		prefix, after := "", ""
		if len(args) > 2 {
			prefix = args[2]
		}
		if len(args) > 3 {
			after = args[3]
		}
		err = a.StateList(stdout, args[1], prefix, after, 100)
	case "stats":
		err = a.StateStats(stdout)
	case "backup":
		err = a.StateBackup(args[1])
	case "restore":
		err = a.StateRestore(args[1])
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// version reports the module version and VCS revision the binary was built
// from, with the versions of the engines a plugin author cares about.
func version() string {
	v, rev, deps := "(devel)", "", map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
		for _, d := range bi.Deps {
			deps[d.Path] = d.Version
		}
		v += rev + " " + bi.GoVersion
	}
	return fmt.Sprintf("sluice agent %s plugin-abi v%d benthos %s wazero %s", v, abi.Version,
		deps["github.com/redpanda-data/benthos/v4"], deps["github.com/tetratelabs/wazero"])
}
