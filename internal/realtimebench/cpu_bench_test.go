package realtimebench

import (
	"bytes"
	"os"
	"strconv"
)

// The machine is shared: other processes' CPU use during a measured window
// is reported beside each figure (others_cpu_%), so a slow run can be told
// from a contended one. It is the machine's busy time (/proc/stat, all
// cores) minus this process's (/proc/self/stat), over the window, as a
// share of all cores' time. Linux only; elsewhere it reads as zero.

type cpuSample struct{ busy, total, self int64 }

func sampleCPU() cpuSample {
	var s cpuSample
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		f := bytes.Fields(line)
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			if i >= 8 { // guest time is already in user
				break
			}
			s.total += n
			if i != 3 && i != 4 { // idle, iowait
				s.busy += n
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command, which is in parentheses and may hold
		// spaces: state is field 3, utime 14, stime 15.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := bytes.Fields(b[i+1:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(string(f[11]), 10, 64)
				st, _ := strconv.ParseInt(string(f[12]), 10, 64)
				s.self = u + st
			}
		}
	}
	return s
}

// othersPercent is other processes' share of the machine's CPU time
// between a and b.
func othersPercent(a, b cpuSample) float64 {
	total := b.total - a.total
	if total <= 0 {
		return 0
	}
	return max(0, float64((b.busy-a.busy)-(b.self-a.self))) * 100 / float64(total)
}
