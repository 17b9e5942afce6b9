// Package planner turns care events into prefetch jobs. It consumes the
// CARE_EVENTS stream (durable pull consumer "planner"), evaluates the
// triggers/rules rule set, writes each job as a prefetch_job row and a FHIR
// Task in one PostgreSQL transaction, publishes the job on the PREFETCH_JOBS
// stream, and only then acknowledges the event.
//
// Nothing is lost or duplicated by a crash at any point:
//   - before commit: the event is redelivered and planned again;
//   - after commit, before publish: the redelivered event finds its jobs by
//     their idempotency key (rule, patient, trigger), creates nothing, and
//     publishes the ones still marked unpublished; the sweeper does the same
//     for jobs whose event was acknowledged;
//   - after publish, before ack or before the published flag is set: the
//     republished message carries the same Nats-Msg-Id and the job stream's
//     duplicate window drops it.
package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
	cejs "github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/rules"
)

// The job stream. The prefetch worker consumes it with one consumer per
// lane, serving stat before routine.
const (
	JobsStream     = "PREFETCH_JOBS"
	SubjectStat    = "priorflow.jobs.stat"
	SubjectRoutine = "priorflow.jobs.routine"
	// HeaderDueAt carries the job's due time (RFC 3339); a worker that
	// receives a job early waits (NakWithDelay) until then.
	HeaderDueAt = "Priorflow-Due-At"
	// ConsumerName is the durable consumer on CARE_EVENTS.
	ConsumerName = "planner"
)

// Subject returns the job stream subject of a lane.
func Subject(l rules.Lane) string {
	if l == rules.LaneStat {
		return SubjectStat
	}
	return SubjectRoutine
}

// JobMessage is the payload on PREFETCH_JOBS. The prefetch_job row stays
// the source of truth: a worker re-reads it and drops a message whose
// revision is no longer current or whose job is no longer requested.
type JobMessage struct {
	ID         string                `json:"id"`
	Revision   int                   `json:"revision"`
	TaskID     string                `json:"taskId"`
	Rule       string                `json:"rule"`
	Lane       rules.Lane            `json:"lane"`
	Priority   triggers.Priority     `json:"priority"`
	DueAt      time.Time             `json:"dueAt"`
	NeedBy     *time.Time            `json:"needBy,omitempty"`
	PatientKey string                `json:"patientKey"`
	Patient    []triggers.Identifier `json:"patient"`
	PatientRef string                `json:"patientRef,omitempty"`
	Criteria   rules.Criteria        `json:"criteria"`
}

// MsgID is the Nats-Msg-Id of a job revision: the job id for the first,
// "<id>.r<revision>" for later ones (a reschedule must not be dropped as a
// duplicate of the original).
func MsgID(id string, revision int) string {
	if revision <= 1 {
		return id
	}
	return fmt.Sprintf("%s.r%d", id, revision)
}

// Config holds the planner's dependencies and tuning.
type Config struct {
	Rules     *rules.Config
	Store     *postgres.Store // its registry must hold Task (fhir.Task()); Patient is used when present
	JetStream jetstream.JetStream
	Logger    *slog.Logger

	// BatchSize is how many events are planned in one transaction.
	BatchSize int
	// SweepEvery is how often unpublished jobs are republished.
	SweepEvery time.Duration
	// StreamReplicas is the replica count of PREFETCH_JOBS in a cluster
	// (the same PRIORFLOW_STREAM_REPLICAS the api gives CARE_EVENTS).
	StreamReplicas int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Backoff are the waits before an event is delivered again after its
	// delivery was not acknowledged (the planner stopped), the last one
	// repeating; nil means 30s, 1m, 5m, 15m, 30m.
	Backoff []time.Duration
	// RetryMaxDelay caps the wait the planner asks for before an event
	// whose planning failed is delivered again (the wait doubles from a
	// second; JetStream adds the Backoff step beyond the first); 0 means
	// 5 minutes.
	RetryMaxDelay time.Duration
	// Metrics, when set, registers priorflow_patient_merges_total and
	// priorflow_patient_cross_references_total.
	Metrics prometheus.Registerer
}

// Planner plans prefetch jobs from care events.
type Planner struct {
	store *postgres.Store
	js    jetstream.JetStream
	log   *slog.Logger
	cfg   Config
	rs    atomic.Pointer[rules.Config]
	// merges counts the patient merges planned, xrefs the Patients
	// cross-referenced, by outcome.
	merges, xrefs *prometheus.CounterVec

	// testCrashBeforeAck, when set and returning true, makes the planner
	// drop a processed batch without acknowledging it (and nak it so that
	// it is redelivered at once), as a crash would.
	testCrashBeforeAck func() bool
}

