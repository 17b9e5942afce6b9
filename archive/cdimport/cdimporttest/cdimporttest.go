// Package cdimporttest builds import media for tests — folders, CDs with a
// DICOMDIR (PS3.10 8, PS3.3 Annex F) and zips — from dicomtest studies, and
// runs a Priorflow DICOMweb server to import them into.
package cdimporttest

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/cdimport"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// Junk are the non-DICOM files a hospital CD carries next to the images,
// by slash-separated path.
var Junk = map[string]string{
	"README.TXT":         "Images of your examination. Insert the CD and run VIEWER.EXE.\r\n",
	"AUTORUN.INF":        "[autorun]\r\nopen=VIEWER\\VIEWER.EXE\r\n",
	"VIEWER/VIEWER.EXE":  "MZ\x90\x00\x03\x00\x00\x00 this program cannot be run in DOS mode",
	"VIEWER/HELP/EN.HTM": "<html><body>Help</body></html>",
}

// Media is a folder of files to import.
type Media struct {
	// Dir is the folder's root.
	Dir string
	// Instances maps the slash-separated path of each DICOM file to its
	// instance.
	Instances map[string]*dicomtest.Instance
}

// WriteFolder writes the studies into a new folder, one subfolder per study
// and series and files named like SOPInstanceUID.dcm, with the Junk files.
func WriteFolder(tb testing.TB, studies ...*dicomtest.Study) *Media {
	tb.Helper()
	m := &Media{Dir: tb.TempDir(), Instances: map[string]*dicomtest.Instance{}}
	for i, st := range studies {
		for j, se := range st.Series {
			for _, in := range se.Instances {
				p := fmt.Sprintf("study%d/series%d/%s.dcm", i+1, j+1, in.SOPInstanceUID)
				m.WriteFile(tb, p, in.Bytes)
				m.Instances[p] = in
			}
		}
	}
	for p, content := range Junk {
		m.WriteFile(tb, p, []byte(content))
	}
	return m
}

// WriteCD writes the studies as a CD would hold them: upper-case 8.3 file
// names without extension under DICOM/, a DICOMDIR at the root with PATIENT,
// STUDY, SERIES and IMAGE records referencing them, and the Junk files.
func WriteCD(tb testing.TB, studies ...*dicomtest.Study) *Media {
	tb.Helper()
	m := &Media{Dir: tb.TempDir(), Instances: map[string]*dicomtest.Instance{}}
	var records [][]*dicom.Element
	patients := map[string]bool{}
	for i, st := range studies {
		if !patients[st.PatientID] {
			patients[st.PatientID] = true
			records = append(records, record(tb, "PATIENT",
				elem(tb, tag.PatientID, st.PatientID), elem(tb, tag.PatientName, st.PatientName)))
		}
		records = append(records, record(tb, "STUDY",
			elem(tb, tag.StudyInstanceUID, st.StudyInstanceUID), elem(tb, tag.StudyDate, st.StudyDate.Format("20060102"))))
		for j, se := range st.Series {
			records = append(records, record(tb, "SERIES",
				elem(tb, tag.SeriesInstanceUID, se.SeriesInstanceUID), elem(tb, tag.Modality, st.Modality)))
			for k, in := range se.Instances {
				comps := []string{"DICOM", fmt.Sprintf("ST%06d", i+1), fmt.Sprintf("SE%06d", j+1), fmt.Sprintf("IM%06d", k+1)}
				p := strings.Join(comps, "/")
				m.WriteFile(tb, p, in.Bytes)
				m.Instances[p] = in
				records = append(records, record(tb, "IMAGE",
					elem(tb, tag.ReferencedFileID, comps),
					elem(tb, tag.ReferencedSOPClassUIDInFile, in.SOPClassUID),
					elem(tb, tag.ReferencedSOPInstanceUIDInFile, in.SOPInstanceUID),
					elem(tb, tag.ReferencedTransferSyntaxUIDInFile, in.TransferSyntaxUID)))
			}
		}
	}
	m.WriteFile(tb, cdimport.DICOMDIRName, DICOMDIR(tb, records))
	for p, content := range Junk {
		m.WriteFile(tb, p, []byte(content))
	}
	return m
}

