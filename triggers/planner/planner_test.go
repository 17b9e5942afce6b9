package planner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/hl7v2"
	cejs "github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/priorflow/priorflow/triggers/rules"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const rulesYAML = `
sources:
  - name: hospital-b
rules:
  - name: priors-before-visits
    on: [appointment-booked, appointment-rescheduled, ed-arrival, transfer, admission, order-placed]
    when: {modality: [CT, MR]}
    leadTime: 12h
    sources: [hospital-b]
    lookback: 5y
    maxPriors: 2
    modalities: same
    bodyRegion: same
    exclude: {modality: [SR, KO, PR]}
    cooldown: 1h
`

var now = time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)

// env is a planner on its own database and JetStream server.
type env struct {
	pool  *pgxpool.Pool
	store *postgres.Store
	js    njs.JetStream
	pub   *cejs.Publisher
	p     *planner.Planner
}

func newEnv(tb testing.TB, batch int, opts ...func(*planner.Config)) *env {
	tb.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(tb)
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.Task())
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
	srv := natstest.Start(tb, "")
	_, js := srv.Connect(tb)
	if err := cejs.EnsureStream(ctx, js, cejs.StreamConfig{}); err != nil {
		tb.Fatal(err)
	}
	pub, err := cejs.NewPublisher(js)
	if err != nil {
		tb.Fatal(err)
	}
	rs, err := rules.Parse("rules.yaml", []byte(rulesYAML))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := planner.Config{Rules: rs, Store: store, JetStream: js, Logger: dbtest.Logger(), BatchSize: batch,
		Now: func() time.Time { return now }}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := planner.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.EnsureStreams(ctx); err != nil {
		tb.Fatal(err)
	}
	return &env{pool: pool, store: store, js: js, pub: pub, p: p}
}

// run starts the planner; it stops (draining) when the test ends.
func (e *env) run(tb testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("planner run: %v", err)
		}
	})
}

func (e *env) publish(tb testing.TB, evs ...*triggers.CareEvent) {
	tb.Helper()
	for _, ev := range evs {
		if _, err := e.pub.Publish(context.Background(), ev); err != nil {
			tb.Fatal(err)
		}
	}
}

