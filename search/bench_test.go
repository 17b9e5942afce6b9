package search_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/priorflow/priorflow/search"
)

// benchSearcher fans out to 10 QIDO sources answering after delay; the
// first `slow` of them never answer within their timeout.
func benchSearcher(b *testing.B, slow int, delay, timeout time.Duration) (*search.Searcher, search.Job) {
	l := newLocal(b)
	ref := janeLocal(b, l)
	var entries []search.Entry
	for i := range 10 {
		i := i
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if i < slow {
				<-r.Context().Done()
				return
			}
			time.Sleep(delay)
			fmt.Fprint(w, qidoStudy(fmt.Sprintf("1.2.3.%d", 1000+i)))
		}))
		b.Cleanup(ts.Close)
		e := dicomwebSource(b, fmt.Sprintf("src-%d", i), ts.URL, search.MatchIdentifier, search.ModeImport)
		e.Timeout, e.Retries = timeout, 0
		entries = append(entries, e)
	}
	s, err := search.NewSearcher(search.Config{Sources: entries, Store: l.store, Local: l.archive, Logger: discard(),
		BreakerFailures: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	return s, search.Job{ID: "bench", Rule: "priors", PatientRef: ref}
}

func runBench(b *testing.B, s *search.Searcher, job search.Job, base time.Duration) {
	var ds []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.Search(context.Background(), job); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	p95 := ds[len(ds)*95/100]
	b.ReportMetric(float64(p95.Milliseconds()), "p95-ms")
	b.ReportMetric(float64((p95 - base).Milliseconds()), "p95-overhead-ms")
}

// BenchmarkSearch_TenSources_TwoSlow: total time follows the slowest
// allowed timeout (300ms), not the sum of the sources' times.
func BenchmarkSearch_TenSources_TwoSlow(b *testing.B) {
	s, job := benchSearcher(b, 2, 20*time.Millisecond, 300*time.Millisecond)
	runBench(b, s, job, 300*time.Millisecond)
}

// BenchmarkSearch_TenSources_Healthy: overhead beyond the sources' own
// 20ms answers (fan-out, identity checks, selection, local comparison,
// indexing and audit records).
func BenchmarkSearch_TenSources_Healthy(b *testing.B) {
	s, job := benchSearcher(b, 0, 20*time.Millisecond, 2*time.Second)
	runBench(b, s, job, 20*time.Millisecond)
}
