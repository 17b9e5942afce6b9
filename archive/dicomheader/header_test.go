package dicomheader_test

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"runtime"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func parseFile(t *testing.T, name string) *dicomheader.Header {
	t.Helper()
	b, err := os.ReadFile(dicomtest.TestdataPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	h, err := dicomheader.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return h
}

func ptr[T any](v T) *T { return &v }

var ignoreDataset = cmpopts.IgnoreFields(dicomheader.Header{}, "Dataset")

func TestParse_EveryTestdataFile(t *testing.T) {
	t.Parallel()
	want := map[string]struct{ modality, ts, sopClass string }{
		dicomtest.FilePET1:       {"PT", "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.128"},
		dicomtest.FilePET2:       {"PT", "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.128"},
		dicomtest.FileMR:         {"MR", "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.4"},
		dicomtest.FileCR:         {"CR", "1.2.840.10008.1.2", "1.2.840.10008.5.1.4.1.1.1"},
		dicomtest.FileCTMulti:    {"CT", "1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.2.1"},
		dicomtest.FileOTDeflated: {"OT", "1.2.840.10008.1.2.1.99", "1.2.840.10008.5.1.4.1.1.7"},
	}
	for _, name := range dicomtest.Files {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := parseFile(t, name)
			w := want[name]
			if got := [3]string{h.Modality, h.TransferSyntaxUID, h.SOPClassUID}; got != [3]string{w.modality, w.ts, w.sopClass} {
				t.Errorf("Modality, TransferSyntaxUID, SOPClassUID = %q, want %q", got, [3]string{w.modality, w.ts, w.sopClass})
			}
			for _, uid := range []string{h.SOPInstanceUID, h.StudyInstanceUID, h.SeriesInstanceUID} {
				if !dicomheader.ValidUID(uid) {
					t.Errorf("UID %q is not valid", uid)
				}
			}
			for _, e := range h.Dataset.Elements {
				if e.Tag == tag.PixelData {
					t.Errorf("Dataset holds top-level Pixel Data")
				}
			}
		})
	}
}

func TestParse_CTMultiFrame(t *testing.T) {
	t.Parallel()
	got := parseFile(t, dicomtest.FileCTMulti)
	want := &dicomheader.Header{
		TransferSyntaxUID:    "1.2.840.10008.1.2.1",
		SOPClassUID:          "1.2.840.10008.5.1.4.1.1.2.1",
		SOPInstanceUID:       "1.3.6.1.4.1.5962.1.1.10.3.1.1166562673.14401",
		StudyInstanceUID:     "1.3.6.1.4.1.5962.1.2.10.1166562673.14401",
		SeriesInstanceUID:    "1.3.6.1.4.1.5962.1.3.10.3.1166562673.14401",
		SpecificCharacterSet: []string{"ISO_IR 100"},
		PatientID:            "0010",
		PatientName: dicomheader.PersonName{
			Raw: "Perfusion^MCA Stroke", Family: "Perfusion", Given: "MCA Stroke",
		},
		PatientBirthDate:          "19500704",
		PatientSex:                "M",
		StudyDate:                 "20061219",
		StudyTime:                 "111154.812",
		TimezoneOffsetFromUTC:     "-0500",
		AccessionNumber:           "0010",
		StudyID:                   "0010",
		ReferringPhysicianName:    dicomheader.PersonName{Raw: "Thomas^Albert", Family: "Thomas", Given: "Albert"},
		Modality:                  "CT",
		SeriesNumber:              ptr(3),
		SeriesDate:                "20061219",
		SeriesTime:                "110929.984",
		InstanceNumber:            ptr(1),
		NumberOfFrames:            2,
		Rows:                      512,
		Columns:                   512,
		BitsAllocated:             16,
		BitsStored:                16,
		PixelRepresentation:       0,
		SamplesPerPixel:           1,
		PhotometricInterpretation: "MONOCHROME2",
	}
	if diff := cmp.Diff(want, got, ignoreDataset); diff != "" {
		t.Errorf("Parse(5.dcm) mismatch (-want +got):\n%s", diff)
	}
}

