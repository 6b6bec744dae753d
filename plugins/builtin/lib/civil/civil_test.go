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
