package planner

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

// createsOnly reports whether planning ev only creates jobs or finds its
// own jobs by idempotency key: not a cancellation, reschedule or merge,
// which change the pending jobs of a trigger (apply plans those).
func createsOnly(ev *triggers.CareEvent) bool {
	return ev.Kind != triggers.PatientMerged && !movesJobs(ev) && !rules.Cancels(ev.Kind)
}

// movesJobs reports whether ev moves the pending jobs of its trigger to its
// scheduled start: a rescheduled appointment, or an update of a visit
// (ADT^A08) that names its expected admit time, which is how an admission
// planned ahead (ADT^A05) is moved.
func movesJobs(ev *triggers.CareEvent) bool {
	return ev.Kind == triggers.AppointmentRescheduled ||
		(ev.Kind == triggers.PatientUpdated && ev.ScheduledStart != nil && ev.Placer != "")
}

// cooldownKey is the scope of a rule's cooldown: one rule, one patient.
type cooldownKey struct{ patientKey, rule string }

// planRun plans a run of createsOnly events inside tx with the same outcome
// as applying them one by one, in order, but with a few statements for the
// run instead of several per event: the cooldown locks in one statement
// (sorted, so that planners whose batches share patients take them in one
// order), the existing jobs of every key in one query, the cooldown state
// of every (rule, patient) in one query, and the new rows with COPY.
//
// A key met again within the run (the same booking twice in one batch) is
// re-read from the database after the rows so far are written, exactly as
// apply would find it.
func (p *Planner) planRun(ctx context.Context, tx *postgres.Tx, rs *rules.Config, evs []*triggers.CareEvent, refs map[string]string, now time.Time) (Outcome, error) {
	var out Outcome
	type match struct {
		ev *triggers.CareEvent
		d  rules.Decision
	}
	var (
		matches  []match
		keys     []string
		locks    = map[string]bool{}
		cool     = map[cooldownKey]*time.Time{} // latest non-cancelled job; nil: none
		coolPK   []string
		coolRule []string
	)
	for _, ev := range evs {
		for _, d := range rs.Plan(ev, now) {
			if !d.Match {
				continue
			}
			spec := d.Job
			matches, keys = append(matches, match{ev, d}), append(keys, spec.Key)
			if spec.Cooldown.IsZero() {
				continue
			}
			// Serialize planners on (rule, patient) so that two events of
			// the same patient cannot both pass the cooldown check.
			locks["prefetch-cooldown\x1f"+spec.Rule+"\x1f"+spec.PatientKey] = true
			if k := (cooldownKey{spec.PatientKey, spec.Rule}); !containsKey(cool, k) {
				cool[k] = nil
				coolPK, coolRule = append(coolPK, k.patientKey), append(coolRule, k.rule)
			}
		}
	}
	if len(matches) == 0 {
		return out, nil
	}
	if len(locks) > 0 {
		// unnest yields the array in order, so the locks are taken in it.
		if _, err := tx.PgxTx().Exec(ctx, `SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest($1::text[]) AS u(k)`,
			slices.Sorted(maps.Keys(locks))); err != nil {
			return out, fmt.Errorf("plan: cooldown locks: %w", err)
		}
	}
	rows, err := tx.PgxTx().Query(ctx, `SELECT `+jobColumns+` FROM prefetch_job WHERE idempotency_key = ANY($1) ORDER BY id FOR UPDATE`, keys)
	if err != nil {
		return out, fmt.Errorf("plan: read jobs: %w", err)
	}
	existing, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Job, error) { return scanJob(r) })
	if err != nil {
		return out, fmt.Errorf("plan: read jobs: %w", err)
	}
	byKey := make(map[string]*Job, len(matches))
	for _, j := range existing {
		byKey[j.Key] = j
	}
	if len(coolPK) > 0 {
		rows, err := tx.PgxTx().Query(ctx, `SELECT u.n, (SELECT max(j.created_at) FROM prefetch_job j
				WHERE j.patient_key = u.pk AND j.rule = u.rule AND j.state <> 'cancelled')
			FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(pk, rule, n)`, coolPK, coolRule)
		if err != nil {
			return out, fmt.Errorf("plan: cooldown: %w", err)
		}
		for rows.Next() {
			var n int64
			var last *time.Time
			if err := rows.Scan(&n, &last); err != nil {
				rows.Close()
				return out, fmt.Errorf("plan: cooldown: %w", err)
			}
			cool[cooldownKey{coolPK[n-1], coolRule[n-1]}] = last
		}
		if err := rows.Err(); err != nil {
			return out, fmt.Errorf("plan: cooldown: %w", err)
		}
	}

	var pending []*Job           // created in this run, not yet written
	touched := map[string]bool{} // keys created or changed in this run
	for _, m := range matches {
		ev, spec := m.ev, m.d.Job
		cur, found := byKey[spec.Key]
		if found && touched[spec.Key] {
			if err := p.insertJobs(ctx, tx, pending); err != nil {
				return out, fmt.Errorf("plan event %s: %w", ev.ID, err)
			}
			pending = nil
			if cur, err = scanJob(tx.PgxTx().QueryRow(ctx, `SELECT `+jobColumns+` FROM prefetch_job WHERE idempotency_key = $1 FOR UPDATE`, spec.Key)); err != nil {
				return out, fmt.Errorf("plan event %s: read job: %w", ev.ID, err)
			}
			byKey[spec.Key] = cur
		}
		if found {
			wasCancelled := cur.State == StateCancelled
			x, err := p.update(ctx, tx, cur, ev, spec, now)
			if err != nil {
				return out, fmt.Errorf("plan event %s: %w", ev.ID, err)
			}
			if x.Moved+x.Revived > 0 {
				touched[spec.Key] = true
			}
			if k := (cooldownKey{cur.PatientKey, cur.Rule}); wasCancelled && cur.State == StateRequested {
				// Revived: it counts for the cooldown again.
				if last, tracked := cool[k]; tracked && (last == nil || cur.CreatedAt.After(*last)) {
					t := cur.CreatedAt
					cool[k] = &t
				}
			}
			out.add(x)
			continue
		}
		if !spec.Cooldown.IsZero() {
			k := cooldownKey{spec.PatientKey, spec.Rule}
			if last := cool[k]; last != nil && m.d.Rule.CoolingDown(*last, now) {
				out.Suppressed++
				continue
			}
			if last := cool[k]; last == nil || now.After(*last) {
				t := now
				cool[k] = &t
			}
		}
		j := newJob(ev, spec, refs, now)
		pending = append(pending, j)
		byKey[spec.Key], touched[spec.Key] = j, true
		out.Created++
		out.Publish = append(out.Publish, j)
	}
	if err := p.insertJobs(ctx, tx, pending); err != nil {
		return out, fmt.Errorf("plan: %w", err)
	}
	return out, nil
}

