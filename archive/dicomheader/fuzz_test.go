package dicomheader_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func parseBytes(t *testing.T, b []byte) *dicomheader.Header {
	t.Helper()
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return h
}

// FuzzParse checks that Parse never panics, classifies every error, and
// returns only valid UIDs, on seekable readers and on readers that cannot
// seek.
func FuzzParse(f *testing.F) {
	for _, name := range []string{dicomtest.FilePET1, dicomtest.FileMR} {
		b, err := os.ReadFile(dicomtest.TestdataPath(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(shortPixelData(f, b), false, false)
	}
	ot, err := os.ReadFile(dicomtest.TestdataPath(f, dicomtest.FileOTDeflated))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ot, false, false)
	f.Add(dicomtest.BrokenMissingSOPInstanceUID(f), false, false)
	f.Add(dicomtest.BrokenTraversalUID(f), true, false)
	f.Add(dicomtest.BrokenTruncated(f), false, true)
	f.Add(dicomtest.BrokenNoPreamble(f), false, false)
	f.Add(part10(implicitLittleTS, implicitLE.uids(), implicitLE.nested(3, implicitLE.elem(tag.PatientID, "", "P1"))), false, false)
	f.Add(part10(explicitBigTS, explicitBE.uids(), explicitBE.nested(3, explicitBE.elem(tag.PatientID, "LO", "P1"))), false, true)
	f.Add(part10(jpegBaselineTS, explicitLE.uids(), encapsulated(make([]byte, 16), make([]byte, 8))), false, false)
	// Code extensions, whose escape sequences Parse removes.
	f.Add(part10(explicitLittleTS, explicitLE.elem(tag.SpecificCharacterSet, "CS", `\ISO 2022 IR 149`), explicitLE.uids(),
		explicitLE.elem(tag.PatientName, "PN", "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7")), false, false)
	f.Add(part10(explicitLittleTS, explicitLE.elem(tag.SpecificCharacterSet, "CS", `ISO 2022 IR 13\ISO 2022 IR 87`), explicitLE.uids(),
		explicitLE.elem(tag.PatientName, "PN", "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J")), true, true)
	// Attributes held as UN, read again with the dictionary's VR.
	qualifiers := implicitItem(implicitLE.elem(tag.UniversalEntityID, "", "1.2.3"), implicitLE.elem(tag.Tag{Group: 0x0011, Element: 0x0010}, "", "ACME"))
	f.Add(part10(explicitLittleTS, explicitLE.uids(), explicitLE.elem(tag.PatientID, "UN", "P1"),
		append(explicitLE.header(tag.IssuerOfPatientIDQualifiersSequence, "UN", uint32(len(qualifiers))), qualifiers...)), false, false)
	f.Fuzz(func(t *testing.T, b []byte, unknownSize, stream bool) {
		size := int64(len(b))
		if unknownSize {
			size = -1
		}
		var r io.Reader = bytes.NewReader(b)
		if stream {
			r = struct{ io.Reader }{r} // hides Seek and ReadAt
		}
		h, err := dicomheader.Parse(r, size)
		if err != nil {
			for _, known := range []error{
				dicomheader.ErrNotPart10, dicomheader.ErrTruncated, dicomheader.ErrMalformed,
				dicomheader.ErrMissingAttribute, dicomheader.ErrInvalidUID, dicomheader.ErrNotText,
			} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Parse() returned an unclassified error: %v", err)
		}
		for _, uid := range []string{h.SOPClassUID, h.SOPInstanceUID, h.StudyInstanceUID, h.SeriesInstanceUID, h.TransferSyntaxUID} {
			if !dicomheader.ValidUID(uid) {
				t.Fatalf("Parse() accepted invalid UID %q", uid)
			}
		}
		if v, ok := notText(h.Dataset.Elements); ok {
			t.Fatalf("Parse() left a value that is not UTF-8, or holds a control character inside it: %q", v)
		}
	})
}

// notText returns a string value of elems, sequences included, that is not
// UTF-8 or that holds, inside its padding, a control character other than
// tab, LF and CR: PostgreSQL and FHIR would refuse it.
func notText(elems []*dicom.Element) (string, bool) {
	for _, e := range elems {
		if e == nil || e.Value == nil {
			continue
		}
		switch v := e.Value.GetValue().(type) {
		case []string:
			for _, s := range v {
				inner := strings.Trim(s, " \x00")
				if !utf8.ValidString(s) || strings.ContainsFunc(inner, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }) {
					return s, true
				}
			}
		case []*dicom.SequenceItemValue:
			for _, item := range v {
				if item == nil {
					continue
				}
				if sub, ok := item.GetValue().([]*dicom.Element); ok {
					if s, bad := notText(sub); bad {
						return s, true
					}
				}
			}
		}
	}
	return "", false
}

// shortPixelData cuts the value of the top-level Pixel Data element, OW in
// Explicit VR Little Endian, to 16 bytes: the fuzzer learns nothing from
// pixels, and small inputs run and minimize much faster.
func shortPixelData(tb testing.TB, b []byte) []byte {
	tb.Helper()
	i := bytes.LastIndex(b, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0})
	if i < 0 || len(b) < i+12+16 {
		tb.Fatal("top-level Pixel Data OW not found")
	}
	b = bytes.Clone(b[:i+12+16])
	binary.LittleEndian.PutUint32(b[i+8:], 16)
	return b
}
