// Package dicomheader reads, from a DICOM Part 10 stream (PS3.10 7), the
// attributes the archive indexes, and validates the UIDs it keys objects by.
//
// Parse stops at the Pixel Data element and never holds pixel bytes in memory,
// so it can run on every object a STOW-RS request (PS3.18 10.5) brings in.
package dicomheader

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/dicomio"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// preambleLen is the length of the File Preamble plus the "DICM" prefix
// (PS3.10 7.1).
const preambleLen = 128 + 4

// Header holds the attributes of one SOP Instance that the archive indexes.
// Fields are named after their DICOM keyword (PS3.6). String values have their
// padding removed; multi-valued attributes keep their first value unless noted.
// Dates and times keep their DICOM text form (DA, TM, DT, PS3.5 6.2); see
// ParseDate, ParseTime, ParseDateTime and Header.StudyDateTime.
type Header struct {
	TransferSyntaxUID string // (0002,0010) from the File Meta Information

	SOPClassUID       string // (0008,0016)
	SOPInstanceUID    string // (0008,0018)
	StudyInstanceUID  string // (0020,000D)
	SeriesInstanceUID string // (0020,000E)

	SpecificCharacterSet []string // (0008,0005), all values

	PatientID         string // (0010,0020)
	IssuerOfPatientID string // (0010,0021)
	// IssuerUniversalID and IssuerUniversalIDType are the Universal Entity
	// ID (0040,0032) and its type (0040,0033) of the first item of the
	// Issuer of Patient ID Qualifiers Sequence (0010,0024): the authority
	// as HL7 v2 CX-4.2 and CX-4.3 name it.
	IssuerUniversalID     string
	IssuerUniversalIDType string
	PatientName           PersonName // (0010,0010)
	PatientBirthDate      string     // (0010,0030), DA
	PatientSex            string     // (0010,0040)

	StudyDate              string     // (0008,0020), DA
	StudyTime              string     // (0008,0030), TM
	TimezoneOffsetFromUTC  string     // (0008,0201), "&ZZXX"
	AccessionNumber        string     // (0008,0050)
	StudyID                string     // (0020,0010)
	StudyDescription       string     // (0008,1030)
	ReferringPhysicianName PersonName // (0008,0090)

	Modality          string // (0008,0060)
	SeriesNumber      *int   // (0020,0011), nil when absent or not an IS
	SeriesDescription string // (0008,103E)
	BodyPartExamined  string // (0018,0015)
	Laterality        string // (0020,0060)
	SeriesDate        string // (0008,0021), DA
	SeriesTime        string // (0008,0031), TM

	InstanceNumber *int // (0020,0013), nil when absent or not an IS
	// NumberOfFrames is (0028,0008); 1 when absent from an image with Rows,
	// 0 for objects without pixel data.
	NumberOfFrames int

	Rows                      int    // (0028,0010)
	Columns                   int    // (0028,0011)
	BitsAllocated             int    // (0028,0100)
	BitsStored                int    // (0028,0101)
	PixelRepresentation       int    // (0028,0103)
	SamplesPerPixel           int    // (0028,0002)
	PhotometricInterpretation string // (0028,0004)

	RescaleSlope     *float64 // (0028,1053)
	RescaleIntercept *float64 // (0028,1052)
	WindowCenter     *float64 // (0028,1050), first value
	WindowWidth      *float64 // (0028,1051), first value

	// Dataset is the whole data set, File Meta Information included, without
	// the top-level Pixel Data element. Nested pixel data (icons) is present
	// with PixelDataInfo.IntentionallySkipped set.
	Dataset dicom.Dataset
}

// Parse reads a DICOM Part 10 stream of size bytes (a negative size means
// "until EOF") and returns its Header.
//
// Parse reads up to and including the top-level Pixel Data element, whose
// value it discards without buffering; elements after it are not read. It
// checks that the stream starts with the preamble and "DICM" (ErrNotPart10),
// that it is complete (ErrTruncated) and decodable (ErrMalformed), and that
// the SOP Class, SOP Instance, Study Instance and Series Instance UIDs and the
// Transfer Syntax UID are present and valid (*AttributeError wrapping
// ErrMissingAttribute or ErrInvalidUID). Parse never panics: a panic inside
// the DICOM library is returned as ErrMalformed.
//
// Before the DICOM library reads anything, Parse walks the element headers
// (PS3.5 7) and rejects, with ErrTruncated or ErrMalformed, any length that
// overruns the stream or its enclosing item or sequence, sequences nested
// deeper than 32, more than about a million elements, and deflated data
// sets that inflate to more than 256 MiB. Memory use is thus bounded by
// the bytes actually present. When r is also an io.ReaderAt and an
// io.Seeker, as *os.File, *bytes.Reader and *io.SectionReader are, Parse
// reads from its current offset, seeks over values, and checks the whole
// stream, fragments of encapsulated Pixel Data (PS3.5 A.4) included; a
// negative size then means up to the end. Other readers are checked, and
// held in memory, up to the top-level Pixel Data element only, and with a
// negative size each length is checked by reading that far.
//
// Every string of the Header and its Dataset is UTF-8: the library decodes
// the data set's Specific Character Set, and Parse reads a value that is
// still not UTF-8 (a data set that declares no set but uses one) in
// DefaultCharset. See Parser for another set. An attribute of the data
// dictionary that the data set holds as UN is read with the dictionary's VR,
// and a Private Creator as LO (readUnknownVR).
func Parse(r io.Reader, size int64) (*Header, error) {
	return Parser{}.Parse(r, size)
}