// waitSettled waits until the planner has acknowledged every event on the
// stream (its ack floor at the stream's last message: the pending counts
// alone could read zero before a message just published was counted) and
// no job awaits publishing.
func (e *env) waitSettled(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		stream, err := e.js.Stream(ctx, cejs.StreamName)
		if err != nil {
			tb.Fatal(err)
		}
		last := stream.CachedInfo().State.LastSeq
		c, err := e.js.Consumer(ctx, cejs.StreamName, planner.ConsumerName)
		if err != nil {
			tb.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		var unpublished int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM prefetch_job WHERE NOT published`).Scan(&unpublished); err != nil {
			tb.Fatal(err)
		}
		if info.AckFloor.Stream >= last && info.NumPending == 0 && info.NumAckPending == 0 && unpublished == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("planner did not settle within 20s")
}

type job struct {
	ID, Rule, State, Lane string
	DueAt                 time.Time
	Revision              int
}

func (e *env) jobs(tb testing.TB) []job {
	tb.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT id, rule, state, lane, due_at, revision FROM prefetch_job ORDER BY created_at, id`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []job
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.ID, &j.Rule, &j.State, &j.Lane, &j.DueAt, &j.Revision); err != nil {
			tb.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func (e *env) searchTasks(tb testing.TB, query string) []*fhir.Resource {
	tb.Helper()
	v, err := url.ParseQuery(query)
	if err != nil {
		tb.Fatal(err)
	}
	reg := e.store.Registry()
	q, err := search.Parse(reg, reg.Type("Task"), v, search.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := e.store.Search(context.Background(), q)
	if err != nil {
		tb.Fatal(err)
	}
	return res.Matches
}

// streamCounts returns the job messages stored per subject.
func (e *env) streamCounts(tb testing.TB) map[string]uint64 {
	tb.Helper()
	s, err := e.js.Stream(context.Background(), planner.JobsStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background(), njs.WithSubjectFilter(">"))
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Subjects
}

type evOpt func(*triggers.CareEvent)

func event(id string, opts ...evOpt) *triggers.CareEvent {
	start := now.Add(26 * time.Hour)
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.AppointmentBooked,
		OccurredAt: now.Add(-time.Minute), ScheduledStart: &start, Priority: triggers.PriorityRoutine, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:oid:1.2.3", Value: "MRN-" + id, Type: "MR"}}, FHIRID: "p-" + id},
		Procedures:   []triggers.Code{{Code: "CTCH", Display: "CT CHEST W/O"}},
		Placer:       "APPT-" + id,
		SourceSystem: "ris", Origin: triggers.Origin{Reference: "Appointment/a-" + id}}
	for _, o := range opts {
		o(ev)
	}
	return ev
}

func TestPlanner_EndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	e.run(t)
	e.publish(t,
		event("r1"),
		event("s1", func(ev *triggers.CareEvent) {
			ev.Kind, ev.Priority, ev.ScheduledStart, ev.Placer = triggers.EDArrival, triggers.PriorityStat, nil, "VISIT-9"
			ev.Origin.Reference = "Encounter/enc-9"
		}),
		event("u1", func(ev *triggers.CareEvent) { ev.Modality = "US" }), // no rule matches
	)
	e.waitSettled(t)

	jobs := e.jobs(t)
	if got, want := len(jobs), 2; got != want {
		t.Fatalf("%d jobs, want %d: %+v", got, want, jobs)
	}
	lanes := map[string]job{}
	for _, j := range jobs {
		lanes[j.Lane] = j
	}
	if got, want := lanes["routine"].DueAt, now.Add(14*time.Hour); !got.Equal(want) {
		t.Errorf("routine due=%v, want start − 12h = %v", got, want)
	}
	if got, want := lanes["stat"].DueAt, now; !got.Equal(want) {
		t.Errorf("stat due=%v, want now %v", got, want)
	}

	if got := e.searchTasks(t, "patient=Patient/p-r1&status=requested&code=urn:priorflow:task|prefetch"); len(got) != 1 || got[0].ID != lanes["routine"].ID {
		t.Errorf("Task?patient=Patient/p-r1&status=requested&code=prefetch found %d", len(got))
	}
	if got := e.searchTasks(t, "focus=Appointment/a-r1&based-on=Appointment/a-r1"); len(got) != 1 {
		t.Errorf("Task?focus=Appointment/a-r1 found %d, want 1", len(got))
	}
	if got := e.searchTasks(t, "encounter=Encounter/enc-9&priority=stat&intent=plan"); len(got) != 1 {
		t.Errorf("Task?encounter=Encounter/enc-9&priority=stat found %d, want 1", len(got))
	}
	if got := e.searchTasks(t, "code=prefetch&authored-on=2026-03-01"); len(got) != 2 {
		t.Errorf("Task?authored-on=2026-03-01 found %d, want 2", len(got))
	}
	task := e.searchTasks(t, "_id="+lanes["routine"].ID)[0]
	var body struct {
		Restriction struct{ Period struct{ Start, End string } } `json:"restriction"`
		Input       []struct{ ValueString string }               `json:"input"`
	}
	if err := json.Unmarshal(task.Body, &body); err != nil {
		t.Fatal(err)
	}
	if got, want := body.Restriction.Period.Start, "2026-03-01T20:00:00.000Z"; got != want {
		t.Errorf("restriction.period.start=%s, want the due time %s", got, want)
	}
	if got, want := body.Input[0].ValueString, "priors-before-visits"; got != want {
		t.Errorf("input[0]=%s, want the rule", got)
	}

	counts := e.streamCounts(t)
	if counts[planner.SubjectStat] != 1 || counts[planner.SubjectRoutine] != 1 {
		t.Errorf("job stream subjects %v, want one stat and one routine", counts)
	}
	// The worker serves the stat lane first: its consumer sees the ED job.
	ctx := context.Background()
	cons, err := e.js.CreateConsumer(ctx, planner.JobsStream, njs.ConsumerConfig{Durable: "stat", FilterSubject: planner.SubjectStat, AckPolicy: njs.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(njs.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msg planner.JobMessage
	if err := json.Unmarshal(m.Data(), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.ID != lanes["stat"].ID || msg.Lane != rules.LaneStat || m.Headers().Get(planner.HeaderDueAt) != "2026-03-01T06:00:00Z" {
		t.Errorf("stat message %+v due header %q", msg, m.Headers().Get(planner.HeaderDueAt))
	}
	if got, want := msg.Criteria.Modalities, []string{"CT", "PT"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("criteria modalities=%v, want %v", got, want)
	}
}

func TestPlanner_RedeliveryAfterCrashCreatesNothingNew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	var crashes atomic.Int32
	e.p.SetCrashBeforeAck(func() bool { return crashes.Add(1) <= 2 }) // die twice after publishing, before the ack
	e.run(t)
	e.publish(t, event("a"), event("b", func(ev *triggers.CareEvent) { ev.Priority = triggers.PriorityStat }))
	e.waitSettled(t)
	if crashes.Load() < 3 {
		t.Fatalf("planner handled the events %d times, want the crashes and a final success", crashes.Load())
	}
	if got := len(e.jobs(t)); got != 2 {
		t.Errorf("%d jobs after redeliveries, want 2", got)
	}
	if got := len(e.searchTasks(t, "code=prefetch")); got != 2 {
		t.Errorf("%d Tasks, want 2", got)
	}
	counts := e.streamCounts(t)
	if counts[planner.SubjectStat]+counts[planner.SubjectRoutine] != 2 {
		t.Errorf("job stream holds %v, want 2 messages (duplicates dropped by Nats-Msg-Id)", counts)
	}
}

// TestPlanner_DatabaseDownLosesNoEvent: while PostgreSQL refuses
// connections (a failover, a restart that takes long), every event fails
// to plan and is delivered again, as long as it takes. The consumer gave up
// after ten deliveries (about three hours with the real delays), and the
// event was never planned: its priors were never fetched.
func TestPlanner_DatabaseDownLosesNoEvent(t *testing.T) {
	t.Parallel()
	// JetStream adds each Backoff step beyond the first to the delay the
	// planner asks for: with these, a failed event comes back at once.
	e := newEnv(t, 50, func(c *planner.Config) {
		c.RetryMaxDelay, c.Backoff = 10*time.Millisecond, []time.Duration{time.Second, time.Second}
	})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	db := e.pool.Config().ConnConfig.Database
	allow := func(ok bool) {
		t.Helper()
		if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", db, ok)); err != nil {
			t.Fatal(err)
		}
	}
	allow(false)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, db); err != nil {
		t.Fatal(err)
	}
	e.run(t)
	e.publish(t, event("down"))
	cons, err := e.js.Consumer(ctx, cejs.StreamName, planner.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Delivered.Consumer > 15 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event was delivered %d times in 20s", info.Delivered.Consumer)
		}
		time.Sleep(10 * time.Millisecond)
	}
	allow(true)
	e.waitSettled(t)
	if jobs := e.jobs(t); len(jobs) != 1 {
		t.Errorf("%d jobs once the database is back, want the event's one", len(jobs))
	}
}

// A consumer made by an earlier release, which gave up after ten
// deliveries, is updated in place: its position is kept.
func TestEnsureStreams_UpdatesAnEarlierConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	cons, err := e.js.Consumer(ctx, cejs.StreamName, planner.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := info.Config
	old.MaxDeliver = 10
	if _, err := e.js.UpdateConsumer(ctx, cejs.StreamName, old); err != nil {
		t.Fatal(err)
	}
	e.publish(t, event("before"))
	e.run(t)
	e.waitSettled(t) // the ack floor is at the event
	if err := e.p.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err = cons.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxDeliver != -1 {
		t.Errorf("MaxDeliver %d after EnsureStreams, want -1", info.Config.MaxDeliver)
	}
	if info.AckFloor.Stream != 1 {
		t.Errorf("ack floor at stream sequence %d, want 1: the position was lost", info.AckFloor.Stream)
	}
}

func TestPlanner_CrashBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	ev := event("c")
	// The planner committed the job and died before publishing it.
	if out, err := e.p.PlanEvent(ctx, ev); err != nil || out.Created != 1 {
		t.Fatalf("PlanEvent: %+v, %v", out, err)
	}
	t.Run("sweeper publishes it", func(t *testing.T) {
		n, err := e.p.Sweep(ctx, 0)
		if err != nil || n != 1 {
			t.Fatalf("Sweep=%d, %v, want 1", n, err)
		}
		if n, err := e.p.Sweep(ctx, 0); err != nil || n != 0 {
			t.Errorf("second Sweep=%d, %v, want 0", n, err)
		}
	})
	t.Run("redelivered event creates nothing", func(t *testing.T) {
		e.run(t)
		e.publish(t, ev)
		e.waitSettled(t)
		if got := len(e.jobs(t)); got != 1 {
			t.Errorf("%d jobs, want 1", got)
		}
		if got := e.streamCounts(t)[planner.SubjectRoutine]; got != 1 {
			t.Errorf("%d routine messages, want 1", got)
		}
	})
}

