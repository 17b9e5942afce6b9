package search_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/triggers"
)

// qidoStudy is a QIDO-RS answer with one study of patient B100@HOSP-B.
func qidoStudy(uid string) string {
	return fmt.Sprintf(`[{"0020000D":{"vr":"UI","Value":["%s"]},"00100020":{"vr":"LO","Value":["B100"]},`+
		`"00100021":{"vr":"LO","Value":["HOSP-B"]},"00080020":{"vr":"DA","Value":["20250601"]},`+
		`"00080061":{"vr":"CS","Value":["CT"]},"00201208":{"vr":"IS","Value":[3]},"00081030":{"vr":"LO","Value":["CT CHEST"]}}]`, uid)
}

// faulty starts a local server misbehaving in one way.
func faulty(t testing.TB, kind string) string {
	t.Helper()
	if kind == "silent" {
		// Accepts connections and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
		return "http://" + ln.Addr().String() + "/dicom-web"
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch kind {
		case "healthy":
			w.Header().Set("Content-Type", "application/dicom+json")
			fmt.Fprint(w, qidoStudy("1.2.3.100"))
		case "slow":
			<-r.Context().Done()
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "invalid":
			fmt.Fprint(w, `[{"0020000D": {not json`)
		case "truncated":
			body := qidoStudy("1.2.3.101")
			w.Header().Set("Content-Length", fmt.Sprint(len(body)+100))
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, body[:len(body)/2])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL + "/dicom-web"
}

func janeLocal(t testing.TB, l *local) string {
	return localPatient(t, l, "Doe", []string{"Jane"}, "1980-01-01", "female",
		map[string]any{"system": "urn:priorflow:issuer:HOSP-B", "value": "B100"})
}

func TestSearcher_Faults_DoNotDelayOthers(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ref := janeLocal(t, l)
	// Four sources never answer: asked one after the other they would take
	// at least 4 × timeout. Side by side the search ends soon after one
	// timeout; the bound leaves two timeouts for the rest of the search
	// (indexing, audit records) on a loaded machine (-race, 2 cores, other
	// tests).
	const timeout = time.Second
	silent := []string{"slow", "silent", "slow-2", "silent-2"}
	var entries []search.Entry
	for _, name := range append([]string{"healthy", "500", "invalid", "truncated"}, silent...) {
		kind, _, _ := strings.Cut(name, "-")
		e := dicomwebSource(t, name, faulty(t, kind), search.MatchIdentifier, search.ModeImport)
		e.Timeout, e.Retries = timeout, 2
		entries = append(entries, e)
	}
	s := newSearcher(t, l, entries...)
	start := time.Now()
	res, err := s.Search(context.Background(), search.Job{ID: "job-f", Rule: "priors", PatientRef: ref,
		Patient: []triggers.Identifier{{Authority: "HOSP-B", Value: "B100"}}})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if limit := 3 * timeout; elapsed > limit {
		t.Errorf("search took %v, want under %v: misbehaving sources delay each other", elapsed, limit)
	}
	if o := outcome(res, "healthy"); o.Status != search.StatusOK || o.Accepted != 1 {
		t.Errorf("healthy: %+v", o)
	}
	for _, k := range append([]string{"500", "invalid", "truncated"}, silent...) {
		o := outcome(res, k)
		if o.Status != search.StatusFailed {
			t.Errorf("%s: status %s, want failed (%v)", k, o.Status, o.Err)
		}
		// Bounded by its own timeout, not the default 10 s.
		if o.Elapsed > 2*timeout {
			t.Errorf("%s: took %v, far over its timeout %v", k, o.Elapsed, timeout)
		}
	}
	if o := outcome(res, "500"); o.Attempts != 3 {
		t.Errorf("500: %d attempts, want 3 (retries)", o.Attempts)
	}
	if len(res.Retrieve) != 1 || res.Retrieve[0].Study.StudyInstanceUID != "1.2.3.100" {
		t.Errorf("retrieve = %+v", res.Retrieve)
	}
	failed := 0
	for _, a := range l.resources(t, "AuditEvent") {
		if a["outcome"] == "8" {
			failed++
		}
	}
	if failed != 7 {
		t.Errorf("%d failed-query AuditEvents, want 7", failed)
	}
}

func TestSearcher_CircuitBreaker_OpensAndRecovers(t *testing.T) {
	t.Parallel()
	l := newLocal(t)
	ref := janeLocal(t, l)
	var healthy atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, qidoStudy("1.2.3.200"))
	}))
	t.Cleanup(ts.Close)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := dicomwebSource(t, "flaky", ts.URL+"/dicom-web", search.MatchIdentifier, search.ModeImport)
	e.Retries = 0
	s, err := search.NewSearcher(search.Config{Sources: []search.Entry{e}, Store: l.store, Local: l.archive, Logger: discard(),
		BreakerFailures: 2, BreakerCooldown: time.Minute, Now: clock, InitialBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	job := search.Job{ID: "job-b", Rule: "priors", PatientRef: ref}
	run := func() search.SourceOutcome {
		t.Helper()
		res, err := s.Search(context.Background(), job)
		if err != nil {
			t.Fatal(err)
		}
		return outcome(res, "flaky")
	}
	for i := range 2 {
		if o := run(); o.Status != search.StatusFailed {
			t.Fatalf("run %d: %s, want failed", i, o.Status)
		}
	}
	if got := s.Breaker("flaky").State(); got != search.BreakerOpen {
		t.Fatalf("breaker %s after 2 failures, want open", got)
	}
	healthy.Store(true)
	if o := run(); o.Status != search.StatusCircuitOpen || o.Attempts != 0 {
		t.Errorf("while open: %+v, want circuit-open without a request", o)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if o := run(); o.Status != search.StatusOK {
		t.Errorf("after cooldown: %+v, want ok", o)
	}
	if got := s.Breaker("flaky").State(); got != search.BreakerClosed {
		t.Errorf("breaker %s after a good trial, want closed", got)
	}
}
