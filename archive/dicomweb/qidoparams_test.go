package dicomweb

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
)

func TestParseQIDO(t *testing.T) {
	t.Parallel()
	date := func(s string) archive.Range {
		r, err := archive.ParseDateRange(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		raw     string
		level   archive.Level
		want    archive.Query
		include includes
	}{
		{"PatientID=P1&00100021=HOSP", archive.LevelStudy, archive.Query{PatientID: "P1", IssuerOfPatientID: "HOSP"}, includes{}},
		{"StudyInstanceUID=1.2,1.3%5C1.4&StudyInstanceUID=1.5", archive.LevelStudy,
			archive.Query{StudyInstanceUID: []string{"1.2", "1.3", "1.4", "1.5"}}, includes{}},
		{"StudyDate=20200101-", archive.LevelStudy, archive.Query{StudyDate: date("20200101-")}, includes{}},
		{"limit=10&offset=20&fuzzymatching=false", archive.LevelStudy, archive.Query{Limit: 10, Offset: 20}, includes{}},
		{"Modality=CT,MR&PatientName=DOE*", archive.LevelSeries, archive.Query{Modality: []string{"CT", "MR"}, PatientName: "DOE*"}, includes{}},
		{"includefield=all&includefield=00080070,PatientAge.00000000", archive.LevelInstance, archive.Query{},
			includes{all: true, tags: map[tag.Tag]bool{tag.Manufacturer: true, tag.PatientAge: true}}},
	}
	for _, tt := range tests {
		v, err := url.ParseQuery(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseQIDO(v, tt.level)
		if err != nil {
			t.Errorf("parseQIDO(%q) err = %v", tt.raw, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got.query, cmp.AllowUnexported(archive.Range{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("parseQIDO(%q) query (-want +got):\n%s", tt.raw, diff)
		}
		if diff := cmp.Diff(tt.include, got.include, cmp.AllowUnexported(includes{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("parseQIDO(%q) includes (-want +got):\n%s", tt.raw, diff)
		}
	}
}

// FuzzParseQIDO feeds arbitrary query strings to the QIDO-RS parameter
// parser, which must never panic, must refuse only with errBadQuery, and
// must hand the archive only valid UIDs and bounded pages.
func FuzzParseQIDO(f *testing.F) {
	for _, s := range []string{
		"PatientID=P1&StudyDate=20200101-20201231",
		"StudyInstanceUID=1.2,1.3%5C1.4&includefield=all",
		"PatientName=DOE*&limit=5&offset=2&fuzzymatching=true",
		"00100020=x&includefield=00080070,PatientAge",
		"StudyTime=-1200&ModalitiesInStudy=CT%5CMR",
		"SOPClassUID=1.2.840&Modality=CT",
		"StudyDate=-&limit=-1",
	} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, raw string, lvl uint8) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		level := archive.Level(lvl%3 + 1)
		req, err := parseQIDO(v, level)
		if err != nil {
			if !errors.Is(err, errBadQuery) {
				t.Fatalf("parseQIDO(%q) err %v does not wrap errBadQuery", raw, err)
			}
			return
		}
		q := req.query
		for _, s := range append([]string{q.PatientID, q.IssuerOfPatientID, q.PatientName, q.ReferringPhysicianName, q.AccessionNumber, q.StudyDescription},
			append(q.ModalitiesInStudy, q.Modality...)...) {
			if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("value %q is not UTF-8 or holds a NUL; the database refuses it", s)
			}
		}
		if q.Limit < 0 || q.Offset < 0 {
			t.Fatalf("negative page %d/%d", q.Limit, q.Offset)
		}
		for _, list := range [][]string{q.StudyInstanceUID, q.SeriesInstanceUID, q.SOPInstanceUID, q.SOPClassUID} {
			for _, u := range list {
				if !validUID(u) {
					t.Fatalf("invalid UID %q passed on", u)
				}
			}
		}
		if level < archive.LevelInstance && (len(q.SOPInstanceUID) > 0 || len(q.SOPClassUID) > 0) {
			t.Fatalf("instance keys accepted at level %d", level)
		}
	})
}