// Parser is Parse with a site's choice of character set.
type Parser struct {
	// DefaultCharset is the set (a defined term of Specific Character Set,
	// see CheckCharset) text is read in when it is not UTF-8 after the data
	// set's own set was applied; "" means DefaultCharset. ISO_IR 6 or
	// ISO_IR 192 refuse such text (ErrNotText).
	DefaultCharset string
}

// Parse is the package's Parse with p's settings.
func (p Parser) Parse(r io.Reader, size int64) (*Header, error) {
	cm, err := fallbackCharset(p.DefaultCharset)
	if err != nil {
		return nil, err
	}
	ds, err := parseDataset(r, size)
	if err == nil {
		err = readText(ds, cm)
	}
	if err != nil {
		return nil, fmt.Errorf("dicomheader.Parse: %w", err)
	}
	h := newHeader(ds)
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("dicomheader.Parse: %w", err)
	}
	return h, nil
}

// ParseDataset reads a Part 10 stream of size bytes as Parse does, with the
// same checks of its structure and the same reading of its text (in
// DefaultCharset where it is not UTF-8), and returns its data set up to
// Pixel Data without asking for the attributes of a SOP Instance: for the
// other Part 10 files that come from outside, such as a DICOMDIR (PS3.10
// 8.6), which the library alone would let allocate what a length field
// claims (4 GiB for a few hundred bytes).
func ParseDataset(r io.Reader, size int64) (dicom.Dataset, error) {
	ds, err := parseDataset(r, size)
	if err == nil {
		err = readText(ds, defaultCharsets[DefaultCharset])
	}
	if err != nil {
		return dicom.Dataset{}, fmt.Errorf("dicomheader.ParseDataset: %w", err)
	}
	return ds, nil
}

// parseDataset reads the data set up to the Pixel Data element. The guard
// checks the stream's structure first, so that the library only ever
// allocates for lengths the stream can hold.
func parseDataset(r io.Reader, size int64) (ds dicom.Dataset, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic in DICOM parser: %v", ErrMalformed, p)
		}
	}()

	if size >= 0 && size < preambleLen {
		return ds, fmt.Errorf("%w: %d bytes is shorter than the preamble", ErrTruncated, size)
	}
	in, cs, err := guard(r, size)
	if err != nil {
		return ds, err
	}
	var japaneseSets []string
	if cs != nil {
		if names := charsetNames(cs.raw); ownJapanese(names) {
			japaneseSets = names
			in = hideCharset(in, cs.off, len(cs.raw))
		}
	}

	limit := size
	if size < 0 {
		limit = dicomio.LimitReadUntilEOF
	}
	// Specific Character Set values the library does not know are checked
	// after the parse (readText), which reads ISO_IR 203 itself.
	p, err := dicom.NewParser(in, limit, nil, dicom.SkipPixelData(), dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return ds, classify(err, size, "reading file meta information")
	}
	meta := p.GetMetadata()
	ts, err := meta.FindElementByTag(tag.TransferSyntaxUID)
	if err != nil {
		return ds, &AttributeError{Keyword: "TransferSyntaxUID", Tag: tag.TransferSyntaxUID, Err: ErrMissingAttribute}
	}
	// A deflated data set is read until the inflated stream ends, whatever
	// the size (PS3.5 A.5).
	untilEOF := size < 0 || firstString(ts) == uid.DeflatedExplicitVRLittleEndian

	var elems []*dicom.Element
	for {
		e, err := p.Next()
		if errors.Is(err, dicom.ErrorEndOfDICOM) {
			break
		}
		if err != nil {
			if untilEOF && errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				// EOF between elements is the end.
				break
			}
			return ds, classify(err, size, "reading data set")
		}
		if e.Tag == tag.PixelData {
			break
		}
		elems = append(elems, e)
	}
	// The parser's data set holds the meta elements followed by every element
	// read; rebuild it without Pixel Data.
	ds.Elements = make([]*dicom.Element, 0, len(meta.Elements)+len(elems))
	ds.Elements = append(append(ds.Elements, meta.Elements...), elems...)
	charset, _ := ds.FindElementByTag(tag.SpecificCharacterSet)
	if japaneseSets != nil && charset != nil {
		// The library read the text as bytes (iso2022jp.go).
		charset.Value, _ = dicom.NewValue(japaneseSets)
		_ = walkStrings(elems, func(e *dicom.Element, s string) (string, error) {
			if e == charset {
				return s, nil
			}
			return decodeJapanese(s, japaneseSets), nil
		})
	}
	readUnknownVR(ds.Elements[len(meta.Elements):], charset)
	return ds, nil
}