// New returns a planner; call EnsureStreams before Run.
func New(cfg Config) (*Planner, error) {
	switch {
	case cfg.Rules == nil || cfg.Store == nil || cfg.JetStream == nil || cfg.Logger == nil:
		return nil, errors.New("planner: rules, store, JetStream and logger are required")
	case cfg.Store.Registry().Type("Task") == nil:
		return nil, errors.New("planner: the store's registry must include Task (fhir.Task())")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryMaxDelay <= 0 {
		cfg.RetryMaxDelay = 5 * time.Minute
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = []time.Duration{30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute}
	}
	p := &Planner{store: cfg.Store, js: cfg.JetStream, log: cfg.Logger, cfg: cfg,
		merges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_patient_merges_total",
			Help: "Patient merges (ADT^A40) planned: applied to the local Patients, or unresolved (several Patients carry the identifiers, or none has a system)."},
			[]string{"outcome"}),
		xrefs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "priorflow_patient_cross_references_total",
			Help: "Care events whose identifiers were added to the one local Patient they name (added), that named several or a conflicting one (unresolved), or whose ADT demographics updated it (demographics)."},
			[]string{"outcome"})}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{p.merges, p.xrefs} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("planner: metrics: %w", err)
			}
		}
	}
	p.rs.Store(cfg.Rules)
	return p, nil
}

// SetRules replaces the rule set (a config reload); events planned after it
// returns use the new rules.
func (p *Planner) SetRules(rs *rules.Config) { p.rs.Store(rs) }

func (p *Planner) rules() *rules.Config { return p.rs.Load() }

// EnsureStreams creates or updates the job stream and the planner's
// consumer on CARE_EVENTS (which the intake creates: triggers/jetstream).
//
// PREFETCH_JOBS uses WorkQueue retention: a job message is work for exactly
// one worker and is removed once acknowledged; the database row, not the
// stream, is the record of the job (history, state, Task). WorkQueue lets
// the worker have one consumer per lane (their filters do not overlap), which
// is how it serves stat before routine.
func (p *Planner) EnsureStreams(ctx context.Context) error {
	_, err := p.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "Priorflow prefetch jobs (planner.JobMessage JSON) by lane",
		Subjects:    []string{SubjectStat, SubjectRoutine},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Replicas:    max(p.cfg.StreamReplicas, 1),
		// Long enough to cover a sweeper republishing after a crash.
		Duplicates: time.Hour,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", JobsStream, err)
	}
	_, err = p.js.CreateOrUpdateConsumer(ctx, cejs.StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "Priorflow planner: care events to prefetch jobs",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// A batch is planned in well under a second; an unacknowledged
		// event (the planner died) comes back after AckWait, then backs off.
		AckWait: p.cfg.Backoff[0],
		BackOff: p.cfg.Backoff,
		// Never given up on: an event that cannot be planned while the
		// database is down, or while a release cannot plan, is planned
		// when it is back. With ten deliveries, about three hours of
		// failures dropped it, and its priors were never fetched. What
		// redelivery cannot fix (an event that does not decode) is
		// terminated in handle.
		MaxDeliver:    -1,
		MaxAckPending: 4 * p.cfg.BatchSize,
		FilterSubject: triggers.SubjectPrefix + ">",
	})
	if err != nil {
		return fmt.Errorf("ensure consumer %s on %s: %w", ConsumerName, cejs.StreamName, err)
	}
	return nil
}

// Run consumes care events until ctx is cancelled, then finishes the batch
// in flight and returns nil. It also runs the sweeper.
func (p *Planner) Run(ctx context.Context) error {
	cons, err := p.js.Consumer(ctx, cejs.StreamName, ConsumerName)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: nothing was fetched
		}
		return fmt.Errorf("planner: consumer: %w", err)
	}
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		p.sweepLoop(ctx)
	}()
	defer func() { <-sweepDone }()
	for ctx.Err() == nil {
		msgs, err := p.fetch(cons)
		if err != nil {
			p.log.Warn("planner: fetch", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		// In-flight work finishes even when shutdown starts.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		p.handle(hctx, msgs)
		cancel()
	}
	return nil
}

// fetch returns what is waiting, up to a batch, or waits briefly for one.
func (p *Planner) fetch(cons jetstream.Consumer) ([]jetstream.Msg, error) {
	collect := func(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
		if err != nil {
			return nil, err
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, err
		}
		return out, nil
	}
	msgs, err := collect(cons.FetchNoWait(p.cfg.BatchSize))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	msgs, err = collect(cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second)))
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	more, err := collect(cons.FetchNoWait(p.cfg.BatchSize - 1))
	return append(msgs, more...), err
}

