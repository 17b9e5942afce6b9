package dicomtest

import (
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Deliberately broken inputs, each made from a fresh copy of the MR testdata
// file, for negative tests of code that reads DICOM from outside.

// BrokenTruncated returns a Part 10 file cut in the middle of its data set,
// before the required UIDs are complete.
func BrokenTruncated(tb testing.TB) []byte {
	tb.Helper()
	b := valid(tb)
	return b[:len(b)/2]
}

// BrokenTruncatedPixelData returns a Part 10 file whose Pixel Data value is
// cut short: the header is complete but the file is not.
func BrokenTruncatedPixelData(tb testing.TB) []byte {
	tb.Helper()
	b := valid(tb)
	return b[:len(b)-100]
}

// BrokenNoPreamble returns a data set without the 128-byte preamble and
// "DICM" prefix (PS3.10 7.1).
func BrokenNoPreamble(tb testing.TB) []byte {
	tb.Helper()
	return valid(tb)[128+4:]
}

// BrokenMissingSOPInstanceUID returns a Part 10 file without SOP Instance
// UID (0008,0018) and Media Storage SOP Instance UID (0002,0003).
func BrokenMissingSOPInstanceUID(tb testing.TB) []byte {
	tb.Helper()
	return edited(tb, Remove(tag.SOPInstanceUID), Remove(tag.MediaStorageSOPInstanceUID))
}

// TraversalUID is the SOP Instance UID of BrokenTraversalUID.
const TraversalUID = "../../etc/passwd"

// BrokenTraversalUID returns a Part 10 file whose SOP Instance UID is
// TraversalUID, a path that must never reach a file system.
func BrokenTraversalUID(tb testing.TB) []byte {
	tb.Helper()
	return edited(tb, Set(tag.SOPInstanceUID, TraversalUID), Set(tag.MediaStorageSOPInstanceUID, TraversalUID))
}

func valid(tb testing.TB) []byte {
	tb.Helper()
	return NewStudy(tb, WithTemplate(FileMR)).Series[0].Instances[0].Bytes
}

func edited(tb testing.TB, eds ...Edition) []byte {
	tb.Helper()
	g := NewGenerator(tb)
	tmpl, err := g.template(FileMR)
	if err != nil {
		tb.Fatalf("dicomtest: %v", err)
	}
	b, err := Encode(Edit(tmpl, append([]Edition{Set(tag.StudyInstanceUID, NewUID()), Set(tag.SeriesInstanceUID, NewUID())}, eds...)...))
	if err != nil {
		tb.Fatalf("dicomtest: %v", err)
	}
	return b
}
