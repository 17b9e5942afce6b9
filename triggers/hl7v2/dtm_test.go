package hl7v2

import (
	"errors"
	"testing"
	"time"
)

func TestParseDTM(t *testing.T) {
	berlin := time.FixedZone("local", 3600)
	tests := []struct {
		in   string
		want string // RFC 3339 with nanoseconds
	}{
		{"2021", "2021-01-01T00:00:00+01:00"},
		{"202109", "2021-09-01T00:00:00+01:00"},
		{"20210924", "2021-09-24T00:00:00+01:00"},
		{"2021092409", "2021-09-24T09:00:00+01:00"},
		{"202109240930", "2021-09-24T09:30:00+01:00"},
		{"20210924093015", "2021-09-24T09:30:15+01:00"},
		{"20210924093015.1", "2021-09-24T09:30:15.1+01:00"},
		{"20210924093015.1234", "2021-09-24T09:30:15.1234+01:00"},
		{"20210924093000+0215", "2021-09-24T09:30:00+02:15"},
		{"20210817151943.4+0200", "2021-08-17T15:19:43.4+02:00"},
		{"198908181126-0500", "1989-08-18T11:26:00-05:00"},
		{"2024+0000", "2024-01-01T00:00:00Z"},
		{"20240229", "2024-02-29T00:00:00+01:00"},
	}
	for _, tt := range tests {
		got, err := ParseDTM(tt.in, berlin)
		if err != nil {
			t.Errorf("ParseDTM(%q): %v", tt.in, err)
			continue
		}
		if s := got.Format(time.RFC3339Nano); s != tt.want {
			t.Errorf("ParseDTM(%q) = %s, want %s", tt.in, s, tt.want)
		}
	}
}

func TestParseDTM_NilLocationIsUTC(t *testing.T) {
	got, err := ParseDTM("20240101", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Location() != time.UTC {
		t.Errorf("location = %v, want UTC", got.Location())
	}
}

func TestParseDTM_Errors(t *testing.T) {
	for _, in := range []string{
		"", "20", "202", "2021091", "20210924093015.", "20210924093015.12345", "202109240930.5",
		"20211324", "20210931", "20230229", "20210924250000", "20210924096000", "20210924093060",
		"2021-09-24", "20210924+02", "20210924+02:00", "20210924+2400", "20210924+0260", "abcd",
	} {
		if _, err := ParseDTM(in, time.UTC); !errors.Is(err, ErrBadTime) {
			t.Errorf("ParseDTM(%q) error = %v, want ErrBadTime", in, err)
		}
	}
}

func TestFormatDTM(t *testing.T) {
	in := time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("", -4*3600-30*60))
	if got, want := FormatDTM(in), "20240305070809-0430"; got != want {
		t.Errorf("FormatDTM = %q, want %q", got, want)
	}
	back, err := ParseDTM(FormatDTM(in), nil)
	if err != nil || !back.Equal(in) {
		t.Errorf("ParseDTM(FormatDTM(t)) = %v, %v; want %v", back, err, in)
	}
}
