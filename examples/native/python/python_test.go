//go:build !wasip1

package python_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/sluice-dev/sluice/agent/grpcplugin"
)

// python returns a Python 3 that can import grpcio and protobuf: Debian's
// (apt-get install python3-grpcio python3-protobuf) is looked for first,
// since a python3 earlier on PATH (pyenv, a virtualenv) may lack them.
func python(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import grpc, google.protobuf").Run() == nil {
			return py
		}
	}
	if os.Getenv("PYTHON_PLUGIN_REQUIRED") != "" {
		t.Fatal("no python3 with grpcio and protobuf: apt-get install python3-grpcio python3-protobuf")
	}
	t.Skip("no python3 with grpcio and protobuf (apt-get install python3-grpcio python3-protobuf); set PYTHON_PLUGIN_REQUIRED=1 to fail instead")
	return ""
}

// generate writes the protocol's Python messages with protoc, as README.md
// says, into a temporary directory for PYTHONPATH.
func generate(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("PYTHON_PLUGIN_REQUIRED") != "" {
			t.Fatal("no protoc: apt-get install protobuf-compiler")
		}
		t.Skip("no protoc (apt-get install protobuf-compiler)")
	}
	dir := t.TempDir()
	cmd := exec.Command("protoc", "-I", "../../../plugins/native/proto", "--python_out="+dir, "sluice/plugin/v1/plugin.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	return dir
}

func processor(t *testing.T, config string) (*grpcplugin.Processor, error) {
	t.Helper()
	py, gen := python(t), generate(t)
	script, err := filepath.Abs("plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("path: %s\nargs: [%s]\nenv: {PYTHONPATH: %s}\nstart_timeout: 60s\nconfig: %s\n", py, script, gen, config)
	conf, err := grpcplugin.ConfigSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := grpcplugin.NewProcessor(conf, service.MockResources(), nil)
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return p, err
}

// TestPythonPlugin runs plugin.py through the grpc_plugin processor: the
// handshake, health check, Init, Process and shutdown of a plugin that
// shares no code with the agent.
func TestPythonPlugin(t *testing.T) {
	p, err := processor(t, "{field: event_data.amount, above: 100}")
	if err != nil {
		t.Fatal(err)
	}
	in := []string{
		`{"user_id":1,"event_data":{"amount":250}}`,
		`{"user_id":2,"event_data":{"amount":20.5}}`,
		`{"user_id":3,"event_type":"click"}`,
		`{"user_id":4,"event_data":{"amount":"lots"}}`,
		`not json`,
	}
	batch := make(service.MessageBatch, len(in))
	for i, b := range in {
		batch[i] = service.NewMessage([]byte(b))
	}
	out, err := p.ProcessBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	wants := []struct{ body, err string }{
		{body: `{"user_id":1,"event_data":{"amount":250},"flagged":true}`},
		{body: `{"user_id":2,"event_data":{"amount":20.5},"flagged":false}`},
		{body: `{"user_id":3,"event_type":"click","flagged":false}`},
		{body: in[3], err: `field 'event_data.amount': want a number, got 'lots'`},
		{body: in[4], err: "Expecting value"},
	}
	if len(out) != 1 || len(out[0]) != len(wants) {
		t.Fatalf("got %v, want one batch of %d", out, len(wants))
	}
	for i, w := range wants {
		m := out[0][i]
		b, _ := m.AsBytes()
		var got string
		if err := m.GetError(); err != nil {
			got = err.Error()
		}
		if string(b) != w.body || (w.err == "") != (got == "") || !strings.Contains(got, w.err) {
			t.Errorf("message %d: %s (error %q), want %s (error %q)", i, b, got, w.body, w.err)
		}
	}
	pid := p.PID()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if !strings.Contains(string(st), ") Z") {
			t.Errorf("the plugin (pid %d) still runs after Close", pid)
		}
	}
}

func TestPythonPluginRefusesConfig(t *testing.T) {
	_, err := processor(t, "{feild: x}")
	if err == nil || !strings.Contains(err.Error(), "init: config: unknown keys: feild") {
		t.Fatalf("got %v, want the plugin's refusal", err)
	}
}
