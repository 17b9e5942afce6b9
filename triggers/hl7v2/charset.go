package hl7v2

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"

	"github.com/priorflow/priorflow/internal/singlebyte"
)

var (
	// ErrUnsupportedCharset means MSH-18 names a character set (HL7 v2.5.1
	// table 0211) this package does not decode, the multi-byte sets other
	// than UTF-8 or a value not in the table, and the message holds more
	// than plain ASCII (AR, code 103).
	ErrUnsupportedCharset = errors.New("unsupported character set")
	// ErrNotText means the bytes of a message are not text in its character
	// set: not UTF-8 where MSH-18 is empty, ASCII or UNICODE UTF-8 and no
	// site default applies, or a byte the declared ISO 8859 part leaves
	// undefined (AR, code 102).
	ErrNotText = errors.New("text not valid in the message's character set")

	// The reasons for ErrNotText, as acknowledgements give them: fixed
	// texts, since a byte of the message could be a byte of a name.
	errUndeclaredNotUTF8 = fmt.Errorf("%w: the bytes are not UTF-8 and MSH-18 declares no character set; declare it (8859/1, say)", ErrNotText)
	errDeclaredNotUTF8   = fmt.Errorf("%w: MSH-18 declares UNICODE UTF-8 but the bytes are not UTF-8", ErrNotText)
	errUndefinedByte     = fmt.Errorf("%w: a byte is undefined in the character set MSH-18 declares", ErrNotText)
)

// charsets are the single-byte character sets of HL7 v2.5.1 table 0211
// (MSH-18) by their table value. Each is a superset of ASCII, so delimiters
// and segment terminators are the same bytes in all of them.
var charsets = map[string]*charmap.Charmap{
	"8859/1":  charmap.ISO8859_1,
	"8859/2":  charmap.ISO8859_2,
	"8859/3":  charmap.ISO8859_3,
	"8859/4":  charmap.ISO8859_4,
	"8859/5":  charmap.ISO8859_5,
	"8859/6":  charmap.ISO8859_6,
	"8859/7":  charmap.ISO8859_7,
	"8859/8":  charmap.ISO8859_8,
	"8859/9":  charmap.ISO8859_9,
	"8859/15": charmap.ISO8859_15,
}

// utf8Name reports whether text declared as name is read as UTF-8: no
// value, ASCII (the standard's default, HL7 v2.5.1 section 2.14.9.18) and
// UNICODE UTF-8.
// ASCII is UTF-8's subset; a sender declaring ASCII or nothing while
// sending UTF-8 is common and unambiguous.
func utf8Name(name string) bool {
	return name == "" || name == "ASCII" || name == "UNICODE UTF-8"
}

// CheckCharset reports whether name (an MSH-18 value) is one Parser
// decodes, for checking a configured Parser.DefaultCharset.
func CheckCharset(name string) error {
	name = normalizeCharset(name)
	if _, ok := charsets[name]; ok || utf8Name(name) {
		return nil
	}
	return fmt.Errorf("hl7v2: %w: %q (decoded: ASCII, UNICODE UTF-8, 8859/1 to 8859/9, 8859/15)", ErrUnsupportedCharset, name)
}

// normalizeCharset returns the table 0211 value name stands for. Besides
// the table's own spelling it takes the IANA names senders put there
// instead (UTF-8, ISO-8859-1), which name the same sets.
func normalizeCharset(name string) string {
	name = strings.ToUpper(strings.TrimSpace(name))
	switch name {
	case "UTF-8", "UTF8":
		return "UNICODE UTF-8"
	case "US-ASCII":
		return "ASCII"
	}
	for _, prefix := range []string{"ISO-8859-", "ISO8859-", "ISO_8859-"} {
		if part, ok := strings.CutPrefix(name, prefix); ok {
			return "8859/" + part
		}
	}
	return name
}

// plainASCII reports whether data is 7-bit text without escape sequences
// (ESC, 0x1B): text that reads the same in every set of table 0211 a
// message can be parsed in at all (ISO 2022 sets such as ISO IR87 shift
// away from ASCII only with ESC).
func plainASCII(data []byte) bool {
	for _, c := range data {
		if c >= utf8.RuneSelf || c == 0x1b {
			return false
		}
	}
	return true
}

// declaredCharset returns MSH-18's first repetition: the character set of
// the message; further repetitions name the alternates that \C and \M
// escapes switch to, which are kept literally (see Unescape).
func declaredCharset(msh *Segment) string {
	raw := msh.Raw(18)
	d := msh.delims
	if i := strings.IndexByte(raw, d.Repetition); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.IndexByte(raw, d.Component); i >= 0 {
		raw = raw[:i]
	}
	return normalizeCharset(raw)
}

// charsetOf decides how the bytes of a message whose header is msh are read:
// nil for UTF-8, else the single-byte set to decode them from. def is the
// site's default for messages that declare UTF-8 or nothing but are not
// UTF-8; "" means none.
func charsetOf(msh *Segment, data []byte, def string) (*charmap.Charmap, error) {
	perr := func(err error) error {
		return &ParseError{Segment: "MSH", Sequence: 1, Field: 18, Err: err}
	}
	name := declaredCharset(msh)
	if cm, ok := charsets[name]; ok {
		return cm, nil
	}
	if !utf8Name(name) {
		if plainASCII(data) {
			// Nothing to decode, whatever the set: a feed that declares
			// a set not read here but sends ASCII loses nothing.
			return nil, nil
		}
		return nil, perr(ErrUnsupportedCharset)
	}
	if utf8.Valid(data) {
		return nil, nil
	}
	def = normalizeCharset(def)
	if cm, ok := charsets[def]; ok && name != "UNICODE UTF-8" {
		return cm, nil
	}
	if name == "UNICODE UTF-8" {
		return nil, perr(errDeclaredNotUTF8)
	}
	return nil, perr(errUndeclaredNotUTF8)
}

// decodeText returns data, read in cm, as UTF-8.
func decodeText(data []byte, cm *charmap.Charmap) ([]byte, error) {
	out, ok := singlebyte.Decode(data, cm)
	if !ok {
		return nil, &ParseError{Segment: "MSH", Sequence: 1, Field: 18, Err: errUndefinedByte}
	}
	return out, nil
}

// encodeText returns UTF-8 text s in cm; a character cm cannot hold is
// written as '?'.
func encodeText(s string, cm *charmap.Charmap) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			out = append(out, byte(r))
			continue
		}
		b, ok := cm.EncodeRune(r)
		if !ok {
			b = '?'
		}
		out = append(out, b)
	}
	return out
}
