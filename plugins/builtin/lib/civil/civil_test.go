package civil

import (
	"testing"
	"time"
)

// TestAgainstTimePackage: every day from 1600 to 2400 agrees with the
// time package on the day count, the month lengths and leap years.
func TestAgainstTimePackage(t *testing.T) {
	for d := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2400; d = d.AddDate(0, 0, 1) {
		y, m, day := int64(d.Year()), int64(d.Month()), int64(d.Day())
		if got, want := DaysFromEpoch(y, m, day), d.Unix()/86400; got != want {
			t.Fatalf("%s: DaysFromEpoch = %d, want %d", d.Format("2006-01-02"), got, want)
		}
		if day == 1 {
			last := d.AddDate(0, 1, -1).Day()
			if got := DaysIn(y, m); got != int64(last) {
				t.Fatalf("%s: DaysIn = %d, want %d", d.Format("2006-01"), got, last)
			}
		}
	}
}

// TestParseISO: every day of four centuries reads back as written, in
// both string and byte form, and what is not a plain date is refused.
func TestParseISO(t *testing.T) {
	for d := time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2200; d = d.AddDate(0, 0, 1) {
		s := d.Format("2006-01-02")
		y, m, day, ok := ParseISO(s)
		if !ok || y != int64(d.Year()) || m != int64(d.Month()) || day != int64(d.Day()) {
			t.Fatalf("%s: %d-%d-%d %v", s, y, m, day, ok)
		}
		if _, _, _, ok := ParseISO([]byte(s)); !ok {
			t.Fatalf("%s as bytes refused", s)
		}
	}
	for _, s := range []string{"2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "2024-1-01", "20240101", "2024-01-01T00:00:00Z", "2024-01-0x"} {
		if _, _, _, ok := ParseISO(s); ok {
			t.Errorf("%q read as a date", s)
		}
	}
}