func TestParse_PETRescaleAndWindow(t *testing.T) {
	t.Parallel()
	got := parseFile(t, dicomtest.FilePET1)
	want := &dicomheader.Header{
		TransferSyntaxUID:         "1.2.840.10008.1.2.1",
		SOPClassUID:               "1.2.840.10008.5.1.4.1.1.128",
		SOPInstanceUID:            "1.3.6.1.4.1.14519.5.2.1.7009.2401.264581068966524608390523682945",
		StudyInstanceUID:          "1.3.6.1.4.1.14519.5.2.1.7009.2401.541147157881199293470020980360",
		SeriesInstanceUID:         "1.3.6.1.4.1.14519.5.2.1.7009.2401.156320467167446933671661793694",
		SpecificCharacterSet:      []string{"ISO_IR 100"},
		PatientID:                 "ACRIN-FLT-Breast_029",
		PatientName:               dicomheader.PersonName{Raw: "ACRIN-FLT-Breast_029", Family: "ACRIN-FLT-Breast_029"},
		PatientSex:                "F",
		StudyDate:                 "19600614",
		StudyTime:                 "145225.546000",
		StudyID:                   "345678",
		StudyDescription:          "PET-CT STUDY",
		ReferringPhysicianName:    dicomheader.PersonName{Raw: "REMOVED", Family: "REMOVED"},
		Modality:                  "PT",
		SeriesNumber:              ptr(102),
		SeriesDescription:         "PET-CT SERIES",
		BodyPartExamined:          "BREAST",
		SeriesDate:                "19600614",
		SeriesTime:                "152316.921000",
		InstanceNumber:            ptr(60),
		NumberOfFrames:            1,
		Rows:                      168,
		Columns:                   168,
		BitsAllocated:             16,
		BitsStored:                16,
		PixelRepresentation:       1,
		SamplesPerPixel:           1,
		PhotometricInterpretation: "MONOCHROME2",
		RescaleSlope:              ptr(9.12329),
		RescaleIntercept:          ptr(0.0),
		WindowCenter:              ptr(30157.0),
		WindowWidth:               ptr(54282.0),
	}
	if diff := cmp.Diff(want, got, ignoreDataset); diff != "" {
		t.Errorf("Parse(1.dcm) mismatch (-want +got):\n%s", diff)
	}
}

func TestParse_ImplicitVRAndPaddedValues(t *testing.T) {
	t.Parallel()
	cr := parseFile(t, dicomtest.FileCR)
	if got, want := [3]string{cr.TransferSyntaxUID, cr.BodyPartExamined, cr.Laterality}, [3]string{"1.2.840.10008.1.2", "CHEST", ""}; got != want {
		t.Errorf("CR TransferSyntaxUID, BodyPartExamined, Laterality = %q, want %q", got, want)
	}
	if got, want := [2]int{cr.Rows, cr.Columns}, [2]int{2140, 1760}; got != want {
		t.Errorf("CR Rows, Columns = %v, want %v", got, want)
	}
	mr := parseFile(t, dicomtest.FileMR)
	// 3.dcm stores Patient's Name as two spaces.
	if diff := cmp.Diff(dicomheader.PersonName{}, mr.PatientName); diff != "" {
		t.Errorf("MR PatientName mismatch (-want +got):\n%s", diff)
	}
	if got, want := mr.AccessionNumber, "5534634656957015"; got != want {
		t.Errorf("MR AccessionNumber = %q, want %q", got, want)
	}
	if got, want := mr.BitsStored, 12; got != want {
		t.Errorf("MR BitsStored = %d, want %d", got, want)
	}
	ot := parseFile(t, dicomtest.FileOTDeflated)
	if !ot.PatientName.IsEmpty() || ot.PatientName.Raw != "^^^^" {
		t.Errorf("OT PatientName = %+v, want empty name %q", ot.PatientName, "^^^^")
	}
	if ot.SeriesNumber != nil || ot.InstanceNumber != nil {
		t.Errorf("OT SeriesNumber, InstanceNumber = %v, %v, want nil for empty IS", ot.SeriesNumber, ot.InstanceNumber)
	}
}

