package cdimport_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/cdimport"
	"github.com/priorflow/priorflow/archive/cdimport/cdimporttest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// withoutQIDO answers every search the way a server without QIDO-RS routes
// does: 404 with a plain text body.
func withoutQIDO(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func importDir(t *testing.T, base, dir string) *cdimport.Report {
	t.Helper()
	c, err := cdimport.NewClient(base+"/dicomweb", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := cdimport.NewImporter(c, cdimport.Config{Parallel: 2, BatchFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	src := open(t, dir)
	rep, err := imp.Import(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if p := imp.Progress(); p.FilesDone != len(src.Files) || p.BytesDone != p.BytesTotal || p.Phase != "done" {
		t.Errorf("final progress %+v, want every file and byte done", p)
	}
	return rep
}

func TestImport_WithoutQIDOReliesOnSTOWIdempotency(t *testing.T) {
	t.Parallel()
	base, env := cdimporttest.Server(t, withoutQIDO)
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(3))
	m := cdimporttest.WriteFolder(t, st)
	importDir(t, base, m.Dir)

	// The same files again, and a different object under a stored UID.
	in := st.Instances()[0]
	ds, err := dicom.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)), nil)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := dicomtest.Encode(dicomtest.Edit(ds, dicomtest.Set(tag.StudyDescription, "changed")))
	if err != nil {
		t.Fatal(err)
	}
	m.WriteFile(t, "zz/changed.dcm", changed)
	rep := importDir(t, base, m.Dir)
	if got, want := rep.Count(cdimport.Stored), 3; got != want {
		t.Errorf("stored %d, want %d (identical re-sent instances)", got, want)
	}
	f := rep.Failures()
	if len(f) != 1 || f[0].Path != "zz/changed.dcm" || !strings.HasSuffix(f[0].Reason, "(0x0111)") {
		t.Errorf("failures %+v, want zz/changed.dcm with reason 0x0111", f)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "QIDO-RS") {
		t.Errorf("notes %q, want one about QIDO-RS", rep.Notes)
	}
	if got, want := env.BlobCount(t), 3; got != want {
		t.Errorf("%d blobs, want %d", got, want)
	}
}

func TestImport_RepeatedFileOnTheMediaCountsAsPresent(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	st := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2))
	m := cdimporttest.WriteFolder(t, st)
	m.WriteFile(t, "copy/again.dcm", st.Instances()[1].Bytes)
	rep := importDir(t, base, m.Dir)
	if got, want := rep.Count(cdimport.Stored), 2; got != want {
		t.Errorf("stored %d, want %d", got, want)
	}
	if got, want := rep.Count(cdimport.AlreadyPresent), 1; got != want {
		t.Errorf("already present %d, want %d", got, want)
	}
	if f := rep.Failures(); len(f) != 0 {
		t.Errorf("failures %+v", f)
	}
}

func TestImport_DICOMDIRReferencingNonDICOMFileFails(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	cd := cdimporttest.WriteCD(t, dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2)))
	cd.WriteFile(t, "DICOM/ST000001/SE000001/IM000002", []byte("not an image"))
	rep := importDir(t, base, cd.Dir)
	f := rep.Failures()
	if len(f) != 1 || f[0].Path != "DICOM/ST000001/SE000001/IM000002" || !strings.Contains(f[0].Reason, "not a DICOM Part 10 file") {
		t.Errorf("failures %+v, want the referenced non-DICOM file", f)
	}
	if got := rep.Count(cdimport.NotDICOM); got != 0 {
		t.Errorf("%d skipped as not DICOM, want 0", got)
	}
}
