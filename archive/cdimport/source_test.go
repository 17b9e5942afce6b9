package cdimport_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/archive/cdimport"
	"github.com/priorflow/priorflow/archive/cdimport/cdimporttest"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

func paths(src *cdimport.Source) []string {
	var out []string
	for _, f := range src.Files {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func open(t *testing.T, p string) *cdimport.Source {
	t.Helper()
	src, err := cdimport.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestOpen_DICOMDIRTakesOnlyReferencedFiles(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2))
	cd := cdimporttest.WriteCD(t, st)
	// A DICOM file the DICOMDIR does not reference stays out.
	cd.WriteFile(t, "DICOM/ORPHAN01", st.Instances()[0].Bytes)

	for name, p := range map[string]string{
		"folder holding the DICOMDIR": cd.Dir,
		"the DICOMDIR itself":         filepath.Join(cd.Dir, "DICOMDIR"),
	} {
		t.Run(name, func(t *testing.T) {
			src := open(t, p)
			if got, want := src.Kind, cdimport.DICOMDIR; got != want {
				t.Errorf("Kind = %v, want %v", got, want)
			}
			if diff := cmp.Diff(keys(cd.Instances), paths(src)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			for _, f := range src.Files {
				if !f.Referenced || f.Err != nil || f.Size == 0 {
					t.Errorf("%s: referenced %v, err %v, size %d", f.Path, f.Referenced, f.Err, f.Size)
				}
			}
		})
	}
}

func TestOpen_DICOMDIRMatchesLowerCaseAndVersionedNames(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	cd := cdimporttest.WriteCD(t, st)
	// Mounted with map=normal, a CD shows lower-case names; some drivers keep
	// the ISO 9660 version.
	if err := os.Rename(filepath.Join(cd.Dir, "DICOM"), filepath.Join(cd.Dir, "dicom")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(cd.Dir, "DICOMDIR"), filepath.Join(cd.Dir, "dicomdir;1")); err != nil {
		t.Fatal(err)
	}
	src := open(t, cd.Dir)
	if src.Kind != cdimport.DICOMDIR {
		t.Fatalf("Kind = %v, want DICOMDIR; warnings %v", src.Kind, src.Warnings)
	}
	for _, f := range src.Files {
		if f.Err != nil || !strings.HasPrefix(f.Path, "dicom/") {
			t.Errorf("%s: err %v, want resolved under dicom/", f.Path, f.Err)
		}
	}
	if got, want := len(src.Files), 2; got != want {
		t.Errorf("%d files, want %d", got, want)
	}
}

func TestOpen_DICOMDIRMissingFileIsReported(t *testing.T) {
	t.Parallel()
	cd := cdimporttest.WriteCD(t, dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2)))
	gone := keys(cd.Instances)[0]
	if err := os.Remove(filepath.Join(cd.Dir, filepath.FromSlash(gone))); err != nil {
		t.Fatal(err)
	}
	src := open(t, cd.Dir)
	i := slices.IndexFunc(src.Files, func(f cdimport.File) bool { return f.Path == gone })
	if i < 0 {
		t.Fatalf("missing file %s not listed in %v", gone, paths(src))
	}
	if !errors.Is(src.Files[i].Err, cdimport.ErrMissingReferencedFile) {
		t.Errorf("err %v, want ErrMissingReferencedFile", src.Files[i].Err)
	}
}

func TestOpen_BrokenDICOMDIRFallsBackToWalk(t *testing.T) {
	t.Parallel()
	cd := cdimporttest.WriteCD(t, dicomtest.NewStudy(t))
	cd.WriteFile(t, "DICOMDIR", []byte("garbage"))
	src := open(t, cd.Dir)
	if src.Kind != cdimport.Folder || len(src.Warnings) != 1 {
		t.Errorf("Kind %v, warnings %v; want a walk with one warning", src.Kind, src.Warnings)
	}
	if slices.Contains(paths(src), "DICOMDIR") {
		t.Error("the DICOMDIR itself is listed")
	}
}

func TestOpen_FolderTakesEveryFile(t *testing.T) {
	t.Parallel()
	m := cdimporttest.WriteFolder(t, dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2)))
	src := open(t, m.Dir)
	want := append(keys(m.Instances), keys(cdimporttest.Junk)...)
	sort.Strings(want)
	if diff := cmp.Diff(want, paths(src)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestOpen_Zip(t *testing.T) {
	t.Parallel()
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	t.Run("folder", func(t *testing.T) {
		t.Parallel()
		m := cdimporttest.WriteFolder(t, st)
		src := open(t, cdimporttest.Zip(t, m.Dir, ""))
		if got, want := len(src.Files), len(m.Instances)+len(cdimporttest.Junk); got != want || !src.Zip {
			t.Errorf("%d files (zip %v), want %d", got, src.Zip, want)
		}
	})
	t.Run("CD under one top folder", func(t *testing.T) {
		t.Parallel()
		cd := cdimporttest.WriteCD(t, st)
		src := open(t, cdimporttest.Zip(t, cd.Dir, "CD1"))
		if src.Kind != cdimport.DICOMDIR {
			t.Fatalf("Kind = %v, want DICOMDIR", src.Kind)
		}
		var want []string
		for _, p := range keys(cd.Instances) {
			want = append(want, "CD1/"+p)
		}
		if diff := cmp.Diff(want, paths(src)); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		r, err := src.Files[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	})
}

func TestOpen_RefusesOtherFiles(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cdimport.Open(p); !errors.Is(err, cdimport.ErrUnsupportedSource) {
		t.Errorf("err %v, want ErrUnsupportedSource", err)
	}
}