func TestPlanner_RescheduleMovesDueTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	e.run(t)
	e.publish(t, event("m"))
	e.waitSettled(t)
	newStart := now.Add(72 * time.Hour)
	e.publish(t, event("m", func(ev *triggers.CareEvent) {
		ev.ID, ev.Kind, ev.ScheduledStart, ev.OccurredAt = "m-moved", triggers.AppointmentRescheduled, &newStart, now
	}))
	e.waitSettled(t)
	jobs := e.jobs(t)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want the booking's job only", len(jobs))
	}
	if got, want := jobs[0].DueAt, newStart.Add(-12*time.Hour); !got.Equal(want) {
		t.Errorf("due=%v, want new start − 12h = %v", got, want)
	}
	if got, want := jobs[0].Revision, 2; got != want {
		t.Errorf("revision=%d, want %d", got, want)
	}
	var tb struct {
		Restriction struct{ Period struct{ Start string } } `json:"restriction"`
	}
	task := e.searchTasks(t, "_id="+jobs[0].ID)[0]
	_ = json.Unmarshal(task.Body, &tb)
	if got, want := tb.Restriction.Period.Start, "2026-03-03T18:00:00.000Z"; got != want {
		t.Errorf("Task restriction.period.start=%s, want %s", got, want)
	}
	if got := e.streamCounts(t)[planner.SubjectRoutine]; got != 2 {
		t.Errorf("%d routine messages, want the original and the moved revision", got)
	}
}

