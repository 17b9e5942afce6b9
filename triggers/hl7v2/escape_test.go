package hl7v2

import (
	"errors"
	"strings"
	"testing"
)

func TestUnescape(t *testing.T) {
	trunc := DefaultDelimiters
	trunc.Truncation = '#'
	tests := []struct {
		name, in, want string
		d              Delimiters
	}{
		{"no escapes", "plain", "plain", DefaultDelimiters},
		{"delimiters", `a\F\b\S\c\T\d\R\e\E\f`, `a|b^c&d~e\f`, DefaultDelimiters},
		{"hex", `\X48454C4C4F\`, "HELLO", DefaultDelimiters},
		{"hex lower case", `\X0d0a\`, "\r\n", DefaultDelimiters},
		{"line break", `one\.br\two`, "one\ntwo", DefaultDelimiters},
		{"truncation defined", `x\P\`, "x#", trunc},
		{"truncation undefined kept", `x\P\`, `x\P\`, DefaultDelimiters},
		{"highlighting kept", `\H\bold\N\`, `\H\bold\N\`, DefaultDelimiters},
		{"character set kept", `\C2842\abc`, `\C2842\abc`, DefaultDelimiters},
		{"other formatting kept", `\.sp2\`, `\.sp2\`, DefaultDelimiters},
		{"odd hex kept", `\X414\`, `\X414\`, DefaultDelimiters},
		{"bad hex kept", `\XZZ\`, `\XZZ\`, DefaultDelimiters},
		{"empty sequence kept", `a\\b`, `a\\b`, DefaultDelimiters},
		{"unterminated kept", `a\F`, `a\F`, DefaultDelimiters},
		{"custom escape", `a!F!b!E!`, `a#b!`, Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '!', Subcomponent: '@'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unescape(tt.in, tt.d); got != tt.want {
				t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEscape_RoundTrip(t *testing.T) {
	custom := Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '!', Subcomponent: '@', Truncation: '%'}
	values := []string{
		"", "plain", `|^~\&`, "#$*!@%", "line one\nline two", "cr\rhere", "tab\tok",
		"\x0b\x1c frame bytes", "über straße", `\H\ literal`,
	}
	for _, d := range []Delimiters{DefaultDelimiters, custom} {
		for _, v := range values {
			esc := Escape(v, d)
			for i := 0; i < len(esc); i++ {
				c := esc[i]
				if c == d.Field || c == d.Component || c == d.Repetition || c == d.Subcomponent ||
					c == d.Truncation || c == '\r' || c == '\n' || c == 0x0b || c == 0x1c {
					t.Errorf("Escape(%q) = %q contains raw %q", v, esc, c)
				}
			}
			if got := Unescape(esc, d); got != v {
				t.Errorf("Unescape(Escape(%q)) = %q (escaped %q)", v, got, esc)
			}
		}
	}
}

func TestMessage_SetThenGet(t *testing.T) {
	m, err := NewMessage(DefaultDelimiters)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddSegment("NTE"); err != nil {
		t.Fatal(err)
	}
	tricky := "A|B^C~D\\E&F\nG"
	for _, p := range []string{"NTE-3", "NTE-4(2)-3-2", "MSH-10"} {
		if err := m.Set(p, tricky); err != nil {
			t.Fatalf("Set(%q): %v", p, err)
		}
	}
	got := mustParse(t, m.Encode())
	for _, p := range []string{"NTE-3", "NTE-4(2)-3-2", "MSH-10"} {
		if v := mustGet(t, got, p); v != tricky {
			t.Errorf("%s = %q after round trip, want %q", p, v, tricky)
		}
	}
	if d := diff(Field{{{""}}, {{""}, {""}, {"", tricky}}}, got.Segment("NTE").Field(4)); d != "" {
		t.Errorf("NTE-4 structure: %s", d)
	}
	if got, want := string(m.Encode()), "MSH|^~\\&||||||||A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F\\.br\\G\r"; !strings.HasPrefix(got, want) {
		t.Errorf("Encode = %q, want prefix %q", got, want)
	}
	t.Run("MSH-1 and MSH-2 are fixed", func(t *testing.T) {
		for _, p := range []string{"MSH-1", "MSH-2"} {
			if err := m.Set(p, "x"); !errors.Is(err, ErrBadPath) {
				t.Errorf("Set(%q) error = %v, want ErrBadPath", p, err)
			}
		}
	})
	t.Run("missing segment", func(t *testing.T) {
		if err := m.Set("PID-3", "x"); !errors.Is(err, ErrNoSegment) {
			t.Errorf("Set(PID-3) error = %v, want ErrNoSegment", err)
		}
	})
	t.Run("bad segment ID", func(t *testing.T) {
		for _, id := range []string{"MSH", "pid", "PIDX", ""} {
			if _, err := m.AddSegment(id); !errors.Is(err, ErrBadSegmentID) {
				t.Errorf("AddSegment(%q) error = %v, want ErrBadSegmentID", id, err)
			}
		}
	})
}

func TestNewMessage_RejectsBadDelimiters(t *testing.T) {
	d := DefaultDelimiters
	d.Component = '|'
	if _, err := NewMessage(d); !errors.Is(err, ErrBadEncodingCharacters) {
		t.Errorf("NewMessage error = %v, want ErrBadEncodingCharacters", err)
	}
}
