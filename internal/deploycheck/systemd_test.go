package deploycheck

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	unitFile     = "deploy/systemd/sluice.service"
	edgeConfig   = "deploy/systemd/agent.yaml"
	edgeEnv      = "deploy/systemd/agent.env.example"
	edgePipeDir  = "deploy/systemd/pipelines"
	installedBin = "/usr/local/bin/sluice-agent"
	installedEtc = "/etc/sluice"
)

// directive is one Key=Value line of a unit file.
type directive struct {
	section, key, value string
}

// parseUnit reads a unit file's directives in order; comments and blank
// lines are skipped, continuation lines joined.
func parseUnit(t *testing.T, text string) []directive {
	t.Helper()
	var out []directive
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	pending := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line, pending = pending+" "+line, ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not Key=Value: %q", unitFile, line)
		}
		out = append(out, directive{section, strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

// values are all the values of a [Service] key, in order.
func values(ds []directive, key string) []string {
	var out []string
	for _, d := range ds {
		if d.section == "Service" && d.key == key {
			out = append(out, d.value)
		}
	}
	return out
}

func value(ds []directive, key string) string {
	v := values(ds, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// unitForVerify is the unit with the installed binary's path replaced by the
// freshly built one, since systemd-analyze verify checks that ExecStart
// names an executable, written to a temporary directory.
func unitForVerify(t *testing.T) string {
	t.Helper()
	text := strings.ReplaceAll(readRepoFile(t, unitFile), installedBin, agentBinary(t))
	p := filepath.Join(t.TempDir(), "sluice.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	unit := unitForVerify(t)
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		// Unknown keys and unparsable values are only warnings, exit 0:
		// any output at all is a failure here.
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The exposure score, 0 (locked down) to 10 (unsandboxed), must stay
	// at 2.0 or below; the threshold is in tenths.
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unit).CombinedOutput()
	score := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || score == nil {
		t.Errorf("systemd-analyze security --threshold=20 (exposure at most 2.0): %v\n%s", err, out)
	} else {
		t.Logf("systemd-analyze security: exposure %s", score[1])
	}
}

func TestSystemdUnitHardening(t *testing.T) {
	ds := parseUnit(t, readRepoFile(t, unitFile))
	want := map[string]string{
		"DynamicUser":             "yes",
		"StateDirectory":          "sluice",
		"ConfigurationDirectory":  "sluice",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallArchitectures": "native",
		"Restart":                 "on-failure",
		"KillMode":                "mixed",
		"ExecStart":               installedBin + " --config " + installedEtc + "/agent.yaml",
		"ExecStartPre":            installedBin + " lint --config " + installedEtc + "/agent.yaml",
		"WorkingDirectory":        "%S/sluice",
	}
	for k, v := range want {
		if got := values(ds, k); len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want exactly one %s=%s", k, got, k, v)
		}
	}
	if f := values(ds, "SystemCallFilter"); len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%q, want it to start from @system-service", f)
	}
	if !slices.Contains(values(ds, "Environment"), "SLUICE_DATA_DIR=%S/sluice") {
		t.Errorf("no Environment=SLUICE_DATA_DIR=%%S/sluice: the agent would write its state elsewhere than StateDirectory")
	}
	if n, err := strconv.Atoi(value(ds, "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%q, want a number of at least 4096", value(ds, "LimitNOFILE"))
	}
	if d, err := time.ParseDuration(value(ds, "RestartSec")); err != nil || d <= 0 {
		t.Errorf("RestartSec=%q, want a positive duration", value(ds, "RestartSec"))
	}
	// The unit may never kill the agent while it drains: TimeoutStopSec
	// covers shutdown_timeout plus the two HTTP servers' 5s each.
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(readRepoFile(t, edgeConfig)), &cfg); err != nil {
		t.Fatal(err)
	}
	st, err := time.ParseDuration(str(cfg, "shutdown_timeout"))
	if err != nil {
		t.Fatalf("%s shutdown_timeout: %v", edgeConfig, err)
	}
	stop, err := time.ParseDuration(value(ds, "TimeoutStopSec"))
	if err != nil || stop < st+10*time.Second {
		t.Errorf("TimeoutStopSec=%q: want at least shutdown_timeout (%v) + 10s", value(ds, "TimeoutStopSec"), st)
	}
	if _, ok := cfg["data_dir"]; ok {
		t.Errorf("%s sets data_dir: the unit's SLUICE_DATA_DIR overrides it, so it only misleads", edgeConfig)
	}
	// MemoryDenyWriteExecute stays off, with the reason written down.
	if v := value(ds, "MemoryDenyWriteExecute"); v != "" && v != "no" && v != "false" {
		t.Errorf("MemoryDenyWriteExecute=%s: wazero's compiler cannot run under it (see TestMemoryDenyWriteExecuteBreaksWazero)", v)
	}
	if !strings.Contains(readRepoFile(t, unitFile), "# MemoryDenyWriteExecute=yes is deliberately NOT set") {
		t.Errorf("the unit no longer says why MemoryDenyWriteExecute is off")
	}
	// The container image installs the binary where the unit expects it.
	if !strings.Contains(readRepoFile(t, "deploy/container/Dockerfile"), `ENTRYPOINT ["`+installedBin+`"]`) {
		t.Errorf("deploy/container/Dockerfile's ENTRYPOINT is not %s", installedBin)
	}
}

// edgeInstall lays out an edge host under root as the unit's install
// comment does, with root/etc standing for /etc and root/var/lib for /var/lib
// (%S), and returns the agent's command lines, environment and working
// directory as systemd would run them.
type edgeInstall struct {
	pre, run    []string
	env         map[string]string
	dir         string
	ingest      string // URL
	httpAddr    string
	stopTimeout time.Duration
}

func installEdge(t *testing.T, root string) edgeInstall {
	t.Helper()
	bin := agentBinary(t)
	etc := filepath.Join(root, "etc/sluice")
	stateRoot := filepath.Join(root, "var/lib")
	expand := func(s string) string {
		s = strings.ReplaceAll(s, "%S", stateRoot)
		s = strings.ReplaceAll(s, "%E", filepath.Join(root, "etc"))
		s = strings.ReplaceAll(s, installedBin, bin)
		s = strings.ReplaceAll(s, installedEtc, etc)
		if strings.Contains(s, "%") {
			t.Fatalf("specifier in %q not handled by this test", s)
		}
		return s
	}
	ds := parseUnit(t, readRepoFile(t, unitFile))
	var e edgeInstall
	e.env = map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": filepath.Join(root, "tmp")}
	for _, dir := range []string{filepath.Join(stateRoot, value(ds, "StateDirectory")), filepath.Join(root, "etc", value(ds, "ConfigurationDirectory")), e.env["TMPDIR"]} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.env["STATE_DIRECTORY"] = filepath.Join(stateRoot, value(ds, "StateDirectory"))
	e.env["CONFIGURATION_DIRECTORY"] = filepath.Join(root, "etc", value(ds, "ConfigurationDirectory"))

	// The pipelines, with the ingest moved to a free port.
	ingestAddr := freeAddr(t)
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), edgePipeDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		text := readRepoFile(t, filepath.Join(edgePipeDir, en.Name()))
		if hi := ingestSettings(t, text); hi != nil {
			e.ingest = "http://" + ingestAddr + str(hi, "path")
			if ip := strings.Split(str(hi, "address"), ":")[0]; ip != "127.0.0.1" && ip != "localhost" {
				t.Errorf("%s: http_ingest on %q, want loopback on an edge host", en.Name(), str(hi, "address"))
			}
			if str(hi, "token") != "${INGEST_TOKEN}" {
				t.Errorf("%s: http_ingest token %q, want ${INGEST_TOKEN} from agent.env", en.Name(), str(hi, "token"))
			}
			text = strings.ReplaceAll(text, str(hi, "address"), ingestAddr)
		}
		writeFile(t, filepath.Join(etc, "pipelines", en.Name()), expand(text))
	}
	if e.ingest == "" {
		t.Fatalf("no pipeline in %s has an http_ingest input", edgePipeDir)
	}
	writeFile(t, filepath.Join(etc, "agent.yaml"), expand(readRepoFile(t, edgeConfig)))

	// agent.env from the example, its secrets set as the install
	// instructions say.
	_, text := filledEnvExample(t, "test-")
	writeFile(t, filepath.Join(etc, "agent.env"), text)

	for _, f := range values(ds, "EnvironmentFile") {
		for k, v := range readEnvFile(t, expand(strings.TrimPrefix(f, "-"))) {
			e.env[k] = v
		}
	}
	for _, line := range values(ds, "Environment") {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			e.env[k] = expand(v)
		}
	}
	for _, k := range []string{"INGEST_TOKEN", "SLUICE_HTTP_TOKEN"} {
		if e.env[k] == "" {
			t.Fatalf("%s is not set from %s", k, edgeEnv)
		}
	}
	e.httpAddr = freeAddr(t)
	e.env["SLUICE_HTTP_ADDRESS"] = e.httpAddr
	e.dir = expand(value(ds, "WorkingDirectory"))
	e.pre = strings.Fields(expand(value(ds, "ExecStartPre")))
	e.run = strings.Fields(expand(value(ds, "ExecStart")))
	if e.stopTimeout, err = time.ParseDuration(value(ds, "TimeoutStopSec")); err != nil {
		t.Fatal(err)
	}
	return e
}

