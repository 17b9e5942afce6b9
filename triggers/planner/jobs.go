package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

// State is a job's state; the names are FHIR Task status codes.
type State string

const (
	StateRequested  State = "requested"
	StateInProgress State = "in-progress"
	StateCompleted  State = "completed"
	StateFailed     State = "failed"
	StateCancelled  State = "cancelled"
)

// Job is a prefetch job row.
type Job struct {
	ID         string
	Key        string
	Rule       string
	PatientKey string
	Patient    []triggers.Identifier
	// PatientRef is the FHIR reference of the Task's for ("Patient/…"),
	// empty when the patient has no resource here.
	PatientRef string
	Trigger    string
	Placer     string
	OriginRef  string
	EventID    string
	EventAt    time.Time
	Criteria   rules.Criteria
	Lane       rules.Lane
	Priority   triggers.Priority
	LeadTime   string
	NeedBy     *time.Time
	DueAt      time.Time
	State      State
	TaskID     string
	Revision   int
	Published  bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// jobID derives the job id from its idempotency key, so that a retried
// plan after a crash produces the same id, Task id and Nats-Msg-Id.
func jobID(key string) string { return "pf-" + triggers.EventID("prefetch-job", key) }

const jobColumns = `id, idempotency_key, rule, patient_key, patient, trigger, placer, origin_ref, event_id, event_at,
	criteria, lane, priority, lead_time, need_by, due_at, state, task_id, revision, published, created_at, updated_at`

// scanJob scans jobColumns, then any extra columns the query selects after
// them into extra.
func scanJob(row pgx.Row, extra ...any) (*Job, error) {
	j := &Job{}
	var patient, criteria []byte
	dest := []any{&j.ID, &j.Key, &j.Rule, &j.PatientKey, &patient, &j.Trigger, &j.Placer, &j.OriginRef, &j.EventID, &j.EventAt,
		&criteria, &j.Lane, &j.Priority, &j.LeadTime, &j.NeedBy, &j.DueAt, &j.State, &j.TaskID, &j.Revision, &j.Published,
		&j.CreatedAt, &j.UpdatedAt}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	var p patientDoc
	if err := json.Unmarshal(patient, &p); err != nil {
		return nil, fmt.Errorf("job %s: patient: %w", j.ID, err)
	}
	j.Patient, j.PatientRef = p.Identifiers, p.Ref
	if err := json.Unmarshal(criteria, &j.Criteria); err != nil {
		return nil, fmt.Errorf("job %s: criteria: %w", j.ID, err)
	}
	return j, nil
}

// patientDoc is the patient column: identifiers plus the resolved reference.
type patientDoc struct {
	Identifiers []triggers.Identifier `json:"identifiers"`
	Ref         string                `json:"ref,omitempty"`
}

// Outcome is what planning one event did.
type Outcome struct {
	Created, Moved, Cancelled, Revived int
	// Suppressed counts matches held off by a rule's cooldown.
	Suppressed int
	// Merged counts merges that changed Patients; MergesUnresolved those
	// that could not say which (merge).
	Merged, MergesUnresolved int
	// CrossReferenced counts Patients that took identifiers an event
	// listed; CrossReferencesUnresolved events whose identifiers named
	// several Patients (crossReference).
	CrossReferenced, CrossReferencesUnresolved int
	// DemographicsUpdated counts Patients whose name, birth date or sex an
	// ADT message changed (crossReference).
	DemographicsUpdated int
	// Publish are the jobs whose current revision is not yet on the job
	// stream (new, moved, or left unpublished by an earlier crash).
	Publish []*Job
}

func (o *Outcome) add(x Outcome) {
	o.Created += x.Created
	o.Moved += x.Moved
	o.Cancelled += x.Cancelled
	o.Revived += x.Revived
	o.Suppressed += x.Suppressed
	o.Merged += x.Merged
	o.MergesUnresolved += x.MergesUnresolved
	o.CrossReferenced += x.CrossReferenced
	o.CrossReferencesUnresolved += x.CrossReferencesUnresolved
	o.DemographicsUpdated += x.DemographicsUpdated
	o.Publish = append(o.Publish, x.Publish...)
}

// apply plans one event inside tx. It is idempotent: applying the same event
// again changes nothing and returns the jobs still waiting to be published.
func (p *Planner) apply(ctx context.Context, tx *postgres.Tx, rs *rules.Config, ev *triggers.CareEvent, refs map[string]string, now time.Time) (Outcome, error) {
	var out Outcome
	pk, trig := rules.PatientKey(ev.Patient), rules.Trigger(ev)
	switch {
	case ev.Kind == triggers.PatientMerged:
		return p.merge(ctx, tx, ev)
	case rules.Cancels(ev.Kind):
		return p.cancel(ctx, tx, ev, pk, trig, now)
	case movesJobs(ev):
		moved, err := p.move(ctx, tx, ev, pk, trig, now)
		if err != nil {
			return out, err
		}
		out.add(moved)
	}

	for _, d := range rs.Plan(ev, now) {
		if !d.Match {
			continue
		}
		spec := d.Job
		if !spec.Cooldown.IsZero() {
			// Serialize planners on (rule, patient) so that two events of
			// the same patient cannot both pass the cooldown check.
			if err := tx.Lock(ctx, "prefetch-cooldown\x1f"+spec.Rule+"\x1f"+spec.PatientKey); err != nil {
				return out, err
			}
		}
		cur, err := scanJob(tx.PgxTx().QueryRow(ctx, `SELECT `+jobColumns+` FROM prefetch_job WHERE idempotency_key = $1 FOR UPDATE`, spec.Key))
		switch {
		case err == nil:
			x, err := p.update(ctx, tx, cur, ev, spec, now)
			if err != nil {
				return out, err
			}
			out.add(x)
			continue
		case !errors.Is(err, pgx.ErrNoRows):
			return out, fmt.Errorf("plan %s: read job: %w", spec.Rule, err)
		}
		if !spec.Cooldown.IsZero() {
			var last *time.Time
			err := tx.PgxTx().QueryRow(ctx, `SELECT max(created_at) FROM prefetch_job WHERE patient_key = $1 AND rule = $2 AND state <> 'cancelled'`,
				spec.PatientKey, spec.Rule).Scan(&last)
			if err != nil {
				return out, fmt.Errorf("plan %s: cooldown: %w", spec.Rule, err)
			}
			if last != nil && d.Rule.CoolingDown(*last, now) {
				out.Suppressed++
				continue
			}
		}
		j := newJob(ev, spec, refs, now)
		if err := p.insertJobs(ctx, tx, []*Job{j}); err != nil {
			return out, err
		}
		out.Created++
		out.Publish = append(out.Publish, j)
	}
	return out, nil
}

// update reconciles an existing job with a newer event for the same key.
func (p *Planner) update(ctx context.Context, tx *postgres.Tx, j *Job, ev *triggers.CareEvent, spec *rules.JobSpec, now time.Time) (Outcome, error) {
	var out Outcome
	newer := ev.OccurredAt.After(j.EventAt)
	switch {
	case j.State == StateCancelled && newer:
		// Booked again after a cancellation (same placer number).
		j.State, j.DueAt, j.NeedBy = StateRequested, spec.DueAt, spec.NeedBy
		out.Revived++
	case j.State == StateRequested && newer && !j.DueAt.Equal(spec.DueAt):
		j.DueAt, j.NeedBy = spec.DueAt, spec.NeedBy
		out.Moved++
	default:
		// The same event again, or an older one: nothing changes, but a
		// revision that never reached the stream is published now.
		if !j.Published && j.State == StateRequested {
			out.Publish = append(out.Publish, j)
		}
		return out, nil
	}
	j.EventID, j.EventAt = ev.ID, ev.OccurredAt
	if err := p.save(ctx, tx, j, now); err != nil {
		return out, err
	}
	out.Publish = append(out.Publish, j)
	return out, nil
}

// move applies a reschedule (see movesJobs) to every pending job of its
// trigger, whichever rule planned it: due = new start − the job's lead
// time.
func (p *Planner) move(ctx context.Context, tx *postgres.Tx, ev *triggers.CareEvent, pk, trig string, now time.Time) (Outcome, error) {
	var out Outcome
	jobs, err := p.pending(ctx, tx, ev, pk, trig)
	if err != nil {
		return out, err
	}
	for _, j := range jobs {
		if ev.Kind == triggers.PatientUpdated && j.NeedBy == nil {
			// Planned for a patient already there (an admission, say):
			// the expected admit time an update repeats does not make
			// it wait.
			continue
		}
		lead, err := rules.ParseDuration(j.LeadTime)
		if err != nil {
			return out, fmt.Errorf("reschedule job %s: lead time: %w", j.ID, err)
		}
		due, _ := rules.DueAt(ev.ScheduledStart, lead, ev, now)
		j.EventID, j.EventAt = ev.ID, ev.OccurredAt
		if due.Equal(j.DueAt) {
			if err := p.touch(ctx, tx, j); err != nil {
				return out, err
			}
			continue
		}
		j.DueAt, j.NeedBy = due, ev.ScheduledStart
		if j.Criteria.Lookback != "" && ev.ScheduledStart != nil {
			if lb, err := rules.ParseDuration(j.Criteria.Lookback); err == nil {
				since := lb.Before(*ev.ScheduledStart).UTC()
				j.Criteria.Since = &since
			}
		}
		if err := p.save(ctx, tx, j, now); err != nil {
			return out, err
		}
		out.Moved++
		out.Publish = append(out.Publish, j)
	}
	return out, nil
}

// cancel cancels the jobs of a trigger not yet started.
func (p *Planner) cancel(ctx context.Context, tx *postgres.Tx, ev *triggers.CareEvent, pk, trig string, now time.Time) (Outcome, error) {
	var out Outcome
	jobs, err := p.pending(ctx, tx, ev, pk, trig)
	if err != nil {
		return out, err
	}
	for _, j := range jobs {
		j.State, j.EventID, j.EventAt = StateCancelled, ev.ID, ev.OccurredAt
		if err := p.save(ctx, tx, j, now); err != nil {
			return out, err
		}
		out.Cancelled++
	}
	return out, nil
}

// pending locks the requested jobs of a trigger and patient that ev is not
// older than.
func (p *Planner) pending(ctx context.Context, tx *postgres.Tx, ev *triggers.CareEvent, pk, trig string) ([]*Job, error) {
	rows, err := tx.PgxTx().Query(ctx, `SELECT `+jobColumns+` FROM prefetch_job
		WHERE trigger = $1 AND patient_key = $2 AND state = 'requested' AND event_at <= $3
		ORDER BY id FOR UPDATE`, trig, pk, ev.OccurredAt)
	if err != nil {
		return nil, fmt.Errorf("pending jobs of %s: %w", trig, err)
	}
	defer rows.Close()
	var out []*Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("pending jobs of %s: %w", trig, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending jobs of %s: %w", trig, err)
	}
	return out, nil
}

// save writes a changed job as a new revision with its Task. A requested
// revision waits to be published; other states need no message (the worker
// re-reads the row before it starts a job).
func (p *Planner) save(ctx context.Context, tx *postgres.Tx, j *Job, now time.Time) error {
	j.Revision++
	j.Published = j.State != StateRequested
	j.UpdatedAt = now
	_, criteria, err := docs(j)
	if err != nil {
		return err
	}
	_, err = tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, due_at = $3, need_by = $4, criteria = $5, event_id = $6,
		event_at = $7, revision = $8, published = $9, updated_at = $10 WHERE id = $1`,
		j.ID, j.State, j.DueAt, j.NeedBy, criteria, j.EventID, j.EventAt, j.Revision, j.Published, now)
	if err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	task, err := p.task(j)
	if err != nil {
		return err
	}
	if _, _, err := tx.Put(ctx, task, 0); err != nil {
		return fmt.Errorf("update Task of job %s: %w", j.ID, err)
	}
	return nil
}

// touch records the event that confirmed a job without changing it.
func (p *Planner) touch(ctx context.Context, tx *postgres.Tx, j *Job) error {
	if _, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET event_id = $2, event_at = $3 WHERE id = $1`, j.ID, j.EventID, j.EventAt); err != nil {
		return fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nil
}

func docs(j *Job) (patient, criteria []byte, err error) {
	if patient, err = json.Marshal(patientDoc{Identifiers: j.Patient, Ref: j.PatientRef}); err != nil {
		return nil, nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	if criteria, err = json.Marshal(j.Criteria); err != nil {
		return nil, nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return patient, criteria, nil
}

// resolvePatients finds the Patient resources of events that carry no
// FHIR id, by identifier, a few dozen identifiers per search. It returns
// "Patient/<id>" keyed by "system|value"; an identifier shared by several
// Patients resolves to none. It runs before the writing transaction.
func (p *Planner) resolvePatients(ctx context.Context, evs []*triggers.CareEvent) (map[string]string, error) {
	reg := p.store.Registry()
	typ := reg.Type("Patient")
	if typ == nil {
		return nil, nil
	}
	var want []string
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Patient.FHIRID != "" {
			continue
		}
		for _, id := range ev.Patient.Identifiers {
			if k := id.System + "|" + id.Value; id.System != "" && !seen[k] {
				seen[k] = true
				want = append(want, escape(id.System)+"|"+escape(id.Value))
			}
		}
	}
	refs := map[string]string{}
	hits := map[string]int{}
	for _, chunk := range chunkValues(want, 1000) {
		q, err := search.Parse(reg, typ, url.Values{"identifier": {chunk}, "_count": {"1000"}}, search.Options{})
		if err != nil {
			return nil, fmt.Errorf("find patients: %w", err)
		}
		for {
			res, err := p.store.Search(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("find patients: %w", err)
			}
			for _, m := range res.Matches {
				var body struct {
					Identifier []struct{ System, Value string } `json:"identifier"`
				}
				if err := json.Unmarshal(m.Body, &body); err != nil {
					return nil, fmt.Errorf("find patients: Patient/%s: %w", m.ID, err)
				}
				for _, id := range body.Identifier {
					k := id.System + "|" + id.Value
					if seen[k] {
						refs[k] = "Patient/" + m.ID
						hits[k]++
					}
				}
			}
			if res.Next == nil {
				break
			}
			q.Cursor = res.Next
		}
	}
	for k, n := range hits {
		if n > 1 {
			delete(refs, k)
		}
	}
	return refs, nil
}

// chunkValues joins values with commas into strings of at most max bytes
// (the search parser's limit on one parameter value).
func chunkValues(values []string, max int) []string {
	var out []string
	var cur strings.Builder
	for _, v := range values {
		if cur.Len() > 0 && cur.Len()+1+len(v) > max {
			out = append(out, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(',')
		}
		cur.WriteString(v)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// patientRef is the reference of the event's Patient: its FHIR id, else
// the one Patient its identifiers name (resolvePatients). Identifiers that
// name several Patients name none, as the network search reads them.
func patientRef(pt triggers.Patient, refs map[string]string) string {
	if pt.FHIRID != "" {
		return "Patient/" + pt.FHIRID
	}
	ref := ""
	for _, id := range pt.Identifiers {
		r, ok := refs[id.System+"|"+id.Value]
		switch {
		case !ok:
		case ref == "":
			ref = r
		case r != ref:
			return ""
		}
	}
	return ref
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

// taskStatus maps a job state to Task.status (they share the codes).
func taskStatus(s State) string { return string(s) }

// fhirReference reports whether ref is a relative FHIR reference
// ("Appointment/123", "Encounter/…", "ServiceRequest/…") rather than an
// "hl7v2:<id>" message reference.
func fhirReference(ref string) (string, bool) {
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return "", false
	}
	return ref, true
}

// Task coding.
const (
	TaskCodeSystem      = "urn:priorflow:task"
	TaskCode            = "prefetch"
	JobIdentifierSystem = "urn:priorflow:prefetch-job"
)
