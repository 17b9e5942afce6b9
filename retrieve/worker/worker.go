// Package worker is the prefetch worker: it consumes the PREFETCH_JOBS
// stream the planner (triggers/planner) fills, runs each job's network
// search (package search) and pulls the selected studies into the local
// archive (package retrieve), keeping the job row and its FHIR Task up to
// date. It lives under retrieve because retrieval is what it drives; the
// JetStream plumbing is the adapter part, the rest is the job's life cycle.
//
// Lanes: one durable pull consumer per lane on the WorkQueue stream. Each
// cycle fetches from the stat consumer first and gives the routine lane only
// what is left, keeping one slot free for stat, so a routine backlog never
// delays a stat job. Any number of replicas share the two consumers.
//
// The prefetch_job row, not the message, is the source of truth: a message
// whose revision is no longer current, or whose job is no longer requested
// or in progress, is dropped. An operator's cancel (planner.CancelJob) is
// honoured the same way: a cancelled job is skipped when picked up, and a
// running one stops at the next study boundary, or at the next heartbeat
// during a pull, leaving its Task cancelled. A job not yet due is
// negatively acknowledged with a delay until it is (it never blocks the
// consumer). While a job runs its message is kept alive with InProgress; on
// shutdown in-flight jobs get a grace period, then are handed back (Nak)
// and resume, on any replica, with what the archive lacks.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/retrieve"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/priorflow/priorflow/triggers/rules"
)

// Durable consumer names on PREFETCH_JOBS, one per lane.
const (
	ConsumerStat    = "prefetch-stat"
	ConsumerRoutine = "prefetch-routine"
)

// Searcher runs a job's network search; *search.Searcher implements it.
type Searcher interface {
	Search(ctx context.Context, job search.Job) (*search.Result, error)
}

// Publisher announces a study made available; the subscriptions/jetstream
// Publisher implements it.
type Publisher interface {
	PublishStudyAvailable(ctx context.Context, ev *subscriptions.StudyAvailable) error
}

// Config holds the worker's dependencies and tuning.
type Config struct {
	JetStream jetstream.JetStream
	// Store is the FHIR store; its registry must hold Task, and Provenance
	// and AuditEvent to record imports (otherwise they are only logged).
	Store     *postgres.Store
	Archive   *archive.Archive
	Searcher  Searcher
	Retriever *retrieve.Retriever
	Publisher Publisher
	Metrics   *Metrics
	Logger    *slog.Logger

	// Concurrency is how many jobs run at once (default 4); one slot is
	// kept for the stat lane when it is more than 1.
	Concurrency int
	// AckWait is the consumers' ack wait (default 30s); running jobs
	// report progress at a third of it.
	AckWait time.Duration
	// Grace is how long shutdown lets in-flight jobs finish before they
	// are handed back (default 0: at once).
	Grace time.Duration
	// JobRetry spaces the attempts of a job whose search could not reach a
	// source (default retrieve.DefaultBackoff()); after Tries the job fails.
	JobRetry retrieve.Backoff
	// FetchWait is how long an idle cycle waits on the stat lane (default
	// 250ms): the most a routine job waits for an idle worker.
	FetchWait time.Duration
	Now       func() time.Time
}

// Worker runs prefetch jobs.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running int
	routine int
	freed   chan struct{}
}

// New returns a worker; call EnsureConsumers before Run.
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.JetStream == nil || cfg.Store == nil || cfg.Archive == nil || cfg.Searcher == nil || cfg.Retriever == nil ||
		cfg.Publisher == nil || cfg.Logger == nil:
		return nil, errors.New("worker: JetStream, store, archive, searcher, retriever, publisher and logger are required")
	case cfg.Store.Registry().Type("Task") == nil:
		return nil, errors.New("worker: the store's registry must include Task (fhir.Task())")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.JobRetry.Tries <= 0 {
		cfg.JobRetry = retrieve.DefaultBackoff()
	}
	if cfg.JobRetry.Multiplier < 1 {
		cfg.JobRetry.Multiplier = 2
	}
	if cfg.JobRetry.Max <= 0 {
		cfg.JobRetry.Max = 10 * time.Minute
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Worker{cfg: cfg, log: cfg.Logger, freed: make(chan struct{}, 1)}, nil
}

// EnsureConsumers creates or updates the two lane consumers on the job
// stream (which planner.EnsureStreams creates).
func (w *Worker) EnsureConsumers(ctx context.Context) error {
	for _, c := range []struct{ name, subject string }{{ConsumerStat, planner.SubjectStat}, {ConsumerRoutine, planner.SubjectRoutine}} {
		_, err := w.cfg.JetStream.CreateOrUpdateConsumer(ctx, planner.JobsStream, jetstream.ConsumerConfig{
			Durable:       c.name,
			Description:   "Priorflow prefetch worker, lane " + c.subject,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.cfg.AckWait,
			// Jobs wait for their due time by redelivery: never give up.
			MaxDeliver:    -1,
			MaxAckPending: 1000,
			FilterSubject: c.subject,
		})
		if err != nil {
			return fmt.Errorf("ensure consumer %s: %w", c.name, err)
		}
	}
	return nil
}

