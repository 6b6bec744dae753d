//go:build !wasip1

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkDayCacheMisses: how many of gen_sales.py's 1M rows miss the
// day cache and have their date parsed again, with the cache as it is
// (4096 entries placed by the date's digits) and as it was before
// f9401a8 (256 entries placed by a multiplicative hash of the date's
// bytes), replaying each placement over the file's dates in order.
//
//	go test -run '^$' -bench DayCacheMisses -benchtime 1x ./plugins/builtin/sales/
func BenchmarkDayCacheMisses(b *testing.B) {
	gen := filepath.Join("..", "..", "..", "..", "shared", "peers", "gen_sales.py")
	if _, err := os.Stat(gen); err != nil {
		b.Skipf("the seed's generator is not here: %v", err)
	}
	out, err := exec.Command("python3", gen, "1000000", "7").Output()
	if err != nil {
		b.Fatalf("gen_sales.py: %v", err)
	}
	var dates [][]byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if d, _, ok := bytes.Cut(sc.Bytes(), []byte(",")); ok && len(d) == 10 {
			dates = append(dates, bytes.Clone(d))
		}
	}
	for _, tc := range []struct {
		name  string
		slots int
		slot  func(head uint64, tail uint16) int
	}{
		{"digits-4096", len(dayCache{}), dayIndex},
		{"hash-256-before", 256, func(head uint64, tail uint16) int {
			return int(((head ^ uint64(tail)<<48) * 0x9E3779B97F4A7C15) >> 56)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var misses int
			for b.Loop() {
				held := make([][]byte, tc.slots)
				misses = 0
				for _, d := range dates {
					i := tc.slot(binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint16(d[8:]))
					if !bytes.Equal(held[i], d) {
						misses++
						held[i] = d
					}
				}
			}
			b.ReportMetric(float64(misses)/float64(len(dates)), "misses/row")
		})
	}
}
