package planner

// The operator's side of jobs, behind `priorflow jobs`: list, show, retry and
// cancel. It reads and writes the database directly, never NATS, so it works
// wherever the database is reachable: a retried job is left unpublished for
// the sweeper (Sweep) to put on PREFETCH_JOBS, as the planner leaves a job
// after a crash; a cancelled job needs no message, because the worker
// re-reads the row before it starts a job and while it runs one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// BusinessStatusSystem codes Task.businessStatus of a prefetch Task:
// searching, retrieving, completed, failed (the worker) and cancelled.
const BusinessStatusSystem = "urn:priorflow:task-business-status"

// Timeline notes the operator's actions leave on a job's Task.
const (
	NoteRetried   = "retried by operator"
	NoteCancelled = "cancelled by operator"
)

// Limits of ListJobs.
const (
	DefaultJobLimit = 50
	MaxJobLimit     = 1000
)

// JobFilter selects jobs for ListJobs; zero fields select every job.
type JobFilter struct {
	// States keeps the jobs in any of these states.
	States []State
	// Patient keeps the jobs of a patient: "system|value" (the system or
	// the assigning authority of any of the patient's identifiers), a bare
	// identifier value, or the reference "Patient/<id>".
	Patient string
	Rule    string
	// IDs keeps these jobs only.
	IDs []string
	// Limit is how many jobs, newest first: DefaultJobLimit when zero, at
	// most MaxJobLimit.
	Limit int
}

// JobView is a job as an operator sees it: its row, and what its Task says
// about the run (the worker keeps the timeline there).
type JobView struct {
	Job
	Attempts  int
	LastError string
	Task      TaskView
}

// TaskView is what a job's Task tells about its run.
type TaskView struct {
	Status string
	// BusinessStatus is the stage: searching, retrieving, completed,
	// failed, cancelled; empty until the worker first claims the job.
	BusinessStatus string
	StatusReason   string
	// Studies are the ImagingStudy references the job produced
	// (Task.output).
	Studies []string
	// Timeline is Task.note, oldest first.
	Timeline []Note
}

// Note is one timeline entry of a Task (an R4 Annotation).
type Note struct {
	Time time.Time
	Text string
}

// ListJobs returns the jobs f selects, newest first, each with its Task's
// business status, outputs and timeline.
//
// It is an operator's query, not a hot path: state, patient and id filters
// use the prefetch_job_worker, prefetch_job_patient_ids and primary key
// indexes (what follow polls with); without one it is one scan of
// prefetch_job with a top-N sort. Only the returned jobs' Tasks are read.
func ListJobs(ctx context.Context, store *postgres.Store, f JobFilter) ([]*JobView, error) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, s := range f.States {
			states[i] = string(s)
		}
		conds = append(conds, "state = ANY("+arg(states)+"::text[])")
	}
	if f.Rule != "" {
		conds = append(conds, "rule = "+arg(f.Rule))
	}
	if len(f.IDs) > 0 {
		conds = append(conds, "id = ANY("+arg(f.IDs)+"::text[])")
	}
	if f.Patient != "" {
		docs, err := patientMatch(f.Patient)
		if err != nil {
			return nil, err
		}
		var or []string
		for _, d := range docs {
			// jsonb_path_ops containment: the prefetch_job_patient_ids index.
			or = append(or, "patient @> "+arg(d)+"::jsonb")
		}
		conds = append(conds, "("+strings.Join(or, " OR ")+")")
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultJobLimit
	case limit > MaxJobLimit:
		limit = MaxJobLimit
	}
	rows, err := store.Pool().Query(ctx, `WITH j AS (
			SELECT `+jobColumns+`, attempts, last_error FROM prefetch_job `+where+`
			ORDER BY created_at DESC, id DESC LIMIT `+arg(limit)+`)
		SELECT j.*, r.body FROM j LEFT JOIN resource r ON r.type = 'Task' AND r.id = j.task_id AND NOT r.deleted
		ORDER BY j.created_at DESC, j.id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*JobView, error) { return scanJobView(r) })
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return views, nil
}

// GetJob returns one job, or a not-found error.
func GetJob(ctx context.Context, store *postgres.Store, id string) (*JobView, error) {
	views, err := ListJobs(ctx, store, JobFilter{IDs: []string{id}, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(views) == 0 {
		return nil, fhir.Errorf(fhir.KindNotFound, "job %s is not known", id)
	}
	return views[0], nil
}

// RetryJob makes a failed or cancelled job requested again: attempts reset,
// due at now, a new revision left unpublished, which the sweeper of a
// running prefetcher publishes (within its sweep interval plus grace). Its
// Task goes back to requested with the note NoteRetried; the timeline and
// the studies of earlier attempts stay. Any other state is a conflict.
func RetryJob(ctx context.Context, store *postgres.Store, id string, now time.Time) (*JobView, error) {
	now = now.UTC().Truncate(time.Microsecond)
	err := store.InTx(ctx, func(tx *postgres.Tx) error {
		j, err := lockJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if j.State != StateFailed && j.State != StateCancelled {
			return fhir.Errorf(fhir.KindConflict, "job %s is %s; only failed or cancelled jobs can be retried", id, j.State)
		}
		was := j.State
		j.State, j.DueAt, j.UpdatedAt = StateRequested, now, now
		j.Revision++
		// A new revision gets a new Nats-Msg-Id (MsgID), so the stream's
		// duplicate window does not drop it as the first run's message.
		if _, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, due_at = $3, revision = $4, published = false,
			attempts = 0, last_error = '', updated_at = $3 WHERE id = $1`, j.ID, j.State, now, j.Revision); err != nil {
			return fmt.Errorf("retry job %s: %w", id, err)
		}
		return editTask(ctx, tx, store.Codec(), j, now, func(t map[string]any) {
			t["status"] = string(StateRequested)
			// Not started: the worker sets these again when it claims the
			// job (businessStatus, executionPeriod) or ends it.
			delete(t, "businessStatus")
			delete(t, "statusReason")
			delete(t, "executionPeriod")
			period := map[string]any{"start": fhirInstant(j.DueAt)}
			if j.NeedBy != nil && j.NeedBy.After(j.DueAt) {
				period["end"] = fhirInstant(*j.NeedBy)
			}
			t["restriction"] = map[string]any{"period": period}
			addTaskNote(t, now, fmt.Sprintf("%s (was %s)", NoteRetried, was))
		})
	})
	if err != nil {
		return nil, err
	}
	return GetJob(ctx, store, id)
}

