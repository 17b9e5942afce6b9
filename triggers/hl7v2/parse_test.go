package hl7v2

import (
	"errors"
	"strings"
	"testing"
)

func TestParse_SegmentTerminators(t *testing.T) {
	segs := []string{"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|42|P|2.5.1", "PID|1||X1^^^H", "PV1|1|I"}
	for _, tt := range []struct{ name, term string }{
		{"CR", "\r"}, {"LF", "\n"}, {"CRLF", "\r\n"}, {"CR with blank lines", "\r\r"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, []byte(strings.Join(segs, tt.term)+tt.term))
			var ids []string
			for _, s := range m.AllSegments() {
				ids = append(ids, s.ID())
			}
			if d := diff([]string{"MSH", "PID", "PV1"}, ids); d != "" {
				t.Errorf("segment IDs: %s", d)
			}
			if got, want := mustGet(t, m, "PV1-2"), "I"; got != want {
				t.Errorf("PV1-2 = %q, want %q", got, want)
			}
		})
	}
}

func TestParse_MSHFieldNumbering(t *testing.T) {
	m := mustParse(t, wire("MSH|^~\\&|SendApp|SendFac|RecvApp|RecvFac|20240101120000||ORM^O01^ORM_O01|CTRL1|P|2.3"))
	tests := []struct{ path, want string }{
		{"MSH-1", "|"},
		{"MSH-2", "^~\\&"},
		{"MSH-3", "SendApp"},
		{"MSH-6", "RecvFac"},
		{"MSH-9-2", "O01"},
		{"MSH-10", "CTRL1"},
		{"MSH-12", "2.3"},
		{"MSH-13", ""},
	}
	for _, tt := range tests {
		if got := mustGet(t, m, tt.path); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.path, got, tt.want)
		}
	}
	if got, want := m.Segment("MSH").NumFields(), 12; got != want {
		t.Errorf("MSH NumFields = %d, want %d", got, want)
	}
}