// exampleVar is a variable agent.env.example leaves for the installer to
// set: commented out, with no value.
var exampleVar = regexp.MustCompile(`^#([A-Z][A-Z0-9_]*)=$`)

// filledEnvExample is agent.env.example with each variable it leaves to
// the installer set to a token made from prefix, and those values.
func filledEnvExample(t *testing.T, prefix string) (map[string]string, string) {
	t.Helper()
	vars := map[string]string{}
	var b strings.Builder
	for l := range strings.SplitSeq(readRepoFile(t, edgeEnv), "\n") {
		if m := exampleVar.FindStringSubmatch(l); m != nil {
			vars[m[1]] = prefix + strings.ToLower(m[1]) + "-0123456789abcdef"
			l = m[1] + "=" + vars[m[1]]
		}
		b.WriteString(l + "\n")
	}
	for _, k := range []string{"INGEST_TOKEN", "SLUICE_HTTP_TOKEN"} {
		if vars[k] == "" {
			t.Fatalf("%s does not leave %s for the installer to set (as #%s=)", edgeEnv, k, k)
		}
	}
	return vars, b.String()
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readEnvFile reads a systemd EnvironmentFile: KEY=VALUE lines, comments.
func readEnvFile(t *testing.T, p string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("EnvironmentFile: %v", err)
	}
	out := map[string]string{}
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("EnvironmentFile %s: bad line %q", p, l)
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return out
}