// classify maps a library error to ErrTruncated or ErrMalformed.
func classify(err error, size int64, op string) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, dicomio.ErrorInsufficientBytesLeft):
		return fmt.Errorf("%w: %s: %v", ErrTruncated, op, err)
	default:
		return fmt.Errorf("%w: %s: %v", ErrMalformed, op, err)
	}
}

// newHeader extracts the indexed attributes from ds.
func newHeader(ds dicom.Dataset) *Header {
	idx := make(map[tag.Tag]*dicom.Element, len(ds.Elements))
	for _, e := range ds.Elements {
		if _, dup := idx[e.Tag]; !dup {
			idx[e.Tag] = e
		}
	}
	str := func(t tag.Tag) string { return firstString(idx[t]) }
	h := &Header{
		TransferSyntaxUID:         str(tag.TransferSyntaxUID),
		SOPClassUID:               str(tag.SOPClassUID),
		SOPInstanceUID:            str(tag.SOPInstanceUID),
		StudyInstanceUID:          str(tag.StudyInstanceUID),
		SeriesInstanceUID:         str(tag.SeriesInstanceUID),
		SpecificCharacterSet:      allStrings(idx[tag.SpecificCharacterSet]),
		PatientID:                 str(tag.PatientID),
		IssuerOfPatientID:         str(tag.IssuerOfPatientID),
		PatientName:               ParsePersonName(firstRawString(idx[tag.PatientName])),
		PatientBirthDate:          str(tag.PatientBirthDate),
		PatientSex:                str(tag.PatientSex),
		StudyDate:                 str(tag.StudyDate),
		StudyTime:                 str(tag.StudyTime),
		TimezoneOffsetFromUTC:     str(tag.TimezoneOffsetFromUTC),
		AccessionNumber:           str(tag.AccessionNumber),
		StudyID:                   str(tag.StudyID),
		StudyDescription:          str(tag.StudyDescription),
		ReferringPhysicianName:    ParsePersonName(firstRawString(idx[tag.ReferringPhysicianName])),
		Modality:                  str(tag.Modality),
		SeriesNumber:              intString(idx[tag.SeriesNumber]),
		SeriesDescription:         str(tag.SeriesDescription),
		BodyPartExamined:          str(tag.BodyPartExamined),
		Laterality:                str(tag.Laterality),
		SeriesDate:                str(tag.SeriesDate),
		SeriesTime:                str(tag.SeriesTime),
		InstanceNumber:            intString(idx[tag.InstanceNumber]),
		Rows:                      firstInt(idx[tag.Rows]),
		Columns:                   firstInt(idx[tag.Columns]),
		BitsAllocated:             firstInt(idx[tag.BitsAllocated]),
		BitsStored:                firstInt(idx[tag.BitsStored]),
		PixelRepresentation:       firstInt(idx[tag.PixelRepresentation]),
		SamplesPerPixel:           firstInt(idx[tag.SamplesPerPixel]),
		PhotometricInterpretation: str(tag.PhotometricInterpretation),
		RescaleSlope:              decimalString(idx[tag.RescaleSlope]),
		RescaleIntercept:          decimalString(idx[tag.RescaleIntercept]),
		WindowCenter:              decimalString(idx[tag.WindowCenter]),
		WindowWidth:               decimalString(idx[tag.WindowWidth]),
		Dataset:                   ds,
	}
	if q := firstItem(idx[tag.IssuerOfPatientIDQualifiersSequence]); q != nil {
		h.IssuerUniversalID, h.IssuerUniversalIDType = firstString(q[tag.UniversalEntityID]), firstString(q[tag.UniversalEntityIDType])
	}
	if n := intString(idx[tag.NumberOfFrames]); n != nil && *n > 0 {
		h.NumberOfFrames = *n
	} else if h.Rows > 0 {
		h.NumberOfFrames = 1
	}
	return h
}

