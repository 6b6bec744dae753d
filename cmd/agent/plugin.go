package main

// `agent plugin`: the plugin author's commands. The work is done by
// internal/plugintool; this file parses flags and prints.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sluice-dev/sluice/internal/plugintool"
)

const pluginUsage = `usage: agent plugin COMMAND [flags]

  new NAME [--lang go|c] [--dir DIR]
        write a ready plugin folder: handler, fixture, expected output, test, README
  build [DIR] [-o OUT] [--lang go|c]
        build DIR's plugin (default: the working directory) into DIR/NAME.wasm,
        reproducibly: the same source and toolchain give the same bytes
  test PLUGIN --input EVENTS.jsonl [--config STEP.yaml] [--expect EXPECTED.jsonl]
       [--state STATE.jsonl] [--key FIELD] [--namespace NS] [--batch N] [--json]
        run PLUGIN (a .wasm file or builtin:NAME) over EVENTS through the agent's
        wasm processor and print what happened to each message; with --expect,
        compare instead and exit 1 on any difference
  inspect PLUGIN [--config STEP.yaml] [--json]
        print the ABI version, mode, declared fields, exports, imports, the
        grants they call for, size and sha256

STEP.yaml is the wasm processor's block as in a pipeline (config, key, state,
clock, env, mounts, ...); its path or builtin is replaced by PLUGIN.
`

// pluginCmd runs `agent plugin ARGS...` and returns the exit code: 0 done
// (or every message as expected), 1 failed (or a difference), 2 bad usage.
func pluginCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, pluginUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"new": pluginNew, "build": pluginBuild, "test": pluginTest, "inspect": pluginInspect,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "agent plugin: unknown command %q\n\n%s", args[0], pluginUsage)
		return 2
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// pluginFlags returns a flag set for `agent plugin NAME` that prints the
// plugin usage on -h.
func pluginFlags(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("agent plugin "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, pluginUsage)
		fmt.Fprintf(stderr, "\nflags of %s:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and checks the number of positional arguments; code is
// the exit code to return when ok is false.
func parse(fs *pflag.FlagSet, args []string, minArgs, maxArgs int, stderr io.Writer) (rest []string, code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	rest = fs.Args()
	if len(rest) < minArgs || len(rest) > maxArgs {
		fmt.Fprintf(stderr, "%s: want %d to %d arguments, got %q (see agent plugin --help)\n", fs.Name(), minArgs, maxArgs, rest)
		return nil, 2, false
	}
	return rest, 0, true
}

func pluginNew(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pluginFlags("new", stderr)
	lang := fs.String("lang", plugintool.LangGo, "language: go or c")
	dir := fs.String("dir", "", "folder to create (default: NAME)")
	rest, code, ok := parse(fs, args, 1, 1, stderr)
	if !ok {
		return code
	}
	o := plugintool.NewOptions{Name: rest[0], Lang: *lang, Dir: *dir}
	written, err := plugintool.New(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin new: %v\n", err)
		return 1
	}
	if o.Dir == "" {
		o.Dir = o.Name
	}
	fmt.Fprintf(stdout, "created %s plugin %s in %s:\n", *lang, o.Name, o.Dir)
	for _, f := range written {
		fmt.Fprintf(stdout, "  %s\n", f)
	}
	wasmFile := filepath.Join(o.Dir, o.Name+".wasm")
	fmt.Fprintf(stdout, "next:\n  agent plugin build %s\n  agent plugin test %s --input %s --expect %s\n",
		o.Dir, wasmFile, filepath.Join(o.Dir, "events.jsonl"), filepath.Join(o.Dir, "expected.jsonl"))
	return 0
}

func pluginBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pluginFlags("build", stderr)
	out := fs.StringP("output", "o", "", "the .wasm file to write (default: DIR/NAME.wasm, NAME being DIR's name)")
	lang := fs.String("lang", "", "language: go or c (default: c if DIR has .c files, else go)")
	rest, code, ok := parse(fs, args, 0, 1, stderr)
	if !ok {
		return code
	}
	dir := "."
	if len(rest) == 1 {
		dir = rest[0]
	}
	if *out == "" {
		abs, err := plugintool.DefaultOutput(dir)
		if err != nil {
			fmt.Fprintf(stderr, "agent plugin build: %v\n", err)
			return 1
		}
		*out = filepath.Join(dir, filepath.Base(abs))
	}
	if err := plugintool.Build(ctx, dir, *out, *lang, stderr); err != nil {
		fmt.Fprintf(stderr, "agent plugin build: %v\n", err)
		return 1
	}
	bin, err := os.ReadFile(*out)
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin build: %v\n", err)
		return 1
	}
	sum := sha256.Sum256(bin)
	fmt.Fprintf(stdout, "built %s: %d bytes, sha256 %s\n", *out, len(bin), hex.EncodeToString(sum[:]))
	return 0
}

func pluginTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pluginFlags("test", stderr)
	cfg := fs.String("config", "", "the wasm processor's block as YAML (config, key, state, clock, ...)")
	input := fs.String("input", "", "input messages, one body per line (required)")
	expect := fs.String("expect", "", "expected results, one JSON record per input message (as --json prints)")
	stateFile := fs.String("state", "", `state to seed, one JSON object per line: {"key":K,"value":JSON} or {"key":K,"value_base64":B64}, optionally with "namespace"`)
	key := fs.String("key", "", "the field holding each message's state key (overrides the config's key)")
	ns := fs.String("namespace", "", "the step's state namespace (overrides the config's state.namespace; default plugin_test)")
	batch := fs.Int("batch", 0, "messages per batch (default: the whole input in one)")
	asJSON := fs.Bool("json", false, "print one JSON record per message, the format --expect reads")
	logLevel := fs.String("log-level", "info", "the least level of the plugin's log lines printed to stderr")
	rest, code, ok := parse(fs, args, 1, 1, stderr)
	if !ok {
		return code
	}
	if *input == "" {
		fmt.Fprintln(stderr, "agent plugin test: --input is required")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "agent plugin test: --log-level: %v\n", err)
		return 2
	}
	o := plugintool.RunOptions{
		Step:   plugintool.StepConfig{Plugin: rest[0], Key: *key, Namespace: *ns},
		Batch:  *batch,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	var err error
	read := func(path string, dst *[]byte) {
		if path != "" && err == nil {
			*dst, err = os.ReadFile(path)
		}
	}
	var expected []byte
	read(*cfg, &o.Step.YAML)
	read(*input, &o.Input)
	read(*stateFile, &o.State)
	read(*expect, &expected)
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin test: %v\n", err)
		return 1
	}
	outcome, err := plugintool.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin test: %v\n", err)
		return 1
	}
	if *expect != "" {
		diff, err := plugintool.Compare(outcome.Records, expected, *expect)
		if err != nil {
			fmt.Fprintf(stderr, "agent plugin test: %v\n", err)
			return 1
		}
		if diff != "" {
			fmt.Fprintf(stdout, "FAIL %s\n%s", rest[0], diff)
			return 1
		}
		fmt.Fprintf(stdout, "ok   %s: %d messages as in %s\n", rest[0], len(outcome.Records), *expect)
		return 0
	}
	if *asJSON {
		err = plugintool.WriteRecords(stdout, outcome.Records)
	} else {
		err = plugintool.WriteHuman(stdout, outcome)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin test: %v\n", err)
		return 1
	}
	return 0
}

func pluginInspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pluginFlags("inspect", stderr)
	cfg := fs.String("config", "", "the wasm processor's block as YAML, for a plugin whose fields depend on its config")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	rest, code, ok := parse(fs, args, 1, 1, stderr)
	if !ok {
		return code
	}
	c := plugintool.StepConfig{Plugin: rest[0]}
	if *cfg != "" {
		var err error
		if c.YAML, err = os.ReadFile(*cfg); err != nil {
			fmt.Fprintf(stderr, "agent plugin inspect: %v\n", err)
			return 1
		}
	}
	rep, err := plugintool.Inspect(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin inspect: %v\n", err)
		return 1
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteHuman(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent plugin inspect: %v\n", err)
		return 1
	}
	if rep.LoadError != "" {
		// The report is printed either way; the exit code says the agent
		// would refuse the module.
		return 1
	}
	return 0
}
