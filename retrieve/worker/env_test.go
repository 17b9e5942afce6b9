package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/suyashkumar/dicom/pkg/tag"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	fsearch "github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/retrieve/worker"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dicomweb"
	"github.com/priorflow/priorflow/search/dimsesource"
	subjs "github.com/priorflow/priorflow/subscriptions/jetstream"
	"github.com/priorflow/priorflow/triggers"
	cejs "github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/priorflow/priorflow/triggers/rules"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const rulesYAML = `
sources:
  - name: hospital-b
rules:
  - name: ct-priors
    on: [appointment-booked, ed-arrival]
    leadTime: 12h
    sources: [hospital-b]
    lookback: 5y
    maxPriors: 2
    modalities: same
    bodyRegion: any
    exclude: {modality: [SR, KO, PR]}
`

// env is one Priorflow node (database, blob store, JetStream, planner and
// worker) whose network has one remote source at sourceURL.
type env struct {
	t         *testing.T
	pool      *pgxpool.Pool
	store     *postgres.Store
	archive   *archive.Archive
	bucket    *blob.Bucket
	js        njs.JetStream
	searcher  *search.Searcher
	sourceURL string
	requests  *recorder
	// observer, when set, sees every received instance (before the
	// metrics).
	observer func(n int)
	metrics  *worker.Metrics
	patient  string
	// concurrency of the next worker started (default 2).
	concurrency int
	// retrieval, when set, is the retriever's source (client and idle
	// timeout) in place of a plain client through requests.
	retrieval *retrieve.Source
	// planner runs (consuming care events) until the test ends.
	planner *planner.Planner
	// receiver takes the objects of the Storage SCP (serveMoves), whose
	// AE title is moveAE.
	receiver atomic.Pointer[retrieve.Retriever]
	moveAE   string
	movePort int
	// anonymousMoves makes the SCP hide the Move Originator, as a peer
	// that does not send it.
	anonymousMoves bool
}

// recorder notes the paths a client asked for.
type recorder struct {
	mu    sync.Mutex
	paths []string
	next  http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

// all returns every path asked for.
func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.paths...)
}

func (r *recorder) wado() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.paths {
		_, rest, _ := strings.Cut(p, "/dicom-web")
		if strings.HasPrefix(rest, "/studies/") && !strings.HasSuffix(rest, "/instances") && !strings.HasSuffix(rest, "/series") {
			out = append(out, rest)
		}
	}
	return out
}