func envList(env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// TestEdgeAgentRuns runs the unit's ExecStartPre and ExecStart with the
// unit's environment, EnvironmentFile and working directory over the
// example config and pipelines installed under a temporary root, the
// agent's HTTP server and ingest on free loopback ports and an in-process
// Kafka cluster: what `systemctl start sluice` runs, without the sandbox
// (TestEdgeSyscallsWithinFilter covers that part).
func TestEdgeAgentRuns(t *testing.T) {
	e := installEdge(t, t.TempDir())
	kafka := kafkaCluster(t)
	e.env["SLUICE_KAFKA_BROKERS"] = strings.Join(kafka.ListenAddrs(), ",")

	// ExecStartPre: the lint passes, and refuses a missing INGEST_TOKEN.
	lint := func(env map[string]string) (string, error) {
		cmd := exec.Command(e.pre[0], e.pre[1:]...)
		cmd.Env, cmd.Dir = envList(env), e.dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := lint(e.env); err != nil {
		t.Fatalf("ExecStartPre %q: %v\n%s", e.pre, err, out)
	}
	noToken := maps.Clone(e.env)
	delete(noToken, "INGEST_TOKEN")
	if out, err := lint(noToken); err == nil || !strings.Contains(out, "INGEST_TOKEN") {
		t.Errorf("ExecStartPre without INGEST_TOKEN: %v\n%s\nwant a failure naming INGEST_TOKEN", err, out)
	}

	launch := func() *proc { return start(t, e.run, envList(e.env), e.dir) }
	p := launch()
	p.waitReady(t, "http://"+e.httpAddr, 2*time.Minute)
	d := &deployment{agent: p, httpBase: "http://" + e.httpAddr, httpToken: e.env["SLUICE_HTTP_TOKEN"],
		ingestURL: e.ingest, ingestTok: e.env["INGEST_TOKEN"], kafka: kafka, sourceHead: "edge:", stopLimit: e.stopTimeout}
	d.exercise(t)
	if _, err := os.Stat(filepath.Join(e.env["SLUICE_DATA_DIR"], "state")); err != nil {
		t.Errorf("no state under SLUICE_DATA_DIR (StateDirectory): %v", err)
	}
	restartKeepsState(t, launch, d.httpBase, e.ingest, d.ingestTok, 2*time.Minute, e.stopTimeout)
}

// mdweExec is this test binary re-run by TestMemoryDenyWriteExecuteBreaksWazero:
// it turns on the kernel's memory-deny-write-execute for itself, which
// execve keeps, and execs the agent. prctl(PR_SET_MDWE) (Linux 6.3+)
// refuses what systemd's MemoryDenyWriteExecute= refuses, a mapping that is
// writable and executable or becomes executable; systemd 254+ uses this
// prctl where the kernel has it, and a seccomp filter to the same effect
// otherwise (systemd 252 here, checked by hand under systemd-nspawn: the
// same panic, "operation not permitted").
func mdweExec() {
	const prSetMDWE, mdweRefuseExecGain = 65, 1
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, mdweRefuseExecGain, 0, 0, 0, 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_MDWE): %v\n", errno)
		os.Exit(3)
	}
	argv := os.Args[1:]
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, mdweEnv+"=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(os.Getenv(mdweEnv), append([]string{os.Getenv(mdweEnv)}, argv...), env)
	fmt.Fprintf(os.Stderr, "exec: %v\n", err)
	os.Exit(4)
}