func TestPlanner_CancelCancelsPendingJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	e.run(t)
	e.publish(t, event("x"))
	e.waitSettled(t)
	e.publish(t, event("x", func(ev *triggers.CareEvent) {
		ev.ID, ev.Kind, ev.OccurredAt = "x-cancel", triggers.AppointmentCancelled, now
	}))
	e.waitSettled(t)
	jobs := e.jobs(t)
	if len(jobs) != 1 || jobs[0].State != "cancelled" {
		t.Fatalf("jobs %+v, want one cancelled", jobs)
	}
	if got := e.searchTasks(t, "patient=Patient/p-x&status=cancelled"); len(got) != 1 {
		t.Errorf("Task?status=cancelled found %d, want 1", len(got))
	}
	if got := e.searchTasks(t, "status=requested"); len(got) != 0 {
		t.Errorf("Task?status=requested found %d, want 0", len(got))
	}
}

func TestPlanner_CooldownPerRuleAndPatient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	first := event("k")
	second := event("k", func(ev *triggers.CareEvent) {
		ev.ID, ev.Placer, ev.Origin.Reference = "k2", "APPT-other", "Appointment/other"
	})
	if out, err := e.p.PlanEvent(ctx, first); err != nil || out.Created != 1 {
		t.Fatalf("first: %+v, %v", out, err)
	}
	out, err := e.p.PlanEvent(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if out.Created != 0 || out.Suppressed != 1 {
		t.Errorf("second booking within the cooldown: %+v, want suppressed", out)
	}
	other := event("k3") // another patient
	if out, err := e.p.PlanEvent(ctx, other); err != nil || out.Created != 1 {
		t.Errorf("other patient: %+v, %v", out, err)
	}
}

