package dicomheader_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// BenchmarkParse parses the header of each of the TCIA files the dicom
// module ships, as the archive does for every object it receives.
func BenchmarkParse(b *testing.B) {
	var files [][]byte
	for _, name := range []string{dicomtest.FileMR, dicomtest.FileCTMulti, dicomtest.FilePET1, dicomtest.FileCR} {
		data, err := os.ReadFile(dicomtest.TestdataPath(b, name))
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, data := range files {
			if _, err := dicomheader.Parse(bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
	}
}
