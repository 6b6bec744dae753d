package memlimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// write makes the files of a fake /proc/self/cgroup and cgroup mount
// under dir, path -> content.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for path, content := range files {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLimit: the limit of the process's cgroup, v2 and v1, its own or
// the root's as a container sees it; none where there is "max", v1's
// no-limit number, no memory controller or nothing readable.
func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		file  string // where it was found, under the mount
	}{
		{"v2, a systemd unit's MemoryMax", map[string]string{
			"proc": "0::/system.slice/sluice.service\n",
			"fs/system.slice/sluice.service/memory.max": "1073741824\n",
		}, 1 << 30, "system.slice/sluice.service/memory.max"},
		{"v2, a container's own cgroup seen as the root", map[string]string{
			"proc":          "0::/\n",
			"fs/memory.max": "536870912\n",
		}, 512 << 20, "memory.max"},
		{"v2, a path the container cannot see", map[string]string{
			"proc":          "0::/kubepods/pod1/c1\n",
			"fs/memory.max": "268435456\n",
		}, 256 << 20, "memory.max"},
		{"v2, max", map[string]string{
			"proc":          "0::/\n",
			"fs/memory.max": "max\n",
		}, 0, ""},
		{"v1", map[string]string{
			"proc": "12:pids:/docker/abc\n4:cpu,memory:/docker/abc\n0::/\n",
			"fs/memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
		}, 2 << 30, "memory/docker/abc/memory.limit_in_bytes"},
		{"v1, no limit", map[string]string{
			"proc": "4:memory:/process_api/x\n",
			"fs/memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, ""},
		{"no memory controller", map[string]string{
			"proc": "3:cpuset:/\n",
		}, 0, ""},
		{"no /proc/self/cgroup", map[string]string{}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tc.files)
			got, file, ok := Limit(filepath.Join(dir, "proc"), filepath.Join(dir, "fs"))
			if got != tc.want || ok != (tc.want > 0) || (ok && file != filepath.Join(dir, "fs", tc.file)) {
				t.Errorf("Limit = %d, %q, %v; want %d from %s", got, file, ok, tc.want, tc.file)
			}
		})
	}
}

// TestApply: 90% of the cgroup's limit becomes the runtime's, unless
// GOMEMLIMIT is set or there is no limit, when nothing is set.
func TestApply(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"proc": "0::/\n", "fs/memory.max": "1000000000\n"})
	for _, tc := range []struct {
		name    string
		environ []string
		proc    string
		want    int64
		why     string
	}{
		{"limit", []string{"HOME=/root"}, "proc", 900000000, "90% of the cgroup's 1000000000 bytes"},
		{"GOMEMLIMIT set", []string{"GOMEMLIMIT=300MiB"}, "proc", 0, "GOMEMLIMIT is set"},
		{"GOMEMLIMIT empty", []string{"GOMEMLIMIT="}, "proc", 900000000, "90%"},
		{"no limit", nil, "missing", 0, "no cgroup memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var set int64
			got := Apply(tc.environ, filepath.Join(dir, tc.proc), filepath.Join(dir, "fs"), func(n int64) int64 { set = n; return 0 })
			if got.Limit != tc.want || set != tc.want || !strings.Contains(got.Why, tc.why) {
				t.Errorf("Apply = %+v, set %d; want %d, %q", got, set, tc.want, tc.why)
			}
		})
	}
}