// validate checks the UIDs the archive keys objects by.
func (h *Header) validate() error {
	uids := []struct {
		keyword string
		tag     tag.Tag
		value   string
	}{
		{"TransferSyntaxUID", tag.TransferSyntaxUID, h.TransferSyntaxUID},
		{"SOPClassUID", tag.SOPClassUID, h.SOPClassUID},
		{"SOPInstanceUID", tag.SOPInstanceUID, h.SOPInstanceUID},
		{"StudyInstanceUID", tag.StudyInstanceUID, h.StudyInstanceUID},
		{"SeriesInstanceUID", tag.SeriesInstanceUID, h.SeriesInstanceUID},
	}
	for _, u := range uids {
		if u.value == "" {
			return &AttributeError{Keyword: u.keyword, Tag: u.tag, Err: ErrMissingAttribute}
		}
		if !ValidUID(u.value) {
			return &AttributeError{Keyword: u.keyword, Tag: u.tag, Value: u.value, Err: ErrInvalidUID}
		}
	}
	return nil
}

// CheckPatientIdentity refuses (ErrNotText) a PatientID or
// IssuerOfPatientID holding U+FFFD: the dicom library puts it in place of
// bytes the declared set cannot read (Latin-1 under ISO_IR 192), and Parse
// in place of a control character, so two patients could share one ID.
// Names may keep it; they identify no one on their own. The archive asks
// this of what it files; Parse does not, so that objects filed before can
// still be read.
func (h *Header) CheckPatientIdentity() error {
	for _, id := range []struct {
		tag   tag.Tag
		value string
	}{{tag.PatientID, h.PatientID}, {tag.IssuerOfPatientID, h.IssuerOfPatientID}, {tag.UniversalEntityID, h.IssuerUniversalID}} {
		if strings.ContainsRune(id.value, utf8.RuneError) {
			return fmt.Errorf("%w: (%04X,%04X) holds bytes that are not text: a control character, or bytes its character set cannot read", ErrNotText, id.tag.Group, id.tag.Element)
		}
	}
	return nil
}

// allStrings returns the values of a string element with padding removed
// (PS3.5 6.2), or nil.
func allStrings(e *dicom.Element) []string {
	if e == nil || e.Value == nil || e.Value.ValueType() != dicom.Strings {
		return nil
	}
	vs, _ := e.Value.GetValue().([]string)
	var out []string
	for _, v := range vs {
		out = append(out, trim(v))
	}
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// firstRawString returns the first value of a string element without
// trimming, or "".
func firstRawString(e *dicom.Element) string {
	if e == nil || e.Value == nil || e.Value.ValueType() != dicom.Strings {
		return ""
	}
	vs, _ := e.Value.GetValue().([]string)
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func firstString(e *dicom.Element) string { return trim(firstRawString(e)) }

// trim removes the padding of a string value: spaces and NULs (PS3.5 6.2).
func trim(s string) string { return strings.Trim(s, " \x00") }

// firstItem returns the elements of the first item of a sequence, by tag,
// or nil.
func firstItem(e *dicom.Element) map[tag.Tag]*dicom.Element {
	if e == nil || e.Value == nil || e.Value.ValueType() != dicom.Sequences {
		return nil
	}
	items, _ := e.Value.GetValue().([]*dicom.SequenceItemValue)
	if len(items) == 0 {
		return nil
	}
	elems, _ := items[0].GetValue().([]*dicom.Element)
	out := make(map[tag.Tag]*dicom.Element, len(elems))
	for _, x := range elems {
		if _, dup := out[x.Tag]; !dup {
			out[x.Tag] = x
		}
	}
	return out
}

// firstInt returns the first value of an US, SS, UL or SL element, or 0.
func firstInt(e *dicom.Element) int {
	if e == nil || e.Value == nil || e.Value.ValueType() != dicom.Ints {
		return 0
	}
	vs, _ := e.Value.GetValue().([]int)
	if len(vs) == 0 {
		return 0
	}
	return vs[0]
}

// intString parses the first value of an IS element (PS3.5 6.2), or nil.
func intString(e *dicom.Element) *int {
	s := firstString(e)
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 32)
	if err != nil {
		return nil
	}
	i := int(n)
	return &i
}

// decimalString parses the first value of a DS element (PS3.5 6.2), or nil.
func decimalString(e *dicom.Element) *float64 {
	s := firstString(e)
	if s == "" {
		return nil
	}
	f, ok := parseDS(s)
	if !ok {
		return nil
	}
	return &f
}

// parseDS parses a Decimal String value (PS3.5 6.2): a fixed or floating point
// number in ASCII, without the NaN, Inf and hexadecimal forms ParseFloat also
// accepts.
func parseDS(s string) (float64, bool) {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E') {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}
