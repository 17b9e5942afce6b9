package dicomheader_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

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
// returns only valid UIDs.
func FuzzParse(f *testing.F) {
	for _, name := range []string{dicomtest.FilePET1, dicomtest.FileMR, dicomtest.FileOTDeflated} {
		b, err := os.ReadFile(dicomtest.TestdataPath(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Add(dicomtest.BrokenMissingSOPInstanceUID(f), false)
	f.Add(dicomtest.BrokenTraversalUID(f), true)
	f.Add(dicomtest.BrokenTruncated(f), false)
	f.Add(dicomtest.BrokenNoPreamble(f), false)
	f.Fuzz(func(t *testing.T, b []byte, unknownSize bool) {
		size := int64(len(b))
		if unknownSize {
			size = -1
		}
		h, err := dicomheader.Parse(bytes.NewReader(b), size)
		if err != nil {
			for _, known := range []error{
				dicomheader.ErrNotPart10, dicomheader.ErrTruncated, dicomheader.ErrMalformed,
				dicomheader.ErrMissingAttribute, dicomheader.ErrInvalidUID,
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
	})
}
