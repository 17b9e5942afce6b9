package dicomheader

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/charset"
	"github.com/suyashkumar/dicom/pkg/tag"
	"golang.org/x/text/encoding/charmap"

	"github.com/priorflow/priorflow/internal/printable"
	"github.com/priorflow/priorflow/internal/singlebyte"
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
	_, err := fallbackCharset(name)
	return err
}

// fallbackCharset returns the set name (a value of Parser.DefaultCharset,
// "" for DefaultCharset) reads text in, nil for one that refuses it.
func fallbackCharset(name string) (*charmap.Charmap, error) {
	name = strings.ToUpper(strings.TrimSpace(name))
	if name == "" {
		name = DefaultCharset
	}
	if cm, ok := defaultCharsets[name]; ok {
		return cm, nil
	}
	if strictCharsets[name] {
		return nil, nil
	}
	return nil, fmt.Errorf("dicomheader: character set %q: want ISO_IR 100, 101, 109, 110, 126, 127, 138, 144, 148 or 203, or ISO_IR 6 or ISO_IR 192 to refuse text in no set", name)
}

// readText makes the text of ds UTF-8 (see decodeText), and refuses a
// Specific Character Set the library does not know, unless it is ISO_IR
// 203 (ISO 8859-15, added to PS3.3 in 2017 and not in the library's
// table), which it reads itself.
func readText(ds dicom.Dataset, fallback *charmap.Charmap) error {
	e, err := ds.FindElementByTag(tag.SpecificCharacterSet)
	if err != nil || e.Value == nil || e.Value.ValueType() != dicom.Strings {
		return decodeText(ds.Elements, fallback)
	}
	names, _ := e.Value.GetValue().([]string)
	for i, raw := range names {
		name := strings.Trim(raw, " \x00")
		if name == "ISO_IR 203" || name == "ISO 2022 IR 203" {
			if len(names) > 1 {
				return fmt.Errorf("%w: Specific Character Set %s with other sets is not read", ErrMalformed, name)
			}
			return decodeAll(ds.Elements, charmap.ISO8859_15)
		}
		// As the library saw it: a name it did not take left the text as
		// bytes.
		if err := knownCharset(raw); err != nil {
			return fmt.Errorf("%w: Specific Character Set value %d: %v", ErrMalformed, i+1, err)
		}
	}
	if slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(strings.TrimSpace(n), "ISO 2022") }) {
		// Code extensions (PS3.5 6.1.2.5): the library reads a value with
		// one decoder, which for most of these sets keeps the escape
		// sequences that switch between them as text. A Korean name
		// (ISO 2022 IR 149, PS3.5 Annex I) was indexed as
		// "Hong^Gildong=\x1b$)C洪^\x1b$)C吉洞"; the decoded characters are
		// right once the sequences go.
		_ = walkStrings(ds.Elements, func(_ *dicom.Element, s string) (string, error) { return removeEscapes(s), nil })
	}
	return decodeText(ds.Elements, fallback)
}

// removeEscapes removes the ISO 2022 escape sequences of s (PS3.5
// 6.1.2.5.3: ESC, intermediate bytes 20H–2FH, a final byte 30H–7EH). An ESC
// that starts no such sequence stays, for decodeText to replace.
func removeEscapes(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] <= 0x2f {
				j++
			}
			if j > i+1 && j < len(s) && s[j] >= 0x30 && s[j] <= 0x7e {
				i = j
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// knownCharset returns nil when the dicom library decodes name, which it
// does as it parses. The library panics on a name its table lists but
// x/text lacks (ISO_IR 166).
func knownCharset(name string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("character set %q cannot be read: %v", name, p)
		}
	}()
	_, err = charset.ParseSpecificCharacterSet([]string{name})
	return err
}

// decodeAll reads every string value of elems, sequences included, in cm,
// which the library did not apply: a byte cm leaves undefined is refused.
func decodeAll(elems []*dicom.Element, cm *charmap.Charmap) error {
	return walkStrings(elems, func(e *dicom.Element, s string) (string, error) {
		t, err := decodeValue(e, s, cm)
		return replaceControls(t), err
	})
}

// decodeText makes every string value of elems, sequences included, UTF-8:
// a value the library left as bytes that are not UTF-8 (the data set
// declares no set, or one it does not hold to) is read in cm; with cm nil it
// is refused.
func decodeText(elems []*dicom.Element, cm *charmap.Charmap) error {
	return walkStrings(elems, func(e *dicom.Element, s string) (string, error) {
		if utf8.ValidString(s) {
			return replaceControls(s), nil
		}
		t, err := decodeValue(e, s, cm)
		return replaceControls(t), err
	})
}

// replaceControls replaces, inside a decoded value, each control character
// that no DICOM text holds once decoded and that FHIR text refuses
// (internal/printable) with U+FFFD: a NUL inside a description made
// PostgreSQL refuse the index rows, and any other made the Patient or
// ImagingStudy invalid, so the object could not be stored. The value still
// shows that something unreadable was there, and a patient ID holding one
// is refused (Header.CheckPatientIdentity); the stored object keeps its
// bytes. NULs and spaces padding either end stay, for trim to remove.
func replaceControls(s string) string {
	inner := strings.Trim(s, " \x00")
	if printable.Valid(inner) {
		return s
	}
	start := len(s) - len(strings.TrimLeft(s, " \x00"))
	return s[:start] + printable.Replace(inner) + s[start+len(inner):]
}

// decodeValue reads s, a value of e, in cm; with cm nil, or a byte cm
// leaves undefined, it is refused (ErrNotText, naming the tag, never the
// value).
func decodeValue(e *dicom.Element, s string, cm *charmap.Charmap) (string, error) {
	if cm != nil {
		if t, ok := singlebyte.Decode(s, cm); ok {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: (%04X,%04X)", ErrNotText, e.Tag.Group, e.Tag.Element)
}

// walkStrings replaces each string value of elems, sequences included, by
// what fn returns for it.
func walkStrings(elems []*dicom.Element, fn func(*dicom.Element, string) (string, error)) error {
	for _, e := range elems {
		if e == nil || e.Value == nil {
			continue
		}
		switch e.Value.ValueType() {
		case dicom.Strings:
			vs, _ := e.Value.GetValue().([]string)
			for i, s := range vs {
				t, err := fn(e, s)
				if err != nil {
					return err
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
				if err := walkStrings(sub, fn); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
