package hl7v2

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by [*ParseError]; test for them with errors.Is.
var (
	// ErrEmpty means the input held no segments at all.
	ErrEmpty = errors.New("empty message")
	// ErrTooLarge means the input exceeded the parser's size limit.
	ErrTooLarge = errors.New("message too large")
	// ErrMissingMSH means no segment of the message is an MSH segment.
	ErrMissingMSH = errors.New("missing MSH segment")
	// ErrNotMSHFirst means the message has an MSH segment but does not start
	// with it (HL7 v2.5.1 section 2.5.1: every message begins with MSH).
	// Batch envelopes (FHS/BHS) are not supported and also end up here.
	ErrNotMSHFirst = errors.New("first segment is not MSH")
	// ErrBadEncodingCharacters means MSH-1 or MSH-2 do not define a usable set
	// of delimiters (HL7 v2.5.1 section 2.5.4).
	ErrBadEncodingCharacters = errors.New("bad encoding characters")
	// ErrBadSegmentID means a segment does not start with a three-character
	// segment ID of upper-case letters and digits (HL7 v2.5.1 section 2.5.2).
	ErrBadSegmentID = errors.New("bad segment ID")
	// ErrMultipleMSH means a second MSH segment follows the first: the input
	// is a batch or several messages run together and must be split first.
	ErrMultipleMSH = errors.New("more than one MSH segment")
	// ErrBadPath means a terser path could not be parsed; see [ParsePath].
	ErrBadPath = errors.New("bad path")
	// ErrNoSegment means a path names a segment the message does not have.
	ErrNoSegment = errors.New("no such segment")
	// ErrBadTime means a DTM/TS value is not of the form HL7 v2.5.1 section
	// 2.A.22 allows.
	ErrBadTime = errors.New("bad DTM value")
)

// ParseError locates a parse failure in the input. It wraps one of the
// sentinel errors above.
type ParseError struct {
	// Segment is the segment ID when known (possibly malformed), else "".
	Segment string
	// Sequence is the 1-based position of the segment in the message
	// (its line number), 0 when the error concerns the whole message.
	Sequence int
	// Field is the 1-based field number, 0 when not field specific.
	Field int
	// Err is the underlying error.
	Err error
}

func (e *ParseError) Error() string {
	switch {
	case e.Sequence == 0:
		return fmt.Sprintf("hl7v2: %v", e.Err)
	case e.Field == 0:
		return fmt.Sprintf("hl7v2: segment %d (%q): %v", e.Sequence, e.Segment, e.Err)
	default:
		return fmt.Sprintf("hl7v2: segment %d (%q) field %d: %v", e.Sequence, e.Segment, e.Field, e.Err)
	}
}

func (e *ParseError) Unwrap() error { return e.Err }