func TestParse_CustomDelimiters(t *testing.T) {
	// The same message with the standard |^~\& and with #$*!@ (field #,
	// component $, repetition *, escape !, subcomponent @).
	std := wire(
		`MSH|^~\&|APP|FAC|||20240101||ADT^A08|C1|P|2.5`,
		`PID|1||111^^^HOSP&1.2.3&ISO^MR~222^^^SSA^SS||Doe^Jane||19800101|F|||Main St \X26\ 1st^^Town`,
	)
	custom := wire(
		`MSH#$*!@#APP#FAC###20240101##ADT$A08#C1#P#2.5`,
		`PID#1##111$$$HOSP@1.2.3@ISO$MR*222$$$SSA$SS##Doe$Jane##19800101#F###Main St !X26! 1st$$Town`,
	)
	want := []CX{
		{ID: "111", AssigningAuthority: HD{"HOSP", "1.2.3", "ISO"}, IdentifierTypeCode: "MR"},
		{ID: "222", AssigningAuthority: HD{NamespaceID: "SSA"}, IdentifierTypeCode: "SS"},
	}
	for name, data := range map[string][]byte{"standard": std, "custom": custom} {
		t.Run(name, func(t *testing.T) {
			m := mustParse(t, data)
			if d := diff(want, m.PatientIdentifiers()); d != "" {
				t.Errorf("PatientIdentifiers: %s", d)
			}
			if got, want := mustGet(t, m, "PID-11-1"), "Main St & 1st"; got != want {
				t.Errorf("PID-11-1 = %q, want %q", got, want)
			}
			if got, want := m.MessageType(), (MessageType{Code: "ADT", TriggerEvent: "A08"}); got != want {
				t.Errorf("MessageType = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("custom delimiters are reported", func(t *testing.T) {
		got := mustParse(t, custom).Delimiters()
		want := Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '!', Subcomponent: '@'}
		if got != want {
			t.Errorf("Delimiters = %+v, want %+v", got, want)
		}
	})
}

func TestParse_TruncationCharacter(t *testing.T) {
	// HL7 v2.7 section 2.5.5.6: a fifth encoding character, usually #.
	m := mustParse(t, wire(`MSH|^~\&#|A|B|||20240101||ADT^A01|C1|P|2.7`, `NTE|1||50\P\ off`))
	if got, want := m.Delimiters().Truncation, byte('#'); got != want {
		t.Errorf("Truncation = %q, want %q", got, want)
	}
	if got, want := mustGet(t, m, "MSH-2"), `^~\&#`; got != want {
		t.Errorf("MSH-2 = %q, want %q", got, want)
	}
	if got, want := mustGet(t, m, "NTE-3"), "50# off"; got != want {
		t.Errorf("NTE-3 = %q, want %q", got, want)
	}
}

func TestParse_Structure(t *testing.T) {
	m := mustParse(t, wire(
		`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1|||AL|NE||8859/1~UNICODE UTF-8`,
		`PID|1||A&B&C^D~E||||||||||||||||||||||||||`,
		`ZPI|custom|x^y`,
		`OBX|1|ST|code||first`,
		`OBX|2|ST|code||second`,
	))
	t.Run("repetitions in MSH", func(t *testing.T) {
		f := m.Segment("MSH").Field(18)
		if d := diff(Field{{{"8859/1"}}, {{"UNICODE UTF-8"}}}, f); d != "" {
			t.Errorf("MSH-18: %s", d)
		}
		if got, want := mustGet(t, m, "MSH-18(2)"), "UNICODE UTF-8"; got != want {
			t.Errorf("MSH-18(2) = %q, want %q", got, want)
		}
	})
	t.Run("subcomponents", func(t *testing.T) {
		if d := diff(Field{{{"A", "B", "C"}, {"D"}}, {{"E"}}}, m.Segment("PID").Field(3)); d != "" {
			t.Errorf("PID-3: %s", d)
		}
		if got, want := mustGet(t, m, "PID-3-1-3"), "C"; got != want {
			t.Errorf("PID-3-1-3 = %q, want %q", got, want)
		}
	})
	t.Run("trailing empty fields are kept", func(t *testing.T) {
		if got, want := m.Segment("PID").NumFields(), 29; got != want {
			t.Errorf("PID NumFields = %d, want %d", got, want)
		}
		if f := m.Segment("PID").Field(27); f != nil {
			t.Errorf("PID-29 = %#v, want nil", f)
		}
		if got, want := string(m.Encode()), "PID|1||A&B&C^D~E||||||||||||||||||||||||||\r"; !strings.Contains(got, want) {
			t.Errorf("Encode lost trailing fields")
		}
	})
	t.Run("Z-segments are kept", func(t *testing.T) {
		if got, want := mustGet(t, m, "ZPI-2-2"), "y"; got != want {
			t.Errorf("ZPI-2-2 = %q, want %q", got, want)
		}
	})
	t.Run("segment occurrences", func(t *testing.T) {
		if got, want := len(m.Segments("OBX")), 2; got != want {
			t.Fatalf("len(Segments(OBX)) = %d, want %d", got, want)
		}
		if got, want := mustGet(t, m, "OBX(2)-5"), "second"; got != want {
			t.Errorf("OBX(2)-5 = %q, want %q", got, want)
		}
		if got := mustGet(t, m, "OBX(3)-5"); got != "" {
			t.Errorf("OBX(3)-5 = %q, want empty", got)
		}
	})
	t.Run("absent positions are empty", func(t *testing.T) {
		for _, p := range []string{"PID-99", "PID-3(5)", "PID-3-9", "PID-3-1-9", "NK1-1"} {
			if got := mustGet(t, m, p); got != "" {
				t.Errorf("%s = %q, want empty", p, got)
			}
		}
		if m.Segment("NK1") != nil {
			t.Error("Segment(NK1) != nil")
		}
	})
}

func TestParse_Lenient(t *testing.T) {
	t.Run("byte order mark", func(t *testing.T) {
		m := mustParse(t, append([]byte("\xef\xbb\xbf"), wire(`MSH|^~\&|A||||||ADT^A01|C1|P|2.5`)...))
		if got, want := m.ControlID(), "C1"; got != want {
			t.Errorf("ControlID = %q, want %q", got, want)
		}
	})
	t.Run("MSH only, no terminator", func(t *testing.T) {
		m := mustParse(t, []byte(`MSH|^~\&`))
		if got, want := len(m.AllSegments()), 1; got != want {
			t.Errorf("len(AllSegments) = %d, want %d", got, want)
		}
		if got := m.ControlID(); got != "" {
			t.Errorf("ControlID = %q, want empty", got)
		}
	})
	t.Run("segment without fields", func(t *testing.T) {
		m := mustParse(t, wire(`MSH|^~\&|A`, `RGS`))
		if got, want := m.Segment("RGS").NumFields(), 0; got != want {
			t.Errorf("NumFields = %d, want %d", got, want)
		}
	})
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr error
		wantPos ParseError // Err ignored
	}{
		{"empty", "", ErrEmpty, ParseError{}},
		{"only blank lines", "\r\n\r\n  \n", ErrEmpty, ParseError{}},
		{"no MSH", "PID|1||X\rPV1|1\r", ErrMissingMSH, ParseError{Segment: "PID", Sequence: 1}},
		{"MSH not first", "EVN|A01\rMSH|^~\\&|A\r", ErrNotMSHFirst, ParseError{Segment: "EVN", Sequence: 1}},
		{"batch header", "BHS|^~\\&\rMSH|^~\\&|A\r", ErrNotMSHFirst, ParseError{Segment: "BHS", Sequence: 1}},
		{"second MSH", "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", ErrMultipleMSH, ParseError{Segment: "MSH", Sequence: 3}},
		{"MSH without separator", "MSH", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 1}},
		{"three encoding characters", "MSH|^~\\|A\r", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 2}},
		{"six encoding characters", "MSH|^~\\&#$|A\r", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 2}},
		{"duplicate encoding characters", "MSH|^^\\&|A\r", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 2}},
		{"letter as field separator", "MSHX^~\\&XA\r", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 2}},
		{"encoding character equals field separator", "MSH|^~|&|A\r", ErrBadEncodingCharacters, ParseError{Segment: "MSH", Sequence: 1, Field: 2}},
		{"lower-case segment ID", "MSH|^~\\&|A\rpid|1\r", ErrBadSegmentID, ParseError{Segment: "pid", Sequence: 2}},
		{"short segment ID", "MSH|^~\\&|A\rPI|1\r", ErrBadSegmentID, ParseError{Segment: "PI|", Sequence: 2}},
		{"long segment ID", "MSH|^~\\&|A\rPIDX|1\r", ErrBadSegmentID, ParseError{Segment: "PID", Sequence: 2}},
		{"free text line", "MSH|^~\\&|A\rPID|1\rsome note\r", ErrBadSegmentID, ParseError{Segment: "som", Sequence: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
			}
			if m != nil {
				t.Error("Parse returned a message with the error")
			}
			var perr *ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("error %T is not *ParseError", err)
			}
			got := ParseError{Segment: perr.Segment, Sequence: perr.Sequence, Field: perr.Field}
			if got != tt.wantPos {
				t.Errorf("position = %+v, want %+v", got, tt.wantPos)
			}
		})
	}
}