// TestMemoryDenyWriteExecuteBreaksWazero is why the unit leaves
// MemoryDenyWriteExecute off: the agent runs a Wasm pipeline, then runs it
// again under memory-deny-write-execute, where wazero's compiler cannot make
// its code executable. If that ever works, the unit should turn it on.
func TestMemoryDenyWriteExecuteBreaksWazero(t *testing.T) {
	bin := agentBinary(t)
	args := []string{"--pipeline", "builtin:demo"}
	run := func(mdwe bool) (string, error) {
		dir := t.TempDir()
		var cmd *exec.Cmd
		if mdwe {
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(self, append([]string{"--"}, args...)...)
			cmd.Env = append(os.Environ(), mdweEnv+"="+bin)
		} else {
			cmd = exec.Command(bin, args...)
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, "SLUICE_DATA_DIR="+filepath.Join(dir, "data"), "SLUICE_HTTP_ADDRESS=")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(false); err != nil {
		t.Fatalf("the demo pipeline fails even without memory-deny-write-execute: %v\n%s", err, out)
	}
	out, err := run(true)
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Skipf("this kernel has no PR_SET_MDWE (Linux 6.3+): %s", out)
	}
	if err == nil {
		t.Fatalf("the agent ran a Wasm pipeline under memory-deny-write-execute: MemoryDenyWriteExecute=yes can now go into %s (update its comment and this test)", unitFile)
	}
	if !strings.Contains(out, "mmapExecutable") {
		t.Errorf("under memory-deny-write-execute the agent failed (%v), but not in wazero's mmapExecutable as expected:\n%s", err, out)
	}
	t.Logf("under memory-deny-write-execute: %v, %s", err, firstLine(out, "panic"))
}

func firstLine(s, containing string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, containing) {
			return l
		}
	}
	return ""
}

