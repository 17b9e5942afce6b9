package dicomheader

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidDateTime is returned (wrapped) by the DA, TM and DT parsers.
var ErrInvalidDateTime = errors.New("invalid DICOM date or time")

// Precision is how much of a DICOM date or time value was given: a DA, TM or
// DT value may stop after any component (PS3.5 6.2).
type Precision int

// Precisions from coarsest to finest.
const (
	PrecisionNone Precision = iota // no value
	PrecisionYear
	PrecisionMonth
	PrecisionDay
	PrecisionHour
	PrecisionMinute
	PrecisionSecond
	PrecisionFraction // fractional seconds, up to microseconds
)

func (p Precision) String() string {
	switch p {
	case PrecisionNone:
		return "none"
	case PrecisionYear:
		return "year"
	case PrecisionMonth:
		return "month"
	case PrecisionDay:
		return "day"
	case PrecisionHour:
		return "hour"
	case PrecisionMinute:
		return "minute"
	case PrecisionSecond:
		return "second"
	case PrecisionFraction:
		return "fraction"
	}
	return "Precision(" + strconv.Itoa(int(p)) + ")"
}

// ParseDate parses a DA value, "YYYYMMDD" (PS3.5 6.2), or the ACR-NEMA form
// "YYYY.MM.DD" still found in old files. The result is midnight UTC with
// PrecisionDay.
func ParseDate(da string) (time.Time, Precision, error) {
	s := strings.TrimSpace(da)
	if len(s) == 10 && s[4] == '.' && s[7] == '.' {
		s = s[:4] + s[5:7] + s[8:]
	}
	if len(s) != 8 || !digits(s) {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: DA %q", ErrInvalidDateTime, da)
	}
	t, err := makeDate(atoi(s[:4]), atoi(s[4:6]), atoi(s[6:8]), time.UTC)
	if err != nil {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: DA %q", err, da)
	}
	return t, PrecisionDay, nil
}

// ParseTime parses a TM value, "HH[MM[SS[.F{1,6}]]]" (PS3.5 6.2), or the
// ACR-NEMA form "HH:MM[:SS[.F]]". The result is that time of day on January
// 1 of year 1, UTC; add it to a date with CombineDateTime.
func ParseTime(tm string) (time.Time, Precision, error) {
	d, p, err := parseTime(strings.TrimSpace(tm))
	if err != nil {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: TM %q", err, tm)
	}
	return time.Time{}.Add(d), p, nil
}

// parseTime returns the time of day as an offset from midnight.
func parseTime(s string) (time.Duration, Precision, error) {
	if strings.Contains(s, ":") {
		s = strings.ReplaceAll(s, ":", "")
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i+1:]
		if len(s) != 6 || len(frac) == 0 || len(frac) > 6 || !digits(frac) {
			return 0, PrecisionNone, ErrInvalidDateTime
		}
	}
	if len(s) == 0 || len(s) > 6 || len(s)%2 != 0 || !digits(s) {
		return 0, PrecisionNone, ErrInvalidDateTime
	}
	h, m, sec := atoi(s[:2]), 0, 0
	p := PrecisionHour
	if len(s) >= 4 {
		m, p = atoi(s[2:4]), PrecisionMinute
	}
	if len(s) == 6 {
		sec, p = atoi(s[4:6]), PrecisionSecond
	}
	if h > 23 || m > 59 || sec > 60 { // 60 allows a leap second.
		return 0, PrecisionNone, ErrInvalidDateTime
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	if frac != "" {
		us := atoi((frac + "000000")[:6])
		d += time.Duration(us) * time.Microsecond
		p = PrecisionFraction
	}
	return d, p, nil
}

