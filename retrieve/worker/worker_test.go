package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/internal/dcmtktest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/retrieve/worker"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/subscriptions"
	subjs "github.com/priorflow/priorflow/subscriptions/jetstream"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/prometheus/client_golang/prometheus"
)

// TestWorker runs prefetch jobs end to end against a real Orthanc holding
// the remote studies: care event → planner → job stream → worker → search →
// WADO-RS → local archive and FHIR index.
func TestWorker(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	remote := o.URL + "/dicom-web"
	g := dicomtest.NewGenerator(t)
	jane := person{"B100", "19800101"}
	ct2025 := study(t, g, jane, day(2025, 6, 1), 2, 3)
	ct2024 := study(t, g, jane, day(2024, 3, 1), 1, 2)
	partial := study(t, g, person{"B200", "19800101"}, day(2025, 5, 1), 3, 2)
	mixed := study(t, g, person{"B300", "19800101"}, day(2025, 4, 1), 1, 2)
	// One instance filed under B300's study but of someone born elsewhen.
	intruder := study(t, g, person{"B300", "19551111"}, day(2025, 4, 1), 1, 1, dicomtest.WithStudyInstanceUID(mixed.StudyInstanceUID))
	flaky := study(t, g, person{"B400", "19800101"}, day(2025, 3, 1), 1, 2)
	big := study(t, g, person{"B500", "19800101"}, day(2025, 2, 1), 2, 10)
	// Orthanc takes, and serves, a StudyInstanceUID that is none.
	badUID := study(t, g, person{"B700", "19800101"}, day(2025, 6, 2), 1, 1, dicomtest.WithStudyInstanceUID("1.2.3.ABC\x01/../x"))
	goodUID := study(t, g, person{"B700", "19800101"}, day(2025, 6, 1), 1, 2)
	// The intruder goes first: Orthanc reports the patient attributes of
	// the last instance it received, so the search accepts the study and
	// the intruder reaches the retrieval's own per-instance check.
	o.UploadStudy(t, ct2025, ct2024, partial, intruder, mixed, flaky, big, badUID, goodUID)

	t.Run("care event to local prior with the local Endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A1", "B100")
		e.startWorker()
		e.publishBooking("ev-1", "A1")
		j := e.waitJob(60*time.Second, "completed", "failed")
		if j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(ct2025)
		e.checkIdentical(ct2024)

		studies := e.search("ImagingStudy", "patient="+e.patient)
		if len(studies) != 2 {
			t.Fatalf("ImagingStudy?patient=%s: %d, want 2", e.patient, len(studies))
		}
		var refs []string
		for _, is := range studies {
			refs = append(refs, "ImagingStudy/"+is["id"].(string))
			if ep := is["endpoint"].([]any)[0].(map[string]any)["reference"]; ep != "Endpoint/"+archive.LocalEndpointID {
				t.Errorf("ImagingStudy %v endpoint %v, want the local one", is["id"], ep)
			}
			if meta, _ := is["meta"].(map[string]any); meta["tag"] != nil {
				t.Errorf("ImagingStudy %v still tagged %v", is["id"], meta["tag"])
			}
		}
		task := e.read("Task", j.TaskID)
		if task["status"] != "completed" {
			t.Errorf("Task status %v", task["status"])
		}
		var outs []string
		for _, o := range task["output"].([]any) {
			outs = append(outs, o.(map[string]any)["valueReference"].(map[string]any)["reference"].(string))
		}
		slices.Sort(outs)
		slices.Sort(refs)
		if !slices.Equal(outs, refs) {
			t.Errorf("Task outputs %v, want %v", outs, refs)
		}
		var timeline []string
		for _, n := range task["note"].([]any) {
			timeline = append(timeline, n.(map[string]any)["text"].(string))
		}
		joined := strings.Join(timeline, "\n")
		for _, want := range []string{"event received: ev-1", "planned by rule ct-priors", "searching (attempt 1)", "searched:",
			"study " + ct2025.StudyInstanceUID + ": retrieving", "study " + ct2025.StudyInstanceUID + ": complete", "completed"} {
			if !strings.Contains(joined, want) {
				t.Errorf("timeline lacks %q:\n%s", want, joined)
			}
		}
		if n := len(e.search("Provenance", "target="+refs[0])); n != 1 {
			t.Errorf("%d Provenance for %s, want 1", n, refs[0])
		}
		if n := len(e.search("AuditEvent", "type=http://dicom.nema.org/resources/ontology/DCM|110107")); n != 2 {
			t.Errorf("%d import AuditEvents, want 2", n)
		}
		if n := e.streamMessages(subjs.StreamName, subscriptions.SubjectStudyAvailable); n != 2 {
			t.Errorf("%d imaging.study.available events, want 2", n)
		}
	})

	t.Run("over DIMSE: priors found by C-FIND and pulled by C-GET", func(t *testing.T) {
		t.Parallel()
		e := newEnvDIMSE(t, o, "A11", "B100")
		e.startWorker()
		e.publishBooking("ev-11", "A11")
		j := e.waitJob(60*time.Second, "completed", "failed")
		if j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkSame(ct2025)
		e.checkSame(ct2024)
		studies := e.search("ImagingStudy", "patient="+e.patient)
		if len(studies) != 2 {
			t.Fatalf("ImagingStudy?patient=%s: %d, want 2", e.patient, len(studies))
		}
		for _, is := range studies {
			if ep := is["endpoint"].([]any)[0].(map[string]any)["reference"]; ep != "Endpoint/"+archive.LocalEndpointID {
				t.Errorf("ImagingStudy %v endpoint %v, want the local one", is["id"], ep)
			}
		}
		ep := e.read("Endpoint", search.EndpointID("hospital-b"))
		ct, _ := ep["connectionType"].(map[string]any)
		if ct["code"] != "dicom-dimse" || ep["address"] != fmt.Sprintf("dicom://127.0.0.1:%d", o.Port) {
			t.Errorf("the source's Endpoint: %v at %v, want dicom-dimse at its DICOM port", ct, ep["address"])
		}
		if task := e.read("Task", j.TaskID); task["status"] != "completed" {
			t.Errorf("Task status %v", task["status"])
		}
	})

	for _, method := range []string{"C-GET", "C-MOVE"} {
		t.Run("over DIMSE: a study partly present, only what is missing is pulled by "+method, func(t *testing.T) {
			t.Parallel()
			mrn := map[string]string{"C-GET": "A12", "C-MOVE": "A15"}[method]
			var e *env
			if method == "C-MOVE" {
				e = newEnvMove(t, o, "PF-"+mrn, mrn, "B200")
			} else {
				e = newEnvDIMSE(t, o, mrn, "B200")
			}
			e.completePartlyPresent(partial, mrn)
		})
	}

	t.Run("over DIMSE: priors pulled by C-MOVE to this node's Storage SCP", func(t *testing.T) {
		t.Parallel()
		e := newEnvMove(t, o, "PF-A14", "A14", "B100")
		e.startWorker()
		e.publishBooking("ev-14", "A14")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkSame(ct2025)
		e.checkSame(ct2024)
	})

	t.Run("over DIMSE: an instance of another patient is quarantined", func(t *testing.T) {
		t.Parallel()
		// Orthanc's C-FIND reports the patient attributes of the first
		// instance it received (its QIDO-RS, those of the last): the
		// intruder goes last so that the search accepts the study and
		// the intruder reaches the retrieval's own check.
		mixed := study(t, g, person{"B310", "19800101"}, day(2025, 4, 1), 1, 2)
		intruder := study(t, g, person{"B310", "19551111"}, day(2025, 4, 1), 1, 1, dicomtest.WithStudyInstanceUID(mixed.StudyInstanceUID))
		o.UploadStudy(t, mixed, intruder)
		e := newEnvDIMSE(t, o, "A13", "B310")
		e.startWorker()
		e.publishBooking("ev-13", "A13")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkSame(mixed)
		bad := intruder.Instances()[0].SOPInstanceUID
		reviews := e.search("Task", "code=urn:priorflow:task|"+worker.TaskReviewQuarantine)
		if len(reviews) != 1 {
			t.Fatalf("%d review-quarantine Tasks, want 1", len(reviews))
		}
		if in := reviews[0]["input"].([]any); len(in) != 1 || !strings.Contains(in[0].(map[string]any)["valueString"].(string), bad) {
			t.Errorf("review inputs %v, want the intruder %s", in, bad)
		}
	})

	t.Run("stat before routine: an ED arrival overtakes a routine backlog", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A6", "B600")
		for i := range 4 {
			e.publishBooking(fmt.Sprintf("ev-r%d", i), fmt.Sprintf("R%d", i))
		}
		e.publishEDArrival("ev-stat", "S1")
		e.waitPublished(5)
		e.concurrency = 1
		e.startWorker()
		var lanes []string
		deadline := time.Now().Add(60 * time.Second)
		for len(lanes) < 5 {
			lanes = lanes[:0]
			rows, err := e.pool.Query(context.Background(), `SELECT lane FROM prefetch_job WHERE state = 'completed' ORDER BY updated_at`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var l string
				_ = rows.Scan(&l)
				lanes = append(lanes, l)
			}
			rows.Close()
			if time.Now().After(deadline) {
				t.Fatalf("completed lanes %v, want 5 jobs", lanes)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if lanes[0] != "stat" {
			t.Errorf("completion order %v, want the stat job first", lanes)
		}
	})

	t.Run("a study partly present: only what is missing is fetched", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A2", "B200")
		// Series 1 complete, one instance of series 2, nothing of series 3.
		e.storeLocal(partial.Series[0].Instances...)
		e.storeLocal(partial.Series[1].Instances[0])
		e.startWorker()
		e.publishBooking("ev-2", "A2")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(partial)
		base := "/studies/" + partial.StudyInstanceUID
		want := []string{
			base + "/series/" + partial.Series[1].SeriesInstanceUID + "/instances/" + partial.Series[1].Instances[1].SOPInstanceUID,
			base + "/series/" + partial.Series[2].SeriesInstanceUID,
		}
		got := e.requests.wado()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("WADO-RS requests %v, want %v", got, want)
		}
	})

	// The local Patient knows only A8; the care event lists B100 of HOSP-B
	// beside A8, as a PID-3 lists one identifier per authority. The priors found under B100 were indexed
	// under the Patient and, retrieved, made a second Patient (the archive
	// files by the object's PatientID) and were quarantined as another
	// patient's. The planner now records B100 on the Patient first.
	t.Run("an identifier of another domain named only by the care event", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A8", "")
		e.startWorker()
		e.publishBookingFor("ev-8", triggers.Identifier{System: "urn:hosp-a:mrn", Value: "A8", Type: "MR"},
			triggers.Identifier{System: "urn:priorflow:issuer:HOSP-B", Value: "B100", Authority: "HOSP-B", Type: "PI"})
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(ct2025)
		e.checkIdentical(ct2024)
		if got := e.search("ImagingStudy", "patient="+e.patient); len(got) != 2 {
			t.Errorf("ImagingStudy?patient=%s: %d, want the 2 priors of B100", e.patient, len(got))
		}
		if got := e.search("Patient", ""); len(got) != 1 {
			t.Errorf("%d Patients, want the one", len(got))
		}
		if got := e.search("Task", "code=urn:priorflow:task|"+worker.TaskReviewQuarantine); len(got) != 0 {
			t.Errorf("%d review-quarantine Tasks, want none", len(got))
		}
	})

	t.Run("an instance of another patient is quarantined with a review Task", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A3", "B300")
		e.startWorker()
		e.publishBooking("ev-3", "A3")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(mixed) // the two good ones, and nothing else
		bad := intruder.Instances()[0].SOPInstanceUID
		stored, _ := e.archive.Instances(context.Background(), mixed.StudyInstanceUID, "", "")
		for _, s := range stored {
			if s.SOPInstanceUID == bad {
				t.Error("the intruder is indexed")
			}
		}
		reviews := e.search("Task", "code=urn:priorflow:task|"+worker.TaskReviewQuarantine)
		if len(reviews) != 1 {
			t.Fatalf("%d review-quarantine Tasks, want 1", len(reviews))
		}
		if in := reviews[0]["input"].([]any); len(in) != 1 || !strings.Contains(in[0].(map[string]any)["valueString"].(string), bad) {
			t.Errorf("review inputs %v, want the intruder %s", in, bad)
		}
		if ok, err := e.bucket.Exists(context.Background(), quarantineKey(t, e, mixed.StudyInstanceUID)); err != nil || !ok {
			t.Errorf("quarantined bytes not kept (%v)", err)
		}
	})

	t.Run("a source down for a while: the job succeeds once it returns", func(t *testing.T) {
		t.Parallel()
		target, _ := url.Parse(o.URL)
		var down atomic.Bool
		down.Store(true)
		proxy := httputil.NewSingleHostReverseProxy(target)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "maintenance", http.StatusServiceUnavailable)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		e := newEnv(t, srv.URL+"/dicom-web", "A4", "B400")
		e.startWorker()
		e.publishBooking("ev-4", "A4")
		deadline := time.Now().Add(30 * time.Second)
		for {
			j := e.waitJob(30*time.Second, "in-progress", "completed", "failed")
			if j.State != "in-progress" {
				t.Fatalf("job %+v while the source is down, want in progress", j)
			}
			if j.Attempts >= 3 {
				if !strings.Contains(j.LastError, "hospital-b") {
					t.Errorf("last error %q, want the unreachable source named", j.LastError)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %+v: no retries", j)
			}
			time.Sleep(50 * time.Millisecond)
		}
		down.Store(false)
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(flaky)
	})

	// A source that builds a study's whole multipart answer before its
	// headers (Orthanc does) takes longer than a query may: the retrieval
	// waits for it with the source's retrieveTimeout, not its timeout.
	t.Run("headers of a study's answer later than the query timeout", func(t *testing.T) {
		t.Parallel()
		target, _ := url.Parse(o.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var asked atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/studies/"+flaky.StudyInstanceUID) {
				asked.Add(1)
				select {
				case <-time.After(1500 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		e := newEnv(t, srv.URL+"/dicom-web", "A9", "B400")
		cfg := &search.SourceConfig{Name: "hospital-b", Kind: search.KindDICOMweb, URL: srv.URL + "/dicom-web",
			Timeout: 300 * time.Millisecond, RetrieveTimeout: 30 * time.Second, Concurrency: 2}
		client, err := search.NewHTTPClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.retrieval = &retrieve.Source{Name: "hospital-b", Client: client, Concurrency: 2, IdleTimeout: cfg.RetrieveTimeout}
		e.startWorker()
		e.publishBooking("ev-9", "A9")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" || j.Attempts != 1 {
			t.Fatalf("job %+v, want completed at the first attempt", j)
		}
		e.checkIdentical(flaky)
		if got := asked.Load(); got != 1 {
			t.Errorf("the study was asked for %d times, want once", got)
		}
	})

	// A body that stops mid-transfer must not hold the job forever while
	// the heartbeat keeps its message alive: the idle timeout abandons the
	// request and the retrieval is retried.
	t.Run("a body that stalls mid-transfer is abandoned and retried", func(t *testing.T) {
		t.Parallel()
		target, _ := url.Parse(o.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var stalls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/studies/"+flaky.StudyInstanceUID) && stalls.Add(1) == 1 {
				proxy.ServeHTTP(&stallingWriter{ResponseWriter: w, after: 2000, done: r.Context().Done()}, r)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		e := newEnv(t, srv.URL+"/dicom-web", "A10", "B400")
		e.retrieval = &retrieve.Source{Name: "hospital-b", Client: &http.Client{Transport: &http.Transport{DisableCompression: true}},
			Concurrency: 2, IdleTimeout: 500 * time.Millisecond}
		e.startWorker()
		e.publishBooking("ev-10", "A10")
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(flaky)
		if got := stalls.Load(); got < 2 {
			t.Errorf("%d study requests, want the stalled one and a retry", got)
		}
	})

	t.Run("two replicas share the jobs without pulling a study twice", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A7", "B500")
		// Jobs published before either replica runs, so both start with a
		// backlog to share: one that pulls the big study, five that find
		// nothing remotely.
		e.publishBooking("ev-7", "A7")
		for i := range 5 {
			e.publishBooking(fmt.Sprintf("ev-7-%d", i), fmt.Sprintf("N%d", i))
		}
		e.waitPublished(6)
		e.startWorker()
		e.startWorker()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var done, total int
			_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE state IN ('completed', 'failed')), count(*) FROM prefetch_job`).Scan(&done, &total)
			if done == total && total == 6 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d jobs finished", done, total)
			}
			time.Sleep(50 * time.Millisecond)
		}
		var failed, extra int
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE state <> 'completed'), coalesce(sum(attempts - 1), 0) FROM prefetch_job`).Scan(&failed, &extra)
		if failed != 0 || extra != 0 {
			t.Errorf("%d jobs not completed, %d extra attempts; want every job done once", failed, extra)
		}
		e.checkIdentical(big)
		seen := map[string]bool{}
		for _, p := range e.requests.wado() {
			if seen[p] {
				t.Errorf("WADO-RS %s requested twice", p)
			}
			seen[p] = true
		}
	})

	t.Run("shutdown mid-pull hands the job back; a new worker completes it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A5", "B500")
		var received atomic.Int32
		stopped := make(chan struct{})
		var stop func()
		e.observer = func(n int) {
			if received.Add(int32(n)) == 7 {
				// The first batch is stored while the next ones arrive: shut
				// down once it has committed, so the pull is part done.
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					var n int
					if _ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM dicom_instance`).Scan(&n); n > 0 {
						break
					}
				}
				go func() { stop(); close(stopped) }()
				// Hold this part until the shutdown has begun.
				time.Sleep(200 * time.Millisecond)
			}
		}
		stop = e.startWorker()
		e.publishBooking("ev-5", "A5")
		select {
		case <-stopped:
		case <-time.After(60 * time.Second):
			t.Fatal("the pull never reached 7 instances")
		}
		e.observer = nil
		var stored int
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM dicom_instance`).Scan(&stored)
		if stored == 0 || stored >= len(big.Instances()) {
			t.Fatalf("%d instances stored at shutdown, want part of %d", stored, len(big.Instances()))
		}
		if j := e.waitJob(time.Second, "in-progress"); j.State != "in-progress" {
			t.Fatalf("job %+v after shutdown, want in progress", j)
		}
		before := len(e.requests.wado())
		e.startWorker()
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(big)
		for _, p := range e.requests.wado()[before:] {
			if p == "/studies/"+big.StudyInstanceUID {
				t.Errorf("the resumed job asked for the whole study again")
			}
		}
		is := e.search("ImagingStudy", "patient="+e.patient)
		if len(is) != 1 || int(is[0]["numberOfInstances"].(float64)) != len(big.Instances()) {
			t.Errorf("ImagingStudy %v, want one with %d instances", is, len(big.Instances()))
		}
	})

	// The invalid UID went into the ImagingStudy index, the WADO-RS URL
	// and, with the archive's refusal, the job's failure reason, which
	// neither the Task (a control character) nor PostgreSQL took: the job
	// could not end and was tried again every five seconds.
	t.Run("a study named by an invalid UID is set aside", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, remote, "A9", "B700")
		e.startWorker()
		e.publishBooking("ev-9", "A9")
		j := e.waitJob(60*time.Second, "completed", "failed")
		if j.State != "completed" {
			t.Fatalf("job %+v, want completed", j)
		}
		e.checkIdentical(goodUID)
		for _, p := range e.requests.wado() {
			if strings.Contains(p, "ABC") {
				t.Errorf("the worker asked for %s", p)
			}
		}
		if studies := e.search("ImagingStudy", "patient="+e.patient); len(studies) != 1 {
			t.Errorf("ImagingStudy?patient=%s: %d, want the valid study's", e.patient, len(studies))
		}
	})

	t.Run("a cancelled job is skipped, and runs once retried", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, remote, "A8", "B100")
		e.publishBooking("ev-8", "A8")
		e.waitPublished(1)
		id := e.jobID()
		if _, err := planner.CancelJob(ctx, e.store, id, "visit moved elsewhere", time.Now()); err != nil {
			t.Fatal(err)
		}
		e.startWorker()
		e.waitJobMessagesGone(30 * time.Second)
		j := e.waitJob(time.Second, "cancelled")
		if j.Attempts != 0 {
			t.Errorf("attempts %d, want 0: the worker must not claim a cancelled job", j.Attempts)
		}
		if paths := e.requests.all(); len(paths) != 0 {
			t.Errorf("requests to the source %v, want none", paths)
		}
		task := e.read("Task", j.TaskID)
		if task["status"] != "cancelled" || strings.Contains(timeline(task), "searching") {
			t.Errorf("Task status %v, timeline:\n%s\nwant cancelled and never searched", task["status"], timeline(task))
		}

		// Retried, the sweeper publishes it again and the worker runs it.
		if _, err := planner.RetryJob(ctx, e.store, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n, err := e.planner.Sweep(ctx, 0); err != nil || n != 1 {
			t.Fatalf("Sweep=%d, %v; want the retried job", n, err)
		}
		if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" || j.Attempts != 1 {
			t.Fatalf("job %+v, want completed in one attempt", j)
		}
		e.checkIdentical(ct2025)
		e.checkIdentical(ct2024)
		task = e.read("Task", j.TaskID)
		got := timeline(task)
		for _, want := range []string{"cancelled by operator: visit moved elsewhere", "retried by operator (was cancelled)", "searching (attempt 1)", "completed"} {
			if !strings.Contains(got, want) {
				t.Errorf("timeline lacks %q:\n%s", want, got)
			}
		}
	})

	t.Run("a job cancelled mid-pull stops and stays cancelled", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		e := newEnv(t, remote, "A9", "B100")
		var once atomic.Bool
		e.observer = func(int) {
			if once.Swap(true) {
				return
			}
			if _, err := planner.CancelJob(ctx, e.store, e.jobID(), "", time.Now()); err != nil {
				t.Error(err)
			}
			// Hold the pull past a heartbeat (AckWait 3s: every second),
			// which must notice the cancellation.
			time.Sleep(1500 * time.Millisecond)
		}
		e.startWorker()
		e.publishBooking("ev-9", "A9")
		e.waitPublished(1)
		e.waitJobMessagesGone(60 * time.Second)
		if !once.Load() {
			t.Fatal("nothing was pulled")
		}
		j := e.waitJob(time.Second, "cancelled")
		task := e.read("Task", j.TaskID)
		bs, _ := task["businessStatus"].(map[string]any)
		if task["status"] != "cancelled" || bs["text"] != "cancelled" {
			t.Errorf("Task status %v, businessStatus %v; want cancelled", task["status"], bs["text"])
		}
		got := timeline(task)
		if !strings.Contains(got, "cancelled by operator") || strings.Contains(got, "completed") || strings.Contains(got, "failed") {
			t.Errorf("timeline:\n%s\nwant the cancellation and no end of the run", got)
		}
		studies := map[string]bool{}
		for _, p := range e.requests.wado() {
			uid, _, _ := strings.Cut(strings.TrimPrefix(p, "/studies/"), "/")
			studies[uid] = true
		}
		if len(studies) != 1 {
			t.Errorf("WADO-RS requests of %d studies (%v), want only the one being pulled when cancelled", len(studies), e.requests.wado())
		}
	})
}