// newArchive is a local archive of its own: a database cloned from the
// migrated template, a file blob store and a spool directory.
func newArchive(tb testing.TB) (*pgxpool.Pool, *postgres.Store, *archive.Archive, *blob.Bucket) {
	tb.Helper()
	pool := dbtest.NewPool(tb)
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.Task(), fhir.AuditEvent(), fhir.Provenance())
	if err != nil {
		tb.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	store, err := postgres.New(pool, reg, codec, dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	bucket, err := fileblob.OpenBucket(tb.TempDir(), &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bucket.Close() })
	a, err := archive.New(store, bucket, dbtest.Logger(), archive.Config{DICOMwebURL: "http://priorflow.test/dicomweb", SpoolDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	return pool, store, a, bucket
}

// newEnv's Patient carries mrn and, unless it is "", remoteID of HOSP-B.
func newEnv(t *testing.T, sourceURL, mrn, remoteID string) *env {
	t.Helper()
	ctx := context.Background()
	pool, store, a, bucket := newArchive(t)
	srv := natstest.Start(t, "")
	_, js := srv.Connect(t)
	if err := cejs.EnsureStream(ctx, js, cejs.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := subjs.EnsureStream(ctx, js, 1, 0); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: &http.Transport{DisableCompression: true}}
	src, err := dicomweb.New(search.SourceInfo{Name: "hospital-b", Kind: search.KindDICOMweb, URL: sourceURL, Issuer: "HOSP-B",
		Match: search.MatchIdentifier, Mode: search.ModeImport}, &http.Client{Transport: rec})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, pool: pool, store: store, archive: a, bucket: bucket, js: js, sourceURL: sourceURL, requests: rec,
		metrics: worker.NewMetrics(nil)}
	e.searcher = e.newSearcher(src)
	ids := []any{map[string]any{"system": "urn:hosp-a:mrn", "value": mrn}}
	if remoteID != "" {
		ids = append(ids, map[string]any{"system": "urn:priorflow:issuer:HOSP-B", "value": remoteID})
	}
	e.patient = "Patient/" + e.put(map[string]any{"resourceType": "Patient", "identifier": ids,
		"name": []any{map[string]any{"family": "Doe", "given": []any{"Jane"}}}, "birthDate": "1980-01-01", "gender": "female"})

	rs, err := rules.Parse("rules.yaml", []byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.New(planner.Config{Rules: rs, Store: store, JetStream: js, Logger: dbtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	e.planner = p
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("planner: %v", err)
		}
	})
	return e
}

func (e *env) newSearcher(src search.Source) *search.Searcher {
	e.t.Helper()
	s, err := search.NewSearcher(search.Config{Sources: []search.Entry{{Source: src, Timeout: 5 * time.Second, Retries: 0, Concurrency: 2}},
		Store: e.store, Local: e.archive, Logger: dbtest.Logger(), InitialBackoff: 10 * time.Millisecond, BreakerFailures: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// newEnvDIMSE is newEnv whose remote source is Orthanc's DICOM port: its
// studies are found by C-FIND and pulled by C-GET.
func newEnvDIMSE(t *testing.T, o *orthanctest.Orthanc, mrn, remoteID string) *env {
	t.Helper()
	return newEnvDIMSEAt(t, fmt.Sprintf("127.0.0.1:%d", o.Port), o.AET, mrn, remoteID)
}

// newEnvDIMSEAt is newEnvDIMSE with the peer at addr, called aet.
func newEnvDIMSEAt(t *testing.T, addr, aet, mrn, remoteID string) *env {
	t.Helper()
	e := newEnv(t, "http://unused.invalid/dicom-web", mrn, remoteID)
	e.useDIMSE(addr, aet, false)
	return e
}

// useDIMSE makes the remote source the DIMSE peer at addr, called aet,
// pulled from by C-MOVE (to the Storage SCP of serveMoves) or C-GET.
func (e *env) useDIMSE(addr, aet string, move bool) {
	e.t.Helper()
	client := &dimse.Client{Addr: addr, Config: dimse.Config{CallingAE: orthanctest.SCUAE, CalledAE: aet}}
	src, err := dimsesource.New(search.SourceInfo{Name: "hospital-b", Kind: search.KindDIMSE, URL: "dicom://" + addr,
		Issuer: "HOSP-B", Match: search.MatchIdentifier, Mode: search.ModeImport}, client)
	if err != nil {
		e.t.Fatal(err)
	}
	e.searcher = e.newSearcher(src)
	e.retrieval = &retrieve.Source{Name: "hospital-b", DIMSE: client, Concurrency: 2, Move: move}
}

// serveMoves runs this node's Storage SCP, AE title aet, on a loopback
// port it returns: the objects of C-MOVEs go to the retriever last made by
// newWorker or newRetriever.
func (e *env) serveMoves(aet string) int {
	e.t.Helper()
	e.moveAE = aet
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: aet, Logger: dbtest.Logger(), Store: func(req *dimse.StoreRequest) (uint16, error) {
		if r := e.receiver.Load(); r != nil {
			if e.anonymousMoves {
				req.MoveOriginatorAE, req.MoveOriginatorMessageID = "", 0
			}
			return r.Receive(req)
		}
		return dimse.StatusNotAuthorized, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Storage SCP: %v", err)
		}
	})
	e.movePort = ln.Addr().(*net.TCPAddr).Port
	return e.movePort
}

// newEnvMove is newEnv whose remote source is Orthanc, pulled from by
// C-MOVE to this node's Storage SCP, called aet.
func newEnvMove(t *testing.T, o *orthanctest.Orthanc, aet, mrn, remoteID string) *env {
	t.Helper()
	e := newEnv(t, "http://unused.invalid/dicom-web", mrn, remoteID)
	o.MoveTo(t, aet, e.serveMoves(aet))
	e.useDIMSE(fmt.Sprintf("127.0.0.1:%d", o.Port), o.AET, true)
	return e
}

// newRetriever is a retriever of this env's archive and remote source,
// which the Storage SCP of serveMoves hands its objects to.
func (e *env) newRetriever(cfg retrieve.Config) *retrieve.Retriever {
	e.t.Helper()
	cfg.Archive, cfg.Logger, cfg.MoveDestination = e.archive, dbtest.Logger(), e.moveAE
	if cfg.Sources == nil {
		cfg.Sources = []retrieve.Source{*e.retrieval}
	}
	r, err := retrieve.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.receiver.Store(r)
	return r
}

func (e *env) put(v map[string]any) string {
	e.t.Helper()
	b, _ := json.Marshal(v)
	msg, _, err := e.store.Codec().Parse(b)
	if err != nil {
		e.t.Fatal(err)
	}
	var id string
	err = e.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		r, err := tx.Create(context.Background(), msg)
		if err == nil {
			id = r.ID
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// observer forwards to the env's hook and the metrics.
type observer struct{ e *env }

func (o observer) Received(source string, n int, b int64) {
	if o.e.observer != nil {
		o.e.observer(n)
	}
	o.e.metrics.Received(source, n, b)
}

func (o observer) Retried(source string) { o.e.metrics.Retried(source) }

func (o observer) Refused() { o.e.metrics.Refused() }

// newWorker is a worker of this env, not yet running.
func (e *env) newWorker() *worker.Worker {
	e.t.Helper()
	src := retrieve.Source{Name: "hospital-b", Client: &http.Client{Transport: e.requests}, Concurrency: 2}
	if e.retrieval != nil {
		src = *e.retrieval
	}
	r := e.newRetriever(retrieve.Config{Quarantine: e.bucket, Sources: []retrieve.Source{src},
		Retry:    retrieve.Backoff{Tries: 5, Initial: 50 * time.Millisecond, Multiplier: 2, Max: time.Second},
		Observer: observer{e}, BatchSize: 4})
	pub, err := subjs.NewPublisher(e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	conc := e.concurrency
	if conc == 0 {
		conc = 2
	}
	w, err := worker.New(worker.Config{JetStream: e.js, Store: e.store, Archive: e.archive, Searcher: e.searcher, Retriever: r,
		Publisher: pub, Metrics: e.metrics, Logger: dbtest.Logger(), Concurrency: conc, AckWait: 3 * time.Second,
		JobRetry: retrieve.Backoff{Tries: 50, Initial: 100 * time.Millisecond, Multiplier: 1.5, Max: 500 * time.Millisecond}})
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// startWorker runs a worker until the returned stop is called (or the test
// ends); stop waits for it to return.
func (e *env) startWorker() (stop func()) {
	e.t.Helper()
	w := e.newWorker()
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.EnsureConsumers(ctx); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("worker: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("worker did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// publishBooking publishes an appointment booked for now on CARE_EVENTS.
func (e *env) publishBooking(id, mrn string) {
	e.t.Helper()
	e.publishBookingFor(id, triggers.Identifier{System: "urn:hosp-a:mrn", Value: mrn, Type: "MR"})
}

// publishBookingFor publishes a CT booking of the patient with ids.
func (e *env) publishBookingFor(id string, ids ...triggers.Identifier) {
	e.t.Helper()
	pub, err := cejs.NewPublisher(e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.AppointmentBooked,
		OccurredAt: time.Now().UTC(), ScheduledStart: &start, Priority: triggers.PriorityRoutine, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: ids},
		SourceSystem: "test", Placer: "appt-" + id, Origin: triggers.Origin{Reference: "hl7v2:" + id}}
	if _, err := pub.Publish(context.Background(), ev); err != nil {
		e.t.Fatal(err)
	}
}

// publishEDArrival publishes an ED arrival (stat lane, due at once).
func (e *env) publishEDArrival(id, mrn string) {
	e.t.Helper()
	pub, err := cejs.NewPublisher(e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.EDArrival,
		OccurredAt: time.Now().UTC(), Priority: triggers.PriorityStat, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: mrn, Type: "MR"}}},
		SourceSystem: "test", Origin: triggers.Origin{Reference: "hl7v2:" + id}}
	if _, err := pub.Publish(context.Background(), ev); err != nil {
		e.t.Fatal(err)
	}
}

// waitPublished waits until n jobs are on the job stream.
func (e *env) waitPublished(n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM prefetch_job WHERE published`).Scan(&got)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d jobs published, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type jobRow struct {
	ID, State, LastError, TaskID string
	Attempts                     int
}

// waitJob waits for the only job to reach one of states.
func (e *env) waitJob(timeout time.Duration, states ...string) jobRow {
	e.t.Helper()
	var j jobRow
	deadline := time.Now().Add(timeout)
	for {
		err := e.pool.QueryRow(context.Background(), `SELECT id, state, last_error, task_id, attempts FROM prefetch_job`).
			Scan(&j.ID, &j.State, &j.LastError, &j.TaskID, &j.Attempts)
		if err == nil {
			for _, s := range states {
				if j.State == s {
					return j
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %+v (err %v) did not reach %v within %s", j, err, states, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// search runs a FHIR search on the local store.
func (e *env) search(typ, query string) []map[string]any {
	e.t.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		e.t.Fatal(err)
	}
	reg := e.store.Registry()
	q, err := fsearch.Parse(reg, reg.Type(typ), v, fsearch.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.store.Search(context.Background(), q)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range res.Matches {
		var x map[string]any
		if err := json.Unmarshal(m.Body, &x); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

func (e *env) read(typ, id string) map[string]any {
	e.t.Helper()
	r, err := e.store.Read(context.Background(), typ, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var x map[string]any
	if err := json.Unmarshal(r.Body, &x); err != nil {
		e.t.Fatal(err)
	}
	return x
}

// storeLocal stores instances in the local archive directly.
func (e *env) storeLocal(ins ...*dicomtest.Instance) {
	e.t.Helper()
	var objs []*archive.Object
	for _, in := range ins {
		o, err := e.archive.Spool(bytes.NewReader(in.Bytes))
		if err != nil {
			e.t.Fatal(err)
		}
		objs = append(objs, o)
	}
	for _, r := range e.archive.Store(context.Background(), objs, "") {
		if r.Err != nil {
			e.t.Fatalf("local store: %v", r.Err)
		}
	}
}

// checkIdentical checks that the archive holds exactly the study's
// instances, byte for byte.
func (e *env) checkIdentical(st *dicomtest.Study) {
	e.t.Helper()
	for sop, b := range e.checkStored(st) {
		if w := st.Instance(sop).Bytes; !bytes.Equal(b, w) {
			e.t.Errorf("instance %s: stored bytes differ from the source's (%d vs %d bytes)", sop, len(b), len(w))
		}
	}
	var dup int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) - count(DISTINCT sop_uid) FROM dicom_instance`).Scan(&dup); err != nil || dup != 0 {
		e.t.Errorf("duplicate instance rows: %d (%v)", dup, err)
	}
}

// checkSame checks that the archive holds exactly the study's instances,
// each with the source's pixel data: what a C-GET brings is the same data
// set, but written again by the source (and with Priorflow's File Meta
// Information), so not the same bytes.
func (e *env) checkSame(st *dicomtest.Study) {
	e.t.Helper()
	for sop, b := range e.checkStored(st) {
		if g, w := dicomtest.PixelData(e.t, b), dicomtest.PixelData(e.t, st.Instance(sop).Bytes); len(w) == 0 || !bytes.Equal(g, w) {
			e.t.Errorf("instance %s: pixel data differs from the source's (%d vs %d bytes)", sop, len(g), len(w))
		}
	}
}

// checkStored checks that the archive holds as many instances of the study
// as it has, all of it, and returns their stored bytes by SOP Instance UID.
func (e *env) checkStored(st *dicomtest.Study) map[string][]byte {
	e.t.Helper()
	ctx := context.Background()
	stored, err := e.archive.Instances(ctx, st.StudyInstanceUID, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	if got, want := len(stored), len(st.Instances()); got != want {
		e.t.Errorf("study %s: %d instances stored, want %d", st.StudyInstanceUID, got, want)
	}
	out := map[string][]byte{}
	for _, s := range stored {
		if st.Instance(s.SOPInstanceUID) == nil {
			e.t.Errorf("instance %s is not of the study", s.SOPInstanceUID)
			continue
		}
		r, err := e.archive.Open(ctx, s.BlobKey)
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		out[s.SOPInstanceUID] = b
	}
	return out
}

// person is a patient as the remote archive files them.
type person struct{ id, birth string }

func study(t *testing.T, g *dicomtest.Generator, p person, date time.Time, series, perSeries int, opts ...dicomtest.Option) *dicomtest.Study {
	t.Helper()
	o := append([]dicomtest.Option{dicomtest.WithPatient(p.id, "HOSP-B", "DOE^JANE"), dicomtest.WithStudyDate(date),
		dicomtest.WithModality("CT"), dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithSeries(series), dicomtest.WithInstancesPerSeries(perSeries),
		dicomtest.WithEdits(dicomtest.Set(tag.PatientBirthDate, p.birth), dicomtest.Set(tag.PatientSex, "F"), dicomtest.Set(tag.BodyPartExamined, "CHEST"))}, opts...)
	st, err := g.Study(o...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 9, 0, 0, 0, time.UTC) }

// jobID is the id of the only job.
func (e *env) jobID() string {
	e.t.Helper()
	var id string
	if err := e.pool.QueryRow(context.Background(), `SELECT id FROM prefetch_job`).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// waitJobMessagesGone waits until the worker has acknowledged every job
// message (the job stream keeps a message until then).
func (e *env) waitJobMessagesGone(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for e.streamMessages(planner.JobsStream, planner.SubjectRoutine) > 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("job messages still on %s after %s", planner.JobsStream, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timeline is the text of a Task's notes.
func timeline(task map[string]any) string {
	var out []string
	notes, _ := task["note"].([]any)
	for _, n := range notes {
		out = append(out, n.(map[string]any)["text"].(string))
	}
	return strings.Join(out, "\n")
}

// streamMessages counts the messages of a stream subject.
func (e *env) streamMessages(stream, subject string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background(), njs.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
