package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/search"
)

// BenchmarkRetrieve pulls one study of 200 CT instances (1 MB each) from
// Orthanc into an empty archive (spool, blob store, index, ImagingStudy),
// over WADO-RS and by C-GET, side by side: the same retriever, study,
// peer and archive code, only the protocol differs (docs/performance.md,
// "C-GET beside WADO-RS"). Each iteration gets a fresh database and blob
// store, made outside the timing.
func BenchmarkRetrieve(b *testing.B) {
	o := orthanctest.Start(b)
	st := dicomtest.NewStudy(b, dicomtest.WithTemplate(dicomtest.FileCTMulti), dicomtest.WithPatient("BENCH-R", "HOSP-B", "BENCH^RETRIEVE"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(100))
	total := o.UploadStudy(b, st)
	n := len(st.Instances())
	sources := map[string]retrieve.Source{
		"wado-rs": {Name: "hospital-b", Client: &http.Client{Transport: &http.Transport{DisableCompression: true}}},
		"c-get": {Name: "hospital-b", DIMSE: &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", o.Port),
			Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: o.AET}}},
	}
	for _, proto := range []string{"wado-rs", "c-get"} {
		b.Run(proto, func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				b.StopTimer()
				_, _, a, _ := newArchive(b)
				r, err := retrieve.New(retrieve.Config{Archive: a, Logger: dbtest.Logger(), Sources: []retrieve.Source{sources[proto]},
					Retry: retrieve.Backoff{Tries: 1}})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				out, err := r.Retrieve(context.Background(), retrieve.Study{StudyInstanceUID: st.StudyInstanceUID, Source: "hospital-b",
					Base: o.URL + "/dicom-web", Patient: search.PatientIdentity{ID: "BENCH-R", Issuer: "HOSP-B"}, NumberOfInstances: n}, nil)
				if err != nil || out.Stored != n {
					b.Fatalf("Retrieve: %+v, %v", out, err)
				}
			}
		})
	}
}
