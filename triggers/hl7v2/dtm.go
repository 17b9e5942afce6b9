package hl7v2

import (
	"fmt"
	"strconv"
	"time"
)

// ParseDTM parses a DTM value (HL7 v2.5.1 section 2.A.22), or the first
// component of a TS (section 2.A.77; the degree-of-precision component of
// TS is deprecated and ignored by callers passing only TS.1):
//
//	YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
//
// Missing parts take their lowest value, so "2021" is midnight on 1
// January 2021. A value without an offset is in the sender's local time,
// which the standard leaves to site agreement; it is interpreted in loc (UTC
// when loc is nil). With an offset the result carries a fixed zone of that
// offset. Errors wrap ErrBadTime.
func ParseDTM(s string, loc *time.Location) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("hl7v2: parse DTM %q: %w: %s", s, ErrBadTime, why)
	}
	if loc == nil {
		loc = time.UTC
	}
	body := s
	if i := indexAnyByte(s, "+-"); i >= 0 {
		body = s[:i]
		zone := s[i:]
		if len(zone) != 5 || !digits(zone[1:]) {
			return bad("offset must be +ZZZZ or -ZZZZ")
		}
		hh, _ := strconv.Atoi(zone[1:3])
		mm, _ := strconv.Atoi(zone[3:5])
		if hh > 23 || mm > 59 {
			return bad("offset out of range")
		}
		off := hh*3600 + mm*60
		if zone[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(zone, off)
	}
	frac := ""
	if i := indexAnyByte(body, "."); i >= 0 {
		body, frac = body[:i], body[i+1:]
		if len(body) != 14 {
			return bad("fractional seconds need a full YYYYMMDDHHMMSS")
		}
		if len(frac) < 1 || len(frac) > 4 || !digits(frac) {
			return bad("fraction must be 1 to 4 digits")
		}
	}
	switch len(body) {
	case 4, 6, 8, 10, 12, 14:
	default:
		return bad("wrong length")
	}
	if !digits(body) {
		return bad("not all digits")
	}
	part := func(from, to, def int) int {
		if len(body) < to {
			return def
		}
		n, _ := strconv.Atoi(body[from:to])
		return n
	}
	year, month, day := part(0, 4, 0), part(4, 6, 1), part(6, 8, 1)
	hour, minute, sec := part(8, 10, 0), part(10, 12, 0), part(12, 14, 0)
	nsec := 0
	if frac != "" {
		n, _ := strconv.Atoi(frac)
		for i := len(frac); i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	if month < 1 || month > 12 || hour > 23 || minute > 59 || sec > 59 {
		return bad("out of range")
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if day < 1 || t.Day() != day {
		return bad("no such day")
	}
	return t, nil
}

// FormatDTM formats t as a DTM with second precision and its offset, the
// form used in MSH-7 of acknowledgements.
func FormatDTM(t time.Time) string {
	return t.Format("20060102150405-0700")
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func indexAnyByte(s, chars string) int {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return i
			}
		}
	}
	return -1
}
