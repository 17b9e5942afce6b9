package hl7v2

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkParse parses each sample message of testdata once per
// iteration and reads every field, as the care event mapping does.
func BenchmarkParse(b *testing.B) {
	files, err := filepath.Glob("testdata/*.hl7")
	if err != nil || len(files) == 0 {
		b.Fatalf("no samples: %v", err)
	}
	var msgs [][]byte
	size := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, data)
		size += len(data)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, data := range msgs {
			m, err := Parse(data)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range m.AllSegments() {
				for n := 1; n <= s.NumFields(); n++ {
					_ = s.Field(n)
				}
			}
		}
	}
}
