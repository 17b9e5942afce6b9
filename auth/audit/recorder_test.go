package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/auth/audit"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
)

func event(i int) audit.Event {
	return audit.Event{Interaction: audit.Read, ResourceType: "Patient", ResourceID: "p" + itoa(i),
		Patients: []string{"Patient/p" + itoa(i)}, Status: http.StatusOK, Principal: callers["backend"], ClientAddress: "192.0.2.1"}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestRecorder_ShutdownDrainsTheQueue(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	reg := prometheus.NewRegistry()
	rec, _ := newRecorder(t, store, audit.Config{BatchSize: 50, Registerer: reg})
	stop := run(t, rec)
	const n = 600
	for i := 0; i < n; i++ {
		if err := rec.Record(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Stop at once: whatever is still queued is written before Run returns.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := countAuditEvents(t, store); got != n {
		t.Errorf("%d AuditEvents written, want %d", got, n)
	}
	if got := metric(t, reg, "priorflow_audit_events_written_total"); got != n {
		t.Errorf("events_written_total %v, want %d", got, n)
	}
	if got := metric(t, reg, "priorflow_audit_queue_depth"); got != 0 {
		t.Errorf("queue_depth %v after the drain", got)
	}
}

// metric reads a counter or gauge from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestRecorder_FullQueueWaitsAndDropsNothing(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	rec, _ := newRecorder(t, store, audit.Config{QueueSize: 1, BatchSize: 1})

	// Without a writer, the queue takes one event and then makes Record
	// wait — here until its context gives up, which loses the access and
	// says so.
	if err := rec.Record(context.Background(), event(0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rec.Record(ctx, event(1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Record on a full queue with a cancelled context: %v", err)
	}

	// Many concurrent requests against a queue of one: each waits its turn.
	stop := run(t, rec)
	const n = 40
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if err := rec.Record(context.Background(), event(i)); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if failed.Load() != 0 {
		t.Errorf("%d Records failed", failed.Load())
	}
	if got := countAuditEvents(t, store); got != n+1 {
		t.Errorf("%d AuditEvents written, want %d", got, n+1)
	}
}

func TestRecorder_RetriesFailedWrites(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	// The store's write hook fails the first two transactions, as a
	// database that is briefly unavailable would.
	var calls atomic.Int32
	store.OnWrite("AuditEvent", func(ctx context.Context, tx *postgres.Tx, prev, next *fhir.Resource) error {
		if calls.Add(1) <= 2 {
			return errors.New("injected failure")
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	rec, logs := newRecorder(t, store, audit.Config{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, Registerer: reg})
	stop := run(t, rec)
	for i := 0; i < 3; i++ {
		if err := rec.Record(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := countAuditEvents(t, store); got != 3 {
		t.Errorf("%d AuditEvents written, want 3", got)
	}
	if got := metric(t, reg, "priorflow_audit_write_failures_total"); got < 2 {
		t.Errorf("write_failures_total %v, want at least 2", got)
	}
	l := logs.String()
	if !strings.Contains(l, "retrying") || !strings.Contains(l, "injected failure") {
		t.Errorf("the retries are not logged:\n%s", l)
	}
	if strings.Contains(l, "Patient/") {
		t.Errorf("the log names a patient:\n%s", l)
	}
}

func TestRecorder_RecordAfterRunStoppedWritesItself(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	rec, _ := newRecorder(t, store, audit.Config{})
	stop := run(t, rec)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := rec.Record(context.Background(), event(1)); err != nil {
		t.Fatal(err)
	}
	if got := countAuditEvents(t, store); got != 1 {
		t.Errorf("%d AuditEvents written, want 1", got)
	}
	if err := rec.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}

func TestRecorder_Rejected(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	rec, _ := newRecorder(t, store, audit.Config{})
	stop := run(t, rec)
	for _, target := range []string{
		"/fhir/Patient/p1",
		"/fhir/ImagingStudy?patient=p1&access_token=SECRET",
		"/dicomweb/studies/1.2.3",
		"/fhir/metadata",    // not recorded
		"/healthz",          // not an API
		"/dicomweb/studies", // recorded, without patient
	} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer SECRET")
		rec.Rejected(req, http.StatusUnauthorized)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := countAuditEvents(t, store); got != 4 {
		t.Errorf("%d AuditEvents written, want 4", got)
	}
	res, err := store.Search(context.Background(), allAuditEvents(store))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Matches {
		if b := string(m.Body); strings.Contains(b, "SECRET") || !strings.Contains(b, `"outcome":"4"`) {
			t.Errorf("record %s", b)
		}
	}
}

func TestNewRecorder_RefusesBadConfig(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	log := testLogger()
	if _, err := audit.NewRecorder(nil, log, audit.Config{}); err == nil {
		t.Error("no store accepted")
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.Patient())
	if err != nil {
		t.Fatal(err)
	}
	noAudit, err := postgres.New(store.Pool(), reg, codec, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.NewRecorder(noAudit, log, audit.Config{}); err == nil {
		t.Error("a store without AuditEvent accepted")
	}
	_, err = audit.NewRecorder(store, log, audit.Config{QueueSize: -1, DrainTimeout: -time.Second, FHIRPath: "fhir/"})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"queue size", "drain timeout", "FHIR path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %s", err, want)
		}
	}
}

func allAuditEvents(store *postgres.Store) *search.Query {
	return &search.Query{Type: store.Registry().Type("AuditEvent"), Count: 100}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Events that arrive a few milliseconds apart are written together while
// the writer lingers, each in its own transaction when it does not. One
// write stamps its AuditEvents with one meta.lastUpdated.
func TestRecorder_LingerBatchesSparseEvents(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		linger time.Duration
		// waitEach waits for each event to be written before the next
		// is recorded: a loaded machine may otherwise write two that
		// arrive while it is busy together, lingering or not.
		waitEach bool
		writes   int
	}{
		"lingering":     {linger: 2 * time.Second, writes: 1},
		"not lingering": {linger: time.Nanosecond, waitEach: true, writes: 5},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := newStore(t)
			rec, _ := newRecorder(t, store, audit.Config{Linger: tt.linger})
			run(t, rec)
			var writes int
			// written waits until n events are stored, or 10 s.
			written := func(n int) {
				deadline := time.Now().Add(10 * time.Second)
				for {
					var stored int
					err := store.Pool().QueryRow(context.Background(),
						`SELECT count(*), count(DISTINCT last_updated) FROM resource WHERE type = 'AuditEvent'`).Scan(&stored, &writes)
					if err != nil {
						t.Fatal(err)
					}
					if stored == n || time.Now().After(deadline) {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			for i := range 5 {
				if err := rec.Record(context.Background(), event(i)); err != nil {
					t.Fatal(err)
				}
				if tt.waitEach {
					written(i + 1)
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
			written(5)
			if writes != tt.writes {
				t.Errorf("5 events written in %d writes, want %d", writes, tt.writes)
			}
		})
	}
}

// The AuditEvents of one access are alike, and the store prints all but the
// first by splicing what differs into the first's JSON: each stored body is
// still the one google/fhir prints for the record (printing what it parses
// to gives the same bytes), with its own id and patient, and indexed under
// that patient. The first attempt fails after the store took the records
// over: the retry builds them again.
func TestRecorder_StoresEachRecordAsPrinted(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	var calls atomic.Int32
	store.OnWrite("AuditEvent", func(ctx context.Context, tx *postgres.Tx, prev, next *fhir.Resource) error {
		if calls.Add(1) == 1 {
			return errors.New("injected failure")
		}
		return nil
	})
	rec, _ := newRecorder(t, store, audit.Config{RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond})
	stop := run(t, rec)
	var patients []string
	for i := range 30 {
		patients = append(patients, "Patient/p"+itoa(i))
	}
	ev := audit.Event{Interaction: audit.SearchType, ResourceType: "ImagingStudy",
		Query: "/fhir/ImagingStudy?_sort=_lastUpdated&_count=100&_x=<&>", Patients: patients, Status: http.StatusOK,
		Principal: callers["clinician"], ClientAddress: "192.0.2.7", RequestID: "req-1"}
	for range 3 {
		if err := rec.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rows, err := store.Pool().Query(context.Background(), `SELECT id, body FROM resource WHERE type = 'AuditEvent'`)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
		var r [2]string
		err := row.Scan(&r[0], &r[1])
		return r, err
	})
	if err != nil {
		t.Fatal(err)
	}
	codec := store.Codec()
	seen := map[string]int{}
	for _, row := range stored {
		id, body := row[0], row[1]
		msg, _, err := codec.Parse([]byte(body))
		if err != nil {
			t.Fatalf("AuditEvent/%s does not parse: %v", id, err)
		}
		again, err := codec.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != body {
			t.Fatalf("AuditEvent/%s is stored as\n%s\nbut prints as\n%s", id, body, again)
		}
		if fhir.ID(msg) != id {
			t.Errorf("AuditEvent/%s carries id %s", id, fhir.ID(msg))
		}
		var ae map[string]any
		if err := json.Unmarshal([]byte(body), &ae); err != nil {
			t.Fatal(err)
		}
		for _, p := range patientsOf(ae) {
			seen[p]++
		}
	}
	if len(stored) != 3*len(patients) {
		t.Fatalf("%d AuditEvents stored, want %d", len(stored), 3*len(patients))
	}
	if calls.Load() < 2 {
		t.Fatalf("%d AuditEvents written through the hook: the failed attempt was not retried", calls.Load())
	}
	for _, p := range patients {
		if seen[p] != 3 {
			t.Errorf("%s is the patient of %d AuditEvents, want 3", p, seen[p])
		}
		var indexed int
		if err := store.Pool().QueryRow(context.Background(), `
			SELECT count(*) FROM idx_ref x JOIN resource r ON r.rid = x.rid
			WHERE x.type = 'AuditEvent' AND x.param = 'patient' AND x.target_type = 'Patient' AND x.target_id = $1
			  AND r.body LIKE '%"reference":"' || $2 || '"%'`, strings.TrimPrefix(p, "Patient/"), p).Scan(&indexed); err != nil {
			t.Fatal(err)
		}
		if indexed != 3 {
			t.Errorf("%d AuditEvents naming %s are indexed under it, want 3", indexed, p)
		}
	}
}