func TestParse_DatasetKeepsNestedSequencesWithoutPixelBytes(t *testing.T) {
	t.Parallel()
	h := parseFile(t, dicomtest.FilePET1)
	icon, err := h.Dataset.FindElementByTagNested(tag.PixelData)
	if err != nil {
		t.Fatalf("nested icon Pixel Data not found: %v", err)
	}
	if info := dicom.MustGetPixelDataInfo(icon.Value); !info.IntentionallySkipped {
		t.Errorf("icon Pixel Data was read, want IntentionallySkipped")
	}
	if _, err := h.Dataset.FindElementByTag(tag.EnergyWindowRangeSequence); err != nil {
		t.Errorf("EnergyWindowRangeSequence missing from Dataset: %v", err)
	}
	if _, err := h.Dataset.FindElementByTag(tag.MediaStorageSOPInstanceUID); err != nil {
		t.Errorf("File Meta Information missing from Dataset: %v", err)
	}
}

func TestParse_UnknownSizeReadsUntilEOF(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dicomtest.TestdataPath(t, dicomtest.FileMR))
	if err != nil {
		t.Fatal(err)
	}
	h, err := dicomheader.Parse(iotest.OneByteReader(bytes.NewReader(b)), -1)
	if err != nil {
		t.Fatalf("Parse(size -1): %v", err)
	}
	if got, want := h.Modality, "MR"; got != want {
		t.Errorf("Modality = %q, want %q", got, want)
	}
}

// TestParse_DoesNotBufferPixelData parses the 7.5 MB CR file and checks that
// far less than its pixel data was allocated.
func TestParse_DoesNotBufferPixelData(t *testing.T) {
	f, err := os.Open(dicomtest.TestdataPath(t, dicomtest.FileCR))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := dicomheader.Parse(f, st.Size()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20); got > limit {
		t.Errorf("Parse allocated %d bytes for a %d-byte file, want under %d", got, st.Size(), limit)
	}
}

func TestParse_GeneratedStudy(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("P123", "HOSP-A", "DOE^JANE^Q^DR^III=ドウ^ジェーン=どう^じぇーん"), dicomtest.WithAccession("A1"))
	in := st.Series[0].Instances[0]
	h, err := dicomheader.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)))
	if err != nil {
		t.Fatal(err)
	}
	want := dicomheader.PersonName{
		Raw: "DOE^JANE^Q^DR^III=ドウ^ジェーン=どう^じぇーん", Family: "DOE", Given: "JANE", Middle: "Q", Prefix: "DR", Suffix: "III",
		Ideographic: "ドウ^ジェーン", Phonetic: "どう^じぇーん",
	}
	if diff := cmp.Diff(want, h.PatientName); diff != "" {
		t.Errorf("PatientName mismatch (-want +got):\n%s", diff)
	}
	if got, want := [4]string{h.PatientID, h.IssuerOfPatientID, h.AccessionNumber, h.SOPInstanceUID}, [4]string{"P123", "HOSP-A", "A1", in.SOPInstanceUID}; got != want {
		t.Errorf("PatientID, IssuerOfPatientID, AccessionNumber, SOPInstanceUID = %q, want %q", got, want)
	}
}

