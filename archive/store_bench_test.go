package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
)

// BenchmarkStore_Request stores STOW-RS-sized requests (10 instances of 5
// two-instance MR studies, as cmd/dicombench's corpus) on 4 concurrent
// workers, through Spool and Store as the DICOMweb handler does. One op is
// one request; instances/s is the figure to compare.
func BenchmarkStore_Request(b *testing.B) { benchmarkStore(b, 5) }

// BenchmarkStore_RequestOneStudy stores requests of one 10-instance study,
// as a modality or a prefetch pull sends them.
func BenchmarkStore_RequestOneStudy(b *testing.B) { benchmarkStore(b, 1) }

func benchmarkStore(b *testing.B, studies int) {
	env := archivetest.New(b, "http://127.0.0.1:8080/dicomweb")
	gen := dicomtest.NewGenerator(b)
	// Enough distinct requests that every op stores new instances.
	const perRequest = 10
	nreq := b.N + 8
	reqs := make([][][]byte, nreq)
	for i := range reqs {
		for j := 0; j < studies; j++ {
			st, err := gen.Study(dicomtest.WithPatient(fmt.Sprintf("BENCH-%d-%d", i, j%3), "", "BENCH^PATIENT"),
				dicomtest.WithModality("MR"), dicomtest.WithInstancesPerSeries(perRequest/studies))
			if err != nil {
				b.Fatal(err)
			}
			for _, in := range st.Instances() {
				reqs[i] = append(reqs[i], in.Bytes)
			}
		}
	}
	var next atomic.Int64
	b.SetParallelism(2) // 2 × GOMAXPROCS workers: 4 on this machine, as dicombench
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			req := reqs[next.Add(1)-1]
			objs := make([]*archive.Object, 0, len(req))
			for _, raw := range req {
				o, err := env.Archive.Spool(bytes.NewReader(raw))
				if err != nil {
					b.Error(err)
					return
				}
				objs = append(objs, o)
			}
			for _, r := range env.Archive.Store(ctx, objs, "") {
				if r.Err != nil {
					b.Error(r.Err)
				}
			}
			for _, o := range objs {
				o.Remove()
			}
		}
	})
	b.ReportMetric(float64(b.N*perRequest)/b.Elapsed().Seconds(), "instances/s")
}