// quarantineKey finds the one quarantined object of a study.
func quarantineKey(t *testing.T, e *env, study string) string {
	t.Helper()
	it := e.bucket.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if err != nil {
			t.Fatalf("no quarantined object of %s", study)
		}
		if strings.HasPrefix(obj.Key, retrieve.QuarantinePrefix+study+"/") {
			return obj.Key
		}
	}
}

// stallingWriter passes the first after bytes of an answer, then stops
// writing (the source hangs) until the client gives up.
type stallingWriter struct {
	http.ResponseWriter
	after int
	done  <-chan struct{}
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.after {
		n, err := w.ResponseWriter.Write(p)
		w.after -= n
		return n, err
	}
	n, _ := w.ResponseWriter.Write(p[:w.after])
	w.after = 0
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	<-w.done
	return n, http.ErrAbortHandler
}

// A store slower than the PACS's DIMSE timeout must not break a C-GET or
// C-MOVE: the objects are answered once spooled and wait for the storer.
// The archive's instance table is locked, as a busy database would hold
// it, for more than twice the time Orthanc waits for a C-STORE-RSP; one
// attempt must do.
func TestRetrieve_DIMSE_StoreStalledLongerThanThePeerWaits(t *testing.T) {
	t.Parallel()
	for _, move := range []bool{false, true} {
		t.Run(map[bool]string{false: "C-GET", true: "C-MOVE"}[move], func(t *testing.T) {
			t.Parallel()
			o := orthanctest.StartWith(t, orthanctest.Options{DICOMTimeout: 2 * time.Second})
			st := study(t, dicomtest.NewGenerator(t), person{"B950", "19800101"}, day(2025, 1, 1), 3, 4)
			o.UploadStudy(t, st)
			var e *env
			if move {
				e = newEnvMove(t, o, "PF-A95", "A95", "B950")
			} else {
				e = newEnvDIMSE(t, o, "A95", "B950")
			}
			r := e.newRetriever(retrieve.Config{BatchSize: 4, Retry: retrieve.Backoff{Tries: 1}})
			ctx := context.Background()
			tx, err := e.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE dicom_instance IN EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			unlocked := make(chan struct{})
			time.AfterFunc(5*time.Second, func() {
				_ = tx.Rollback(ctx)
				close(unlocked)
			})
			out, err := r.Retrieve(ctx, retrieve.Study{StudyInstanceUID: st.StudyInstanceUID, Source: "hospital-b",
				Patient: search.PatientIdentity{ID: "B950", Issuer: "HOSP-B", BirthDate: "1980-01-01"}, NumberOfInstances: 12}, nil)
			<-unlocked
			if err != nil || out.Attempts != 1 || out.Stored != 12 {
				t.Fatalf("Retrieve = %+v, %v; want the 12 instances in one attempt", out, err)
			}
			e.checkSame(st)
		})
	}
}

