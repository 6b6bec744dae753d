package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestArm64RunsTheSampleJob runs the linux/arm64 build of the agent under
// Debian's qemu-user-static (user-mode emulation: the agent's own code and
// wazero's arm64 compiler run as on an arm64 edge box) over the embedded
// real-time sample, and compares its output with the amd64 build's, byte
// for byte. CI installs qemu-user-static and sets ARM64_RUN_REQUIRED, so
// there a missing emulator fails rather than skips.
func TestArm64RunsTheSampleJob(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if os.Getenv("ARM64_RUN_REQUIRED") != "" {
			t.Fatal("qemu-aarch64-static not found (apt-get install qemu-user-static) and ARM64_RUN_REQUIRED is set")
		}
		t.Skip("qemu-aarch64-static not found: apt-get install qemu-user-static")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agent-arm64")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compile for linux/arm64: %v\n%s", err, out)
	}
	run := func(name string, argv ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 3*runTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "run", "--pipeline", "builtin:realtime_sample")...)
		cmd.Env = append(baseEnv(), "SLUICE_DATA_DIR="+filepath.Join(dir, name), "SLUICE_HTTP_ADDRESS=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", name, err, stderr.String())
		}
		return stdout.Bytes()
	}
	arm := run("arm64", qemu, bin)
	amd := run("amd64", agentBin)
	if len(bytes.TrimSpace(amd)) == 0 {
		t.Fatal("the amd64 agent wrote nothing")
	}
	if !bytes.Equal(arm, amd) {
		t.Errorf("arm64 output differs from amd64\narm64:\n%s\namd64:\n%s", arm, amd)
	}
}
