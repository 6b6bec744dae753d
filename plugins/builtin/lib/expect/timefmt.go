package expect

import (
	"fmt"
	"sync"

	"github.com/sluice-dev/sluice/plugins/builtin/lib/civil"
)

// instant is a point in time as seconds and nanoseconds since the Unix
// epoch, UTC. Comparing two is comparing the pair.
type instant struct {
	sec  int64
	nsec int32
}

func (a instant) before(b instant) bool {
	return a.sec < b.sec || (a.sec == b.sec && a.nsec < b.nsec)
}

func (a instant) nanos() int64 { return a.sec*1e9 + int64(a.nsec) }

// parseISO reads the ISO 8601 forms that Python's isoformat, pandas' to_json
// and RFC 3339 write: YYYY-MM-DD, optionally followed by T (or a space) and
// HH:MM[:SS[.fraction]], optionally followed by Z or a ±HH[:MM] offset. A
// time without a zone is read as UTC, as the agent reads event times. It is
// written straight through, without helper calls per field, because it
// runs per record and calls are what Wasm makes expensive.
func parseISO(s []byte) (instant, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return instant{}, false
	}
	y := num2(s[0], s[1])*100 + num2(s[2], s[3])
	m, d := num2(s[5], s[6]), num2(s[8], s[9])
	if num2(s[0], s[1]) < 0 || num2(s[2], s[3]) < 0 || m < 1 || m > 12 || d < 1 || int64(d) > civil.DaysIn(int64(y), int64(m)) {
		return instant{}, false
	}
	h, mi, sec, nsec, off := 0, 0, 0, 0, 0
	if i := 10; i < len(s) {
		if c := s[i]; c != 'T' && c != 't' && c != ' ' || len(s) < i+6 || s[i+3] != ':' {
			return instant{}, false
		}
		h, mi = num2(s[i+1], s[i+2]), num2(s[i+4], s[i+5])
		if h < 0 || h > 23 || mi < 0 || mi > 59 {
			return instant{}, false
		}
		i += 6
		if i < len(s) && s[i] == ':' {
			if len(s) < i+3 {
				return instant{}, false
			}
			if sec = num2(s[i+1], s[i+2]); sec < 0 || sec > 59 {
				return instant{}, false
			}
			i += 3
			if i < len(s) && (s[i] == '.' || s[i] == ',') {
				i++
				start, scale := i, 100_000_000
				for ; i < len(s) && s[i]-'0' <= 9; i++ {
					nsec += int(s[i]-'0') * scale
					scale /= 10
				}
				if i == start || i-start > 9 {
					return instant{}, false
				}
			}
		}
		switch {
		case i == len(s):
		case i == len(s)-1 && (s[i] == 'Z' || s[i] == 'z'):
		default:
			var ok bool
			if off, i, ok = zone(s, i); !ok || i != len(s) {
				return instant{}, false
			}
		}
	}
	days := civil.DaysFromEpoch(int64(y), int64(m), int64(d))
	return instant{days*86400 + int64(h*3600+mi*60+sec-off), int32(nsec)}, true
}

// num2 reads two ASCII digits, or returns -1.
func num2(a, b byte) int {
	a, b = a-'0', b-'0'
	if a > 9 || b > 9 {
		return -1
	}
	return int(a)*10 + int(b)
}

// digits reads between min and max ASCII digits at s[i:].
func digits(s []byte, i, min, max int) (int, int, bool) {
	n, j := 0, i
	for j < len(s) && j-i < max && s[j] >= '0' && s[j] <= '9' {
		n = n*10 + int(s[j]-'0')
		j++
	}
	return n, j, j-i >= min
}

// fraction reads 1..max digits of a decimal fraction as nanoseconds.
func fraction(s []byte, i, max int) (int, int, bool) {
	n, j := 0, i
	for j < len(s) && j-i < max && s[j] >= '0' && s[j] <= '9' {
		n = n*10 + int(s[j]-'0')
		j++
	}
	if j == i {
		return 0, i, false
	}
	for k := j - i; k < 9; k++ {
		n *= 10
	}
	return n, j, true
}

// zone reads Z or ±HH[[:]MM] at s[i:] as seconds east of UTC.
func zone(s []byte, i int) (int, int, bool) {
	if i >= len(s) {
		return 0, i, false
	}
	if s[i] == 'Z' || s[i] == 'z' {
		return 0, i + 1, true
	}
	if s[i] != '+' && s[i] != '-' {
		return 0, i, false
	}
	sign := 1
	if s[i] == '-' {
		sign = -1
	}
	h, j, ok := digits(s, i+1, 2, 2)
	if !ok || h > 23 {
		return 0, i, false
	}
	m := 0
	if j < len(s) && s[j] == ':' {
		j++
	}
	if j < len(s) {
		if m, j, ok = digits(s, j, 2, 2); !ok || m > 59 {
			return 0, i, false
		}
	}
	return sign * (h*3600 + m*60), j, true
}