// Against DCMTK's dcmqrscp, which checks every C-FIND identifier and
// reports no instance counts: the study partly present is completed by the
// hierarchical listing (series, then each series' instances) and C-GETs,
// or C-MOVEs, of what is missing only: the missing series whole, the
// missing instance alone.
func TestWorker_DIMSE_DCMQRSCP_PartlyPresent(t *testing.T) {
	t.Parallel()
	for i, move := range []bool{false, true} {
		t.Run(map[bool]string{false: "C-GET", true: "C-MOVE"}[move], func(t *testing.T) {
			t.Parallel()
			st := study(t, dicomtest.NewGenerator(t), person{"B960", "19800101"}, day(2025, 5, 1), 3, 2)
			var files [][]byte
			for _, in := range st.Instances() {
				files = append(files, in.Bytes)
			}
			mrn := fmt.Sprintf("A96%d", i)
			e := newEnv(t, "http://unused.invalid/dicom-web", mrn, "B960")
			var dests []dcmtktest.Destination
			if move {
				dests = append(dests, dcmtktest.Destination{AET: "PF-" + mrn, Port: e.serveMoves("PF-" + mrn)})
			}
			q := dcmtktest.StartQRSCP(t, files, dests...)
			e.useDIMSE(q.Addr, q.AET, move)
			e.completePartlyPresent(st, mrn)
		})
	}
}

