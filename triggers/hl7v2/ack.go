package hl7v2

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AckCode is MSA-1, the acknowledgment code of original mode (HL7 v2.5.1
// section 2.15.8.1, table 0008).
type AckCode string

// Original-mode acknowledgment codes (HL7 v2.5.1 section 2.9.2).
const (
	// AA: the message was accepted and processed.
	ApplicationAccept AckCode = "AA"
	// AE: the message was processed with an error; the sender should not
	// simply resend it unchanged.
	ApplicationError AckCode = "AE"
	// AR: the message was rejected (wrong type, version, processing ID, or an
	// error unrelated to its content, such as a system being down).
	ApplicationReject AckCode = "AR"
)

// ErrorCode is an HL7 error code from table 0357 (HL7 v2.5.1 section
// 2.15.5.3), sent in ERR-3.
type ErrorCode int

// Error codes of table 0357.
const (
	MessageAccepted          ErrorCode = 0
	SegmentSequenceError     ErrorCode = 100
	RequiredFieldMissing     ErrorCode = 101
	DataTypeError            ErrorCode = 102
	TableValueNotFound       ErrorCode = 103
	UnsupportedMessageType   ErrorCode = 200
	UnsupportedEventCode     ErrorCode = 201
	UnsupportedProcessingID  ErrorCode = 202
	UnsupportedVersionID     ErrorCode = 203
	UnknownKeyIdentifier     ErrorCode = 204
	DuplicateKeyIdentifier   ErrorCode = 205
	ApplicationRecordLocked  ErrorCode = 206
	ApplicationInternalError ErrorCode = 207
)

var errorCodeText = map[ErrorCode]string{
	MessageAccepted:          "Message accepted",
	SegmentSequenceError:     "Segment sequence error",
	RequiredFieldMissing:     "Required field missing",
	DataTypeError:            "Data type error",
	TableValueNotFound:       "Table value not found",
	UnsupportedMessageType:   "Unsupported message type",
	UnsupportedEventCode:     "Unsupported event code",
	UnsupportedProcessingID:  "Unsupported processing id",
	UnsupportedVersionID:     "Unsupported version id",
	UnknownKeyIdentifier:     "Unknown key identifier",
	DuplicateKeyIdentifier:   "Duplicate key identifier",
	ApplicationRecordLocked:  "Application record locked",
	ApplicationInternalError: "Application internal error",
}

// String returns the table 0357 description of c.
func (c ErrorCode) String() string {
	if s, ok := errorCodeText[c]; ok {
		return s
	}
	return "Error " + strconv.Itoa(int(c))
}

// ErrorLocation is the ERL data type of ERR-2 (HL7 v2.5.1 section 2.A.27):
// where in the inbound message the error is. Zero positions are left empty.
type ErrorLocation struct {
	Segment      string // ERL.1 segment ID
	Sequence     int    // ERL.2 segment sequence
	Field        int    // ERL.3 field position
	Repetition   int    // ERL.4 field repetition
	Component    int    // ERL.5 component number
	Subcomponent int    // ERL.6 subcomponent number
}

// AckSpec says what an acknowledgement reports.
type AckSpec struct {
	// Code is MSA-1; required.
	Code AckCode
	// Error is ERR-3 for AE and AR; 0 means ApplicationInternalError.
	// Ignored for AA.
	Error ErrorCode
	// Text is the human-readable reason, sent in ERR-8 (user message) and,
	// for versions before 2.5 whose receivers may not read ERR, in MSA-3.
	// It must not contain patient data: acknowledgements are logged by
	// interface engines.
	Text string
	// Location is ERR-2, if known.
	Location *ErrorLocation
	// ControlID is MSH-10 of the acknowledgement; empty means a random one.
	ControlID string
	// Time is MSH-7; zero means time.Now().
	Time time.Time
}

// ackDefaultVersion is used when the inbound MSH-12 is unreadable: the
// version whose ERR layout we send.
const ackDefaultVersion = "2.5.1"

// NewAck builds the original-mode acknowledgement (HL7 v2.5.1 sections
// 2.9.2 and 2.15) of an inbound message:
//
//   - MSH with sending and receiving application and facility swapped,
//     MSH-9 "ACK^<trigger event>^ACK", a new MSH-10, and MSH-11, MSH-12
//     and MSH-18 (character set) copied from the inbound message, whose
//     bytes it echoes unchanged;
//   - MSA with the code and, in MSA-2, the inbound control ID;
//   - for AE and AR, an ERR segment in the v2.5 layout: ERR-2 location,
//     ERR-3 table 0357 code, ERR-4 severity "E", ERR-8 the text.
//
// inbound may be unparseable beyond its header: NewAck falls back to
// [ParseHeader], and when even MSH is unusable it answers with default
// delimiters, an empty MSA-2 and version 2.5.1, so the sender still gets a
// reply. The error is non-nil only for an invalid spec.
func NewAck(inbound []byte, spec AckSpec) (*Message, error) {
	switch spec.Code {
	case ApplicationAccept, ApplicationError, ApplicationReject:
	default:
		return nil, fmt.Errorf("hl7v2: new ack: unknown acknowledgment code %q", spec.Code)
	}
	// Read as bytes: the acknowledgement echoes the sender's own bytes
	// (parties, control ID) in the sender's character set, declared as the
	// sender declared it, whatever that set is.
	in, err := Parser{Bytes: true}.Parse(inbound)
	if err != nil {
		if in, err = ParseHeader(inbound); err != nil {
			in, _ = NewMessage(DefaultDelimiters)
		}
	}
	d := in.Delimiters()
	if d.Truncation != 0 && !versionAtLeast(in.Version(), 2, 7) {
		// A truncation character in a pre-2.7 message is a misreading of
		// MSH-2; do not echo it to a receiver that cannot know it.
		d.Truncation = 0
	}
	ack, err := NewMessage(d)
	if err != nil {
		return nil, fmt.Errorf("hl7v2: new ack: %w", err)
	}
	msh := ack.segments[0]
	inMSH := in.msh()
	// Swap the parties, keeping each field's wire text intact (HL7 v2.5.1
	// section 2.9.2: the acknowledgement goes back to the sender).
	msh.setRaw(3, inMSH.Raw(5))
	msh.setRaw(4, inMSH.Raw(6))
	msh.setRaw(5, inMSH.Raw(3))
	msh.setRaw(6, inMSH.Raw(4))
	t := spec.Time
	if t.IsZero() {
		t = time.Now()
	}
	id := spec.ControlID
	if id == "" {
		id = newControlID()
	}
	version := inMSH.Raw(12)
	if in.Version() == "" {
		version = Escape(ackDefaultVersion, d)
	}
	processing := inMSH.Raw(11)
	if in.ProcessingID() == "" {
		processing = "P"
	}
	set := func(path, v string) {
		if err == nil {
			err = ack.Set(path, v)
		}
	}
	set("MSH-7", FormatDTM(t))
	set("MSH-9-1", "ACK")
	set("MSH-9-2", in.MessageType().TriggerEvent)
	set("MSH-9-3", "ACK")
	set("MSH-10", id)
	msh.setRaw(11, processing)
	msh.setRaw(12, version)
	if cs := inMSH.Raw(18); cs != "" {
		msh.setRaw(18, cs)
	}
	if _, aerr := ack.AddSegment("MSA"); aerr != nil {
		return nil, fmt.Errorf("hl7v2: new ack: %w", aerr)
	}
	set("MSA-1", string(spec.Code))
	set("MSA-2", in.ControlID())
	if spec.Code != ApplicationAccept && spec.Text != "" && !versionAtLeast(in.Version(), 2, 5) {
		set("MSA-3", spec.Text)
	}
	if spec.Code != ApplicationAccept {
		if _, aerr := ack.AddSegment("ERR"); aerr != nil {
			return nil, fmt.Errorf("hl7v2: new ack: %w", aerr)
		}
		code := spec.Error
		if code == MessageAccepted {
			code = ApplicationInternalError
		}
		if l := spec.Location; l != nil {
			set("ERR-2-1", l.Segment)
			for i, n := range []int{l.Sequence, l.Field, l.Repetition, l.Component, l.Subcomponent} {
				if n > 0 {
					set(fmt.Sprintf("ERR-2-%d", i+2), strconv.Itoa(n))
				}
			}
		}
		set("ERR-3-1", strconv.Itoa(int(code)))
		set("ERR-3-2", code.String())
		set("ERR-3-3", "HL70357")
		set("ERR-4", "E")
		if spec.Text != "" {
			set("ERR-8", spec.Text)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("hl7v2: new ack: %w", err)
	}
	return ack, nil
}

// RejectSpec maps a [Parse] error to the acknowledgement it calls for: AR
// with a table 0357 code, a location, and a text naming the problem but no
// data. Errors other than *ParseError map to AE with
// ApplicationInternalError.
func RejectSpec(err error) AckSpec {
	var perr *ParseError
	if !errors.As(err, &perr) {
		return AckSpec{Code: ApplicationError, Error: ApplicationInternalError, Text: "message could not be processed"}
	}
	spec := AckSpec{Code: ApplicationReject, Error: SegmentSequenceError}
	switch {
	case errors.Is(err, ErrBadEncodingCharacters), errors.Is(err, ErrNotText):
		spec.Error = DataTypeError
	case errors.Is(err, ErrUnsupportedCharset):
		spec.Error = TableValueNotFound
	case errors.Is(err, ErrTooLarge):
		spec.Error = ApplicationInternalError
	}
	spec.Text = sentinelText(perr.Err)
	if perr.Sequence > 0 {
		spec.Location = &ErrorLocation{Segment: perr.Segment, Sequence: perr.Sequence, Field: perr.Field}
		if !validSegmentID([]byte(perr.Segment), 0) || len(perr.Segment) != 3 {
			spec.Location.Segment = ""
		}
	}
	return spec
}

// sentinelText returns the text of the sentinel error err wraps, which is
// free of message content.
func sentinelText(err error) string {
	for _, s := range []error{ErrEmpty, ErrTooLarge, ErrMissingMSH, ErrNotMSHFirst, ErrMultipleMSH,
		ErrBadEncodingCharacters, ErrBadSegmentID, ErrUnsupportedCharset,
		errUndeclaredNotUTF8, errDeclaredNotUTF8, errUndefinedByte, ErrNotText} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "message could not be parsed"
}

// versionAtLeast reports whether an HL7 version ID such as "2.5.1" is at
// least major.minor. An unreadable version counts as not at least.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// newControlID returns a random MSH-10. HL7 v2.5.1 section 2.14.9.10 asks
// only for uniqueness within the sending system; 10 random bytes (20 hex
// digits, the ST length limit of MSH-10 before v2.7) make
// collisions across restarts and instances negligible without shared state.
func newControlID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
