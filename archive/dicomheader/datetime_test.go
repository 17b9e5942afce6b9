package dicomheader_test

import (
	"errors"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func TestParseDate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "20061217", want: time.Date(2006, 12, 17, 0, 0, 0, 0, time.UTC)},
		{in: "2006.12.17", want: time.Date(2006, 12, 17, 0, 0, 0, 0, time.UTC)},
		{in: " 20240229 ", want: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{in: "20230229", wantErr: true},
		{in: "20231301", wantErr: true},
		{in: "2023121", wantErr: true},
		{in: "2023-12-17", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, p, err := dicomheader.ParseDate(tt.in)
		if tt.wantErr {
			if !errors.Is(err, dicomheader.ErrInvalidDateTime) {
				t.Errorf("ParseDate(%q) error = %v, want ErrInvalidDateTime", tt.in, err)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) || p != dicomheader.PrecisionDay {
			t.Errorf("ParseDate(%q) = %v, %v, %v, want %v, day, nil", tt.in, got, p, err, tt.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantP   dicomheader.Precision
		wantErr bool
	}{
		{in: "13", want: 13 * time.Hour, wantP: dicomheader.PrecisionHour},
		{in: "1316", want: 13*time.Hour + 16*time.Minute, wantP: dicomheader.PrecisionMinute},
		{in: "131658", want: 13*time.Hour + 16*time.Minute + 58*time.Second, wantP: dicomheader.PrecisionSecond},
		{in: "141015.59", want: 14*time.Hour + 10*time.Minute + 15*time.Second + 590*time.Millisecond, wantP: dicomheader.PrecisionFraction},
		{in: "145225.546000", want: 14*time.Hour + 52*time.Minute + 25*time.Second + 546*time.Millisecond, wantP: dicomheader.PrecisionFraction},
		{in: "13:16:58", want: 13*time.Hour + 16*time.Minute + 58*time.Second, wantP: dicomheader.PrecisionSecond},
		{in: "13:16", want: 13*time.Hour + 16*time.Minute, wantP: dicomheader.PrecisionMinute},
		{in: "13:16:58.5", want: 13*time.Hour + 16*time.Minute + 58*time.Second + 500*time.Millisecond, wantP: dicomheader.PrecisionFraction},
		{in: "235960", want: 23*time.Hour + 59*time.Minute + 60*time.Second, wantP: dicomheader.PrecisionSecond},
		{in: "2400", wantErr: true},
		{in: "1261", wantErr: true},
		{in: "131", wantErr: true},
		{in: "1316.5", wantErr: true},
		{in: "131658.1234567", wantErr: true},
		{in: "ab", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, p, err := dicomheader.ParseTime(tt.in)
		if tt.wantErr {
			if !errors.Is(err, dicomheader.ErrInvalidDateTime) {
				t.Errorf("ParseTime(%q) error = %v, want ErrInvalidDateTime", tt.in, err)
			}
			continue
		}
		if want := (time.Time{}).Add(tt.want); err != nil || !got.Equal(want) || p != tt.wantP {
			t.Errorf("ParseTime(%q) = %v, %v, %v, want %v, %v, nil", tt.in, got, p, err, want, tt.wantP)
		}
	}
}

func TestParseDateTime(t *testing.T) {
	t.Parallel()
	est := time.FixedZone("-0500", -5*3600)
	tests := []struct {
		in      string
		loc     *time.Location
		want    time.Time
		wantP   dicomheader.Precision
		wantErr bool
	}{
		{in: "2006", want: time.Date(2006, 1, 1, 0, 0, 0, 0, time.UTC), wantP: dicomheader.PrecisionYear},
		{in: "200612", want: time.Date(2006, 12, 1, 0, 0, 0, 0, time.UTC), wantP: dicomheader.PrecisionMonth},
		{in: "20061219", want: time.Date(2006, 12, 19, 0, 0, 0, 0, time.UTC), wantP: dicomheader.PrecisionDay},
		{in: "2006121911", want: time.Date(2006, 12, 19, 11, 0, 0, 0, time.UTC), wantP: dicomheader.PrecisionHour},
		{in: "20061219111154.812", want: time.Date(2006, 12, 19, 11, 11, 54, 812e6, time.UTC), wantP: dicomheader.PrecisionFraction},
		{in: "20061219111154", loc: est, want: time.Date(2006, 12, 19, 16, 11, 54, 0, time.UTC), wantP: dicomheader.PrecisionSecond},
		{in: "20061219111154+0100", loc: est, want: time.Date(2006, 12, 19, 10, 11, 54, 0, time.UTC), wantP: dicomheader.PrecisionSecond},
		{in: "2006-0100", want: time.Date(2006, 1, 1, 1, 0, 0, 0, time.UTC), wantP: dicomheader.PrecisionYear},
		{in: "20061219111154+01", wantErr: true},
		{in: "200613", wantErr: true},
		{in: "20061", wantErr: true},
		{in: "2006121911:11", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, p, err := dicomheader.ParseDateTime(tt.in, tt.loc)
		if tt.wantErr {
			if !errors.Is(err, dicomheader.ErrInvalidDateTime) {
				t.Errorf("ParseDateTime(%q) error = %v, want ErrInvalidDateTime", tt.in, err)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) || p != tt.wantP {
			t.Errorf("ParseDateTime(%q) = %v, %v, %v, want %v, %v, nil", tt.in, got, p, err, tt.want, tt.wantP)
		}
	}
}

func TestHeader_StudyDateTime_UsesTimezoneOffsetFromUTC(t *testing.T) {
	t.Parallel()
	h := parseFile(t, dicomtest.FileCTMulti) // 20061219 111154.812, -0500
	got, p, err := h.StudyDateTime(time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2006, 12, 19, 16, 11, 54, 812e6, time.UTC); !got.Equal(want) || p != dicomheader.PrecisionFraction {
		t.Errorf("StudyDateTime() = %v, %v, want %v, fraction", got, p, want)
	}
	if _, offset := got.Zone(); offset != -5*3600 {
		t.Errorf("StudyDateTime() zone offset = %d, want -18000", offset)
	}
}

func TestHeader_StudyDateTime_DefaultLocation(t *testing.T) {
	t.Parallel()
	h := parseFile(t, dicomtest.FileMR) // 20061217 131658, no offset
	cet := time.FixedZone("CET", 3600)
	got, p, err := h.StudyDateTime(cet)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2006, 12, 17, 12, 16, 58, 0, time.UTC); !got.Equal(want) || p != dicomheader.PrecisionSecond {
		t.Errorf("StudyDateTime() = %v, %v, want %v, second", got, p, want)
	}
	ot := parseFile(t, dicomtest.FileOTDeflated) // no Study Date
	if _, _, err := ot.StudyDateTime(nil); !errors.Is(err, dicomheader.ErrInvalidDateTime) {
		t.Errorf("StudyDateTime() without Study Date error = %v, want ErrInvalidDateTime", err)
	}
}

func TestHeader_SeriesDateTime_GeneratedStudy(t *testing.T) {
	t.Parallel()
	when := time.Date(2025, 7, 1, 8, 5, 3, 250e6, time.FixedZone("", 2*3600))
	in := dicomtest.NewStudy(t, dicomtest.WithStudyDate(when)).Series[0].Instances[0]
	h := parseBytes(t, in.Bytes)
	got, _, err := h.SeriesDateTime(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(when) {
		t.Errorf("SeriesDateTime() = %v, want %v", got, when)
	}
	if got, want := h.TimezoneOffsetFromUTC, "+0200"; got != want {
		t.Errorf("TimezoneOffsetFromUTC = %q, want %q", got, want)
	}
}

func TestParseTimezoneOffset(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"+0000": 0, "-0500": -18000, "+0530": 19800, "+1400": 50400} {
		loc, err := dicomheader.ParseTimezoneOffset(in)
		if err != nil {
			t.Errorf("ParseTimezoneOffset(%q): %v", in, err)
			continue
		}
		if _, off := time.Date(2000, 1, 1, 0, 0, 0, 0, loc).Zone(); off != want {
			t.Errorf("ParseTimezoneOffset(%q) offset = %d, want %d", in, off, want)
		}
	}
	for _, in := range []string{"", "0500", "+05", "+2500", "+0560", "+05:00"} {
		if _, err := dicomheader.ParseTimezoneOffset(in); !errors.Is(err, dicomheader.ErrInvalidDateTime) {
			t.Errorf("ParseTimezoneOffset(%q) error = %v, want ErrInvalidDateTime", in, err)
		}
	}
}
