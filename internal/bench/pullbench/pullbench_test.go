package pullbench_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/bench/pullbench"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// The whole benchmark at a tiny size, so that it cannot rot: the real
// prefetcher pulls two 5-instance studies beside Orthanc's /retrieve, runs
// three small jobs through the proxy and one 5 MB "large" pull, and every
// figure of the report comes out. No figure is asserted (timings belong to
// the benchmark, not to tests).
func TestRun_TinyReportsEveryFigure(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the prefetcher and runs two Orthancs")
	}
	res := tinyRun(t, pullbench.ProtocolWADORS)
	if got := len(res.Overhead.Samples); got != 3 {
		t.Errorf("%d overhead samples, want 3 (the warm-up job left out)", got)
	}
	for i, s := range res.Overhead.Samples {
		if s.Transfer <= 0 || s.Overhead() <= 0 || s.Plan+s.Queue+s.Search+s.Transfer+s.Finish != s.Total {
			t.Errorf("overhead sample %d: %+v; want positive parts that add up to the total", i, s)
		}
	}
	// Both clients leave compression off, so the gzip-capable source sends
	// identity bytes to either.
	for _, e := range append(res.Overhead.AcceptEncodings, res.Overhead.ReferenceAcceptEncodings...) {
		if strings.Contains(e, "gzip") {
			t.Errorf("a client asked the source for %q", e)
		}
	}
	if l := res.Large; l == nil || l.Study.Instances < 5 || l.HWM < l.IdleHWM || l.IdleHWM <= 0 || l.Job.Bytes != l.Study.Bytes {
		t.Errorf("large pull %+v: want ≥ 5 instances, every byte pulled, peak ≥ idle peak > 0", l)
	}
	var md bytes.Buffer
	res.WriteMarkdown(&md, []string{"machine: test"})
	for _, want := range []string{"throughput, MB/s", "overhead: all − transfer", "peak RSS (VmHWM) after the pull"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

// The same by C-MOVE: both pull over DIMSE, the prefetcher to its Storage
// SCP; no overhead measurement.
func TestRun_TinyCMove(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the prefetcher and runs two Orthancs")
	}
	res := tinyRun(t, pullbench.ProtocolCMove)
	if res.Overhead != nil {
		t.Errorf("an overhead measurement in a C-MOVE run")
	}
	if l := res.Large; l == nil || l.Study.Instances < 5 || l.HWM < l.IdleHWM || l.Job.Bytes < l.Study.Bytes*9/10 {
		t.Errorf("large pull %+v: want ≥ 5 instances, about every byte pulled", l)
	}
	var md bytes.Buffer
	res.WriteMarkdown(&md, []string{"machine: test"})
	for _, want := range []string{"| Orthanc C-MOVE |", "C-MOVE to the prefetcher's Storage SCP", "POST /modalities/source/move"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

// tinyRun runs the benchmark at a tiny size by protocol and checks its
// throughput rounds.
func tinyRun(t *testing.T, protocol string) *pullbench.Results {
	t.Helper()
	orthanc := orthanctest.Require(t)
	bin := filepath.Join(t.TempDir(), "prefetcher")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/prefetcher").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	res, err := pullbench.Run(context.Background(), pullbench.Options{Gen: dicomtest.NewGenerator(t), PrefetcherBin: bin, OrthancBin: orthanc,
		DatabaseURL: dbtest.NewDatabase(t), Dir: t.TempDir(), Instances: 5, Rounds: 2, Template: dicomtest.FileMR, Jobs: 3, Warmup: 1,
		LargeBytes: 5_000_000, UploadClients: 2, Protocol: protocol}, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Pull.Rounds); got != 2 {
		t.Errorf("%d throughput rounds, want 2", got)
	}
	for i, r := range res.Pull.Rounds {
		if r.Priorflow <= 0 || r.Orthanc <= 0 || r.PriorflowLoaded < r.Priorflow {
			t.Errorf("round %d: Priorflow %s (event to loaded %s), Orthanc %s; want positive, loaded ≥ pull", i+1, r.Priorflow, r.PriorflowLoaded, r.Orthanc)
		}
	}
	return res
}
