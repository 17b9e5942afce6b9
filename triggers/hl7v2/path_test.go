package hl7v2

import (
	"errors"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		want Path
	}{
		{"PID-3", Path{"PID", 1, 3, 1, 1, 1}},
		{"PID-3(2)-4-1", Path{"PID", 1, 3, 2, 4, 1}},
		{"OBX(2)-5", Path{"OBX", 2, 5, 1, 1, 1}},
		{"MSH-9-2", Path{"MSH", 1, 9, 1, 2, 1}},
		{"ZB1-1-2-3", Path{"ZB1", 1, 1, 1, 2, 3}},
	}
	for _, tt := range tests {
		got, err := ParsePath(tt.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePath(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if again, err := ParsePath(got.String()); err != nil || again != got {
			t.Errorf("ParsePath(%q.String()) = %+v, %v", tt.in, again, err)
		}
	}
}

func TestParsePath_Errors(t *testing.T) {
	for _, in := range []string{
		"", "PID", "PID-", "PID-0", "PID-x", "pid-3", "PI-3", "PIDX-3", "PID-3-1-1-1",
		"PID(0)-3", "PID(-1)-3", "PID-3(0)", "PID-3(1", "PID-3()", "PID-+3", "PID-3-0", "PID-3-1-0",
		"PID-100000",
	} {
		if _, err := ParsePath(in); !errors.Is(err, ErrBadPath) {
			t.Errorf("ParsePath(%q) error = %v, want ErrBadPath", in, err)
		}
	}
}

func TestMessage_Get_BadPath(t *testing.T) {
	m := mustParse(t, wire(`MSH|^~\&|A`))
	if _, err := m.Get("PID3"); !errors.Is(err, ErrBadPath) {
		t.Errorf("Get(PID3) error = %v, want ErrBadPath", err)
	}
}
