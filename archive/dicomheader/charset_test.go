package dicomheader_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// withRequest sets a Request Attributes Sequence whose one item describes
// the requested procedure as desc: text inside a sequence.
func withRequest(desc string) dicomtest.Edition {
	return func(elems []*dicom.Element) []*dicom.Element {
		item, err := dicom.NewElement(tag.RequestedProcedureDescription, []string{desc})
		if err != nil {
			panic(err)
		}
		seq, err := dicom.NewElement(tag.RequestAttributesSequence, [][]*dicom.Element{{item}})
		if err != nil {
			panic(err)
		}
		elems = dicomtest.Remove(tag.RequestAttributesSequence)(elems)
		i, _ := slices.BinarySearchFunc(elems, seq.Tag, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
		return slices.Insert(elems, i, seq)
	}
}

func requestDescription(t *testing.T, h *dicomheader.Header) string {
	t.Helper()
	seq, err := h.Dataset.FindElementByTag(tag.RequestAttributesSequence)
	if err != nil {
		t.Fatal(err)
	}
	items := seq.Value.GetValue().([]*dicom.SequenceItemValue)
	for _, e := range items[0].GetValue().([]*dicom.Element) {
		if e.Tag == tag.RequestedProcedureDescription {
			return e.Value.GetValue().([]string)[0]
		}
	}
	t.Fatal("no Requested Procedure Description")
	return ""
}

// object returns the first instance of a study written with eds.
func object(t *testing.T, eds ...dicomtest.Edition) []byte {
	t.Helper()
	st := dicomtest.NewStudy(t, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(eds...))
	return st.Instances()[0].Bytes
}

func TestParse_Charsets(t *testing.T) {
	t.Parallel()
	latin1 := []dicomtest.Edition{
		dicomtest.Set(tag.PatientID, "\xc4B1"),
		dicomtest.Set(tag.PatientName, "M\xdcLLER^JOS\xc9"),
		dicomtest.Set(tag.StudyDescription, "CT T\xcaTE"),
		withRequest("T\xcaTE SANS INJECTION"),
	}
	undeclared := append([]dicomtest.Edition{dicomtest.Remove(tag.SpecificCharacterSet)}, latin1...)
	tests := []struct {
		name    string
		b       []byte
		charset string // Parser.DefaultCharset
		wantID  string // "" when Parse must fail with ErrNotText
		family  string
		desc    string
		request string
	}{
		{"declared ISO_IR 100", object(t, append([]dicomtest.Edition{dicomtest.Set(tag.SpecificCharacterSet, "ISO_IR 100")}, latin1...)...),
			"", "ÄB1", "MÜLLER", "CT TÊTE", "TÊTE SANS INJECTION"},
		{"undeclared, read in the default", object(t, undeclared...), "", "ÄB1", "MÜLLER", "CT TÊTE", "TÊTE SANS INJECTION"},
		{"undeclared, read in ISO_IR 101", object(t, dicomtest.Remove(tag.SpecificCharacterSet), dicomtest.Set(tag.PatientName, "\xa9KODA^JAN")),
			"ISO_IR 101", "", "ŠKODA", "", ""},
		{"undeclared UTF-8 is kept", object(t, dicomtest.Remove(tag.SpecificCharacterSet), dicomtest.Set(tag.PatientID, "ÄB1"), dicomtest.Set(tag.PatientName, "MÜLLER^JOSÉ")),
			"", "ÄB1", "MÜLLER", "", ""},
		{"undeclared, refused", object(t, undeclared...), "ISO_IR 6", "", "", "", ""},
		{"a byte the set leaves undefined", object(t, dicomtest.Remove(tag.SpecificCharacterSet), dicomtest.Set(tag.PatientName, "X\xa5Y")),
			"ISO_IR 109", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := dicomheader.Parser{DefaultCharset: tt.charset}.Parse(bytes.NewReader(tt.b), int64(len(tt.b)))
			if tt.family == "" {
				if !errors.Is(err, dicomheader.ErrNotText) {
					t.Fatalf("Parse: %v, want ErrNotText", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.wantID != "" && h.PatientID != tt.wantID {
				t.Errorf("PatientID %q, want %q", h.PatientID, tt.wantID)
			}
			if h.PatientName.Family != tt.family {
				t.Errorf("family name %q, want %q", h.PatientName.Family, tt.family)
			}
			if tt.desc != "" && h.StudyDescription != tt.desc {
				t.Errorf("StudyDescription %q, want %q", h.StudyDescription, tt.desc)
			}
			if tt.request != "" {
				if got := requestDescription(t, h); got != tt.request {
					t.Errorf("description in a sequence %q, want %q", got, tt.request)
				}
			}
		})
	}

	// Read as bytes, both IDs would have become "\uFFFDB1" in JSON.
	a := object(t, dicomtest.Remove(tag.SpecificCharacterSet), dicomtest.Set(tag.PatientID, "\xc4B1"))
	b := object(t, dicomtest.Remove(tag.SpecificCharacterSet), dicomtest.Set(tag.PatientID, "\xd6B1"))
	ha, err := dicomheader.Parse(bytes.NewReader(a), int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	hb, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if ha.PatientID == hb.PatientID {
		t.Errorf("two patient IDs read as one: %q", ha.PatientID)
	}
}

// Code extensions (PS3.5 6.1.2.5): the examples of PS3.5 Annexes H, I and J
// and Latin-1 designated to G1. The library reads each value with one
// decoder, which kept the escape sequences of all but ISO-2022-JP as text.
func TestParse_CodeExtensions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                              string
		charset                           []string
		raw, desc                         string
		family, ideographic, phonetic, sd string
	}{
		{"Japanese (H.3.1)", []string{"", "ISO 2022 IR 87"},
			"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B", "",
			"Yamada", "山田^太郎", "やまだ^たろう", ""},
		{"Korean (I.2)", []string{"", "ISO 2022 IR 149"},
			"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf", "\x1b$)C\xc8\xab\xb1\xe6",
			"Hong", "洪^吉洞", "홍^길동", "홍길"},
		{"Chinese (J.3)", []string{"", "ISO 2022 IR 58"},
			"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=", "",
			"Zhang", "张^小东", "", ""},
		{"Japanese with half-width katakana (H.3.2)", []string{"ISO 2022 IR 13", "ISO 2022 IR 87"},
			"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J", "\xb6\xde\xdd \x1b$B6;It\x1b(J CT",
			"ﾔﾏﾀﾞ", "山田^太郎", "やまだ^たろう", "ｶﾞﾝ 胸部 CT"},
		{"Latin-1 in G1", []string{"ISO 2022 IR 100"}, "\x1b-AM\xfcller^Jos\xe9", "CT T\xcaTE", "Müller", "", "", "CT TÊTE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eds := []dicomtest.Edition{dicomtest.Set(tag.SpecificCharacterSet, tt.charset...), dicomtest.Set(tag.PatientName, tt.raw)}
			if tt.desc != "" {
				eds = append(eds, dicomtest.Set(tag.StudyDescription, tt.desc))
			}
			b := object(t, eds...)
			// A file, and a stream that cannot seek.
			for _, r := range []io.Reader{bytes.NewReader(b), struct{ io.Reader }{bytes.NewReader(b)}} {
				h, err := dicomheader.Parse(r, int64(len(b)))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				pn := h.PatientName
				if pn.Family != tt.family || pn.Ideographic != tt.ideographic || pn.Phonetic != tt.phonetic {
					t.Errorf("PatientName %q, %q, %q; want %q, %q, %q", pn.Family, pn.Ideographic, pn.Phonetic, tt.family, tt.ideographic, tt.phonetic)
				}
				if tt.sd != "" && h.StudyDescription != tt.sd {
					t.Errorf("StudyDescription %q, want %q", h.StudyDescription, tt.sd)
				}
				if got := h.SpecificCharacterSet; !slices.Equal(got, tt.charset) && !(tt.charset[0] == "" && slices.Equal(got, tt.charset[1:])) {
					t.Errorf("SpecificCharacterSet %q, want %q", got, tt.charset)
				}
			}
		})
	}
}

func TestCheckCharset(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "ISO_IR 100", "iso_ir 101", "ISO_IR 203", "ISO_IR 6", "ISO_IR 192"} {
		if err := dicomheader.CheckCharset(ok); err != nil {
			t.Errorf("CheckCharset(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"latin1", "ISO 2022 IR 100", "GB18030", "ISO_IR 13"} {
		if err := dicomheader.CheckCharset(bad); err == nil {
			t.Errorf("CheckCharset(%q) accepted", bad)
		}
	}
	if _, err := (dicomheader.Parser{DefaultCharset: "latin1"}).Parse(bytes.NewReader(nil), 0); err == nil || errors.Is(err, dicomheader.ErrTruncated) {
		t.Errorf("Parse with an unknown default: %v, want the setting refused", err)
	}
}

// TestParse_DeclaredCharsetsTheLibraryLacks: ISO_IR 203 (ISO 8859-15,
// added to PS3.3 in 2017) is not in the dicom library's table, which
// refused such objects as malformed; it is read here. Unknown values are
// still refused.
func TestParse_DeclaredCharsetsTheLibraryLacks(t *testing.T) {
	t.Parallel()
	name := dicomtest.Set(tag.PatientName, "\xa4URO^\xbd\xbe")
	for _, tt := range []struct {
		scs     []string
		want    string // "" when refused
		wantErr error
	}{
		{[]string{"ISO_IR 203"}, "€URO^œŸ", nil},
		{[]string{"ISO 2022 IR 203"}, "€URO^œŸ", nil},
		{[]string{"ISO_IR 100"}, "¤URO^½¾", nil},
		{[]string{"ISO_IR 203", "ISO 2022 IR 87"}, "", dicomheader.ErrMalformed},
		{[]string{"ISO_IR 999"}, "", dicomheader.ErrMalformed},
	} {
		b := object(t, dicomtest.Set(tag.SpecificCharacterSet, tt.scs...), name)
		h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%q: %v, want %v", tt.scs, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.scs, err)
			continue
		}
		if h.PatientName.Raw != tt.want {
			t.Errorf("%q: PatientName %q, want %q", tt.scs, h.PatientName.Raw, tt.want)
		}
	}
}

// TestParse_UnreadableBytesInThePatientID: an object that declares UTF-8
// (ISO_IR 192) but writes its PatientID in Latin-1 reaches dicomheader
// with U+FFFD in place of the bytes, so ÄB1 and ÖB1 would both read as
// "\uFFFDB1": the archive refuses it. A name may keep the replacement.
func TestParse_UnreadableBytesInThePatientID(t *testing.T) {
	t.Parallel()
	utf8Declared := dicomtest.Set(tag.SpecificCharacterSet, "ISO_IR 192")
	for _, ed := range []dicomtest.Edition{dicomtest.Set(tag.PatientID, "\xc4B1"), dicomtest.Set(tag.IssuerOfPatientID, "H\xd4P")} {
		b := object(t, utf8Declared, ed)
		h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if err := h.CheckPatientIdentity(); !errors.Is(err, dicomheader.ErrNotText) {
			t.Errorf("CheckPatientIdentity of %q in %q: %v, want ErrNotText", h.PatientID, h.IssuerOfPatientID, err)
		}
	}
	// The issuer's universal ID names the authority as much as the issuer.
	qualifiers := func(elems []*dicom.Element) []*dicom.Element {
		id, _ := dicom.NewElement(tag.UniversalEntityID, []string{"1.2.\x013"})
		typ, _ := dicom.NewElement(tag.UniversalEntityIDType, []string{"ISO"})
		sq, err := dicom.NewElement(tag.IssuerOfPatientIDQualifiersSequence, [][]*dicom.Element{{id, typ}})
		if err != nil {
			t.Fatal(err)
		}
		i, _ := slices.BinarySearchFunc(elems, sq.Tag, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
		return slices.Insert(elems, i, sq)
	}
	qb := object(t, qualifiers)
	qh, err := dicomheader.Parse(bytes.NewReader(qb), int64(len(qb)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if qh.IssuerUniversalIDType != "ISO" {
		t.Errorf("IssuerUniversalIDType = %q, want ISO", qh.IssuerUniversalIDType)
	}
	if err := qh.CheckPatientIdentity(); !errors.Is(err, dicomheader.ErrNotText) {
		t.Errorf("CheckPatientIdentity with a control character in the Universal Entity ID %q: %v, want ErrNotText", qh.IssuerUniversalID, err)
	}
	b := object(t, utf8Declared, dicomtest.Set(tag.PatientName, "M\xdcLLER"))
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("PatientName not readable in its set: %v", err)
	}
	if err := h.CheckPatientIdentity(); err != nil || h.PatientName.Family != "M\uFFFDLLER" {
		t.Errorf("family name %q, CheckPatientIdentity %v", h.PatientName.Family, err)
	}
}

// A control character inside a value (a NUL or an SOH some modalities
// write) is read as U+FFFD: PostgreSQL text holds no NUL, and FHIR text no
// other control character. Padding at either end is removed as before;
// tab, LF and CR, which text values may hold, are kept; a patient ID with
// one is refused.
func TestParse_ControlCharacters(t *testing.T) {
	t.Parallel()
	b := object(t,
		dicomtest.Set(tag.StudyDescription, "CT\x00HEAD\x00"),
		dicomtest.Set(tag.PatientName, "DOE\x01^JOHN\x00"),
		dicomtest.Set(tag.AccessionNumber, "\x00A1 \x00"),
		withRequest("ONE\tTWO\r\nTHREE\x1bFOUR"),
	)
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if h.StudyDescription != "CT\uFFFDHEAD" {
		t.Errorf("StudyDescription %q, want CT\\uFFFDHEAD", h.StudyDescription)
	}
	if h.PatientName.Family != "DOE\uFFFD" || h.PatientName.Given != "JOHN" {
		t.Errorf("PatientName %+v", h.PatientName)
	}
	if h.AccessionNumber != "A1" {
		t.Errorf("AccessionNumber %q, want A1 (padding removed)", h.AccessionNumber)
	}
	if got := requestDescription(t, h); got != "ONE\tTWO\r\nTHREE\uFFFDFOUR" {
		t.Errorf("description in a sequence %q", got)
	}
	if err := h.CheckPatientIdentity(); err != nil {
		t.Errorf("CheckPatientIdentity: %v", err)
	}

	for _, ed := range []dicomtest.Edition{dicomtest.Set(tag.PatientID, "AB\x001"), dicomtest.Set(tag.IssuerOfPatientID, "HOSP\x01")} {
		b := object(t, ed)
		h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if err := h.CheckPatientIdentity(); !errors.Is(err, dicomheader.ErrNotText) {
			t.Errorf("CheckPatientIdentity of %q in %q: %v, want ErrNotText", h.PatientID, h.IssuerOfPatientID, err)
		}
	}

	// ISO 2022 escapes are the character set's, and the library reads
	// them: no control character is left to replace (PS3.5 H.3.1).
	b = object(t, dicomtest.Set(tag.SpecificCharacterSet, "", "ISO 2022 IR 87"),
		dicomtest.Set(tag.PatientName, "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"))
	h, err = dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse ISO 2022 IR 87: %v", err)
	}
	if h.PatientName.Family != "Yamada" || !strings.Contains(h.PatientName.Ideographic, "山田") || strings.ContainsRune(h.PatientName.Raw, '\uFFFD') {
		t.Errorf("PatientName %+v, want the ideographic 山田 read", h.PatientName)
	}
}
