package dicomtest_test

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func TestNewStudy_SetsIdentifiersOnEveryInstance(t *testing.T) {
	t.Parallel()
	when := time.Date(2023, 5, 6, 7, 8, 9, 0, time.FixedZone("", -4*3600))
	st := dicomtest.NewStudy(t,
		dicomtest.WithPatient("P123", "HOSP-A", "DOE^JANE"),
		dicomtest.WithStudyDate(when),
		dicomtest.WithModality("CT"),
		dicomtest.WithSeries(2),
		dicomtest.WithInstancesPerSeries(3),
		dicomtest.WithAccession("A1"),
		dicomtest.WithStudyDescription("CT HEAD"),
	)
	if got, want := len(st.Instances()), 6; got != want {
		t.Fatalf("len(Instances()) = %d, want %d", got, want)
	}
	seen := map[string]bool{st.StudyInstanceUID: true}
	for si, se := range st.Series {
		if seen[se.SeriesInstanceUID] {
			t.Errorf("SeriesInstanceUID %s reused", se.SeriesInstanceUID)
		}
		seen[se.SeriesInstanceUID] = true
		for ii, in := range se.Instances {
			if seen[in.SOPInstanceUID] {
				t.Errorf("SOPInstanceUID %s reused", in.SOPInstanceUID)
			}
			seen[in.SOPInstanceUID] = true
			h, err := dicomheader.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)))
			if err != nil {
				t.Fatalf("series %d instance %d: %v", si, ii, err)
			}
			got := []any{h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID, h.PatientID, h.IssuerOfPatientID,
				h.PatientName.Raw, h.AccessionNumber, h.Modality, h.StudyDescription, h.StudyDate, h.StudyTime,
				h.TimezoneOffsetFromUTC, *h.SeriesNumber, *h.InstanceNumber, h.TransferSyntaxUID, h.NumberOfFrames}
			want := []any{st.StudyInstanceUID, se.SeriesInstanceUID, in.SOPInstanceUID, "P123", "HOSP-A",
				"DOE^JANE", "A1", "CT", "CT HEAD", "20230506", "070809.000000",
				"-0400", si + 1, ii + 1, "1.2.840.10008.1.2.1", 2}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("series %d instance %d header mismatch (-want +got):\n%s", si, ii, diff)
			}
			meta, _ := h.Dataset.FindElementByTag(tag.MediaStorageSOPInstanceUID)
			if got := dicom.MustGetStrings(meta.Value)[0]; got != in.SOPInstanceUID {
				t.Errorf("MediaStorageSOPInstanceUID = %q, want %q", got, in.SOPInstanceUID)
			}
		}
	}
}

// TestNewStudy_KeepsPixelData checks that every template keeps its transfer
// syntax and pixel data bytes.
func TestNewStudy_KeepsPixelData(t *testing.T) {
	t.Parallel()
	g := dicomtest.NewGenerator(t)
	for _, name := range dicomtest.Files {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, err := g.Study(dicomtest.WithTemplate(name))
			if err != nil {
				t.Fatal(err)
			}
			in := st.Series[0].Instances[0]
			orig, err := dicom.ParseFile(dicomtest.TestdataPath(t, name), nil, dicom.SkipProcessingPixelDataValue())
			if err != nil {
				t.Fatal(err)
			}
			got, err := dicom.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)), nil, dicom.SkipProcessingPixelDataValue())
			if err != nil {
				t.Fatalf("generated file does not parse: %v", err)
			}
			for _, tg := range []tag.Tag{tag.TransferSyntaxUID, tag.SOPClassUID, tag.Rows, tag.Columns} {
				a, _ := orig.FindElementByTag(tg)
				b, err := got.FindElementByTag(tg)
				if err != nil || !a.Value.Equals(b.Value) {
					t.Errorf("%v = %v, want %v", tg, b, a)
				}
			}
			a, _ := orig.FindElementByTag(tag.PixelData)
			b, err := got.FindElementByTag(tag.PixelData)
			if err != nil {
				t.Fatalf("Pixel Data missing: %v", err)
			}
			if !bytes.Equal(dicom.MustGetPixelDataInfo(a.Value).UnprocessedValueData, dicom.MustGetPixelDataInfo(b.Value).UnprocessedValueData) {
				t.Errorf("Pixel Data bytes changed")
			}
		})
	}
}

func TestNewStudy_ReusesStudyInstanceUID(t *testing.T) {
	t.Parallel()
	first := dicomtest.NewStudy(t)
	second := dicomtest.NewStudy(t, dicomtest.WithStudyInstanceUID(first.StudyInstanceUID))
	if got, want := second.Series[0].Instances[0].StudyInstanceUID, first.StudyInstanceUID; got != want {
		t.Errorf("StudyInstanceUID = %q, want %q", got, want)
	}
}

func TestStudy_WriteFiles(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	paths := st.WriteFiles(t)
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, st.Instances()[i].Bytes) {
			t.Errorf("%s differs from Instance.Bytes", p)
		}
	}
}

func TestBroken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"BrokenTruncated", dicomtest.BrokenTruncated(t), dicomheader.ErrTruncated},
		{"BrokenTruncatedPixelData", dicomtest.BrokenTruncatedPixelData(t), dicomheader.ErrTruncated},
		{"BrokenNoPreamble", dicomtest.BrokenNoPreamble(t), dicomheader.ErrNotPart10},
		{"BrokenMissingSOPInstanceUID", dicomtest.BrokenMissingSOPInstanceUID(t), dicomheader.ErrMissingAttribute},
		{"BrokenTraversalUID", dicomtest.BrokenTraversalUID(t), dicomheader.ErrInvalidUID},
	}
	for _, tt := range tests {
		if _, err := dicomheader.Parse(bytes.NewReader(tt.data), int64(len(tt.data))); !errors.Is(err, tt.want) {
			t.Errorf("Parse(%s) error = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func BenchmarkGenerator_Study(b *testing.B) {
	g := dicomtest.NewGenerator(b)
	for b.Loop() {
		if _, err := g.Study(dicomtest.WithInstancesPerSeries(10)); err != nil {
			b.Fatal(err)
		}
	}
}