// An instance of a SOP class the C-GET does not propose cannot be sent.
// Orthanc then stops the C-GET at it, whatever else the study holds; the
// next attempt asks for the rest without it, and the study ends with the
// others stored and the one the source could not send named.
func TestRetrieve_DIMSE_ClassNotProposed(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	st := study(t, g, person{"B970", "19800101"}, day(2025, 1, 1), 1, 2)
	odd := study(t, g, person{"B970", "19800101"}, day(2025, 1, 1), 1, 1, dicomtest.WithStudyInstanceUID(st.StudyInstanceUID),
		dicomtest.WithSOPClass(dicomtest.PrivateSOPClassUID))
	// The odd one first, so that a C-GET of the whole study stops before
	// anything is sent.
	o.UploadStudy(t, odd, st)
	e := newEnvDIMSE(t, o, "A97", "B970")
	r := e.newRetriever(retrieve.Config{Retry: retrieve.Backoff{Tries: 4, Initial: 10 * time.Millisecond, Multiplier: 2, Max: 100 * time.Millisecond}})
	oddUID := odd.Instances()[0].SOPInstanceUID
	out, err := r.Retrieve(context.Background(), retrieve.Study{StudyInstanceUID: st.StudyInstanceUID, Source: "hospital-b",
		Patient: search.PatientIdentity{ID: "B970", Issuer: "HOSP-B", BirthDate: "1980-01-01"}, NumberOfInstances: 3}, nil)
	if !errors.Is(err, retrieve.ErrRejected) || !strings.Contains(err.Error(), oddUID) {
		t.Errorf("Retrieve = %v, want ErrRejected naming %s", err, oddUID)
	}
	if out == nil || out.Stored != 2 || !slices.Equal(out.Unsent, []string{oddUID}) || out.Attempts > 2 {
		t.Fatalf("outcome %+v, want the 2 others stored within 2 attempts and the odd one unsent", out)
	}
	e.checkSame(st)
}

