package hl7v2

import (
	"bytes"
	"fmt"

	"golang.org/x/text/encoding/charmap"
)

// DefaultMaxSize is the input size limit of [Parse]: 1 MiB, the same as the
// default MLLP frame limit, well above any ADT, ORM or SIU message.
const DefaultMaxSize = 1 << 20

// Parser parses messages with configurable limits. The zero value uses
// DefaultMaxSize.
type Parser struct {
	// MaxSize is the largest input accepted, in bytes; 0 means DefaultMaxSize.
	MaxSize int
	// DefaultCharset is the character set (an MSH-18 value, see
	// [CheckCharset]) of messages that declare none, or ASCII, but whose
	// bytes are not UTF-8: what a site's senders use without saying so
	// (8859/1, typically). Empty: such messages are refused with
	// ErrNotText, since reading them as anything would be a guess.
	DefaultCharset string
	// Bytes reads the message as the bytes it is, whatever MSH-18 says:
	// values are then what was sent, not necessarily text. For reading an
	// acknowledgement, which echoes the other side's bytes, or for
	// looking at a message that Parse refuses.
	Bytes bool
}

// Parse parses one message with DefaultMaxSize and no default character
// set. See [Parser.Parse].
func Parse(data []byte) (*Message, error) { return Parser{}.Parse(data) }

// ParseHeader parses only the first segment, which must be MSH, as bytes:
// its character set is neither checked nor decoded. It is meant for
// messages that fail [Parse] further on, so that an error acknowledgement
// can still address the sender in the sender's own bytes (HL7 v2.5.1
// section 2.9.2).
func ParseHeader(data []byte) (*Message, error) { return Parser{Bytes: true}.parse(data, true) }

// Parse parses one message. Segments may end with CR (the standard, HL7
// v2.5.1 section 2.5.2), LF or CRLF; empty lines and a leading UTF-8 byte
// order mark are ignored, since files and some interface engines produce
// them. Segment IDs must be three upper-case letters or digits; any such ID
// is accepted, so Z-segments are kept like any other.
//
// The message's text is decoded to UTF-8 from the character set MSH-18
// declares (HL7 v2.5.1 section 2.14.9.18, table 0211: ASCII, the ISO 8859
// parts and UNICODE UTF-8 are read; see [Parser.DefaultCharset] for
// messages that declare none), and [Message.Encode] writes it back in that
// set. Every value read from a parsed message is therefore text, apart
// from what \X\ escapes spell in bytes.
//
// Errors are of type [*ParseError] and wrap one of ErrEmpty, ErrTooLarge,
// ErrMissingMSH, ErrNotMSHFirst, ErrMultipleMSH, ErrBadEncodingCharacters,
// ErrBadSegmentID, ErrUnsupportedCharset or ErrNotText.
func (p Parser) Parse(data []byte) (*Message, error) { return p.parse(data, false) }

func (p Parser) parse(data []byte, headerOnly bool) (*Message, error) {
	max := p.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	if len(data) > max {
		return nil, &ParseError{Err: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), max)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	lines := splitSegments(data)
	if len(lines) == 0 {
		return nil, &ParseError{Err: ErrEmpty}
	}
	if !bytes.HasPrefix(lines[0], []byte("MSH")) {
		for i, l := range lines[1:] {
			if bytes.HasPrefix(l, []byte("MSH")) {
				return nil, &ParseError{Segment: segmentName(lines[0]), Sequence: 1,
					Err: fmt.Errorf("%w: MSH is segment %d", ErrNotMSHFirst, i+2)}
			}
		}
		return nil, &ParseError{Segment: segmentName(lines[0]), Sequence: 1, Err: ErrMissingMSH}
	}
	msh, err := parseMSH(lines[0])
	if err != nil {
		return nil, err
	}
	var cm *charmap.Charmap
	if !p.Bytes {
		if cm, err = charsetOf(msh, data, p.DefaultCharset); err != nil {
			return nil, err
		}
	}
	if cm != nil {
		// Every part of table 0211 decoded here is a superset of ASCII, so
		// the delimiters and segment ends are where they were.
		if data, err = decodeText(data, cm); err != nil {
			return nil, err
		}
		lines = splitSegments(data)
		if msh, err = parseMSH(lines[0]); err != nil {
			return nil, err
		}
	}
	m := &Message{delims: msh.delims, segments: []*Segment{msh}, charset: cm}
	if headerOnly {
		return m, nil
	}
	for i, l := range lines[1:] {
		seq := i + 2
		name := segmentName(l)
		if name == "MSH" {
			return nil, &ParseError{Segment: name, Sequence: seq, Err: ErrMultipleMSH}
		}
		if !validSegmentID(l, m.delims.Field) {
			return nil, &ParseError{Segment: name, Sequence: seq, Err: ErrBadSegmentID}
		}
		m.segments = append(m.segments, &Segment{
			id:     name,
			delims: m.delims,
			fields: splitByte(string(l), m.delims.Field),
		})
	}
	return m, nil
}

// parseMSH parses the header segment, whose first field is the field
// separator itself and whose second holds the encoding characters (HL7
// v2.5.1 sections 2.14.9.1 and 2.14.9.2). Those two are stored verbatim so
// that MSH field numbers line up with the standard's.
func parseMSH(line []byte) (*Segment, error) {
	perr := func(field int, format string, args ...any) error {
		return &ParseError{Segment: "MSH", Sequence: 1, Field: field,
			Err: fmt.Errorf("%w: "+format, append([]any{ErrBadEncodingCharacters}, args...)...)}
	}
	if len(line) < 4 {
		return nil, perr(1, "no field separator")
	}
	fs := line[3]
	rest := string(line[4:])
	enc, tail, hasTail := cut(rest, fs)
	if len(enc) != 4 && len(enc) != 5 {
		return nil, perr(2, "MSH-2 has %d characters, want 4 or 5", len(enc))
	}
	d := Delimiters{
		Field:        fs,
		Component:    enc[0],
		Repetition:   enc[1],
		Escape:       enc[2],
		Subcomponent: enc[3],
	}
	if len(enc) == 5 {
		d.Truncation = enc[4]
	}
	if err := d.Validate(); err != nil {
		return nil, perr(2, "%v", err)
	}
	fields := []string{"MSH", string(fs), enc}
	if hasTail {
		fields = append(fields, splitByte(tail, fs)...)
	}
	return &Segment{id: "MSH", delims: d, fields: fields}, nil
}

// splitSegments splits on CR, LF and CRLF and drops blank lines (empty or
// only spaces and tabs), which carry nothing and are common at the end of
// files.
func splitSegments(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		if len(bytes.Trim(line, " \t")) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// segmentName returns up to the first three bytes of a segment, for error
// reports; never more, so that an error cannot quote patient data.
func segmentName(line []byte) string {
	if len(line) > 3 {
		line = line[:3]
	}
	return string(line)
}

// validSegmentID reports whether line starts with a segment ID (HL7 v2.5.1
// section 2.5.2: three characters; we require an upper-case letter followed
// by upper-case letters or digits) followed by the field separator or the
// end of the segment.
func validSegmentID(line []byte, fs byte) bool {
	if len(line) < 3 || (len(line) > 3 && line[3] != fs) {
		return false
	}
	for i, c := range line[:3] {
		upper := c >= 'A' && c <= 'Z'
		digit := c >= '0' && c <= '9'
		if !upper && !(digit && i > 0) {
			return false
		}
	}
	return true
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