// Run consumes jobs until ctx is cancelled, then lets in-flight jobs finish
// for the grace period, hands back the others and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	stat, err := w.cfg.JetStream.Consumer(ctx, planner.JobsStream, ConsumerStat)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: nothing was fetched
		}
		return fmt.Errorf("worker: consumer %s: %w", ConsumerStat, err)
	}
	routine, err := w.cfg.JetStream.Consumer(ctx, planner.JobsStream, ConsumerRoutine)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: nothing was fetched
		}
		return fmt.Errorf("worker: consumer %s: %w", ConsumerRoutine, err)
	}
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		free, routineFree := w.slots()
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-w.freed:
			}
			continue
		}
		msgs := w.fetchNoWait(stat, free)
		nstat := len(msgs)
		if n := min(free-nstat, routineFree); n > 0 {
			msgs = append(msgs, w.fetchNoWait(routine, n)...)
		}
		if len(msgs) == 0 {
			msgs = w.fetchWait(ctx, stat)
			nstat = len(msgs)
		}
		for i, m := range msgs {
			isRoutine := i >= nstat
			w.acquire(isRoutine)
			wg.Go(func() {
				defer w.release(isRoutine)
				w.handle(jobCtx, m)
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if w.cfg.Grace > 0 {
		select {
		case <-done:
		case <-time.After(w.cfg.Grace):
		}
	}
	cancelJobs()
	<-done
	return nil
}

func (w *Worker) slots() (free, routineFree int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	free = w.cfg.Concurrency - w.running
	routineMax := w.cfg.Concurrency
	if routineMax > 1 {
		routineMax-- // one slot is always left for stat
	}
	return free, max(routineMax-w.routine, 0)
}

func (w *Worker) acquire(routine bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running++
	if routine {
		w.routine++
	}
	w.cfg.Metrics.running.Set(float64(w.running))
}

func (w *Worker) release(routine bool) {
	w.mu.Lock()
	w.running--
	if routine {
		w.routine--
	}
	w.cfg.Metrics.running.Set(float64(w.running))
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

func (w *Worker) fetchNoWait(c jetstream.Consumer, n int) []jetstream.Msg {
	b, err := c.FetchNoWait(n)
	return w.collect(b, err)
}

func (w *Worker) fetchWait(ctx context.Context, c jetstream.Consumer) []jetstream.Msg {
	b, err := c.Fetch(1, jetstream.FetchMaxWait(w.cfg.FetchWait))
	msgs := w.collect(b, err)
	if err != nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return msgs
}

func (w *Worker) collect(b jetstream.MessageBatch, err error) []jetstream.Msg {
	if err != nil {
		w.log.Warn("worker: fetch", "err", err)
		return nil
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		w.log.Warn("worker: fetch", "err", err)
	}
	return out
}

// maxNakDelay bounds one wait for a due time: a job moved earlier is seen
// at most this late (the planner publishes a new revision anyway).
const maxNakDelay = time.Hour

// handle runs one message to its acknowledgement.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	var jm planner.JobMessage
	if err := json.Unmarshal(m.Data(), &jm); err != nil || jm.ID == "" {
		w.log.Error("worker: dropping an invalid job message", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	now := w.cfg.Now()
	if due, err := time.Parse(time.RFC3339Nano, m.Headers().Get(planner.HeaderDueAt)); err == nil && due.After(now) {
		_ = m.NakWithDelay(min(due.Sub(now), maxNakDelay))
		return
	}
	job, err := w.load(ctx, jm.ID)
	switch {
	case errors.Is(err, errNoJob):
		w.log.Warn("worker: message for an unknown job", "job", jm.ID)
		_ = m.Term()
		return
	case err != nil:
		w.log.Error("worker: load job", "job", jm.ID, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	if job.Revision != jm.Revision || (job.State != planner.StateRequested && job.State != planner.StateInProgress) {
		w.log.Debug("worker: dropping a stale job message", "job", job.ID, "revision", jm.Revision, "current", job.Revision, "state", job.State)
		w.cfg.Metrics.jobs.WithLabelValues("dropped").Inc()
		_ = m.Ack()
		return
	}
	if job.DueAt.After(now) {
		_ = m.NakWithDelay(min(job.DueAt.Sub(now), maxNakDelay))
		return
	}

	// Keep the message ours while the job runs, and stop the run when an
	// operator cancels the job meanwhile (planner.CancelJob): the heartbeat
	// re-reads the row, so even a long study pull stops within a beat.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				_ = m.InProgress()
				if !w.stillOurs(hbCtx, job) {
					stopRun(errJobChanged)
				}
			}
		}
	}()
	v := w.run(runCtx, job)
	stopHB()
	if errors.Is(context.Cause(runCtx), errJobChanged) && ctx.Err() == nil {
		v = w.abandon(job, "study pull interrupted")
	}
	switch {
	case v.handBack:
		w.cfg.Metrics.jobs.WithLabelValues("handed-back").Inc()
		_ = m.Nak()
	case v.retryIn > 0:
		w.cfg.Metrics.jobs.WithLabelValues("retry").Inc()
		_ = m.NakWithDelay(v.retryIn)
	default:
		_ = m.Ack()
	}
}

// verdict is what becomes of a job's message.
type verdict struct {
	handBack bool
	retryIn  time.Duration
}

var (
	errNoJob = errors.New("no such job")
	// errJobChanged stops a run whose job was cancelled meanwhile.
	errJobChanged = errors.New("job cancelled or changed meanwhile")
)

// job is the part of a prefetch_job row the worker uses.
type job struct {
	ID, Rule, EventID, TaskID string
	Lane                      rules.Lane
	Patient                   []triggers.Identifier
	PatientRef                string
	Criteria                  rules.Criteria
	EventAt, DueAt, CreatedAt time.Time
	State                     planner.State
	Revision, Attempts        int
}

func (w *Worker) load(ctx context.Context, id string) (*job, error) {
	j := &job{}
	var patient, criteria []byte
	err := w.cfg.Store.Pool().QueryRow(ctx, `SELECT id, rule, event_id, task_id, lane, patient, criteria, event_at, due_at,
			created_at, state, revision, attempts
		FROM prefetch_job WHERE id = $1`, id).
		Scan(&j.ID, &j.Rule, &j.EventID, &j.TaskID, &j.Lane, &patient, &criteria, &j.EventAt, &j.DueAt, &j.CreatedAt, &j.State,
			&j.Revision, &j.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoJob
	}
	if err != nil {
		return nil, fmt.Errorf("load job %s: %w", id, err)
	}
	var p struct {
		Identifiers []triggers.Identifier `json:"identifiers"`
		Ref         string                `json:"ref"`
	}
	if err := json.Unmarshal(patient, &p); err != nil {
		return nil, fmt.Errorf("load job %s: patient: %w", id, err)
	}
	j.Patient, j.PatientRef = p.Identifiers, p.Ref
	if err := json.Unmarshal(criteria, &j.Criteria); err != nil {
		return nil, fmt.Errorf("load job %s: criteria: %w", id, err)
	}
	return j, nil
}

// run executes one attempt of a job.
func (w *Worker) run(ctx context.Context, j *job) verdict {
	log := w.log.With("job", j.ID, "rule", j.Rule)
	ok, err := w.claim(ctx, j)
	if err != nil {
		if ctx.Err() != nil {
			return verdict{handBack: true}
		}
		log.Error("worker: claim job", "err", err)
		return verdict{retryIn: 5 * time.Second}
	}
	if !ok {
		w.cfg.Metrics.jobs.WithLabelValues("dropped").Inc()
		return verdict{} // changed meanwhile: a newer message follows
	}

	res, err := w.cfg.Searcher.Search(ctx, search.Job{ID: j.ID, Rule: j.Rule, Patient: j.Patient, PatientRef: j.PatientRef, Criteria: j.Criteria})
	if err != nil {
		if ctx.Err() != nil {
			return verdict{handBack: true}
		}
		log.Error("worker: search", "err", err)
		return w.retryOrFail(ctx, j, "search failed: "+err.Error())
	}
	var down []string
	for _, o := range res.Sources {
		if o.Status == search.StatusFailed || o.Status == search.StatusCircuitOpen {
			down = append(down, o.Source)
		}
	}
	if !w.stillOurs(ctx, j) {
		return w.abandon(j, "after the search")
	}
	w.note(ctx, j, "retrieving", fmt.Sprintf("searched: %d sources, %d studies to retrieve, %d skipped%s",
		len(res.Sources), len(res.Retrieve), len(res.Skipped), unreachable(down)), nil)

	var failures []string
	var outputs []string
	for _, sk := range res.Skipped {
		if sk.Reason == search.SkipPresent && res.Indexed[sk.StudyInstanceUID] != "" {
			outputs = append(outputs, "ImagingStudy/"+res.Indexed[sk.StudyInstanceUID])
		}
	}
	for _, sel := range res.Retrieve {
		st := retrieve.FromSelected(sel)
		// A study boundary: a cancelled job pulls no further study.
		if !w.stillOurs(ctx, j) {
			return w.abandon(j, "before study "+st.StudyInstanceUID)
		}
		w.note(ctx, j, "retrieving", fmt.Sprintf("study %s: retrieving from %s", st.StudyInstanceUID, st.Source), nil)
		// The heartbeat of handle reports progress to JetStream.
		out, err := w.cfg.Retriever.Retrieve(ctx, st, nil)
		if ctx.Err() != nil {
			log.Info("worker: handing back an interrupted job", "study", st.StudyInstanceUID)
			return verdict{handBack: true}
		}
		if out != nil && len(out.Quarantined) > 0 {
			if err := w.reviewQuarantine(ctx, j, st, out.Quarantined); err != nil {
				log.Error("worker: review task", "study", st.StudyInstanceUID, "err", err)
			}
		}
		if err != nil {
			w.cfg.Metrics.failures.WithLabelValues("retrieve").Inc()
			failures = append(failures, fmt.Sprintf("study %s: %v", st.StudyInstanceUID, err))
			w.note(ctx, j, "retrieving", fmt.Sprintf("study %s: failed: %v", st.StudyInstanceUID, err), nil)
			continue
		}
		ref, err := w.complete(ctx, j, st, out)
		if err != nil {
			if ctx.Err() != nil {
				return verdict{handBack: true}
			}
			w.cfg.Metrics.failures.WithLabelValues("index").Inc()
			failures = append(failures, fmt.Sprintf("study %s: %v", st.StudyInstanceUID, err))
			w.note(ctx, j, "retrieving", fmt.Sprintf("study %s: failed: %v", st.StudyInstanceUID, err), nil)
			continue
		}
		outputs = append(outputs, ref)
		msg := fmt.Sprintf("study %s: complete (%d new, %d already here, %d bytes)", st.StudyInstanceUID, out.Stored, out.Existed, out.Bytes)
		if len(out.Quarantined) > 0 {
			msg += fmt.Sprintf("; %d instances quarantined for review", len(out.Quarantined))
		}
		w.note(ctx, j, "retrieving", msg, []string{ref})
	}
	switch {
	case len(failures) > 0:
		return w.finish(ctx, j, planner.StateFailed, strings.Join(failures, "; "), outputs)
	case len(down) > 0:
		return w.retryOrFail(ctx, j, "sources unreachable: "+strings.Join(down, ", "))
	}
	return w.finish(ctx, j, planner.StateCompleted, "", outputs)
}

// stillOurs reports whether j is still the job this attempt runs: the same
// revision, requested or in progress. An operator's cancel ends it and bumps
// the revision (planner.CancelJob). A failed read answers true: finish and
// note check again under the row lock, so the Task is never overwritten.
func (w *Worker) stillOurs(ctx context.Context, j *job) bool {
	var state planner.State
	var revision int
	err := w.cfg.Store.Pool().QueryRow(ctx, `SELECT state, revision FROM prefetch_job WHERE id = $1`, j.ID).Scan(&state, &revision)
	if err != nil {
		return true
	}
	return revision == j.Revision && (state == planner.StateRequested || state == planner.StateInProgress)
}

// abandon ends an attempt whose job was cancelled meanwhile: the row and
// the Task are as the operator left them, and the message is acknowledged.
func (w *Worker) abandon(j *job, where string) verdict {
	w.cfg.Metrics.jobs.WithLabelValues("cancelled").Inc()
	w.log.Info("worker: job cancelled meanwhile; stopping", "job", j.ID, "at", where)
	return verdict{}
}

func unreachable(down []string) string {
	if len(down) == 0 {
		return ""
	}
	return "; unreachable: " + strings.Join(down, ", ")
}

// retryOrFail schedules another attempt with backoff, or fails the job
// once the tries are spent.
func (w *Worker) retryOrFail(ctx context.Context, j *job, reason string) verdict {
	if j.Attempts >= w.cfg.JobRetry.Tries {
		w.cfg.Metrics.failures.WithLabelValues("search").Inc()
		return w.finish(ctx, j, planner.StateFailed, reason, nil)
	}
	d := w.cfg.JobRetry.Delay(j.Attempts)
	w.cfg.Metrics.retries.WithLabelValues("job").Inc()
	w.note(ctx, j, "searching", fmt.Sprintf("%s; attempt %d of %d, next in %s", reason, j.Attempts, w.cfg.JobRetry.Tries, d), nil)
	w.setError(ctx, j, reason)
	return verdict{retryIn: d}
}

// Ordering of output references is stable for tests and readers.
func sortedUnique(refs []string) []string {
	sort.Strings(refs)
	out := refs[:0]
	for i, r := range refs {
		if i == 0 || r != refs[i-1] {
			out = append(out, r)
		}
	}
	return out
}