func TestParse_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    []byte
		size    int64 // -2 means len(data)
		wantErr error
		keyword string
	}{
		{name: "empty", data: nil, size: -2, wantErr: dicomheader.ErrTruncated},
		{name: "empty unknown size", data: nil, size: -1, wantErr: dicomheader.ErrTruncated},
		{name: "truncated data set", data: dicomtest.BrokenTruncated(t), size: -2, wantErr: dicomheader.ErrTruncated},
		{name: "truncated pixel data", data: dicomtest.BrokenTruncatedPixelData(t), size: -2, wantErr: dicomheader.ErrTruncated},
		{name: "size larger than stream", data: dicomtest.BrokenTruncated(t), size: 1 << 20, wantErr: dicomheader.ErrTruncated},
		{name: "no preamble", data: dicomtest.BrokenNoPreamble(t), size: -2, wantErr: dicomheader.ErrNotPart10},
		{name: "text file", data: bytes.Repeat([]byte("hello world\n"), 20), size: -2, wantErr: dicomheader.ErrNotPart10},
		{name: "missing SOPInstanceUID", data: dicomtest.BrokenMissingSOPInstanceUID(t), size: -2, wantErr: dicomheader.ErrMissingAttribute, keyword: "SOPInstanceUID"},
		{name: "path traversal UID", data: dicomtest.BrokenTraversalUID(t), size: -2, wantErr: dicomheader.ErrInvalidUID, keyword: "SOPInstanceUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			size := tt.size
			if size == -2 {
				size = int64(len(tt.data))
			}
			_, err := dicomheader.Parse(bytes.NewReader(tt.data), size)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse() error = %v, want %v", err, tt.wantErr)
			}
			if tt.keyword != "" {
				var ae *dicomheader.AttributeError
				if !errors.As(err, &ae) {
					t.Fatalf("Parse() error = %v, want an *AttributeError", err)
				}
				if got := ae.Keyword; got != tt.keyword {
					t.Errorf("AttributeError.Keyword = %q, want %q", got, tt.keyword)
				}
			}
		})
	}
}

func TestParse_ReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := dicomheader.Parse(iotest.ErrReader(boom), 1000)
	if !errors.Is(err, boom) {
		t.Errorf("Parse() error = %v, want %v", err, boom)
	}
}

// implicitItem encodes one sequence item of defined length, in Implicit VR.
func implicitItem(elems ...[]byte) []byte {
	body := bytes.Join(elems, nil)
	return append(implicitLE.header(tag.Item, "", uint32(len(body))), body...)
}

// A gateway that did not know an attribute leaves it UN in an Explicit VR
// data set (PS3.5 6.2.2). The dictionary knows it, and the index must: such
// a PatientID was refused as missing, such an IssuerOfPatientID filed the
// object in no issuer's domain, and such a Modality or Study Date was not
// indexed.
func TestParse_UNOfADictionaryAttributeIsReadWithItsVR(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.SpecificCharacterSet, "ISO_IR 100"),
		dicomtest.SetUN(tag.PatientID, []byte("UN-123")),
		dicomtest.SetUN(tag.IssuerOfPatientID, []byte("HOSP-B")),
		dicomtest.SetUN(tag.IssuerOfPatientIDQualifiersSequence, implicitItem(
			implicitLE.elem(tag.UniversalEntityID, "", "1.2.3.4"),
			implicitLE.elem(tag.UniversalEntityIDType, "", "ISO"),
			implicitLE.elem(tag.Tag{Group: 0x0011, Element: 0x0010}, "", "ACME 1.0"),
		)),
		dicomtest.SetUN(tag.PatientName, []byte("M\xfcller^Hans")),
		dicomtest.SetUN(tag.Modality, []byte("MR")),
		dicomtest.SetUN(tag.StudyDate, []byte("20090306")),
		dicomtest.SetUN(tag.SeriesNumber, []byte("7")),
		dicomtest.SetUN(tag.Rows, []byte{0x00, 0x01}),
		// Neither the dictionary nor PS3.5 gives these a VR.
		dicomtest.SetUN(tag.Tag{Group: 0x0011, Element: 0x1001}, []byte("secret")),
		// Not an item: stays UN.
		dicomtest.SetUN(tag.ReferencedStudySequence, []byte("not items")),
	))
	in := st.Instances()[0]
	h, err := dicomheader.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := struct {
		PatientID, Issuer, UniversalID, UniversalIDType, Name, Modality, StudyDate string
		SeriesNumber                                                               *int
		Rows                                                                       int
	}{h.PatientID, h.IssuerOfPatientID, h.IssuerUniversalID, h.IssuerUniversalIDType, h.PatientName.Family + "^" + h.PatientName.Given,
		h.Modality, h.StudyDate, h.SeriesNumber, h.Rows}
	want := got
	want.PatientID, want.Issuer, want.UniversalID, want.UniversalIDType = "UN-123", "HOSP-B", "1.2.3.4", "ISO"
	want.Name, want.Modality, want.StudyDate, want.SeriesNumber, want.Rows = "Müller^Hans", "MR", "20090306", ptr(7), 256
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes held as UN (-want +got):\n%s", diff)
	}
	vrs := map[tag.Tag]string{
		tag.StudyDate:                           "DA",
		tag.Rows:                                "US",
		tag.IssuerOfPatientIDQualifiersSequence: "SQ",
		{Group: 0x0011, Element: 0x1001}:        "UN",
		tag.ReferencedStudySequence:             "UN",
	}
	for tg, want := range vrs {
		e, err := h.Dataset.FindElementByTag(tg)
		if err != nil {
			t.Errorf("%v: %v", tg, err)
			continue
		}
		if e.RawValueRepresentation != want {
			t.Errorf("%v has VR %s, want %s", tg, e.RawValueRepresentation, want)
		}
	}
	creator, err := h.Dataset.FindElementByTagNested(tag.Tag{Group: 0x0011, Element: 0x0010})
	if err != nil || creator.RawValueRepresentation != "LO" || creator.Value.String() != "[ACME 1.0]" {
		t.Errorf("private creator inside the item = %v, %v; want LO [ACME 1.0]", creator, err)
	}
	// The object itself is left as it came.
	if !bytes.Contains(in.Bytes, []byte("UN\x00\x00\x08\x00\x00\x0020090306")) {
		t.Errorf("the test object does not hold StudyDate as UN")
	}
}

