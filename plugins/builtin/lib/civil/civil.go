// Package civil is calendar arithmetic for builtin plugins' per-row paths:
// dates as year, month, day in the proleptic Gregorian calendar, without
// the time package (which is slow inside a Wasm guest) and without
// allocating.
package civil

// DaysFromEpoch is the number of days from 1970-01-01 to y-m-d (Howard
// Hinnant's days_from_civil).
func DaysFromEpoch(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// IsLeap reports whether y is a leap year.
func IsLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// DaysIn is the number of days in month m (1-12) of year y.
func DaysIn(y, m int64) int64 {
	switch m {
	case 2:
		if IsLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
