package hl7v2

import "golang.org/x/text/encoding/charmap"

// Message is a parsed HL7 v2 message: an ordered list of segments sharing
// one set of delimiters. The zero value is not usable; get one from [Parse],
// [ParseHeader] or [NewMessage].
type Message struct {
	delims   Delimiters
	segments []*Segment
	// charset is the single-byte set the message arrived in and Encode
	// writes; nil for UTF-8 (and for messages parsed as bytes).
	charset *charmap.Charmap
}

// Segment is one segment of a message (HL7 v2.5.1 section 2.5.2). Fields are
// held in wire form and decoded on access.
type Segment struct {
	id     string
	delims Delimiters
	// fields[n] is the wire text of field n; fields[0] is the segment ID.
	// For MSH, fields[1] is the field separator and fields[2] the encoding
	// characters, matching the standard's numbering (section 2.14.9).
	fields []string
}

// Field is a decoded field: its repetitions (HL7 v2.5.1 section 2.5.3).
// An empty field has no repetitions.
type Field []Repetition

// Repetition is one occurrence of a field, split into components.
type Repetition []Component

// Component is one component, split into subcomponents. The subcomponent
// values are unescaped.
type Component []string

// Delimiters returns the delimiters the message uses.
func (m *Message) Delimiters() Delimiters { return m.delims }

// AllSegments returns the message's segments in order. The slice is shared;
// callers must not modify it.
func (m *Message) AllSegments() []*Segment { return m.segments }

// Segments returns every segment with the given ID, in message order.
func (m *Message) Segments(id string) []*Segment {
	var out []*Segment
	for _, s := range m.segments {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

// Segment returns the first segment with the given ID, or nil.
func (m *Message) Segment(id string) *Segment {
	return m.segmentN(id, 1)
}

// segmentN returns the n-th (1-based) segment with the given ID, or nil.
func (m *Message) segmentN(id string, n int) *Segment {
	for _, s := range m.segments {
		if s.id == id {
			n--
			if n == 0 {
				return s
			}
		}
	}
	return nil
}

// ID returns the segment ID, such as "PID" or "ZPI".
func (s *Segment) ID() string { return s.id }

// NumFields returns the number of the last field present in the segment
// (trailing empty fields included, as sent).
func (s *Segment) NumFields() int { return len(s.fields) - 1 }

// Raw returns the wire (still escaped) text of field n, or "" when the
// segment has no such field. For MSH, Raw(1) is the field separator and
// Raw(2) the encoding characters.
func (s *Segment) Raw(n int) string {
	if n < 1 || n >= len(s.fields) {
		return ""
	}
	return s.fields[n]
}

// Field returns field n (1-based) decoded into repetitions, components and
// subcomponents, or nil when the field is absent or empty.
//
// MSH-1 and MSH-2 are returned as a single value and never split: they hold
// the delimiters themselves (HL7 v2.5.1 sections 2.14.9.1 and 2.14.9.2).
func (s *Segment) Field(n int) Field {
	raw := s.Raw(n)
	if raw == "" {
		return nil
	}
	if s.id == "MSH" && (n == 1 || n == 2) {
		return Field{{{raw}}}
	}
	return decodeField(raw, s.delims)
}

// Repetition returns repetition n (1-based), or nil.
func (f Field) Repetition(n int) Repetition {
	if n < 1 || n > len(f) {
		return nil
	}
	return f[n-1]
}

// String returns the first subcomponent of the first component of the
// first repetition: the field's value when it is a primitive.
func (f Field) String() string { return f.Repetition(1).Component(1).String() }

// Component returns component n (1-based), or nil.
func (r Repetition) Component(n int) Component {
	if n < 1 || n > len(r) {
		return nil
	}
	return r[n-1]
}

// String returns the first subcomponent of the first component.
func (r Repetition) String() string { return r.Component(1).String() }

// Subcomponent returns subcomponent n (1-based), or "".
func (c Component) Subcomponent(n int) string {
	if n < 1 || n > len(c) {
		return ""
	}
	return c[n-1]
}

// String returns the first subcomponent: the component's value when it is a
// primitive.
func (c Component) String() string { return c.Subcomponent(1) }

// decodeField splits a field's wire text into repetitions, components and
// subcomponents and unescapes each value. Splitting comes first because
// escape sequences may not contain delimiters (HL7 v2.5.1 section 2.7).
func decodeField(raw string, d Delimiters) Field {
	if raw == "" {
		return nil
	}
	reps := splitByte(raw, d.Repetition)
	f := make(Field, len(reps))
	for i, rep := range reps {
		comps := splitByte(rep, d.Component)
		r := make(Repetition, len(comps))
		for j, comp := range comps {
			subs := splitByte(comp, d.Subcomponent)
			c := make(Component, len(subs))
			for k, sub := range subs {
				c[k] = Unescape(sub, d)
			}
			r[j] = c
		}
		f[i] = r
	}
	return f
}

// encodeField is the inverse of decodeField.
func encodeField(f Field, d Delimiters) string {
	var b []byte
	for i, r := range f {
		if i > 0 {
			b = append(b, d.Repetition)
		}
		for j, c := range r {
			if j > 0 {
				b = append(b, d.Component)
			}
			for k, sub := range c {
				if k > 0 {
					b = append(b, d.Subcomponent)
				}
				b = appendEscaped(b, sub, d)
			}
		}
	}
	return string(b)
}

// splitByte is strings.Split for a single byte separator.
func splitByte(s string, sep byte) []string {
	n := 1
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			n++
		}
	}
	out := make([]string, 0, n)
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