// An instance of a class a C-GET does not propose (TestRetrieve_DIMSE_
// ClassNotProposed) comes by C-MOVE: the Storage SCP takes private
// classes too.
func TestRetrieve_DIMSE_Move_PrivateClass(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	st := study(t, g, person{"B990", "19800101"}, day(2025, 1, 1), 1, 2)
	odd := study(t, g, person{"B990", "19800101"}, day(2025, 1, 1), 1, 1, dicomtest.WithStudyInstanceUID(st.StudyInstanceUID),
		dicomtest.WithSOPClass(dicomtest.PrivateSOPClassUID))
	o.UploadStudy(t, odd, st)
	e := newEnvMove(t, o, "PF-A99", "A99", "B990")
	r := e.newRetriever(retrieve.Config{Retry: retrieve.Backoff{Tries: 1}})
	out, err := r.Retrieve(context.Background(), retrieve.Study{StudyInstanceUID: st.StudyInstanceUID, Source: "hospital-b",
		Patient: search.PatientIdentity{ID: "B990", Issuer: "HOSP-B", BirthDate: "1980-01-01"}, NumberOfInstances: 3}, nil)
	if err != nil || out.Stored != 3 || len(out.Unsent) != 0 || !slices.Equal(out.Requests, []string{"C-MOVE STUDY " + st.StudyInstanceUID}) {
		t.Fatalf("Retrieve = %+v, %v; want the 3 instances by one C-MOVE", out, err)
	}
	is := e.search("ImagingStudy", "identifier=urn:dicom:uid|urn:oid:"+st.StudyInstanceUID)
	if len(is) != 1 || is[0]["numberOfInstances"] != float64(3) {
		t.Errorf("ImagingStudy %v, want one of 3 instances", is)
	}
}