// newJob is the job that spec plans for ev, as first written.
func newJob(ev *triggers.CareEvent, spec *rules.JobSpec, refs map[string]string, now time.Time) *Job {
	j := &Job{
		ID: jobID(spec.Key), Key: spec.Key, Rule: spec.Rule, PatientKey: spec.PatientKey, Patient: ev.Patient.Identifiers,
		PatientRef: patientRef(ev.Patient, refs), Trigger: spec.Trigger, Placer: ev.Placer, OriginRef: ev.Origin.Reference, EventID: ev.ID,
		EventAt: ev.OccurredAt, Criteria: spec.Criteria, Lane: spec.Lane, Priority: spec.Priority, LeadTime: spec.LeadTime.String(),
		NeedBy: spec.NeedBy, DueAt: spec.DueAt, State: StateRequested, Revision: 1, CreatedAt: now, UpdatedAt: now,
	}
	j.TaskID = j.ID
	return j
}

// insertJobs writes new jobs (revision 1, unpublished) with COPY, and
// their Tasks.
func (p *Planner) insertJobs(ctx context.Context, tx *postgres.Tx, jobs []*Job) error {
	if len(jobs) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(jobs))
	for _, j := range jobs {
		patient, criteria, err := docs(j)
		if err != nil {
			return err
		}
		rows = append(rows, []any{j.ID, j.Key, j.Rule, j.PatientKey, patient, j.Trigger, j.Placer, j.OriginRef, j.EventID, j.EventAt,
			criteria, string(j.Lane), string(j.Priority), j.LeadTime, j.NeedBy, j.DueAt, string(j.State), j.TaskID, j.Revision, false,
			j.CreatedAt, j.CreatedAt})
	}
	if _, err := tx.PgxTx().CopyFrom(ctx, pgx.Identifier{"prefetch_job"}, copyColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("insert jobs %s…: %w", jobs[0].ID, err)
	}
	for _, j := range jobs {
		task, err := p.task(j)
		if err != nil {
			return err
		}
		if _, err := tx.CreateAs(ctx, task, j.TaskID); err != nil {
			return fmt.Errorf("create Task of job %s: %w", j.ID, err)
		}
	}
	return nil
}

// copyColumns are jobColumns as a list, for COPY.
var copyColumns = []string{"id", "idempotency_key", "rule", "patient_key", "patient", "trigger", "placer", "origin_ref", "event_id", "event_at",
	"criteria", "lane", "priority", "lead_time", "need_by", "due_at", "state", "task_id", "revision", "published", "created_at", "updated_at"}

func containsKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