// Implicit VR gives a Private Creator no VR; PS3.5 7.8.1 gives it LO.
func TestParse_ImplicitPrivateCreatorIsLO(t *testing.T) {
	t.Parallel()
	cr := parseFile(t, dicomtest.FileCR)
	e, err := cr.Dataset.FindElementByTag(tag.Tag{Group: 0x0009, Element: 0x0010})
	if err != nil {
		t.Fatal(err)
	}
	if e.RawValueRepresentation != "LO" || e.Value.String() != "[FDMS 1.0]" {
		t.Errorf("(0009,0010) = %s %v, want LO [FDMS 1.0]", e.RawValueRepresentation, e.Value)
	}
	data, err := cr.Dataset.FindElementByTag(tag.Tag{Group: 0x0013, Element: 0x1010})
	if err != nil {
		t.Fatal(err)
	}
	if data.RawValueRepresentation != "UN" {
		t.Errorf("private data element (0013,1010) has VR %s, want UN", data.RawValueRepresentation)
	}
}

// Each attribute held as UN costs a parse of its own: a data set holding
// many has only the first few hundred read again.
func TestParse_UNReadAgainIsBounded(t *testing.T) {
	t.Parallel()
	const n = 300
	items := make([][]*dicom.Element, n)
	for i := range items {
		v, err := dicom.NewValue([]byte("20090306"))
		if err != nil {
			t.Fatal(err)
		}
		items[i] = []*dicom.Element{{Tag: tag.StudyDate, ValueRepresentation: tag.VRBytes, RawValueRepresentation: "UN", ValueLength: 8, Value: v}}
	}
	seq, err := dicom.NewElement(tag.ReferencedStudySequence, items)
	if err != nil {
		t.Fatal(err)
	}
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(func(elems []*dicom.Element) []*dicom.Element {
		i, _ := slices.BinarySearchFunc(elems, seq.Tag, func(e *dicom.Element, t tag.Tag) int { return e.Tag.Compare(t) })
		return slices.Insert(elems, i, seq)
	}))
	in := st.Instances()[0]
	h, err := dicomheader.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	e, err := h.Dataset.FindElementByTag(tag.ReferencedStudySequence)
	if err != nil {
		t.Fatal(err)
	}
	vrs := map[string]int{}
	for _, item := range e.Value.GetValue().([]*dicom.SequenceItemValue) {
		for _, el := range item.GetValue().([]*dicom.Element) {
			vrs[el.RawValueRepresentation]++
		}
	}
	if want := map[string]int{"DA": dicomheader.MaxUnknownVR, "UN": n - dicomheader.MaxUnknownVR}; !maps.Equal(vrs, want) {
		t.Errorf("VRs of the items' Study Dates = %v, want %v", vrs, want)
	}
}
