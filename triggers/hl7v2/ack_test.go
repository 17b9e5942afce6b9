package hl7v2

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var ackTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))

func TestNewAck_Accept(t *testing.T) {
	in := readSample(t, "SIU-S12-01.hl7")
	ack, err := NewAck(in, AckSpec{Code: ApplicationAccept, ControlID: "ACK1", Time: ackTime})
	if err != nil {
		t.Fatal(err)
	}
	want := "MSH|^~\\&|EHRApp^1.Aux^ISO|GHHRFacility^2.16.840.1.1122848.1.32^ISO|SCHApp|GHHSFacility^2.16.840.1.122848.1.30^ISO|20240506070809+0200||ACK^S12^ACK|ACK1|P|2.8\r" +
		"MSA|AA|MSG00012\r"
	if got := string(ack.Encode()); got != want {
		t.Errorf("ACK =\n%q\nwant\n%q", got, want)
	}
}

func TestNewAck_ErrorWithERR(t *testing.T) {
	in := wire(`MSH|^~\&|RIS|HOSP|PF|PF|20240101||ORM^O01^ORM_O01|C123|T|2.5.1`, `PID|1||X^^^H^MR`)
	ack, err := NewAck(in, AckSpec{
		Code:      ApplicationError,
		Error:     RequiredFieldMissing,
		Text:      "PID-3 has no MR identifier",
		Location:  &ErrorLocation{Segment: "PID", Sequence: 1, Field: 3},
		ControlID: "A2",
		Time:      ackTime,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, ack.Encode())
	tests := []struct{ path, want string }{
		{"MSH-3", "PF"}, {"MSH-5", "RIS"}, {"MSH-6", "HOSP"},
		{"MSH-9-1", "ACK"}, {"MSH-9-2", "O01"}, {"MSH-9-3", "ACK"},
		{"MSH-10", "A2"}, {"MSH-11", "T"}, {"MSH-12", "2.5.1"},
		{"MSA-1", "AE"}, {"MSA-2", "C123"}, {"MSA-3", ""},
		{"ERR-1", ""},
		{"ERR-2-1", "PID"}, {"ERR-2-2", "1"}, {"ERR-2-3", "3"}, {"ERR-2-4", ""},
		{"ERR-3-1", "101"}, {"ERR-3-2", "Required field missing"}, {"ERR-3-3", "HL70357"},
		{"ERR-4", "E"},
		{"ERR-8", "PID-3 has no MR identifier"},
	}
	for _, tt := range tests {
		if got := mustGet(t, m, tt.path); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestNewAck_Versions(t *testing.T) {
	t.Run("before 2.5 the text also goes in MSA-3", func(t *testing.T) {
		in := wire(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C1|P|2.3`)
		ack, err := NewAck(in, AckSpec{Code: ApplicationReject, Error: UnsupportedEventCode, Text: "not handled", ControlID: "X", Time: ackTime})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustGet(t, ack, "MSA-3"), "not handled"; got != want {
			t.Errorf("MSA-3 = %q, want %q", got, want)
		}
		if got, want := mustGet(t, ack, "ERR-3"), "201"; got != want {
			t.Errorf("ERR-3 = %q, want %q", got, want)
		}
	})
	t.Run("2.7 keeps the truncation character", func(t *testing.T) {
		in := wire(`MSH|^~\&#|A|B|C|D|20240101||ADT^A01|C1|P|2.7`)
		ack, err := NewAck(in, AckSpec{Code: ApplicationAccept, ControlID: "X", Time: ackTime})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustGet(t, ack, "MSH-2"), `^~\&#`; got != want {
			t.Errorf("MSH-2 = %q, want %q", got, want)
		}
	})
	t.Run("AE without a code reports an internal error", func(t *testing.T) {
		ack, err := NewAck(wire(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5`), AckSpec{Code: ApplicationError})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustGet(t, ack, "ERR-3"), "207"; got != want {
			t.Errorf("ERR-3 = %q, want %q", got, want)
		}
		if got := mustGet(t, ack, "MSH-10"); len(got) != 20 {
			t.Errorf("generated MSH-10 = %q, want 20 characters", got)
		}
	})
}

func TestNewAck_CustomDelimiters(t *testing.T) {
	in := wire(`MSH#$*!@#APP#FAC#PF#PF#20240101##ADT$A04#C9#P#2.5`)
	ack, err := NewAck(in, AckSpec{Code: ApplicationError, Error: DataTypeError, Text: "a#b$c", ControlID: "Z", Time: ackTime})
	if err != nil {
		t.Fatal(err)
	}
	got := string(ack.Encode())
	if !strings.HasPrefix(got, "MSH#$*!@#PF#PF#APP#FAC#") {
		t.Errorf("ACK does not keep the inbound delimiters: %q", got)
	}
	m := mustParse(t, ack.Encode())
	if got, want := mustGet(t, m, "ERR-8"), "a#b$c"; got != want {
		t.Errorf("ERR-8 = %q, want %q", got, want)
	}
	if got, want := mustGet(t, m, "MSH-9-2"), "A04"; got != want {
		t.Errorf("MSH-9-2 = %q, want %q", got, want)
	}
}

func TestNewAck_PartlyParseable(t *testing.T) {
	t.Run("broken body, usable MSH", func(t *testing.T) {
		in := wire(`MSH|^~\&|A|B|C|D|20240101||ADT^A01|C55|P|2.4`, `EVN|A01`, `bad segment`)
		_, perr := Parse(in)
		spec := RejectSpec(perr)
		spec.ControlID, spec.Time = "R1", ackTime
		ack, err := NewAck(in, spec)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct{ path, want string }{
			{"MSA-1", "AR"}, {"MSA-2", "C55"}, {"MSH-5", "A"}, {"MSH-9-2", "A01"}, {"MSH-12", "2.4"},
			{"ERR-2-1", ""}, {"ERR-2-2", "3"}, {"ERR-3", "100"}, {"MSA-3", "bad segment ID"},
		}
		for _, tt := range tests {
			if got := mustGet(t, ack, tt.path); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.path, got, tt.want)
			}
		}
	})
	t.Run("no usable MSH", func(t *testing.T) {
		for _, in := range []string{"", "garbage", "MSH|^^^^|x", "PID|1"} {
			_, perr := Parse([]byte(in))
			ack, err := NewAck([]byte(in), RejectSpec(perr))
			if err != nil {
				t.Fatalf("NewAck(%q): %v", in, err)
			}
			m := mustParse(t, ack.Encode())
			if got, want := m.Version(), "2.5.1"; got != want {
				t.Errorf("NewAck(%q): MSH-12 = %q, want %q", in, got, want)
			}
			if got, want := mustGet(t, m, "MSA-1"), "AR"; got != want {
				t.Errorf("NewAck(%q): MSA-1 = %q, want %q", in, got, want)
			}
		}
	})
}

func TestNewAck_RejectsUnknownCode(t *testing.T) {
	if _, err := NewAck(nil, AckSpec{Code: "CA"}); err == nil {
		t.Error("NewAck with code CA succeeded")
	}
}

func TestRejectSpec(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want ErrorCode
	}{
		{"bad encoding characters", &ParseError{Err: ErrBadEncodingCharacters}, DataTypeError},
		{"missing MSH", &ParseError{Err: ErrMissingMSH}, SegmentSequenceError},
		{"too large", &ParseError{Err: ErrTooLarge}, ApplicationInternalError},
		{"not a parse error", errors.New("disk full"), ApplicationInternalError},
	}
	for _, tt := range tests {
		if got := RejectSpec(tt.err).Error; got != tt.want {
			t.Errorf("%s: Error = %d, want %d", tt.name, got, tt.want)
		}
	}
}
