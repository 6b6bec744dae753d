// Command echo is the grpc_plugin tests' plugin: what it does to a message
// is spelled in the message's body, so a test says what it wants in its
// input. Run with the argument "batch" it uses native.Plugin.Process
// instead of ProcessMessage, and can return a whole-batch error or a wrong
// number of results.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/plugins/native"
)

type config struct {
	Tag    string `json:"tag"`
	Refuse bool   `json:"refuse"`
}

func main() {
	var cfg config
	p := native.Plugin{
		Init: func(c native.Config) error {
			if err := c.Decode(&cfg); err != nil {
				return err
			}
			if cfg.Refuse {
				return errors.New("refused: the config says refuse")
			}
			return nil
		},
		ProcessMessage: func(_ context.Context, m native.Message) (native.Result, error) {
			r, err := handle(m)
			if err != nil {
				r = native.Fail(err.Error())
			}
			return r.WithMetadata("tag", cfg.Tag).WithMetadata("pid", strconv.Itoa(os.Getpid())).WithMetadata("seen_in", m.Metadata["in"]), nil
		},
	}
	if slices.Contains(os.Args[1:], "batch") {
		each := p.ProcessMessage
		p.ProcessMessage = nil
		p.Process = func(ctx context.Context, batch []native.Message) ([]native.Result, error) {
			out := make([]native.Result, 0, len(batch))
			for _, m := range batch {
				switch string(m.Value) {
				case "batch-error":
					return nil, errors.New("batch refused")
				case "batch-short":
					return out, nil
				}
				r, _ := each(ctx, m)
				out = append(out, r)
			}
			return out, nil
		}
	}
	native.Serve(p)
}

func handle(m native.Message) (native.Result, error) {
	cmd, arg, _ := strings.Cut(string(m.Value), ":")
	switch cmd {
	case "drop":
		return native.Drop(), nil
	case "fail":
		return native.Fail("told to fail"), nil
	case "error":
		return native.Keep(), errors.New("handler returned an error")
	case "upper":
		return native.Replace([]byte(strings.ToUpper(arg))), nil
	case "crash":
		os.Exit(3)
	case "crash-once":
		// Crash the first time only, so a retry of the batch succeeds.
		if _, err := os.Stat(arg); err != nil {
			_ = os.WriteFile(arg, nil, 0o644)
			os.Exit(3)
		}
	case "sleep":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return native.Keep(), err
		}
		time.Sleep(d)
	case "spin":
		d, err := time.ParseDuration(arg)
		if err != nil {
			return native.Keep(), err
		}
		for start := time.Now(); time.Since(start) < d; {
		}
	case "panic":
		panic("boom")
	case "big":
		n, _ := strconv.Atoi(arg)
		return native.Replace(make([]byte, n)), nil
	case "alloc":
		n, _ := strconv.Atoi(arg)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return native.Keep().WithMetadata("sum", strconv.Itoa(int(b[n-1]))), nil
	case "env":
		return native.Replace([]byte(os.Getenv(arg))), nil
	case "log":
		native.Logger().Warn(arg, "source", "json")
		fmt.Fprintln(os.Stderr, "plain "+arg)
	}
	return native.Keep(), nil
}
