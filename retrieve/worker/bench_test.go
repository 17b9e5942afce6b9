package worker_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
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
// over WADO-RS, by C-GET and by C-MOVE to a Storage SCP, side by side: the
// same retriever, study, peer and archive code, only the protocol differs
// (docs/performance.md, "C-GET and C-MOVE beside WADO-RS"). Each iteration
// gets a fresh database and blob store, made outside the timing.
func BenchmarkRetrieve(b *testing.B) {
	o := orthanctest.Start(b)
	st := dicomtest.NewStudy(b, dicomtest.WithTemplate(dicomtest.FileCTMulti), dicomtest.WithPatient("BENCH-R", "HOSP-B", "BENCH^RETRIEVE"),
		dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(100))
	total := o.UploadStudy(b, st)
	n := len(st.Instances())
	peer := &dimse.Client{Addr: fmt.Sprintf("127.0.0.1:%d", o.Port), Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: o.AET}}
	sources := map[string]retrieve.Source{
		"wado-rs": {Name: "hospital-b", Client: &http.Client{Transport: &http.Transport{DisableCompression: true}}},
		"c-get":   {Name: "hospital-b", DIMSE: peer},
		"c-move":  {Name: "hospital-b", DIMSE: peer, Move: true},
	}
	// The Storage SCP hands a C-MOVE's objects to the retriever of the
	// iteration.
	var current atomic.Pointer[retrieve.Retriever]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	scp := &dimse.Server{AETitle: "PF-BENCH", Logger: dbtest.Logger(), Store: func(req *dimse.StoreRequest) (uint16, error) {
		return current.Load().Receive(req)
	}}
	go func() { _ = scp.Serve(ctx, ln) }()
	o.MoveTo(b, "PF-BENCH", ln.Addr().(*net.TCPAddr).Port)
	for _, proto := range []string{"wado-rs", "c-get", "c-move"} {
		b.Run(proto, func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				b.StopTimer()
				_, _, a, _ := newArchive(b)
				r, err := retrieve.New(retrieve.Config{Archive: a, Logger: dbtest.Logger(), Sources: []retrieve.Source{sources[proto]},
					Retry: retrieve.Backoff{Tries: 1}, MoveDestination: "PF-BENCH"})
				if err != nil {
					b.Fatal(err)
				}
				current.Store(r)
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
