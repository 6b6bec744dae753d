package grpcplugin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/grpcplugin"
)

// plugins maps a test plugin's name to its executable: real programs built
// from testdata/plugins (and the example scorer) by the Go toolchain, once
// per run.
var plugins = map[string]string{}

// envHelperAgent makes the test binary act as a minimal agent (see
// runHelperAgent), for the test that SIGKILLs an agent.
const envHelperAgent = "GRPCPLUGIN_TEST_HELPER_AGENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(envHelperAgent); path != "" {
		runHelperAgent(path)
		return
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-grpcplugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	entries, err := os.ReadDir("testdata/plugins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// One go build for all: the packages share their compilation.
	args := []string{"build", "-o", dir + "/"}
	for _, e := range entries {
		args = append(args, "./testdata/plugins/"+e.Name())
		plugins[e.Name()] = filepath.Join(dir, e.Name())
	}
	args = append(args, "../../examples/native/scorer")
	plugins["scorer"] = filepath.Join(dir, "scorer")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test plugins:", err)
		return 1
	}
	return m.Run()
}

// runHelperAgent starts a grpc_plugin processor on the plugin at path,
// prints the plugin's pid and waits to be killed: an agent that dies
// without closing its processor.
func runHelperAgent(path string) {
	conf, err := grpcplugin.ConfigSpec().ParseYAML("path: "+path, nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	p, err := grpcplugin.NewProcessor(conf, service.MockResources(), nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage([]byte("x"))}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	select {}
}