// strftime is a format of Python's datetime.strptime, translated once into
// a list of steps. Matching follows strptime: the whole string must be
// consumed, letters match regardless of case, a run of whitespace in the
// format matches one or more whitespace characters, numbers take from one
// to their full width of digits (backtracking when a shorter one lets the
// rest match), and the result must be a real date (no 30 February).
type strftime struct {
	steps  []step
	source string
}

type stepKind uint8

const (
	stLiteral stepKind = iota
	stSpace
	stNumber // a numeric field: min..max digits, lo..hi
	stFraction
	stAMPM
	stName // a month or weekday name
	stZoneOffset
	stZoneName
)

type step struct {
	kind     stepKind
	lit      byte
	field    byte // the directive letter
	min, max int  // digits
	lo, hi   int  // value range
	names    []string
	space    bool // %d and friends also accept a leading space ("% 1")
}

var (
	monthsShort = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	monthsLong  = []string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}
	daysShort   = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	daysLong    = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)

// compileStrftime translates a strptime format. Directives that depend on
// the locale or on week numbering (%c %x %X %U %W %G %V) are refused rather
// than guessed.
func compileStrftime(format string) (*strftime, error) {
	if format == "" {
		return nil, fmt.Errorf("empty format")
	}
	f := &strftime{source: format}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if isSpace(c) {
			for i+1 < len(format) && isSpace(format[i+1]) {
				i++
			}
			f.steps = append(f.steps, step{kind: stSpace})
			continue
		}
		if c != '%' {
			f.steps = append(f.steps, step{kind: stLiteral, lit: lower(c)})
			continue
		}
		i++
		if i >= len(format) {
			return nil, fmt.Errorf("%q ends with a stray %%", format)
		}
		d := format[i]
		var s step
		switch d {
		case 'Y':
			s = step{kind: stNumber, min: 4, max: 4, lo: 0, hi: 9999}
		case 'y':
			s = step{kind: stNumber, min: 2, max: 2, lo: 0, hi: 99}
		case 'm':
			s = step{kind: stNumber, min: 1, max: 2, lo: 1, hi: 12}
		case 'd':
			s = step{kind: stNumber, min: 1, max: 2, lo: 1, hi: 31, space: true}
		case 'H':
			s = step{kind: stNumber, min: 1, max: 2, lo: 0, hi: 23}
		case 'I':
			s = step{kind: stNumber, min: 1, max: 2, lo: 1, hi: 12}
		case 'M':
			s = step{kind: stNumber, min: 1, max: 2, lo: 0, hi: 59}
		case 'S':
			s = step{kind: stNumber, min: 1, max: 2, lo: 0, hi: 61}
		case 'j':
			s = step{kind: stNumber, min: 1, max: 3, lo: 1, hi: 366}
		case 'w':
			s = step{kind: stNumber, min: 1, max: 1, lo: 0, hi: 6}
		case 'u':
			s = step{kind: stNumber, min: 1, max: 1, lo: 1, hi: 7}
		case 'f':
			s = step{kind: stFraction, min: 1, max: 6}
		case 'p':
			s = step{kind: stAMPM}
		case 'b', 'h':
			s = step{kind: stName, names: monthsShort}
		case 'B':
			s = step{kind: stName, names: monthsLong}
		case 'a':
			s = step{kind: stName, names: daysShort}
		case 'A':
			s = step{kind: stName, names: daysLong}
		case 'z':
			s = step{kind: stZoneOffset}
		case 'Z':
			s = step{kind: stZoneName}
		case '%':
			s = step{kind: stLiteral, lit: '%'}
		case 'c', 'x', 'X', 'U', 'W', 'G', 'V':
			return nil, fmt.Errorf("%q: %%%c depends on the locale or on week numbers and is not supported", format, d)
		default:
			return nil, fmt.Errorf("%q: %%%c is not a strptime directive", format, d)
		}
		s.field = d
		f.steps = append(f.steps, s)
	}
	return f, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// backtrackBudget bounds the alternatives tried per value: a format of
// many adjacent numbers ("%m%d%H%M%S...") could otherwise take time
// exponential in its length on a value that almost matches.
const backtrackBudget = 512

// match reports whether s is a date-time in the format. Only the date is
// kept while matching: it is all that strptime checks beyond the syntax.
func (f *strftime) match(s []byte) bool {
	st := date{year: 1900, month: 1, day: 1}
	budget := backtrackBudget
	return f.matchFrom(s, 0, 0, st, &budget)
}