// DICOMDIR encodes a DICOMDIR holding the directory records (PS3.3 F.3),
// each the elements of one Directory Record Sequence item.
func DICOMDIR(tb testing.TB, records [][]*dicom.Element) []byte {
	tb.Helper()
	ds := dicom.Dataset{Elements: []*dicom.Element{
		elem(tb, tag.FileMetaInformationVersion, []byte{0, 1}),
		elem(tb, tag.MediaStorageSOPClassUID, cdimport.MediaStorageDirectoryStorage),
		elem(tb, tag.MediaStorageSOPInstanceUID, dicomtest.NewUID()),
		elem(tb, tag.TransferSyntaxUID, "1.2.840.10008.1.2.1"),
		elem(tb, tag.ImplementationClassUID, "1.2.826.0.1.3680043.10.1"),
		elem(tb, tag.FileSetID, "PRIORFLOWTEST"),
		elem(tb, tag.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, []int{0}),
		elem(tb, tag.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity, []int{0}),
		elem(tb, tag.FileSetConsistencyFlag, []int{0}),
		elem(tb, tag.DirectoryRecordSequence, records),
	}}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, ds, dicom.SkipVRVerification(), dicom.SkipValueTypeVerification()); err != nil {
		tb.Fatalf("cdimporttest: writing DICOMDIR: %v", err)
	}
	return buf.Bytes()
}

// record returns a directory record of type typ (PS3.3 F.5).
func record(tb testing.TB, typ string, keys ...*dicom.Element) []*dicom.Element {
	tb.Helper()
	return append([]*dicom.Element{
		elem(tb, tag.OffsetOfTheNextDirectoryRecord, []int{0}),
		elem(tb, tag.RecordInUseFlag, []int{0xFFFF}),
		elem(tb, tag.OffsetOfReferencedLowerLevelDirectoryEntity, []int{0}),
		elem(tb, tag.DirectoryRecordType, typ),
	}, keys...)
}

// elem returns an element; a string is its single value.
func elem(tb testing.TB, t tag.Tag, v any) *dicom.Element {
	tb.Helper()
	if s, ok := v.(string); ok {
		v = []string{s}
	}
	e, err := dicom.NewElement(t, v)
	if err != nil {
		tb.Fatalf("cdimporttest: element %v: %v", t, err)
	}
	return e
}

// WriteFile writes a file at the slash-separated path p under m.Dir.
func (m *Media) WriteFile(tb testing.TB, p string, b []byte) {
	tb.Helper()
	full := filepath.Join(m.Dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(full, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Zip writes the tree under dir into a new .zip file, entries under prefix
// (empty for the zip's root), and returns its path.
func Zip(tb testing.TB, dir, prefix string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "media.zip")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	err = fs.WalkDir(os.DirFS(dir), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		w, err := zw.Create(path.Join(prefix, name))
		if err != nil {
			return err
		}
		r, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(w, r)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		tb.Fatalf("cdimporttest: zip: %v", err)
	}
	return p
}

// Server runs a Priorflow DICOMweb server on its own database and blob
// directory, mounted at /dicomweb, and returns its base URL (without
// /dicomweb) and the archive. Test binaries using it call
// dbtest.DropTemplates after m.Run. Each wrap, if any, wraps the DICOMweb
// handler, to provoke faults such as a server without QIDO-RS.
func Server(tb testing.TB, wrap ...func(http.Handler) http.Handler) (string, *archivetest.Env) {
	tb.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	base := "http://" + ts.Listener.Addr().String()
	env := archivetest.New(tb, base+"/dicomweb")
	h, err := dicomweb.New(env.Archive, dbtest.Logger(), 0)
	if err != nil {
		tb.Fatal(err)
	}
	routes := h.Routes()
	for _, w := range wrap {
		routes = w(routes)
	}
	mux.Handle("/dicomweb/", http.StripPrefix("/dicomweb", routes))
	ts.Start()
	tb.Cleanup(ts.Close)
	return base, env
}
