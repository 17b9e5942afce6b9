package hl7v2

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// latin1 is an ADT^A01 in ISO 8859-1 as a European sender writes it: the
// facility, the patient's name and an identifier hold letters beyond ASCII.
func latin1(msh18 string) []byte {
	return wire(
		"MSH|^~\\&|ADT|H\xd4PITAL|PF|PF|20240101120000||ADT^A01|L1|P|2.5|||||FR|"+msh18,
		"PID|1||\xc4B123^^^H\xd4P^MR||M\xdcLLER^JOS\xc9||19800101|M",
		"PV1|1|I",
	)
}

func TestParse_CharacterSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		msg        []byte
		def        string // Parser.DefaultCharset
		wantFamily string // "" when Parse must fail
		wantErr    error
		wantAck    ErrorCode
	}{
		{"declared 8859/1", latin1("8859/1"), "", "MÜLLER", nil, 0},
		{"declared in lower case with spaces", latin1(" 8859/1 "), "", "MÜLLER", nil, 0},
		{"declared 8859/1 with alternates", latin1("8859/1~ISO IR87"), "", "MÜLLER", nil, 0},
		{"declared 8859/7, Greek", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|G1|P|2.5|||||GR|8859/7", "PID|1||1^^^A^MR||\xd0\xc1\xd0\xc1\xc4\xcf\xd0\xcf\xd5\xcb\xcf\xd3^\xc1"), "", "ΠΑΠΑΔΟΠΟΥΛΟΣ", nil, 0},
		{"UTF-8 declared", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|U1|P|2.5|||||DE|UNICODE UTF-8", "PID|1||1^^^A^MR||MÜLLER"), "", "MÜLLER", nil, 0},
		{"UTF-8 undeclared", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|U2|P|2.5", "PID|1||1^^^A^MR||MÜLLER"), "", "MÜLLER", nil, 0},
		{"UTF-8 undeclared, a default does not apply", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|U3|P|2.5", "PID|1||1^^^A^MR||MÜLLER"), "8859/1", "MÜLLER", nil, 0},
		{"8859/1 undeclared, no default", latin1(""), "", "", ErrNotText, DataTypeError},
		{"8859/1 undeclared, site default", latin1(""), "8859/1", "MÜLLER", nil, 0},
		{"8859/1 declared ASCII, site default", latin1("ASCII"), "8859/1", "MÜLLER", nil, 0},
		{"8859/1 declared ASCII, no default", latin1("ASCII"), "", "", ErrNotText, DataTypeError},
		{"8859/1 declared UTF-8", latin1("UNICODE UTF-8"), "8859/1", "", ErrNotText, DataTypeError},
		{"8859/3 byte left undefined", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|X1|P|2.5|||||MT|8859/3", "PID|1||1^^^A^MR||X\xa5Y"), "", "", ErrNotText, DataTypeError},
		{"UTF-16", latin1("UNICODE UTF-16"), "", "", ErrUnsupportedCharset, TableValueNotFound},
		{"JIS X 0208", latin1("ISO IR87"), "", "", ErrUnsupportedCharset, TableValueNotFound},
		{"not in table 0211", latin1("WINDOWS-1252"), "", "", ErrUnsupportedCharset, TableValueNotFound},
		{"IANA name", latin1("ISO-8859-1"), "", "MÜLLER", nil, 0},
		{"UTF-8 by its IANA name", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|U4|P|2.5|||||DE|UTF-8", "PID|1||1^^^A^MR||MÜLLER"), "", "MÜLLER", nil, 0},
		{"ASCII text in a set not read here", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|J1|P|2.5|||||JP|ISO IR87", "PID|1||1^^^A^MR||YAMADA"), "", "YAMADA", nil, 0},
		{"ISO 2022 escape in a set not read here", wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|J2|P|2.5|||||JP|ISO IR87", "PID|1||1^^^A^MR||\x1b$B;3ED\x1b(B"), "", "", ErrUnsupportedCharset, TableValueNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Parser{DefaultCharset: tt.def}.Parse(tt.msg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse: %v, want %v", err, tt.wantErr)
				}
				spec := RejectSpec(err)
				if spec.Code != ApplicationReject || spec.Error != tt.wantAck {
					t.Errorf("RejectSpec: %s %d, want AR %d", spec.Code, spec.Error, tt.wantAck)
				}
				if l := spec.Location; l == nil || l.Segment != "MSH" || l.Field != 18 {
					t.Errorf("ERR-2 %+v, want MSH-18", spec.Location)
				}
				if !strings.HasPrefix(spec.Text, tt.wantErr.Error()) || tt.wantErr == ErrNotText && spec.Text == ErrNotText.Error() {
					t.Errorf("ERR-8 %q does not say what is wrong and why", spec.Text)
				}
				for _, v := range []string{"\xdc", "\xc4", "MÜLLER", "\xa5"} {
					if bytes.Contains([]byte(spec.Text), []byte(v)) {
						t.Errorf("ERR-8 %q quotes the message", spec.Text)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := mustGet(t, m, "PID-5-1"); got != tt.wantFamily {
				t.Errorf("PID-5-1 = %q, want %q", got, tt.wantFamily)
			}
			// Encode writes the message back as it came.
			if got := m.Encode(); !bytes.Equal(got, tt.msg) {
				t.Errorf("Encode:\n%q\nwant\n%q", got, tt.msg)
			}
		})
	}
}

// TestToCareEvent_CharacterSets: identifiers that differ only beyond ASCII
// stay different. Read as bytes, both would have become "\uFFFDB123" in the
// event's JSON: one patient's priors searched under another's identifier.
func TestToCareEvent_CharacterSets(t *testing.T) {
	t.Parallel()
	a := mustParse(t, latin1("8859/1"))
	b := mustParse(t, bytes.Replace(latin1("8859/1"), []byte("\xc4B123"), []byte("\xd6B123"), 1))
	eva, err := ToCareEvent(a, MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evb, err := ToCareEvent(b, MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := eva.Patient.Identifiers[0].Value; got != "ÄB123" {
		t.Errorf("identifier %q, want ÄB123", got)
	}
	if got := evb.Patient.Identifiers[0].Value; got != "ÖB123" {
		t.Errorf("identifier %q, want ÖB123", got)
	}
	if eva.Patient.Family != "MÜLLER" || !slices.Equal(eva.Patient.Given, []string{"JOSÉ"}) || eva.SourceSystem != "ADT@HÔPITAL" {
		t.Errorf("patient %q %q from %q", eva.Patient.Family, eva.Patient.Given, eva.SourceSystem)
	}

	// A \X\ escape spells bytes; ones that are not UTF-8 are refused.
	m := mustParse(t, wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|E1|P|2.5", "PID|1||\\XC4\\B123^^^A^MR", "PV1|1|I"))
	_, err = ToCareEvent(m, MapOptions{})
	var merr *MappingError
	if !errors.As(err, &merr) || !errors.Is(err, ErrNotText) {
		t.Fatalf("ToCareEvent: %v, want a MappingError wrapping ErrNotText", err)
	}
	if spec := merr.AckSpec(); spec.Code != ApplicationError || spec.Error != DataTypeError {
		t.Errorf("AckSpec %s %d, want AE 102", spec.Code, spec.Error)
	}
}

// A control character in a mapped value, sent as is or escaped, is AE 102
// at the subcomponent it is in; tab, CR and LF and unmapped fields are
// left alone.
func TestToCareEvent_ControlCharacters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pid  string
		want ErrorLocation // zero: accepted
	}{
		{"NUL in the family name", "PID|1||AB1^^^A^MR||DOE\x00^JOHN", ErrorLocation{Segment: "PID", Sequence: 1, Field: 5, Repetition: 1, Component: 1, Subcomponent: 1}},
		{"SOH escaped in the identifier", "PID|1||AB1~AB\\X01\\2^^^A^MR||DOE^JOHN", ErrorLocation{Segment: "PID", Sequence: 1, Field: 3, Repetition: 2, Component: 1, Subcomponent: 1}},
		{"ESC in the given name", "PID|1||AB1^^^A^MR||DOE^JO\x1bHN", ErrorLocation{Segment: "PID", Sequence: 1, Field: 5, Repetition: 1, Component: 2, Subcomponent: 1}},
		{"tab in the given name", "PID|1||AB1^^^A^MR||DOE^JO\tHN", ErrorLocation{}},
		{"NUL in a field not mapped", "PID|1||AB1^^^A^MR||DOE^JOHN|||||||||||\x00", ErrorLocation{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, wire("MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|E1|P|2.5", tc.pid, "PV1|1|I"))
			ev, err := ToCareEvent(m, MapOptions{})
			if tc.want == (ErrorLocation{}) {
				if err != nil {
					t.Fatalf("ToCareEvent: %v, want an event", err)
				}
				if err := ev.Validate(); err != nil {
					t.Fatalf("event: %v", err)
				}
				return
			}
			var merr *MappingError
			if !errors.As(err, &merr) || !errors.Is(err, ErrNotText) {
				t.Fatalf("ToCareEvent: %v, want a MappingError wrapping ErrNotText", err)
			}
			spec := merr.AckSpec()
			if spec.Code != ApplicationError || spec.Error != DataTypeError {
				t.Errorf("AckSpec %s %d, want AE 102", spec.Code, spec.Error)
			}
			if spec.Location == nil || *spec.Location != tc.want {
				t.Errorf("location %+v, want %+v", spec.Location, tc.want)
			}
			if strings.ContainsAny(spec.Text, "\x00\x01\x1b") || strings.Contains(spec.Text, "DOE") {
				t.Errorf("reason %q carries the value", spec.Text)
			}
		})
	}
}

// TestNewAck_EchoesCharacterSet: the acknowledgement of an 8859/1 message
// is in 8859/1, says so, and names the parties in the sender's bytes; that
// of a message in no declared set echoes its bytes unchanged.
func TestNewAck_EchoesCharacterSet(t *testing.T) {
	t.Parallel()
	for _, msh18 := range []string{"8859/1", ""} {
		in := latin1(msh18)
		ack, err := NewAck(in, AckSpec{Code: ApplicationAccept})
		if err != nil {
			t.Fatal(err)
		}
		b := ack.Encode()
		m, err := Parser{DefaultCharset: "8859/1"}.Parse(b)
		if err != nil {
			t.Fatalf("MSH-18 %q: ACK does not parse: %v", msh18, err)
		}
		if got := mustGet(t, m, "MSH-6"); got != "HÔPITAL" {
			t.Errorf("MSH-18 %q: ACK MSH-6 %q, want HÔPITAL", msh18, got)
		}
		if !bytes.Contains(b, []byte("|H\xd4PITAL|")) {
			t.Errorf("MSH-18 %q: ACK does not echo the facility's bytes: %q", msh18, b)
		}
		if got := mustGet(t, m, "MSH-18"); got != msh18 {
			t.Errorf("ACK MSH-18 %q, want %q", got, msh18)
		}
	}
}

func TestCheckCharset(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "ASCII", "unicode utf-8", "8859/1", " 8859/15", "8859/9", "UTF-8", "iso-8859-2"} {
		if err := CheckCharset(ok); err != nil {
			t.Errorf("CheckCharset(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"8859/10", "8859/16", "UNICODE UTF-16", "ISO IR87", "GB 18030-2000", "latin1", "windows-1252"} {
		if err := CheckCharset(bad); !errors.Is(err, ErrUnsupportedCharset) {
			t.Errorf("CheckCharset(%q): %v, want ErrUnsupportedCharset", bad, err)
		}
	}
}

// TestEncode_CharacterTheSetCannotHold: a value set into an 8859/1 message
// is written in 8859/1, and what it cannot represent as '?'.
func TestEncode_CharacterTheSetCannotHold(t *testing.T) {
	t.Parallel()
	m := mustParse(t, latin1("8859/1"))
	if err := m.Set("PID-5-1", "ÉΠ"); err != nil {
		t.Fatal(err)
	}
	b := m.Encode()
	if !bytes.Contains(b, []byte("|\xc9?^JOS\xc9|")) {
		t.Errorf("Encode: %q, want PID-5 as \\xc9?^JOS\\xc9", b)
	}
	back := mustParse(t, b)
	if got := mustGet(t, back, "PID-5-1"); got != "É?" {
		t.Errorf("read back %q, want É?", got)
	}
}
