package hl7v2

import (
	"fmt"
)

// Delimiters are the message delimiters of HL7 v2.5.1 section 2.5.4, taken
// from MSH-1 (field separator) and MSH-2 (the encoding characters, in the
// order component, repetition, escape, subcomponent and, from v2.7 on, the
// optional truncation character).
type Delimiters struct {
	Field        byte
	Component    byte
	Repetition   byte
	Escape       byte
	Subcomponent byte
	// Truncation is the v2.7+ truncation character (HL7 v2.7 section 2.5.5.6),
	// or 0 when MSH-2 has only four characters.
	Truncation byte
}

// DefaultDelimiters are the delimiters HL7 recommends (HL7 v2.5.1 section
// 2.5.4, Figure 2-1): |^~\&.
var DefaultDelimiters = Delimiters{
	Field:        '|',
	Component:    '^',
	Repetition:   '~',
	Escape:       '\\',
	Subcomponent: '&',
}

// EncodingCharacters returns the value of MSH-2 for d.
func (d Delimiters) EncodingCharacters() string {
	b := []byte{d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		b = append(b, d.Truncation)
	}
	return string(b)
}

// Validate reports whether d can delimit a message unambiguously. HL7
// v2.5.1 section 2.5.4 recommends specific characters but allows others;
// we accept any printable, non-alphanumeric ASCII character as long as all
// delimiters differ, because a letter, digit, space or segment terminator
// could not be told apart from data.
func (d Delimiters) Validate() error {
	all := []struct {
		name string
		c    byte
	}{
		{"field separator", d.Field},
		{"component separator", d.Component},
		{"repetition separator", d.Repetition},
		{"escape character", d.Escape},
		{"subcomponent separator", d.Subcomponent},
	}
	if d.Truncation != 0 {
		all = append(all, struct {
			name string
			c    byte
		}{"truncation character", d.Truncation})
	}
	for i, x := range all {
		if !validDelimiter(x.c) {
			return fmt.Errorf("%s %q is not a printable non-alphanumeric ASCII character", x.name, x.c)
		}
		for _, y := range all[:i] {
			if x.c == y.c {
				return fmt.Errorf("%s and %s are both %q", y.name, x.name, x.c)
			}
		}
	}
	return nil
}

func validDelimiter(c byte) bool {
	switch {
	case c <= ' ' || c >= 0x7f:
		return false
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return false
	}
	return true
}

// isDelimiter reports whether c is one of d's delimiters.
func (d Delimiters) isDelimiter(c byte) bool {
	return c == d.Field || c == d.Component || c == d.Repetition ||
		c == d.Escape || c == d.Subcomponent || (d.Truncation != 0 && c == d.Truncation)
}
