// Package memlimit gives the Go runtime a soft memory limit from the
// container (cgroup) the agent runs in, when GOMEMLIMIT does not set one.
//
// Without a limit the garbage collector lets the heap grow to twice what
// is live, whatever the container allows: a batch job whose peak is near
// the container's limit (ml_dag holds each source file whole, about 1 GB
// for a million rows of two sources) is OOM-killed where, with the limit,
// the collector would have worked harder and the job finished. The
// Kubernetes manifests set GOMEMLIMIT from the pod's limit; this covers a
// container or a systemd unit (MemoryMax) that does not.
package memlimit

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// share is the part of the cgroup's limit given to the Go runtime: the
// rest is for what it does not count, the Wasm steps' compiled code
// (mapped by wazero), the binary's pages and the page cache the kernel
// charges to the cgroup. (The Wasm instances' memory is Go memory, and
// counted.) The distinct processor's tables past 4 MB are mapped outside
// the heap on Linux (32-64 bytes a key): not counted either, but neither
// do they double into the collector's heap goal as heap memory would.
const share = 0.9

// unlimited is where cgroup v1 reports no limit: its "max" is a page
// count near 2^63 rather than a word.
const unlimited = 1 << 60

// Limit reads the memory limit of the cgroup the process is in:
// procCgroup is /proc/self/cgroup and root the cgroup mount
// (/sys/fs/cgroup). It reads cgroup v2 (memory.max) and v1
// (memory/.../memory.limit_in_bytes), and in each the process's own cgroup
// and, for a container that sees its cgroup as the root, the root's. ok is
// false when no limit is set or none can be read; file says where the one
// found was.
func Limit(procCgroup, root string) (limit int64, file string, ok bool) {
	b, err := os.ReadFile(procCgroup)
	if err != nil {
		return 0, "", false
	}
	var candidates []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, filepath.Join(root, parts[2], "memory.max"), filepath.Join(root, "memory.max"))
		case hasController(parts[1], "memory"):
			candidates = append(candidates, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
		}
	}
	for _, f := range candidates {
		if n, ok := readLimit(f); ok {
			return n, f, true
		}
	}
	return 0, "", false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a limit file: a number of bytes, or "max" (none).
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= unlimited {
		return 0, false // "max", or v1's no-limit
	}
	return n, true
}

// Set is what Apply decided: the limit set (0 for none) and why.
type Set struct {
	Limit int64
	Why   string
}

// Apply sets the runtime's soft memory limit to share of the cgroup's
// limit, unless environ sets GOMEMLIMIT (the runtime read it at start)
// or no limit is found. set is the runtime's debug.SetMemoryLimit.
func Apply(environ []string, procCgroup, root string, set func(int64) int64) Set {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOMEMLIMIT="); ok && v != "" {
			return Set{Why: "GOMEMLIMIT is set"}
		}
	}
	n, file, ok := Limit(procCgroup, root)
	if !ok {
		return Set{Why: "no cgroup memory limit"}
	}
	limit := int64(float64(n) * share)
	set(limit)
	return Set{Limit: limit, Why: fmt.Sprintf("%d%% of the cgroup's %d bytes (%s)", int(share*100), n, file)}
}