// A peer that does not name the C-MOVE in its C-STORE (optional in PS3.7):
// each object goes to the C-MOVE of its study.
func TestRetrieve_DIMSE_Move_PeerNamesNoMove(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	st := study(t, g, person{"B993", "19800101"}, day(2025, 1, 1), 2, 2)
	other := study(t, g, person{"B993", "19800101"}, day(2024, 1, 1), 1, 2)
	o.UploadStudy(t, st, other)
	e := newEnvMove(t, o, "PF-A93", "A93", "B993")
	e.anonymousMoves = true
	r := e.newRetriever(retrieve.Config{Retry: retrieve.Backoff{Tries: 1}})
	var wg sync.WaitGroup
	for _, s := range []*dicomtest.Study{st, other} {
		wg.Go(func() {
			out, err := r.Retrieve(context.Background(), retrieve.Study{StudyInstanceUID: s.StudyInstanceUID, Source: "hospital-b",
				Patient: search.PatientIdentity{ID: "B993", Issuer: "HOSP-B", BirthDate: "1980-01-01"}, NumberOfInstances: len(s.Instances())}, nil)
			if err != nil || out.Stored != len(s.Instances()) || len(out.Quarantined) != 0 {
				t.Errorf("Retrieve %s = %+v, %v", s.StudyInstanceUID, out, err)
			}
		})
	}
	wg.Wait()
	e.checkSame(st)
	e.checkSame(other)
}