func (f *strftime) matchFrom(s []byte, i, k int, st date, budget *int) bool {
	for ; k < len(f.steps); k++ {
		p := &f.steps[k]
		switch p.kind {
		case stLiteral:
			if i >= len(s) || lower(s[i]) != p.lit {
				return false
			}
			i++
		case stSpace:
			j := i
			for j < len(s) && isSpace(s[j]) {
				j++
			}
			if j == i {
				return false
			}
			i = j
		case stNumber:
			if p.space && i < len(s) && s[i] == ' ' {
				// Python's %d also reads a space-padded day (" 5").
				if i+1 < len(s) && s[i+1] >= '1' && s[i+1] <= '9' {
					st2 := st
					setField(&st2, p.field, int(s[i+1]-'0'))
					if f.matchFrom(s, i+2, k+1, st2, budget) {
						return true
					}
				}
				return false
			}
			// Longest first, then shorter: strptime's regex backtracks too.
			n, j := 0, i
			var vals [4]int
			var ends [4]int
			cnt := 0
			for j < len(s) && j-i < p.max && s[j] >= '0' && s[j] <= '9' {
				n = n*10 + int(s[j]-'0')
				j++
				vals[cnt], ends[cnt] = n, j
				cnt++
			}
			for c := cnt - 1; c >= 0 && c+1 >= p.min; c-- {
				if vals[c] < p.lo || vals[c] > p.hi {
					continue
				}
				if *budget--; *budget < 0 {
					return false
				}
				st2 := st
				setField(&st2, p.field, vals[c])
				if f.matchFrom(s, ends[c], k+1, st2, budget) {
					return true
				}
			}
			return false
		case stFraction:
			_, j, ok := fraction(s, i, p.max)
			if !ok {
				return false
			}
			i = j
		case stAMPM:
			if i+2 > len(s) || lower(s[i+1]) != 'm' || lower(s[i]) != 'a' && lower(s[i]) != 'p' {
				return false
			}
			i += 2
		case stName:
			matched := -1
			for x, name := range p.names {
				if hasPrefixFold(s[i:], name) {
					matched = x
					i += len(name)
					break
				}
			}
			if matched < 0 {
				return false
			}
			if p.field == 'b' || p.field == 'h' || p.field == 'B' {
				st.month = matched + 1
			}
		case stZoneOffset:
			if i < len(s) && s[i] == 'Z' {
				i++
				continue
			}
			_, j, ok := zone(s, i)
			if !ok || s[i] == 'z' { // Python's %z takes only an upper-case Z
				return false
			}
			i = j
		case stZoneName:
			if hasPrefixFold(s[i:], "utc") || hasPrefixFold(s[i:], "gmt") {
				i += 3
				continue
			}
			return false
		}
	}
	if i != len(s) {
		return false
	}
	if st.month < 1 || st.month > 12 || int64(st.day) > civil.DaysIn(int64(st.year), int64(st.month)) {
		return false
	}
	return true
}

// date is what strptime validates: the day must exist in its month.
type date struct{ year, month, day int }

func setField(st *date, d byte, v int) {
	switch d {
	case 'Y':
		st.year = v
	case 'y':
		// POSIX and Python: 69-99 are 1969-1999, 00-68 are 2000-2068.
		if v < 69 {
			st.year = 2000 + v
		} else {
			st.year = 1900 + v
		}
	case 'm':
		st.month = v
	case 'd':
		st.day = v
	}
}

func hasPrefixFold(s []byte, name string) bool {
	if len(s) < len(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if lower(s[i]) != name[i] {
			return false
		}
	}
	return true
}

// dateutilFormats are the shapes expect_column_values_to_be_dateutil_parseable
// accepts besides ISO 8601 (parseISO): the common ones python-dateutil's
// parser reads without fuzzy matching. Each date form may be followed by a
// time, 24-hour or with AM/PM.
var dateutilDates = []string{
	"%Y/%m/%d", "%Y.%m.%d", "%Y%m%d",
	"%m/%d/%Y", "%d/%m/%Y", "%m/%d/%y", "%m-%d-%Y", "%d.%m.%Y",
	"%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%b-%y",
	"%b %d %Y", "%B %d %Y", "%b %d, %Y", "%B %d, %Y",
	"%a, %d %b %Y", "%A, %B %d, %Y", "%a %b %d %Y",
}

var dateutilTimes = []string{"", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p", " %I %p"}

var dateutilWhole = []string{
	"%a, %d %b %Y %H:%M:%S %z", // RFC 2822 / 1123
	"%a, %d %b %Y %H:%M:%S %Z",
	"%a %b %d %H:%M:%S %Y", // ctime
	"%Y-%m-%d %H:%M:%S %z",
	"%Y-%m-%d %H:%M:%S %Z",
	"%Y%m%dT%H%M%S",
	"%Y%m%dT%H%M%SZ",
	"%H:%M", "%H:%M:%S", "%I:%M %p",
}

// DateutilFormats lists, for the docs, the strptime formats the dateutil
// expectation accepts besides ISO 8601.
func DateutilFormats() []string {
	var out []string
	for _, d := range dateutilDates {
		for _, t := range dateutilTimes {
			out = append(out, d+t)
		}
	}
	return append(out, dateutilWhole...)
}

// dateutilParsers are compiled by the first suite that needs them, so
// other plugins' heaps do not carry them.
var dateutilParsers = sync.OnceValue(func() []*strftime {
	var ps []*strftime
	for _, f := range DateutilFormats() {
		p, err := compileStrftime(f)
		if err != nil {
			panic("expect: bad builtin format " + f + ": " + err.Error())
		}
		ps = append(ps, p)
	}
	return ps
})

func dateutilParseable(s []byte) bool {
	s = trimSpace(s)
	if _, ok := parseISO(s); ok {
		return true
	}
	for _, p := range dateutilParsers() {
		if p.match(s) {
			return true
		}
	}
	return false
}

func trimSpace(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