// syscallGroups is systemd's table of system call groups, each expanded
// to the calls it holds, nested groups included.
func syscallGroups(t *testing.T, analyze string) map[string]map[string]bool {
	t.Helper()
	out, err := exec.Command(analyze, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	raw := map[string][]string{}
	cur := ""
	for l := range strings.SplitSeq(string(out), "\n") {
		s := strings.TrimSpace(l)
		switch {
		case s == "" || strings.HasPrefix(s, "#"):
		case !strings.HasPrefix(l, " ") && strings.HasPrefix(s, "@"):
			cur = s
			raw[cur] = nil
		case cur != "":
			raw[cur] = append(raw[cur], s)
		}
	}
	var expand func(g string, seen map[string]bool) map[string]bool
	expand = func(g string, seen map[string]bool) map[string]bool {
		set := map[string]bool{}
		if seen[g] {
			return set
		}
		seen[g] = true
		for _, x := range raw[g] {
			if strings.HasPrefix(x, "@") {
				maps.Copy(set, expand(x, seen))
			} else {
				set[x] = true
			}
		}
		return set
	}
	groups := map[string]map[string]bool{}
	for g := range raw {
		groups[g] = expand(g, map[string]bool{})
	}
	if len(groups["@system-service"]) < 100 {
		t.Fatalf("could not read systemd's @system-service group (%d calls)", len(groups["@system-service"]))
	}
	return groups
}

// allowedSyscalls is what the unit's SystemCallFilter= lines let through:
// the first line is an allow list, later ones add to it, ~ lines take away.
func allowedSyscalls(t *testing.T, ds []directive, groups map[string]map[string]bool) map[string]bool {
	t.Helper()
	allowed := map[string]bool{}
	for _, line := range values(ds, "SystemCallFilter") {
		deny := strings.HasPrefix(line, "~")
		for _, item := range strings.Fields(strings.TrimPrefix(line, "~")) {
			set := map[string]bool{item: true}
			if strings.HasPrefix(item, "@") {
				if set = groups[item]; set == nil {
					t.Fatalf("SystemCallFilter: unknown group %s", item)
				}
			}
			for s := range set {
				allowed[s] = !deny
			}
		}
	}
	return allowed
}

var (
	straceCall   = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)[( ]`)
	straceFamily = regexp.MustCompile(`\bsocket(?:pair)?\((AF_[A-Z0-9]+)`)
)

// TestEdgeSyscallsWithinFilter runs the edge agent's lint and a full
// exercise under strace and checks every system call it makes is one the
// unit's SystemCallFilter= allows, and every socket it opens of a family
// RestrictAddressFamilies= allows: the sandbox would not break it. (This
// machine has no systemd running to start the unit for real.)
func TestEdgeSyscallsWithinFilter(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	strace := needTool(t, "strace", "strace")
	ds := parseUnit(t, readRepoFile(t, unitFile))
	allowed := allowedSyscalls(t, ds, syscallGroups(t, analyze))
	families := strings.Fields(value(ds, "RestrictAddressFamilies"))

	root := t.TempDir()
	e := installEdge(t, root)
	kafka := kafkaCluster(t)
	e.env["SLUICE_KAFKA_BROKERS"] = strings.Join(kafka.ListenAddrs(), ",")
	traced := func(name string, argv []string) ([]string, string) {
		log := filepath.Join(root, name+".strace")
		return append([]string{strace, "-f", "-qq", "-o", log}, argv...), log
	}

	argv, lintLog := traced("lint", e.pre)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = envList(e.env), e.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre under strace: %v\n%s", err, out)
	}

	argv, runLog := traced("run", e.run)
	p := start(t, argv, envList(e.env), e.dir)
	p.pid = tracee(t, p.cmd.Process.Pid, e.run[0])
	p.waitReady(t, "http://"+e.httpAddr, 3*time.Minute)
	d := &deployment{agent: p, httpBase: "http://" + e.httpAddr, httpToken: e.env["SLUICE_HTTP_TOKEN"],
		ingestURL: e.ingest, ingestTok: e.env["INGEST_TOKEN"], kafka: kafka, sourceHead: "edge:", stopLimit: e.stopTimeout}
	d.exercise(t)

	used, fams := map[string]int{}, map[string]int{}
	for _, log := range []string{lintLog, runLog} {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			if m := straceCall.FindStringSubmatch(l); m != nil && m[1] != "resumed" {
				used[m[1]]++
			}
			if m := straceFamily.FindStringSubmatch(l); m != nil {
				fams[m[1]]++
			}
		}
	}
	// execve of the agent itself happens before the filter applies, but
	// it is allowed anyway; nothing is exempt here.
	if len(used) < 20 {
		t.Fatalf("only %d distinct system calls traced: the strace log was not read right", len(used))
	}
	for _, s := range slices.Sorted(maps.Keys(used)) {
		if !allowed[s] {
			t.Errorf("system call %s (%d times) is not allowed by SystemCallFilter=%q: the sandboxed agent would get EPERM", s, used[s], values(ds, "SystemCallFilter"))
		}
	}
	for f, n := range fams {
		if !slices.Contains(families, f) {
			t.Errorf("socket family %s (%d sockets) is not in RestrictAddressFamilies=%s", f, n, value(ds, "RestrictAddressFamilies"))
		}
	}
	t.Logf("%d distinct system calls, all allowed; socket families %v", len(used), slices.Sorted(maps.Keys(fams)))
}

// tracee is the pid of the process strace (pid) started to run exe. It is
// not simply strace's first child: strace forks short-lived children of
// its own at startup to probe the kernel's ptrace features.
func tracee(t *testing.T, pid int, exe string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n))
			if arg0, _, _ := strings.Cut(string(cl), "\x00"); arg0 == exe {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("strace started no %s", exe)
	return 0
}