func TestParser_MaxSize(t *testing.T) {
	data := wire(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5`, "NTE|1||"+strings.Repeat("x", 100))
	if _, err := (Parser{MaxSize: 100}).Parse(data); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse over limit: error = %v, want ErrTooLarge", err)
	}
	if _, err := (Parser{MaxSize: len(data)}).Parse(data); err != nil {
		t.Errorf("Parse at limit: %v", err)
	}
	if _, err := Parse(make([]byte, DefaultMaxSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse over default limit: error = %v, want ErrTooLarge", err)
	}
}

func TestParseHeader_IgnoresBrokenBody(t *testing.T) {
	data := wire(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C77|P|2.4`, `pid|broken`)
	if _, err := Parse(data); !errors.Is(err, ErrBadSegmentID) {
		t.Fatalf("Parse error = %v, want ErrBadSegmentID", err)
	}
	m, err := ParseHeader(data)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	if got, want := m.ControlID(), "C77"; got != want {
		t.Errorf("ControlID = %q, want %q", got, want)
	}
}

func TestParseError_DoesNotQuoteContent(t *testing.T) {
	_, err := Parse([]byte("MSH|^~\\&|A\rJohn Smith, 1970-01-01, MRN 123\r"))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if strings.Contains(err.Error(), "Smith") || strings.Contains(err.Error(), "123") {
		t.Errorf("error %q quotes message content", err)
	}
}
