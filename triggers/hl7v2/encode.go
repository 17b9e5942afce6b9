package hl7v2

import (
	"fmt"
	"strings"
)

// NewMessage returns a message holding only an MSH segment with MSH-1 and
// MSH-2 set from d. Fill it with [Message.Set] and [Message.AddSegment].
func NewMessage(d Delimiters) (*Message, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("hl7v2: new message: %w: %w", ErrBadEncodingCharacters, err)
	}
	msh := &Segment{id: "MSH", delims: d, fields: []string{"MSH", string(d.Field), d.EncodingCharacters()}}
	return &Message{delims: d, segments: []*Segment{msh}}, nil
}

// AddSegment appends an empty segment with the given ID and returns it. The
// ID must be three upper-case letters or digits and not MSH.
func (m *Message) AddSegment(id string) (*Segment, error) {
	if len(id) != 3 || !validSegmentID([]byte(id), 0) || id == "MSH" {
		return nil, fmt.Errorf("hl7v2: add segment %q: %w", id, ErrBadSegmentID)
	}
	s := &Segment{id: id, delims: m.delims, fields: []string{id}}
	m.segments = append(m.segments, s)
	return s, nil
}

// Encode returns the message in wire form: segments joined and terminated
// by CR (HL7 v2.5.1 section 2.5.2). Fields read from the input are written
// back as they came; fields set through this package are escaped. Trailing
// empty fields are kept as they are, so the encoding of a parsed message
// matches its input apart from segment terminators, blank lines and a byte
// order mark. A message parsed from a single-byte character set is written
// in it again, where a character given since (with Set) that the set
// cannot represent is written as '?'.
func (m *Message) Encode() []byte {
	var b strings.Builder
	fs := string(m.delims.Field)
	for _, s := range m.segments {
		if s.id == "MSH" {
			// MSH-1 is the separator itself, not a field between separators.
			b.WriteString("MSH")
			b.WriteString(s.fields[1])
			b.WriteString(strings.Join(s.fields[2:], fs))
		} else {
			b.WriteString(strings.Join(s.fields, fs))
		}
		b.WriteByte('\r')
	}
	if m.charset != nil {
		return encodeText(b.String(), m.charset)
	}
	return []byte(b.String())
}
