// Command sales is the seed's sales transform (exercise 1's transform step)
// as a builtin plugin in fast mode: total_amount is quantity × price, as
// the seed computes it (not rounded: its summaries round the sums), and year, month, day and day_of_week (Monday = 0,
// as pandas' dayofweek) come from the row's date. The host parses each
// row once and merges the five fields back into its JSON, so the rows stay
// JSON bytes for the outputs that follow: no re-encoding per output.
package main

import (
	"encoding/binary"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/civil"
	"github.com/sluice-dev/sluice/plugins/sdk"
)

var (
	date     = sdk.ReadString("date", sdk.Required)
	quantity = sdk.ReadInt("quantity", sdk.Required)
	price    = sdk.ReadFloat("price", sdk.Required)

	totalAmount = sdk.WriteFloat("total_amount")
	year        = sdk.WriteInt("year")
	month       = sdk.WriteInt("month")
	day         = sdk.WriteInt("day")
	dayOfWeek   = sdk.WriteInt("day_of_week")
)

func init() {
	sdk.HandleBatch(func(b *sdk.Batch) error {
		n := b.Len()
		qs, ps := quantity.Values(b)[:n], price.Values(b)[:n]
		// The outputs' columns filled directly: a Set call per field and
		// row was a good part of the step's cost in Wasm.
		total, totalSet := totalAmount.Values(b)
		ys, ySet := year.Values(b)
		ms, mSet := month.Values(b)
		ds, dSet := day.Values(b)
		dows, dowSet := dayOfWeek.Values(b)
		_, offs, text := date.Raw(b)
		offs = offs[:n+1]
		// Each of length n, so the loop's indexes need no bounds checks.
		total, ys, ms, ds, dows = total[:n], ys[:n], ms[:n], ds[:n], dows[:n]
		totalSet, ySet, mSet, dSet, dowSet = totalSet[:n], ySet[:n], mSet[:n], dSet[:n], dowSet[:n]
		// Every row set up front, a word at a time, and a failed row
		// unset again: five set bytes a row, stored one by one, were a
		// good part of the loop in Wasm (docs/BENCHMARKS.md, session 24).
		for _, set := range [][]byte{totalSet, ySet, mSet, dSet, dowSet} {
			setAll(set)
		}
		for i := range n {
			// A cached date is found here, lookup called only for one not
			// cached: lookup does not inline, and a call a row cost about
			// 15 ns in Wasm (BenchmarkSalesFrame).
			d := text[offs[i]:offs[i+1]]
			var c *dayEntry
			if len(d) == 10 {
				head, tail := binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint16(d[8:])
				if c = &days[dayIndex(head, tail)]; !c.holds(head, tail) {
					c = days.lookup(d)
				}
			}
			if c == nil {
				b.Fail(i, "date: want YYYY-MM-DD, got "+quote(d))
				totalSet[i], ySet[i], mSet[i], dSet[i], dowSet[i] = 0, 0, 0, 0, 0
				continue
			}
			total[i] = float64(qs[i]) * ps[i]
			ys[i], ms[i], ds[i], dows[i] = c.y, c.m, c.d, c.dow
		}
		return nil
	})
}

// days holds the calendar fields of recently seen dates. A sales file has
// a few hundred dates among its millions of rows, and parsing a date and
// finding its weekday (divisions, which cost Wasm dearly) was most of a
// row's cost here.
var days dayCache

// dayCache is a direct-mapped cache of dates, keyed by their 10 bytes and
// placed by their digits (slot), so that no two dates of eight
// consecutive years share an entry. The 256 entries it had, placed by a
// multiplicative hash of the bytes, put gen_sales.py's 90 dates on so few
// slots that 55% of its 1M rows missed and were parsed again
// (BenchmarkDayCacheMisses).
type dayCache [8 * 16 * 32]dayEntry

type dayEntry struct {
	head         uint64 // the date's first 8 bytes
	tail         uint16 // and its last 2
	set          bool
	y, m, d, dow int64
}

// lookup returns d's calendar fields, or nil if d is no YYYY-MM-DD date
// (which is never cached).
func (c *dayCache) lookup(d []byte) *dayEntry {
	if len(d) != 10 {
		return nil
	}
	head, tail := binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint16(d[8:])
	e := &c[dayIndex(head, tail)]
	if e.holds(head, tail) {
		return e
	}
	y, m, dd, ok := civil.ParseISO(d)
	if !ok {
		return nil
	}
	// 1970-01-01 was a Thursday (3 with Monday = 0).
	*e = dayEntry{head: head, tail: tail, set: true, y: y, m: m, d: dd, dow: ((civil.DaysFromEpoch(y, m, dd) % 7) + 7 + 3) % 7}
	return e
}

// dayIndex is the day cache's entry for the date whose first 8 bytes are
// head and last 2 tail: for YYYY-MM-DD, the year mod 8, the month and the
// day, from the low bits of their ASCII digits, so any bytes give an
// entry and the dates of eight consecutive years each their own. (A year
// mod 8 is its last three digits' 4h + 2t + o, mod 8, since 1000 is 0 mod
// 8.) Placed by hand in the row loop: a method around it would not
// inline, and a call a row is dear in Wasm.
func dayIndex(head uint64, tail uint16) int {
	y := (head>>8&15)<<2 + (head>>16&15)<<1 + head>>24&15
	m := (head>>40&1)*10 + head>>48&15          // MM: 1-12
	d := uint64(tail&3)*10 + uint64(tail>>8&15) // DD: 1-31
	return int((y<<9 | m<<5 | d) & (uint64(len(dayCache{})) - 1))
}

// holds reports whether e is the date of head and tail.
func (e *dayEntry) holds(head uint64, tail uint16) bool {
	return e.set && e.head == head && e.tail == tail
}

// setAll sets every byte of set to 1, eight at a time.
func setAll(set []byte) {
	i := 0
	for ; i+8 <= len(set); i += 8 {
		binary.LittleEndian.PutUint64(set[i:], 0x0101010101010101)
	}
	for ; i < len(set); i++ {
		set[i] = 1
	}
}

func quote(b []byte) string {
	if len(b) > 32 {
		b = append(b[:29:29], "..."...)
	}
	return `"` + string(b) + `"`
}

func main() {}