// Objects nobody asked for are refused: sent by a peer with no C-MOVE in
// progress, or naming a C-MOVE that is not this node's.
func TestRetrieve_DIMSE_Move_Unsolicited(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	st := study(t, dicomtest.NewGenerator(t), person{"B991", "19800101"}, day(2025, 1, 1), 1, 1)
	e := newEnvMove(t, o, "PF-A91", "A91", "B991")
	reg := prometheus.NewRegistry()
	r := e.newRetriever(retrieve.Config{Observer: worker.NewMetrics(reg)})
	in := st.Instances()[0]
	for _, req := range []dimse.StoreRequest{
		{CallingAE: o.AET},
		{CallingAE: o.AET, MoveOriginatorAE: orthanctest.SCUAE, MoveOriginatorMessageID: 1},
		{CallingAE: "MODALITY", MoveOriginatorAE: "VIEWER", MoveOriginatorMessageID: 7},
	} {
		req.SOPClassUID, req.SOPInstanceUID, req.Object = in.SOPClassUID, in.SOPInstanceUID, bytes.NewReader(in.Bytes)
		if status, err := r.Receive(&req); status != dimse.StatusNotAuthorized || err != nil {
			t.Errorf("Receive from %s for %s/%d = 0x%04X, %v; want refused", req.CallingAE, req.MoveOriginatorAE,
				req.MoveOriginatorMessageID, status, err)
		}
	}
	// And through the Storage SCP, from DCMTK's storescu.
	files := st.WriteFiles(t)
	out, err := exec.Command("storescu", "-d", "-aet", o.AET, "-aec", "PF-A91", "127.0.0.1", fmt.Sprint(e.movePort), files[0]).CombinedOutput()
	// Refused, and why, as storescu's debug dump shows the C-STORE-RSP.
	if err == nil || !bytes.Contains(out, []byte("0x0124: Refused: Not authorized")) ||
		!bytes.Contains(out, []byte("[no C-MOVE of this destination in progress asked for it]")) {
		t.Errorf("storescu: %v\n%s\nwant the object refused with status 0x0124 and a comment", err, out)
	}
	if n := len(e.search("ImagingStudy", "identifier=urn:dicom:uid|urn:oid:"+st.StudyInstanceUID)); n != 0 {
		t.Errorf("%d ImagingStudy of the unsolicited study", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	refused := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "priorflow_dicom_objects_refused_total" {
			refused = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if refused != 4 {
		t.Errorf("priorflow_dicom_objects_refused_total = %v, want 4", refused)
	}
}

// A PACS that cannot reach the Storage SCP fails every sub-operation of
// the C-MOVE and names each object: the study is not given up as unsent
// but retried, with a reason that points at the path to the SCP.
func TestRetrieve_DIMSE_Move_DestinationUnreachable(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	st := study(t, dicomtest.NewGenerator(t), person{"B992", "19800101"}, day(2025, 1, 1), 1, 2)
	o.UploadStudy(t, st)
	e := newEnvMove(t, o, "PF-A92", "A92", "B992")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	o.MoveTo(t, "PF-A92", closed) // where nothing listens
	r := e.newRetriever(retrieve.Config{Retry: retrieve.Backoff{Tries: 2, Initial: 10 * time.Millisecond, Multiplier: 2, Max: 10 * time.Millisecond}})
	out, err := r.Retrieve(context.Background(), retrieve.Study{StudyInstanceUID: st.StudyInstanceUID, Source: "hospital-b",
		Patient: search.PatientIdentity{ID: "B992", Issuer: "HOSP-B", BirthDate: "1980-01-01"}, NumberOfInstances: 2}, nil)
	if !errors.Is(err, retrieve.ErrUnavailable) || !strings.Contains(err.Error(), "Storage SCP") {
		t.Errorf("Retrieve = %v, want ErrUnavailable pointing at the Storage SCP", err)
	}
	if out == nil || out.Attempts != 2 || len(out.Unsent) != 0 || out.Stored != 0 {
		t.Errorf("outcome %+v, want 2 attempts, nothing unsent or stored", out)
	}
}

// completePartlyPresent stores the first series of st (3 series of 2) and
// one instance of the second here, books the patient mrn, and checks that
// the worker completes the study with exactly the 3 instances missing (one
// of series 2, series 3).
func (e *env) completePartlyPresent(st *dicomtest.Study, mrn string) {
	e.t.Helper()
	e.storeLocal(st.Series[0].Instances...)
	e.storeLocal(st.Series[1].Instances[0])
	var received atomic.Int32
	e.observer = func(n int) { received.Add(int32(n)) }
	e.startWorker()
	e.publishBooking("ev-"+mrn, mrn)
	if j := e.waitJob(60*time.Second, "completed", "failed"); j.State != "completed" {
		e.t.Fatalf("job %+v, want completed", j)
	}
	e.checkSame(st)
	if got := received.Load(); got != 3 {
		e.t.Errorf("%d instances received, want the 3 missing", got)
	}
}
