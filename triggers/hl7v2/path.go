package hl7v2

import (
	"fmt"
	"strconv"
	"strings"
)

// Path addresses one primitive value in a message, in the style of the
// "terser" of other HL7 toolkits. All positions are 1-based, following the
// numbering of the standard; a position left out of the text is 1.
type Path struct {
	Segment      string // segment ID, e.g. "PID"
	Occurrence   int    // which segment with that ID, 1 = first
	Field        int    // field number, as in "PID-3"
	Repetition   int    // which repetition of the field, 1 = first
	Component    int    // component number
	Subcomponent int    // subcomponent number
}

// ParsePath parses a path of the form
//
//	SEG[(occurrence)]-field[(repetition)][-component[-subcomponent]]
//
// for example:
//
//	PID-3            first repetition, component 1, subcomponent 1 of PID-3
//	PID-3(2)-4-1     second PID-3 repetition, CX.4 assigning authority, HD.1
//	OBX(2)-5         OBX-5 of the second OBX segment
//	MSH-9-2          trigger event
//
// Every number, repetitions and occurrences included, is 1-based. Unlike
// some other terser implementations, "PID-3(1)" is the first repetition,
// not the second, so that one rule covers every position.
func ParsePath(s string) (Path, error) {
	bad := func(why string) (Path, error) {
		return Path{}, fmt.Errorf("%w %q: %s", ErrBadPath, s, why)
	}
	parts := strings.Split(s, "-")
	if len(parts) < 2 || len(parts) > 4 {
		return bad("want SEG-field[-component[-subcomponent]]")
	}
	p := Path{Occurrence: 1, Repetition: 1, Component: 1, Subcomponent: 1}
	var err error
	seg, occ, hasOcc, ok := splitIndex(parts[0])
	if !ok {
		return bad("malformed segment occurrence")
	}
	if !validSegmentID([]byte(seg), 0) || len(seg) != 3 {
		return bad("segment ID must be three upper-case letters or digits")
	}
	p.Segment = seg
	if hasOcc {
		p.Occurrence = occ
	}
	field, rep, hasRep, ok := splitIndex(parts[1])
	if !ok {
		return bad("malformed field repetition")
	}
	if p.Field, err = positive(field); err != nil {
		return bad("field: " + err.Error())
	}
	if hasRep {
		p.Repetition = rep
	}
	if len(parts) > 2 {
		if p.Component, err = positive(parts[2]); err != nil {
			return bad("component: " + err.Error())
		}
	}
	if len(parts) > 3 {
		if p.Subcomponent, err = positive(parts[3]); err != nil {
			return bad("subcomponent: " + err.Error())
		}
	}
	return p, nil
}

// MustParsePath is ParsePath for paths fixed in the source; it panics on a
// malformed path.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String formats p in the syntax ParsePath accepts, in full.
func (p Path) String() string {
	return fmt.Sprintf("%s(%d)-%d(%d)-%d-%d", p.Segment, p.Occurrence, p.Field, p.Repetition, p.Component, p.Subcomponent)
}

// splitIndex splits "X(n)" into X and n.
func splitIndex(s string) (name string, n int, has, ok bool) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return s, 0, false, true
	}
	if !strings.HasSuffix(s, ")") {
		return "", 0, false, false
	}
	n, err := positive(s[open+1 : len(s)-1])
	if err != nil {
		return "", 0, false, false
	}
	return s[:open], n, true, true
}

func positive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 99999 || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a number from 1 to 99999", s)
	}
	return n, nil
}

// Get returns the unescaped value at path (see [ParsePath]), or "" when the
// message has no value there. The error is non-nil only for a malformed
// path, so absence and emptiness are both "".
func (m *Message) Get(path string) (string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return "", fmt.Errorf("hl7v2: get: %w", err)
	}
	return m.Value(p), nil
}

// Value returns the unescaped value at p, or "" when there is none.
func (m *Message) Value(p Path) string {
	s := m.segmentN(p.Segment, p.Occurrence)
	if s == nil {
		return ""
	}
	return s.Field(p.Field).Repetition(p.Repetition).Component(p.Component).Subcomponent(p.Subcomponent)
}

// Set stores value at path, escaping it as needed and adding empty
// repetitions, components and fields in between. The segment must exist
// (see [Message.AddSegment]). MSH-1 and MSH-2 cannot be set: the delimiters
// are fixed when the message is created.
func (m *Message) Set(path, value string) error {
	p, err := ParsePath(path)
	if err != nil {
		return fmt.Errorf("hl7v2: set: %w", err)
	}
	if err := m.SetValue(p, value); err != nil {
		return fmt.Errorf("hl7v2: set: %w", err)
	}
	return nil
}

// SetValue is Set with a parsed path.
func (m *Message) SetValue(p Path, value string) error {
	s := m.segmentN(p.Segment, p.Occurrence)
	if s == nil {
		return fmt.Errorf("%w: %s occurrence %d", ErrNoSegment, p.Segment, p.Occurrence)
	}
	if s.id == "MSH" && p.Field <= 2 {
		return fmt.Errorf("%w: MSH-1 and MSH-2 hold the delimiters and cannot be set", ErrBadPath)
	}
	f := s.Field(p.Field)
	for len(f) < p.Repetition {
		f = append(f, Repetition{{""}})
	}
	r := f[p.Repetition-1]
	for len(r) < p.Component {
		r = append(r, Component{""})
	}
	c := r[p.Component-1]
	for len(c) < p.Subcomponent {
		c = append(c, "")
	}
	c[p.Subcomponent-1] = value
	r[p.Component-1] = c
	f[p.Repetition-1] = r
	s.setRaw(p.Field, encodeField(f, s.delims))
	return nil
}

// SetField replaces field n (1-based) of the segment with f, encoding and
// escaping it. For MSH, n must be 3 or more.
func (s *Segment) SetField(n int, f Field) error {
	if n < 1 || (s.id == "MSH" && n <= 2) {
		return fmt.Errorf("hl7v2: set field %s-%d: %w", s.id, n, ErrBadPath)
	}
	s.setRaw(n, encodeField(f, s.delims))
	return nil
}

// setRaw stores wire text as field n, growing the segment as needed.
func (s *Segment) setRaw(n int, raw string) {
	for len(s.fields) <= n {
		s.fields = append(s.fields, "")
	}
	s.fields[n] = raw
}
