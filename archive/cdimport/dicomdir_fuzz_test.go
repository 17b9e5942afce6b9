package cdimport_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/cdimport"
	"github.com/priorflow/priorflow/archive/cdimport/cdimporttest"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// FuzzReferencedFileIDs reads a DICOMDIR from a CD, which is outside input
// like any file on it: reading never panics, fails only with
// ErrNotDICOMDIR, returns each file ID once and never an empty one, and no
// ID, resolved on the CD, names a file outside the CD's folder.
func FuzzReferencedFileIDs(f *testing.F) {
	st := dicomtest.NewStudy(f, dicomtest.WithSeries(1), dicomtest.WithInstancesPerSeries(2))
	cd := cdimporttest.WriteCD(f, st)
	seed, err := os.ReadFile(filepath.Join(cd.Dir, cdimport.DICOMDIRName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(climbingDICOMDIR(f))
	f.Add([]byte("DICM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := cdimport.ReferencedFileIDs(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, cdimport.ErrNotDICOMDIR) {
				t.Fatalf("error %v, want ErrNotDICOMDIR", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if id == "" || seen[id] {
				t.Fatalf("file IDs %q: empty or repeated %q", ids, id)
			}
			seen[id] = true
			file := cdimport.ReferencedFile(cdFS, "CD", id)
			if file.Err != nil {
				continue
			}
			if !strings.HasPrefix(file.Path, "CD/") || !fs.ValidPath(file.Path) {
				t.Fatalf("file ID %q resolved to %q, outside the CD", id, file.Path)
			}
			if fi, err := fs.Stat(cdFS, file.Path); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("file ID %q resolved to %q, not a file (%v)", id, file.Path, err)
			}
		}
	})
}

// cdFS is a CD in folder CD, beside a file outside it.
var cdFS = fstest.MapFS{
	"OUTSIDE":     {Data: []byte("not on the CD")},
	"CD/OUTSIDE":  {Mode: fs.ModeDir},
	"CD/IMG/A1;1": {Data: []byte("image")},
	"CD/IMG/A2":   {Data: []byte("image")},
}

// climbingDICOMDIR is a DICOMDIR whose file IDs try to leave the CD, with
// an inactive record, a repeated ID and one in another case.
func climbingDICOMDIR(tb testing.TB) []byte {
	image := func(inUse int, comps ...string) []*dicom.Element {
		return []*dicom.Element{
			element(tb, tag.OffsetOfTheNextDirectoryRecord, []int{0}),
			element(tb, tag.RecordInUseFlag, []int{inUse}),
			element(tb, tag.OffsetOfReferencedLowerLevelDirectoryEntity, []int{0}),
			element(tb, tag.DirectoryRecordType, []string{"IMAGE"}),
			element(tb, tag.ReferencedFileID, comps),
		}
	}
	return cdimporttest.DICOMDIR(tb, [][]*dicom.Element{
		image(0xFFFF, "IMG", "A1"),
		image(0xFFFF, "..", "OUTSIDE"),
		image(0xFFFF, "IMG", "..", "..", "OUTSIDE"),
		image(0xFFFF, "/OUTSIDE"),
		image(0, "IMG", "A2"),
		image(0xFFFF, "img", "a1"),
		image(0xFFFF, "IMG", "A1"),
	})
}

func TestReferencedFileIDs_StayOnTheCD(t *testing.T) {
	t.Parallel()
	data := climbingDICOMDIR(t)
	ids, err := cdimport.ReferencedFileIDs(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"IMG/A1", "../OUTSIDE", "IMG/../../OUTSIDE", "/OUTSIDE", "img/a1"}
	if !slices.Equal(ids, want) {
		t.Fatalf("file IDs %q, want %q", ids, want)
	}
	for _, id := range ids {
		file := cdimport.ReferencedFile(cdFS, "CD", id)
		switch id {
		case "IMG/A1", "img/a1":
			if file.Err != nil || file.Path != "CD/IMG/A1;1" {
				t.Errorf("%q: %q, %v; want CD/IMG/A1;1", id, file.Path, file.Err)
			}
		default:
			if !errors.Is(file.Err, cdimport.ErrMissingReferencedFile) {
				t.Errorf("%q: %q, %v; want ErrMissingReferencedFile", id, file.Path, file.Err)
			}
		}
	}
}

// TestReferencedFileIDs_LengthBeyondTheFile: a DICOMDIR whose last element
// claims 4 GiB is refused without allocating them (the fuzzer found that
// the dicom library alone allocates what a length field says, and its
// workers died of it).
func TestReferencedFileIDs_LengthBeyondTheFile(t *testing.T) {
	data := append(climbingDICOMDIR(t), 0x09, 0x00, 0x10, 0x10, 'U', 'N', 0, 0, 0xf0, 0xff, 0xff, 0xff)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := cdimport.ReferencedFileIDs(bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, cdimport.ErrNotDICOMDIR) {
		t.Errorf("err %v, want ErrNotDICOMDIR", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("reading %d bytes allocated %d MiB", len(data), n>>20)
	}
}

func element(tb testing.TB, t tag.Tag, v any) *dicom.Element {
	tb.Helper()
	e, err := dicom.NewElement(t, v)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