// handle plans a batch of events in one transaction, publishes the jobs,
// and acknowledges the events. When the batch transaction fails, each event
// is planned on its own so that one bad event does not hold up the rest.
func (p *Planner) handle(ctx context.Context, msgs []jetstream.Msg) {
	evs := make([]*triggers.CareEvent, 0, len(msgs))
	ok := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		ev, err := decode(m.Data())
		if err != nil {
			// Redelivery cannot fix a malformed event: drop it, loudly.
			p.log.Error("planner: dropping invalid care event", "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		evs, ok = append(evs, ev), append(ok, m)
	}
	if len(evs) == 0 {
		return
	}
	out, err := p.planAll(ctx, evs)
	if err != nil {
		p.log.Warn("planner: batch failed; planning its events one by one", "events", len(evs), "err", err)
		for i, ev := range evs {
			o, err := p.PlanEvent(ctx, ev)
			if err != nil {
				p.log.Error("planner: plan event", "event", ev.ID, "kind", ev.Kind, "err", err)
				p.nak(ok[i])
				continue
			}
			p.finish(ctx, o, ok[i:i+1])
		}
		return
	}
	p.finish(ctx, out, ok)
}

func (p *Planner) finish(ctx context.Context, out Outcome, msgs []jetstream.Msg) {
	if err := p.publish(ctx, out.Publish); err != nil {
		// The jobs are committed and unpublished: the redelivered events
		// (or the sweeper) publish them.
		p.log.Warn("planner: publish jobs", "jobs", len(out.Publish), "err", err)
		for _, m := range msgs {
			p.nak(m)
		}
		return
	}
	if p.testCrashBeforeAck != nil && p.testCrashBeforeAck() {
		for _, m := range msgs {
			_ = m.Nak()
		}
		return
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			p.log.Warn("planner: ack", "err", err) // redelivered; planning it again is a no-op
		}
	}
	p.merges.WithLabelValues("applied").Add(float64(out.Merged))
	p.merges.WithLabelValues("unresolved").Add(float64(out.MergesUnresolved))
	p.xrefs.WithLabelValues("added").Add(float64(out.CrossReferenced))
	p.xrefs.WithLabelValues("unresolved").Add(float64(out.CrossReferencesUnresolved))
	p.xrefs.WithLabelValues("demographics").Add(float64(out.DemographicsUpdated))
}

// nak asks for redelivery after a delay growing with the attempts.
func (p *Planner) nak(m jetstream.Msg) {
	delay := time.Second
	if md, err := m.Metadata(); err == nil {
		delay = time.Second << min(md.NumDelivered, 9)
	}
	_ = m.NakWithDelay(min(delay, p.cfg.RetryMaxDelay))
}

func decode(data []byte) (*triggers.CareEvent, error) {
	var ev triggers.CareEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("decode care event: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("care event %s: %w", ev.ID, err)
	}
	return &ev, nil
}

// PlanEvent plans one event in its own transaction, without publishing.
func (p *Planner) PlanEvent(ctx context.Context, ev *triggers.CareEvent) (Outcome, error) {
	return p.planAll(ctx, []*triggers.CareEvent{ev})
}

func (p *Planner) planAll(ctx context.Context, evs []*triggers.CareEvent) (Outcome, error) {
	var out Outcome
	now := p.cfg.Now().UTC().Truncate(time.Microsecond)
	refs, err := p.resolvePatients(ctx, evs)
	if err != nil {
		return Outcome{}, err
	}
	rs := p.rules()
	err = p.store.InTx(ctx, func(tx *postgres.Tx) error {
		out = Outcome{}
		for _, ev := range evs {
			if !crossReferences(ev, refs) {
				continue
			}
			o, err := p.crossReference(ctx, tx, ev)
			if err != nil {
				return fmt.Errorf("cross-reference event %s: %w", ev.ID, err)
			}
			out.add(o)
		}
		// Runs of events that only create jobs (bookings, arrivals,
		// orders: the bulk of a burst) are planned together, a few
		// statements per run; a reschedule, cancellation or merge is
		// applied on its own, in order, and sees every earlier write.
		for i := 0; i < len(evs); {
			if !createsOnly(evs[i]) {
				o, err := p.apply(ctx, tx, rs, evs[i], refs, now)
				if err != nil {
					return fmt.Errorf("plan event %s: %w", evs[i].ID, err)
				}
				out.add(o)
				i++
				continue
			}
			j := i + 1
			for j < len(evs) && createsOnly(evs[j]) {
				j++
			}
			o, err := p.planRun(ctx, tx, rs, evs[i:j], refs, now)
			if err != nil {
				return err
			}
			out.add(o)
			i = j
		}
		return nil
	})
	if err != nil {
		return Outcome{}, err
	}
	out.Publish = latest(out.Publish)
	return out, nil
}

