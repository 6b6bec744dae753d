package deploycheck

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// probeScript runs inside the container as a oneshot service after
// sluice.service: it reports how systemd runs the agent, then restarts and
// stops it when the test says so (files in /results), and powers off.
// Every wait is bounded, so a test that fails midway still ends the
// container.
const probeScript = `#!/bin/bash
exec >/results/report 2>&1
waitfor() { for _ in $(seq 1 1500); do [ -e "$1" ] && return 0; sleep 0.2; done; return 1; }
for _ in $(seq 1 600); do
	systemctl is-active -q sluice.service && break
	systemctl is-failed -q sluice.service && break
	sleep 0.2
done
systemctl show sluice.service -p ActiveState -p MainPID
pid=$(systemctl show -p MainPID --value sluice.service)
grep -E '^(Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):' "/proc/$pid/status"
echo "state_owner=$(stat -c %u /var/lib/private/sluice)"
echo "state_link=$(readlink /var/lib/sluice)"
echo "cwd=$(readlink /proc/$pid/cwd)"
for d in / /etc /usr /var/lib/sluice /tmp; do
	echo "mount $d=$(findmnt --task "$pid" -n -o OPTIONS --target "$d" | tail -1 | cut -d, -f1)"
done
echo "tmp_private=$([ "$(stat -L -c %i /proc/$pid/root/tmp)" != "$(stat -c %i /tmp)" ] && echo yes || echo no)"
touch /results/reported
if waitfor /results/restart; then
	systemctl restart sluice.service
	touch /results/restarted
	waitfor /results/stop
fi
systemctl stop sluice.service
systemctl show sluice.service -p Result -p ExecMainStatus -p NRestarts
echo "--- journal"
journalctl -u sluice.service -o cat --no-pager | grep -v '"level":"INFO"'
systemctl poweroff
`

