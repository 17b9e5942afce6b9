package dimse_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

// BenchmarkGet pulls one study from Orthanc by C-GET, each object to a file
// of its own as the retrieval spools it: with this package, and beside it
// with DCMTK's getscu, the reference implementation, on the same study and
// peer, each with its default maximum PDU (256 KiB here, 16 KiB there).
// Compare the two sub-benchmarks' MB/s (docs/performance.md, "C-GET beside
// DCMTK getscu").
func BenchmarkGet(b *testing.B) {
	getscu, err := exec.LookPath("getscu")
	if err != nil {
		b.Fatal("getscu is not installed: run make deps (apt-get install -y dcmtk)")
	}
	o := orthanctest.Start(b)
	// 200 CT instances of 1 MB (the library's two-frame CT).
	st := dicomtest.NewStudy(b, dicomtest.WithTemplate(dicomtest.FileCTMulti), dicomtest.WithPatient("BENCH-GET", "HOSP-B", "BENCH^GET"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(100))
	total := o.UploadStudy(b, st)
	n := len(st.Instances())
	c := &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: o.AET}}
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}}

	b.Run("priorflow", func(b *testing.B) {
		b.SetBytes(total)
		dir := b.TempDir()
		for b.Loop() {
			got := 0
			res, err := c.Get(context.Background(), dimse.StudyRootGet, q, func(r *dimse.StoreRequest) (uint16, error) {
				f, err := os.CreateTemp(dir, "*.dcm")
				if err != nil {
					return 0, err
				}
				_, err = io.Copy(f, r.Object)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				got++
				return dimse.StatusSuccess, err
			})
			if err != nil || res.Completed != n || got != n {
				b.Fatalf("Get: %d of %d objects, %+v, %v", got, n, res, err)
			}
			emptyDir(b, dir)
		}
	})
	b.Run("getscu", func(b *testing.B) {
		b.SetBytes(total)
		dir := b.TempDir()
		for b.Loop() {
			cmd := exec.Command(getscu, "-S", "-aet", orthanctest.SCUAE, "-aec", o.AET, "-k", "QueryRetrieveLevel=STUDY",
				"-k", "StudyInstanceUID="+st.StudyInstanceUID, "-od", dir, "127.0.0.1", fmt.Sprint(o.Port))
			// Without it, Nagle's algorithm holds each C-STORE-RSP for
			// the peer's delayed ACK: getscu then ran at 21 MB/s.
			cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("getscu: %v\n%s", err, out)
			}
			if files, _ := os.ReadDir(dir); len(files) != n {
				b.Fatalf("getscu wrote %d files, want %d", len(files), n)
			}
			emptyDir(b, dir)
		}
	})
}

func emptyDir(b *testing.B, dir string) {
	b.Helper()
	files, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range files {
		if err := os.Remove(filepath.Join(dir, f.Name())); err != nil {
			b.Fatal(err)
		}
	}
}