// latest keeps the last revision of each job (a batch may touch a job
// twice).
func latest(jobs []*Job) []*Job {
	idx := map[string]int{}
	out := jobs[:0]
	for _, j := range jobs {
		if i, seen := idx[j.ID]; seen {
			out[i] = j
			continue
		}
		idx[j.ID] = len(out)
		out = append(out, j)
	}
	return out
}

// Publish publishes jobs on the job stream and marks them published.
func (p *Planner) publish(ctx context.Context, jobs []*Job) error {
	if len(jobs) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(jobs))
	for _, j := range jobs {
		data, err := json.Marshal(JobMessage{ID: j.ID, Revision: j.Revision, TaskID: j.TaskID, Rule: j.Rule, Lane: j.Lane,
			Priority: j.Priority, DueAt: j.DueAt, NeedBy: j.NeedBy, PatientKey: j.PatientKey, Patient: j.Patient,
			PatientRef: j.PatientRef, Criteria: j.Criteria})
		if err != nil {
			return fmt.Errorf("publish job %s: %w", j.ID, err)
		}
		msg := &nats.Msg{Subject: Subject(j.Lane), Data: data, Header: nats.Header{}}
		msg.Header.Set(HeaderDueAt, j.DueAt.UTC().Format(time.RFC3339Nano))
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(MsgID(j.ID, j.Revision)), jetstream.WithExpectStream(JobsStream))
		if err != nil {
			return fmt.Errorf("publish job %s: %w", j.ID, err)
		}
		futures = append(futures, f)
	}
	ids := make([]string, 0, len(jobs))
	revs := make([]int32, 0, len(jobs))
	var errs []error
	for i, f := range futures {
		select {
		case <-f.Ok():
			ids, revs = append(ids, jobs[i].ID), append(revs, int32(jobs[i].Revision))
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("job %s: %w", jobs[i].ID, err))
		case <-ctx.Done():
			return fmt.Errorf("publish jobs: %w", ctx.Err())
		}
	}
	if len(ids) > 0 {
		_, err := p.store.Pool().Exec(ctx, `UPDATE prefetch_job j SET published = true
			FROM unnest($1::text[], $2::int[]) AS u(id, revision)
			WHERE j.id = u.id AND j.revision = u.revision`, ids, revs)
		if err != nil {
			// Published but not marked: the sweeper republishes and the
			// duplicate window drops the copy.
			p.log.Warn("planner: mark jobs published", "err", err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish jobs: %w", errors.Join(errs...))
	}
	return nil
}

// sweepGrace leaves jobs committed moments ago to the publisher in flight.
const sweepGrace = 10 * time.Second

func (p *Planner) sweepLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := p.Sweep(ctx, sweepGrace); err != nil {
				p.log.Warn("planner: sweep", "err", err)
			} else if n > 0 {
				p.log.Info("planner: republished jobs", "jobs", n)
			}
		}
	}
}

// Sweep publishes requested jobs left unpublished for longer than grace (a
// crash or a NATS outage after commit). It returns how many it published.
func (p *Planner) Sweep(ctx context.Context, grace time.Duration) (int, error) {
	total := 0
	for {
		rows, err := p.store.Pool().Query(ctx, `SELECT `+jobColumns+` FROM prefetch_job
			WHERE NOT published AND state = 'requested' AND updated_at <= $1
			ORDER BY updated_at LIMIT 500`, p.cfg.Now().Add(-grace))
		if err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Job, error) { return scanJob(r) })
		if err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		if len(jobs) == 0 {
			return total, nil
		}
		if err := p.publish(ctx, jobs); err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		total += len(jobs)
		if len(jobs) < 500 {
			return total, nil
		}
	}
}
