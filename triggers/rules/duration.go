package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a span written the way people write look-backs and lead
// times: a sequence of <number><unit> with units y (years), mo (months),
// w (weeks), d (days), h, m, s — "5y", "6mo", "1d", "7d", "12h", "1h30m".
// Years and months are calendar units: "5y" before 2026-03-01 is
// 2021-03-01, not 5×365 days earlier.
type Duration struct {
	Months int
	Days   int
	Clock  time.Duration
}

// ParseDuration parses the syntax described on Duration. "0" is zero.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if s == "0" {
		return d, nil
	}
	if s == "" {
		return d, fmt.Errorf("duration is empty")
	}
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return Duration{}, fmt.Errorf("duration %q: expected a number at %q (use e.g. 5y, 6mo, 7d, 12h, 30m)", s, rest)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 100000 {
			return Duration{}, fmt.Errorf("duration %q: number %q out of range", s, rest[:i])
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		switch unit := rest[:j]; unit {
		case "y":
			d.Months += 12 * n
		case "mo":
			d.Months += n
		case "w":
			d.Days += 7 * n
		case "d":
			d.Days += n
		case "h":
			d.Clock += time.Duration(n) * time.Hour
		case "m":
			d.Clock += time.Duration(n) * time.Minute
		case "s":
			d.Clock += time.Duration(n) * time.Second
		case "":
			return Duration{}, fmt.Errorf("duration %q: %d has no unit (y, mo, w, d, h, m, s)", s, n)
		default:
			return Duration{}, fmt.Errorf("duration %q: unknown unit %q (y, mo, w, d, h, m, s)", s, unit)
		}
		rest = rest[j:]
	}
	return d, nil
}

// IsZero reports a zero span.
func (d Duration) IsZero() bool { return d.Months == 0 && d.Days == 0 && d.Clock == 0 }

// Before returns t moved back by d.
func (d Duration) Before(t time.Time) time.Time {
	return t.AddDate(0, -d.Months, -d.Days).Add(-d.Clock)
}

// String prints d in the syntax ParseDuration reads.
func (d Duration) String() string {
	if d.IsZero() {
		return "0"
	}
	var b strings.Builder
	if y := d.Months / 12; y > 0 {
		fmt.Fprintf(&b, "%dy", y)
	}
	if mo := d.Months % 12; mo > 0 {
		fmt.Fprintf(&b, "%dmo", mo)
	}
	if d.Days > 0 {
		fmt.Fprintf(&b, "%dd", d.Days)
	}
	c := d.Clock
	if h := c / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
		c -= h * time.Hour
	}
	if m := c / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
		c -= m * time.Minute
	}
	if s := c / time.Second; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
