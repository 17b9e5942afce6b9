package hl7v2

import "strings"

// Unescape decodes the escape sequences of HL7 v2.5.1 section 2.7 in one
// primitive value (a subcomponent, already split from its neighbours):
//
//	\F\ field separator      \S\ component separator
//	\T\ subcomponent sep.    \R\ repetition separator
//	\E\ escape character     \P\ truncation character (v2.7+, if defined)
//	\Xhh...\ bytes given in hexadecimal (section 2.7.5)
//	\.br\ line break, decoded as "\n" (formatted text, section 2.7.6)
//
// Any other sequence (\H\, \N\, \Cxxyy\, \Mxxyyzz\, \Zxx\, the other
// formatting commands) and an unterminated escape are kept literally: they
// carry display or character-set hints this package does not interpret,
// and dropping them would lose data.
func Unescape(s string, d Delimiters) string {
	esc := strings.IndexByte(s, d.Escape)
	if esc < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for esc >= 0 {
		b.WriteString(s[:esc])
		rest := s[esc+1:]
		end := strings.IndexByte(rest, d.Escape)
		if end < 0 {
			// Unterminated: keep the remainder as it is.
			b.WriteString(s[esc:])
			return b.String()
		}
		seq := rest[:end]
		if decoded, ok := decodeEscape(seq, d); ok {
			b.WriteString(decoded)
		} else {
			b.WriteString(s[esc : esc+1+end+1])
		}
		s = rest[end+1:]
		esc = strings.IndexByte(s, d.Escape)
	}
	b.WriteString(s)
	return b.String()
}

func decodeEscape(seq string, d Delimiters) (string, bool) {
	switch seq {
	case "F":
		return string(d.Field), true
	case "S":
		return string(d.Component), true
	case "T":
		return string(d.Subcomponent), true
	case "R":
		return string(d.Repetition), true
	case "E":
		return string(d.Escape), true
	case "P":
		if d.Truncation == 0 {
			return "", false
		}
		return string(d.Truncation), true
	case ".br":
		return "\n", true
	}
	if len(seq) >= 3 && seq[0] == 'X' && len(seq)%2 == 1 {
		hex := seq[1:]
		out := make([]byte, len(hex)/2)
		for i := range out {
			hi, ok1 := unhex(hex[2*i])
			lo, ok2 := unhex(hex[2*i+1])
			if !ok1 || !ok2 {
				return "", false
			}
			out[i] = hi<<4 | lo
		}
		return string(out), true
	}
	return "", false
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Escape encodes a primitive value for the wire (HL7 v2.5.1 section 2.7):
// delimiters become \F\ \S\ \T\ \R\ \E\ (and \P\ for a defined truncation
// character), a line feed becomes \.br\, and other control characters
// except tab become \Xhh\ (a carriage return would otherwise end the
// segment, and 0x0B or 0x1C would break MLLP framing).
func Escape(s string, d Delimiters) string {
	return string(appendEscaped(nil, s, d))
}

func appendEscaped(b []byte, s string, d Delimiters) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		var seq string
		switch {
		case c == d.Field:
			seq = "F"
		case c == d.Component:
			seq = "S"
		case c == d.Subcomponent:
			seq = "T"
		case c == d.Repetition:
			seq = "R"
		case c == d.Escape:
			seq = "E"
		case d.Truncation != 0 && c == d.Truncation:
			seq = "P"
		case c == '\n':
			seq = ".br"
		case c < 0x20 && c != '\t', c == 0x7f:
			// Other control characters, CR and the MLLP block characters
			// among them, would break segment or frame boundaries.
			const hexDigits = "0123456789ABCDEF"
			seq = "X" + string(hexDigits[c>>4]) + string(hexDigits[c&0xf])
		default:
			b = append(b, c)
			continue
		}
		b = append(b, d.Escape)
		b = append(b, seq...)
		b = append(b, d.Escape)
	}
	return b
}