// TestEdgeUnitUnderSystemd boots this machine's systemd in a container
// (systemd-nspawn on the host's /usr, a throwaway root) with the repository's
// unit file installed unchanged as /etc/systemd/system/sluice.service, the
// example config and pipeline in /etc/sluice and the agent built from this
// checkout as /usr/local/bin/sluice-agent. The container shares the host's
// network, so the test reaches the sandboxed agent on loopback like a local
// application would, and checks it as a user would: the dynamic user, the
// seccomp filter, no capabilities, state in /var/lib/private/sluice kept
// across `systemctl restart`, and a clean `systemctl stop`. agent.env
// moves the agent's ports to free ones and points it at an in-process
// Kafka cluster; nothing else differs from a real install.
func TestEdgeUnitUnderSystemd(t *testing.T) {
	nspawn := needTool(t, "systemd-nspawn", "systemd-container")
	// Not made a failure by DEPLOY_CHECK_REQUIRED: a CI runner without
	// root cannot boot a container, and that says nothing of the unit.
	if os.Geteuid() != 0 {
		t.Skip("booting systemd in a container needs root")
	}
	bin := agentBinary(t)
	root := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"etc-sluice/pipelines", "systemd/multi-user.target.wants", "bin", "results"} {
		dirs[d] = filepath.Join(root, d)
		if err := os.MkdirAll(dirs[d], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	etc := filepath.Join(root, "etc-sluice")
	dirs["systemd"] = filepath.Join(root, "systemd")

	// /usr/local/bin/sluice-agent.
	if err := os.Link(bin, filepath.Join(dirs["bin"], "sluice-agent")); err != nil {
		copyFile(t, bin, filepath.Join(dirs["bin"], "sluice-agent"), 0o755)
	}
	// /etc/sluice as the install instructions lay it out; only the ingest
	// port is moved, in the pipeline.
	ingestAddr := freeAddr(t)
	var ingestURL string
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), edgePipeDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		text := readRepoFile(t, filepath.Join(edgePipeDir, en.Name()))
		hi := ingestSettings(t, text)
		ingestURL = "http://" + ingestAddr + str(hi, "path")
		writeFileMode(t, filepath.Join(etc, "pipelines", en.Name()), strings.ReplaceAll(text, str(hi, "address"), ingestAddr), 0o644)
	}
	writeFileMode(t, filepath.Join(etc, "agent.yaml"), readRepoFile(t, edgeConfig), 0o644)
	kafka := kafkaCluster(t)
	httpAddr := freeAddr(t)
	env, envText := filledEnvExample(t, "boot-")
	envText += fmt.Sprintf("SLUICE_HTTP_ADDRESS=%s\nSLUICE_KAFKA_BROKERS=%s\n", httpAddr, strings.Join(kafka.ListenAddrs(), ","))
	writeFileMode(t, filepath.Join(etc, "agent.env"), envText, 0o600)

	// /etc/systemd/system: the unit as it is in the repository, enabled,
	// and the probe.
	writeFileMode(t, filepath.Join(dirs["systemd"], "sluice.service"), readRepoFile(t, unitFile), 0o644)
	writeFileMode(t, filepath.Join(dirs["systemd"], "probe.service"),
		"[Unit]\nAfter=sluice.service\n[Service]\nType=oneshot\nExecStart=/bin/bash /results/probe.sh\n", 0o644)
	for _, u := range []string{"sluice.service", "probe.service"} {
		if err := os.Symlink("../"+u, filepath.Join(dirs["systemd/multi-user.target.wants"], u)); err != nil {
			t.Fatal(err)
		}
	}
	writeFileMode(t, filepath.Join(dirs["results"], "probe.sh"), probeScript, 0o755)

	// --register=no and --keep-unit: no systemd runs on the host to
	// register the machine with or to make a scope for it.
	argv := []string{nspawn, "--directory=/", "--volatile=yes", "--boot", "--console=pipe",
		"--register=no", "--keep-unit", "--machine=sluice-deploycheck",
		"--bind-ro=" + dirs["bin"] + ":/usr/local/bin",
		"--bind-ro=" + etc + ":/etc/sluice",
		"--bind-ro=" + dirs["systemd"] + ":/etc/systemd/system",
		"--bind=" + dirs["results"] + ":/results"}
	p := start(t, argv, os.Environ(), root)
	// On failure, shut the container down cleanly (nspawn turns SIGTERM
	// into a poweroff) before start's cleanup kills nspawn.
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
		}
	})
	results := func(name string) string { return filepath.Join(dirs["results"], name) }
	touch := func(name string) { writeFileMode(t, results(name), "", 0o644) }
	waitFile := func(name string, limit time.Duration) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			if _, err := os.Stat(results(name)); err == nil {
				return
			}
			select {
			case <-p.done:
				t.Fatalf("the container stopped before %s: %v\n%s", name, p.err, readMaybe(results("report")))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v\n%s", name, limit, readMaybe(results("report")))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	waitFile("reported", 4*time.Minute)
	d := &deployment{agent: p, httpBase: "http://" + httpAddr, httpToken: env["SLUICE_HTTP_TOKEN"],
		ingestURL: ingestURL, ingestTok: env["INGEST_TOKEN"], kafka: kafka, sourceHead: "edge:"}
	// Type=exec: systemd calls the unit active once the agent is
	// exec'd, before it listens; the probe reports then. A loaded
	// machine can take seconds more to start the pipelines.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		code, body := get(d.httpBase+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent under systemd: /readyz %d %s\n%s", code, body, readMaybe(results("report")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.check(t)

	touch("restart")
	waitFile("restarted", 2*time.Minute)
	p.waitReady(t, d.httpBase, 2*time.Minute)
	p.waitListening(t, ingestAddr, 2*time.Minute)
	code, body := post(ingestURL, d.ingestTok, `{"user_id":7,"event_type":"click","event_data":{"page":"home"},"timestamp":"2025-01-01T10:05:00Z"}`)
	if code != http.StatusOK || !strings.Contains(body, `"event_count":2`) {
		t.Errorf("after systemctl restart: %d %s, want event_count 2 (state kept in StateDirectory)", code, body)
	}
	touch("stop")
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the container did not power off")
	}

	report := readMaybe(results("report"))
	t.Logf("inside the container:\n%s", report)
	field := func(key string) string {
		for l := range strings.SplitSeq(report, "\n") {
			if k, v, ok := strings.Cut(l, "="); ok && k == key {
				return v
			}
			if k, v, ok := strings.Cut(l, ":"); ok && k == key {
				return strings.Join(strings.Fields(v), " ")
			}
		}
		return ""
	}
	uid := strings.Fields(field("Uid") + " ")
	switch {
	case len(uid) == 0 || uid[0] == "0":
		t.Errorf("the agent ran as uid %q, want a dynamic user", field("Uid"))
	case field("state_owner") != uid[0]:
		t.Errorf("/var/lib/private/sluice is owned by %s, the agent runs as %s", field("state_owner"), uid[0])
	}
	for k, want := range map[string]string{
		"ActiveState":           "active",
		"NoNewPrivs":            "1",
		"Seccomp":               "2",
		"CapEff":                "0000000000000000",
		"CapBnd":                "0000000000000000",
		"state_link":            "private/sluice",
		"cwd":                   "/var/lib/private/sluice",
		"mount /":               "ro",
		"mount /etc":            "ro",
		"mount /usr":            "ro",
		"mount /var/lib/sluice": "rw",
		"mount /tmp":            "rw",
		"tmp_private":           "yes",
		"Result":                "success",
		"ExecMainStatus":        "0",
		"NRestarts":             "0",
	} {
		if got := field(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func readMaybe(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func writeFileMode(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
