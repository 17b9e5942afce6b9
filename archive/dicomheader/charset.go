package dicomheader

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/suyashkumar/dicom"
	"golang.org/x/text/encoding/charmap"
)

// DefaultCharset is the character set Parse reads text in when a data set's
// own (Specific Character Set, 0008,0005, as the dicom library decodes it)
// leaves bytes that are not text: ISO_IR 100 (Latin-1), what modalities
// that write names beyond ASCII without declaring a set mostly use, and what
// Orthanc assumes by default.
const DefaultCharset = "ISO_IR 100"

// defaultCharsets are the single-byte sets of PS3.3 C.12.1.1.2 (defined
// terms of 0008,0005) a Parser may fall back to. Each maps every byte to one
// character, so distinct values stay distinct: two patient IDs never become
// one, as replacing what is not UTF-8 with U+FFFD would make them.
var defaultCharsets = map[string]*charmap.Charmap{
	"ISO_IR 100": charmap.ISO8859_1,
	"ISO_IR 101": charmap.ISO8859_2,
	"ISO_IR 109": charmap.ISO8859_3,
	"ISO_IR 110": charmap.ISO8859_4,
	"ISO_IR 144": charmap.ISO8859_5,
	"ISO_IR 127": charmap.ISO8859_6,
	"ISO_IR 126": charmap.ISO8859_7,
	"ISO_IR 138": charmap.ISO8859_8,
	"ISO_IR 148": charmap.ISO8859_9,
	"ISO_IR 203": charmap.ISO8859_15,
}

// strictCharsets are the values of Parser.DefaultCharset that mean no
// fallback: text that is not UTF-8 is refused (ErrNotText).
var strictCharsets = map[string]bool{"ISO_IR 6": true, "ISO_IR 192": true}

// CheckCharset reports whether name is a value Parser.DefaultCharset takes.
func CheckCharset(name string) error {
	name = strings.ToUpper(strings.TrimSpace(name))
	if _, ok := defaultCharsets[name]; ok || strictCharsets[name] || name == "" {
		return nil
	}
	return fmt.Errorf("dicomheader: character set %q: want ISO_IR 100, 101, 109, 110, 126, 127, 138, 144, 148 or 203, or ISO_IR 6 or ISO_IR 192 to refuse text in no set", name)
}

// decodeText makes every string value of elems, sequences included, UTF-8:
// a value the library left as bytes that are not UTF-8 (the data set
// declares no set, or one it does not hold to) is read in cm; with cm nil it
// is refused.
func decodeText(elems []*dicom.Element, cm *charmap.Charmap) error {
	for _, e := range elems {
		if e == nil || e.Value == nil {
			continue
		}
		switch e.Value.ValueType() {
		case dicom.Strings:
			vs, _ := e.Value.GetValue().([]string)
			for i, s := range vs {
				if utf8.ValidString(s) {
					continue
				}
				t, ok := decodeBytes(s, cm)
				if !ok {
					return fmt.Errorf("%w: (%04X,%04X)", ErrNotText, e.Tag.Group, e.Tag.Element)
				}
				vs[i] = t
			}
		case dicom.Sequences:
			items, _ := e.Value.GetValue().([]*dicom.SequenceItemValue)
			for _, item := range items {
				if item == nil {
					continue
				}
				sub, _ := item.GetValue().([]*dicom.Element)
				if err := decodeText(sub, cm); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// decodeBytes reads s in cm; false when cm is nil or leaves a byte of s
// undefined (which it would decode as U+FFFD).
func decodeBytes(s string, cm *charmap.Charmap) (string, bool) {
	if cm == nil {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			continue
		}
		r := cm.DecodeByte(c)
		if r == utf8.RuneError {
			return "", false
		}
		b.WriteRune(r)
	}
	return b.String(), true
}