// CancelJob cancels a requested or in-progress job, with its Task (status
// and businessStatus cancelled, reason as statusReason, the note
// NoteCancelled). A worker skips the job when it picks it up, or stops it
// at the next study boundary, or sooner, and leaves the Task cancelled.
// Any other state is a conflict.
func CancelJob(ctx context.Context, store *postgres.Store, id, reason string, now time.Time) (*JobView, error) {
	now = now.UTC().Truncate(time.Microsecond)
	note := NoteCancelled
	if reason = strings.TrimSpace(reason); reason != "" {
		note += ": " + reason
	}
	err := store.InTx(ctx, func(tx *postgres.Tx) error {
		j, err := lockJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if j.State != StateRequested && j.State != StateInProgress {
			return fhir.Errorf(fhir.KindConflict, "job %s is %s; only requested or in-progress jobs can be cancelled", id, j.State)
		}
		j.State, j.UpdatedAt = StateCancelled, now
		// A new revision, like the planner's cancellations: a worker running
		// the old one sees that it is no longer its job. Published: there is
		// nothing to send.
		j.Revision++
		if _, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, revision = $3, published = true, updated_at = $4
			WHERE id = $1`, j.ID, j.State, j.Revision, now); err != nil {
			return fmt.Errorf("cancel job %s: %w", id, err)
		}
		return editTask(ctx, tx, store.Codec(), j, now, func(t map[string]any) {
			t["status"] = string(StateCancelled)
			t["businessStatus"] = map[string]any{
				"coding": []any{map[string]any{"system": BusinessStatusSystem, "code": string(StateCancelled)}},
				"text":   string(StateCancelled),
			}
			t["statusReason"] = map[string]any{"text": note}
			if p, ok := t["executionPeriod"].(map[string]any); ok {
				p["end"] = fhirInstant(now)
			}
			addTaskNote(t, now, note)
		})
	})
	if err != nil {
		return nil, err
	}
	return GetJob(ctx, store, id)
}

// lockJob reads job id and locks its row for the rest of tx. Every writer
// of a job's state and Task (the planner, the worker, the operator) takes
// this lock before writing the Task, so a state change and its Task stay in
// step and no one's Task edit is lost; READ COMMITTED is enough with it.
func lockJob(ctx context.Context, tx *postgres.Tx, id string) (*Job, error) {
	j, err := scanJob(tx.PgxTx().QueryRow(ctx, `SELECT `+jobColumns+` FROM prefetch_job WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fhir.Errorf(fhir.KindNotFound, "job %s is not known", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return j, nil
}

// editTask applies fn to the JSON of job j's Task and stores the result
// inside tx, the way the worker edits it (retrieve/worker): through the
// store's codec, so an edit that would not be valid R4 fails instead of
// being stored. The caller holds the job's row lock; If-Match on the
// version read guards against any writer that does not.
func editTask(ctx context.Context, tx *postgres.Tx, codec *fhir.Codec, j *Job, now time.Time, fn func(map[string]any)) error {
	cur, err := tx.Read(ctx, "Task", j.TaskID)
	if err != nil {
		return fmt.Errorf("edit Task of job %s: %w", j.ID, err)
	}
	t := map[string]any{}
	if err := json.Unmarshal(cur.Body, &t); err != nil {
		return fmt.Errorf("edit Task of job %s: %w", j.ID, err)
	}
	fn(t)
	t["lastModified"] = fhirInstant(now)
	delete(t, "meta") // the store writes it
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("edit Task of job %s: %w", j.ID, err)
	}
	msg, _, err := codec.Parse(body)
	if err != nil {
		return fmt.Errorf("edit Task of job %s: %w", j.ID, err)
	}
	if _, _, err := tx.Put(ctx, msg, cur.Version); err != nil {
		return fmt.Errorf("edit Task of job %s: %w", j.ID, err)
	}
	return nil
}

// addTaskNote appends a timeline entry as the worker writes them.
func addTaskNote(t map[string]any, at time.Time, text string) {
	notes, _ := t["note"].([]any)
	t["note"] = append(notes, map[string]any{"time": fhirInstant(at), "text": text})
}

// fhirInstant is t as the Tasks print times: UTC, to the millisecond.
func fhirInstant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// patientMatch turns a patient filter into patient column documents, any
// of which a job's patient must contain.
func patientMatch(p string) ([]string, error) {
	type ident struct {
		System    string `json:"system,omitempty"`
		Authority string `json:"authority,omitempty"`
		Value     string `json:"value"`
	}
	type doc struct {
		Identifiers []ident `json:"identifiers,omitempty"`
		Ref         string  `json:"ref,omitempty"`
	}
	var docs []doc
	if id, ok := strings.CutPrefix(p, "Patient/"); ok && fhir.ValidID(id) {
		docs = []doc{{Ref: p}}
	} else {
		system, value, found := strings.Cut(p, "|")
		if !found {
			system, value = "", p
		}
		switch {
		case value == "":
			return nil, fhir.Errorf(fhir.KindInvalid, "patient %q has no identifier value", p)
		case system == "":
			docs = []doc{{Identifiers: []ident{{Value: value}}}}
		default:
			// HL7 v2 identifiers may carry only an assigning authority
			// (CX-4.1); the patient key uses it in place of a system.
			docs = []doc{{Identifiers: []ident{{System: system, Value: value}}}, {Identifiers: []ident{{Authority: system, Value: value}}}}
		}
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("patient filter: %w", err)
		}
		out[i] = string(b)
	}
	return out, nil
}

func scanJobView(row pgx.Row) (*JobView, error) {
	v := &JobView{}
	var body *string
	j, err := scanJob(row, &v.Attempts, &v.LastError, &body)
	if err != nil {
		return nil, err
	}
	v.Job = *j
	if body != nil {
		if v.Task, err = taskView([]byte(*body)); err != nil {
			return nil, fmt.Errorf("read Task of job %s: %w", j.ID, err)
		}
	}
	return v, nil
}

// taskView reads the run's state off a Task's JSON.
func taskView(body []byte) (TaskView, error) {
	var t struct {
		Status         string `json:"status"`
		BusinessStatus struct {
			Coding []struct {
				Code string `json:"code"`
			} `json:"coding"`
			Text string `json:"text"`
		} `json:"businessStatus"`
		StatusReason struct {
			Text string `json:"text"`
		} `json:"statusReason"`
		Output []struct {
			ValueReference struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
		} `json:"output"`
		Note []struct {
			Time time.Time `json:"time"`
			Text string    `json:"text"`
		} `json:"note"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return TaskView{}, err
	}
	v := TaskView{Status: t.Status, BusinessStatus: t.BusinessStatus.Text, StatusReason: t.StatusReason.Text}
	if v.BusinessStatus == "" && len(t.BusinessStatus.Coding) > 0 {
		v.BusinessStatus = t.BusinessStatus.Coding[0].Code
	}
	for _, o := range t.Output {
		if r := o.ValueReference.Reference; strings.HasPrefix(r, "ImagingStudy/") {
			v.Studies = append(v.Studies, r)
		}
	}
	for _, n := range t.Note {
		v.Timeline = append(v.Timeline, Note{Time: n.Time, Text: n.Text})
	}
	return v, nil
}
