package archive_test

import (
	"errors"
	"testing"

	"github.com/priorflow/priorflow/archive"
)

func TestParseDateRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		lo, hi string // "" for universal matching
		bad    bool
	}{
		{in: ""},
		{in: "20200101", lo: "20200101", hi: "20200101~"},
		{in: "20200101-20201231", lo: "20200101", hi: "20201231~"},
		{in: "-20201231", lo: "0", hi: "20201231~"},
		{in: "20200101-", lo: "20200101", hi: "~"},
		{in: "2020", lo: "2020", hi: "2020~"},
		{in: "-2020", lo: "0", hi: "2020~"},
		{in: "2020-", lo: "2020", hi: "~"},
		{in: "202003-202004", lo: "202003", hi: "202004~"},
		{in: "-", bad: true},
		{in: "2020010", bad: true},
		{in: "20201231-20200101", bad: true},
		{in: "2020-01-01", bad: true},
		{in: "abcdefgh", bad: true},
		{in: "202001011", bad: true},
	}
	for _, tt := range tests {
		r, err := archive.ParseDateRange(tt.in)
		if tt.bad {
			if !errors.Is(err, archive.ErrInvalidQuery) {
				t.Errorf("ParseDateRange(%q) err = %v, want ErrInvalidQuery", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDateRange(%q) err = %v", tt.in, err)
			continue
		}
		if tt.lo == "" {
			if !r.IsZero() {
				t.Errorf("ParseDateRange(%q) = %+v, want universal matching", tt.in, r)
			}
			continue
		}
		if r.Lo != tt.lo || r.Hi != tt.hi {
			t.Errorf("ParseDateRange(%q) = [%q, %q], want [%q, %q]", tt.in, r.Lo, r.Hi, tt.lo, tt.hi)
		}
	}
}

func TestParseTimeRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		lo, hi string
		bad    bool
	}{
		{in: "1030", lo: "1030", hi: "1030~"},
		{in: "10:30", lo: "1030", hi: "1030~"},
		{in: "103000.5-120000", lo: "103000.5", hi: "120000~"},
		{in: "-1200", lo: "0", hi: "1200~"},
		{in: "08-", lo: "08", hi: "~"},
		{in: "1", bad: true},
		{in: "25", bad: true},
		{in: "1260", bad: true},
		{in: "235960", lo: "235960", hi: "235960~"},
		{in: "1030.5", bad: true},
		{in: "1200-1000", bad: true},
		{in: "103000.1234567", bad: true},
	}
	for _, tt := range tests {
		r, err := archive.ParseTimeRange(tt.in)
		if tt.bad {
			if !errors.Is(err, archive.ErrInvalidQuery) {
				t.Errorf("ParseTimeRange(%q) err = %v, want ErrInvalidQuery", tt.in, err)
			}
			continue
		}
		if err != nil || r.Lo != tt.lo || r.Hi != tt.hi {
			t.Errorf("ParseTimeRange(%q) = [%q, %q] err %v, want [%q, %q]", tt.in, r.Lo, r.Hi, err, tt.lo, tt.hi)
		}
	}
}