// ParseDateTime parses a DT value, "YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]"
// (PS3.5 6.2). When the value has no UTC offset suffix, loc applies: pass the
// location from ParseTimezoneOffset of Timezone Offset From UTC (0008,0201)
// when the data set has one, or nil for UTC.
func ParseDateTime(dt string, loc *time.Location) (time.Time, Precision, error) {
	s := strings.TrimSpace(dt)
	if loc == nil {
		loc = time.UTC
	}
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		l, err := ParseTimezoneOffset(s[i:])
		if err != nil {
			return time.Time{}, PrecisionNone, fmt.Errorf("%w: DT %q", ErrInvalidDateTime, dt)
		}
		s, loc = s[:i], l
	}
	date := s
	if len(s) > 8 {
		date = s[:8]
	}
	if !digits(date) || !(len(date) == 4 || len(date) == 6 || len(date) == 8) {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: DT %q", ErrInvalidDateTime, dt)
	}
	year, month, day := atoi(date[:4]), 1, 1
	p := PrecisionYear
	if len(date) >= 6 {
		month, p = atoi(date[4:6]), PrecisionMonth
	}
	if len(date) == 8 {
		day, p = atoi(date[6:8]), PrecisionDay
	}
	t, err := makeDate(year, month, day, loc)
	if err != nil {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: DT %q", err, dt)
	}
	if len(s) > 8 {
		d, tp, err := parseTime(s[8:])
		if err != nil || strings.Contains(s[8:], ":") {
			return time.Time{}, PrecisionNone, fmt.Errorf("%w: DT %q", ErrInvalidDateTime, dt)
		}
		t, p = t.Add(d), tp
	}
	return t, p, nil
}

// CombineDateTime joins a DA and a TM value, such as Study Date and Study
// Time, into one instant in loc (nil for UTC). An empty tm gives the date with
// PrecisionDay.
func CombineDateTime(da, tm string, loc *time.Location) (time.Time, Precision, error) {
	if loc == nil {
		loc = time.UTC
	}
	d, _, err := ParseDate(da)
	if err != nil {
		return time.Time{}, PrecisionNone, err
	}
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, loc)
	if strings.TrimSpace(tm) == "" {
		return day, PrecisionDay, nil
	}
	off, p, err := parseTime(strings.TrimSpace(tm))
	if err != nil {
		return time.Time{}, PrecisionNone, fmt.Errorf("%w: TM %q", err, tm)
	}
	return day.Add(off), p, nil
}

// ParseTimezoneOffset parses a UTC offset "&ZZXX" as used by Timezone Offset
// From UTC (0008,0201) and the DT suffix (PS3.5 6.2): "+" or "-", then hours
// and minutes. It returns a fixed-offset location.
func ParseTimezoneOffset(s string) (*time.Location, error) {
	s = strings.TrimSpace(s)
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') || !digits(s[1:]) {
		return nil, fmt.Errorf("%w: UTC offset %q", ErrInvalidDateTime, s)
	}
	h, m := atoi(s[1:3]), atoi(s[3:5])
	if h > 14 || m > 59 {
		return nil, fmt.Errorf("%w: UTC offset %q", ErrInvalidDateTime, s)
	}
	off := h*3600 + m*60
	if s[0] == '-' {
		off = -off
	}
	return time.FixedZone(s, off), nil
}

// StudyDateTime returns Study Date and Study Time (PS3.3 C.7.2.1) as an
// instant, in the zone of Timezone Offset From UTC when present and in
// defaultLoc (nil for UTC) otherwise.
func (h *Header) StudyDateTime(defaultLoc *time.Location) (time.Time, Precision, error) {
	return h.combine(h.StudyDate, h.StudyTime, defaultLoc)
}

// SeriesDateTime is StudyDateTime for Series Date and Series Time
// (PS3.3 C.7.3.1).
func (h *Header) SeriesDateTime(defaultLoc *time.Location) (time.Time, Precision, error) {
	return h.combine(h.SeriesDate, h.SeriesTime, defaultLoc)
}

func (h *Header) combine(da, tm string, loc *time.Location) (time.Time, Precision, error) {
	if h.TimezoneOffsetFromUTC != "" {
		l, err := ParseTimezoneOffset(h.TimezoneOffsetFromUTC)
		if err != nil {
			return time.Time{}, PrecisionNone, fmt.Errorf("TimezoneOffsetFromUTC: %w", err)
		}
		loc = l
	}
	return CombineDateTime(da, tm, loc)
}

// makeDate builds a date and rejects values time.Date would normalize, such as
// February 30.
func makeDate(y, m, d int, loc *time.Location) (time.Time, error) {
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, loc)
	if t.Year() != y || int(t.Month()) != m || t.Day() != d {
		return time.Time{}, ErrInvalidDateTime
	}
	return t, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoi converts a string of ASCII digits checked by digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