func TestPlanner_ResolvesPatientByIdentifier(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	codec := e.store.Codec()
	pat, _, err := codec.Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"MRN-z"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var pid string
	if err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		r, err := tx.Create(ctx, pat)
		if err == nil {
			pid = r.ID
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.PlanEvent(ctx, event("z", func(ev *triggers.CareEvent) { ev.Patient.FHIRID = "" })); err != nil {
		t.Fatal(err)
	}
	if got := e.searchTasks(t, "patient=Patient/"+pid); len(got) != 1 {
		t.Errorf("Task?patient=Patient/%s found %d, want 1", pid, len(got))
	}
}

// BenchmarkPlanner_Burst is the morning burst: 10,000 appointment bookings
// published on CARE_EVENTS, timed until every job is committed, its Task
// written and the job published on PREFETCH_JOBS.
func BenchmarkPlanner_Burst(b *testing.B) {
	const n = 10000
	b.StopTimer()
	for range b.N {
		e := newEnv(b, 500)
		evs := make([][]byte, n)
		subjects := make([]string, n)
		for i := range evs {
			ev := event(fmt.Sprintf("b%05d", i), func(ev *triggers.CareEvent) {
				ev.Patient.FHIRID = "" // as from HL7 v2: the planner looks the patient up
				if i%10 == 0 {
					ev.Kind, ev.Priority, ev.ScheduledStart = triggers.EDArrival, triggers.PriorityStat, nil
				}
			})
			data, err := json.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			evs[i], subjects[i] = data, ev.Subject()
		}
		e.run(b)
		b.StartTimer()
		start := time.Now()
		for i, data := range evs {
			if _, err := e.js.PublishAsync(subjects[i], data); err != nil {
				b.Fatal(err)
			}
			// Stay under the client's async window (4,000 in flight),
			// which the planner's own job publishes share.
			if i%1000 == 999 {
				<-e.js.PublishAsyncComplete()
			}
		}
		<-e.js.PublishAsyncComplete()
		published := time.Since(start)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var planned int
			if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM prefetch_job WHERE published`).Scan(&planned); err != nil {
				b.Fatal(err)
			}
			if planned == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d jobs planned after 2 minutes", planned, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.Logf("%d events: published in %v, all jobs planned and published in %v", n, published, elapsed)
		b.ReportMetric(elapsed.Seconds(), "s/burst")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.ReportMetric(published.Seconds(), "s-publish")
	}
}

// A planner stopped before it has started stops cleanly: shutdown at any
// moment is not an error.
func TestPlanner_StoppedBeforeItStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.p.Run(ctx); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// A pre-admission (ADT^A05) is due a lead time before the expected admit
// time (PV2-8) and moves with it, whether the A05 is sent again or the
// visit updated (A08); the admission of the same visit (PV1-19) finds the
// same job and makes it due now, which a later update does not undo; a
// cancelled pre-admit (A38) cancels it.
func TestPlanner_PreAdmissionFromADT(t *testing.T) {
	t.Parallel()
	rs, err := rules.Parse("rules.yaml", []byte(`
sources:
  - name: hospital-b
rules:
  - name: before-admission
    on: [pre-admission, admission]
    leadTime: 24h
    sources: [hospital-b]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 50, func(c *planner.Config) { c.Rules = rs })
	e.run(t)
	adt := func(trigger, control, sent, visit, expected string) *triggers.CareEvent {
		t.Helper()
		m, err := hl7v2.Parse([]byte("MSH|^~\\&|ADT|MERCY|PF|PF|" + sent + "||ADT^" + trigger + "|" + control + "|P|2.5.1\r" +
			"PID|1||" + visit + "-MRN^^^MERCY^MR||DOE^JANE||19700512|F\r" +
			"PV1|1|I|4W^401^1^MERCY||||||||||||||||" + visit + "\r" +
			"PV2||||||||" + expected + "\r"))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := hl7v2.ToCareEvent(m, hl7v2.MapOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	job := func(visit string) job {
		t.Helper()
		var j job
		err := e.pool.QueryRow(context.Background(), `SELECT id, state, due_at FROM prefetch_job WHERE placer = $1`, visit).Scan(&j.ID, &j.State, &j.DueAt)
		if err != nil {
			t.Fatalf("the job of visit %s: %v", visit, err)
		}
		return j
	}

	e.publish(t, adt("A05", "C1", "20260301050000", "V1", "20260305070000"))
	e.waitSettled(t)
	if j, want := job("V1"), time.Date(2026, 3, 4, 7, 0, 0, 0, time.UTC); j.State != "requested" || !j.DueAt.Equal(want) {
		t.Errorf("after the A05: %s due %v, want requested due %v (expected admit − 24h)", j.State, j.DueAt, want)
	}
	e.publish(t, adt("A05", "C2", "20260301053000", "V1", "20260306070000"))
	e.waitSettled(t)
	if j, want := job("V1"), time.Date(2026, 3, 5, 7, 0, 0, 0, time.UTC); !j.DueAt.Equal(want) {
		t.Errorf("after the A05 moving the admit time: due %v, want %v", j.DueAt, want)
	}
	e.publish(t, adt("A08", "C2b", "20260301053500", "V1", "20260308070000"))
	e.waitSettled(t)
	if j, want := job("V1"), time.Date(2026, 3, 7, 7, 0, 0, 0, time.UTC); !j.DueAt.Equal(want) {
		t.Errorf("after the A08 moving the admit time: due %v, want %v", j.DueAt, want)
	}
	e.publish(t, adt("A38", "C3", "20260301054000", "V1", ""))
	e.waitSettled(t)
	if j := job("V1"); j.State != "cancelled" {
		t.Errorf("after the A38: %s, want cancelled", j.State)
	}

	e.publish(t, adt("A05", "C4", "20260301050000", "V2", "20260305070000"))
	e.waitSettled(t)
	e.publish(t, adt("A01", "C5", "20260301055000", "V2", ""))
	e.waitSettled(t)
	if j := job("V2"); j.State != "requested" || !j.DueAt.Equal(now) {
		t.Errorf("after the admission: %s due %v, want the pre-admission's job due now (%v)", j.State, j.DueAt, now)
	}
	e.publish(t, adt("A08", "C6", "20260301055500", "V2", "20260305070000"))
	e.waitSettled(t)
	if j := job("V2"); !j.DueAt.Equal(now) {
		t.Errorf("after an update repeating the expected admit time: due %v, want still now (%v): the patient is there", j.DueAt, now)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM prefetch_job`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d jobs (%v), want one per visit", n, err)
	}
}
