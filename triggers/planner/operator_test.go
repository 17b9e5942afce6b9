package planner_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/planner"
)

// plan plans events (without publishing) and returns the job of each, in
// order.
func (e *env) plan(tb testing.TB, evs ...*triggers.CareEvent) []string {
	tb.Helper()
	ctx := context.Background()
	var ids []string
	for _, ev := range evs {
		out, err := e.p.PlanEvent(ctx, ev)
		if err != nil || out.Created != 1 {
			tb.Fatalf("plan %s: %+v, %v; want one job", ev.ID, out, err)
		}
		ids = append(ids, out.Publish[0].ID)
	}
	return ids
}

// runAs moves a job the way the worker does (retrieve/worker): the row's state,
// attempts and last error, and its Task's status, business status,
// execution period and a timeline note, in one transaction.
func (e *env) runAs(tb testing.TB, id string, state planner.State, attempts int, lastError string) {
	tb.Helper()
	ctx := context.Background()
	err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, attempts = $3, last_error = $4 WHERE id = $1`,
			id, state, attempts, lastError); err != nil {
			return err
		}
		cur, err := tx.Read(ctx, "Task", id)
		if err != nil {
			return err
		}
		t := map[string]any{}
		if err := json.Unmarshal(cur.Body, &t); err != nil {
			return err
		}
		delete(t, "meta")
		bs := string(state)
		if state == planner.StateInProgress {
			bs = "retrieving"
		}
		t["status"] = string(state)
		t["businessStatus"] = map[string]any{"coding": []any{map[string]any{"system": planner.BusinessStatusSystem, "code": bs}}, "text": bs}
		t["executionPeriod"] = map[string]any{"start": "2026-03-01T06:00:00.000Z"}
		t["note"] = []any{map[string]any{"time": "2026-03-01T06:00:00.000Z", "text": "searching (attempt 1)"}}
		if state == planner.StateFailed {
			t["statusReason"] = map[string]any{"text": lastError}
		}
		b, _ := json.Marshal(t)
		msg, _, err := e.store.Codec().Parse(b)
		if err != nil {
			return err
		}
		_, _, err = tx.Put(ctx, msg, 0)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}

type row struct {
	State, LastError    string
	Attempts, Revision  int
	Published           bool
	DueAt, UpdatedAt    time.Time
	TaskVersion         int
	TaskStatus, TaskBiz string
}

func (e *env) row(tb testing.TB, id string) row {
	tb.Helper()
	ctx := context.Background()
	var r row
	if err := e.pool.QueryRow(ctx, `SELECT state, last_error, attempts, revision, published, due_at, updated_at FROM prefetch_job WHERE id = $1`, id).
		Scan(&r.State, &r.LastError, &r.Attempts, &r.Revision, &r.Published, &r.DueAt, &r.UpdatedAt); err != nil {
		tb.Fatal(err)
	}
	res, err := e.store.Read(ctx, "Task", id)
	if err != nil {
		tb.Fatal(err)
	}
	var t struct {
		Status         string
		BusinessStatus struct{ Text string }
	}
	if err := json.Unmarshal(res.Body, &t); err != nil {
		tb.Fatal(err)
	}
	r.TaskVersion, r.TaskStatus, r.TaskBiz = res.Version, t.Status, t.BusinessStatus.Text
	return r
}

func (e *env) task(tb testing.TB, id string) map[string]any {
	tb.Helper()
	res, err := e.store.Read(context.Background(), "Task", id)
	if err != nil {
		tb.Fatal(err)
	}
	t := map[string]any{}
	if err := json.Unmarshal(res.Body, &t); err != nil {
		tb.Fatal(err)
	}
	return t
}

func notes(v *planner.JobView) []string {
	var out []string
	for _, n := range v.Task.Timeline {
		out = append(out, n.Text)
	}
	return out
}

func ids(views []*planner.JobView) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.ID)
	}
	return out
}

func TestListJobs_Filters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	jobs := e.plan(t,
		event("a"),
		event("b", func(ev *triggers.CareEvent) {
			ev.Kind, ev.Priority, ev.ScheduledStart = triggers.EDArrival, triggers.PriorityStat, nil
		}),
		// An HL7 v2 identifier with an assigning authority and no system.
		event("c", func(ev *triggers.CareEvent) {
			ev.Patient = triggers.Patient{Identifiers: []triggers.Identifier{{Authority: "HOSP", Value: "MRN-c", Type: "MR"}}}
		}),
	)
	a, b, c := jobs[0], jobs[1], jobs[2]
	// Created a minute apart, c newest.
	for i, id := range jobs {
		if _, err := e.pool.Exec(ctx, `UPDATE prefetch_job SET created_at = $2 WHERE id = $1`, id, now.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	e.runAs(t, b, planner.StateFailed, 3, "search failed: hospital-b: connection refused")

	for _, tc := range []struct {
		name string
		f    planner.JobFilter
		want []string
	}{
		{"everything, newest first", planner.JobFilter{}, []string{c, b, a}},
		{"limit keeps the newest", planner.JobFilter{Limit: 2}, []string{c, b}},
		{"state", planner.JobFilter{States: []planner.State{planner.StateFailed}}, []string{b}},
		{"states", planner.JobFilter{States: []planner.State{planner.StateRequested, planner.StateFailed}}, []string{c, b, a}},
		{"rule", planner.JobFilter{Rule: "priors-before-visits"}, []string{c, b, a}},
		{"unknown rule", planner.JobFilter{Rule: "nope"}, nil},
		{"patient system|value", planner.JobFilter{Patient: "urn:oid:1.2.3|MRN-a"}, []string{a}},
		{"patient value", planner.JobFilter{Patient: "MRN-b"}, []string{b}},
		{"patient authority|value", planner.JobFilter{Patient: "HOSP|MRN-c"}, []string{c}},
		{"patient of another system", planner.JobFilter{Patient: "urn:oid:9|MRN-a"}, nil},
		{"patient reference", planner.JobFilter{Patient: "Patient/p-a"}, []string{a}},
		{"ids", planner.JobFilter{IDs: []string{a, c}}, []string{c, a}},
		{"patient and state", planner.JobFilter{Patient: "MRN-a", States: []planner.State{planner.StateFailed}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planner.ListJobs(ctx, e.store, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("jobs (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("the view carries the row and the Task", func(t *testing.T) {
		v, err := planner.GetJob(ctx, e.store, b)
		if err != nil {
			t.Fatal(err)
		}
		if v.State != planner.StateFailed || v.Attempts != 3 || v.LastError != "search failed: hospital-b: connection refused" || v.Lane != "stat" {
			t.Errorf("job %s: state %s, attempts %d, last error %q, lane %s", v.ID, v.State, v.Attempts, v.LastError, v.Lane)
		}
		if v.Task.Status != "failed" || v.Task.BusinessStatus != "failed" || v.Task.StatusReason != v.LastError {
			t.Errorf("Task view %+v", v.Task)
		}
		if got, want := notes(v), []string{"searching (attempt 1)"}; !slices.Equal(got, want) {
			t.Errorf("timeline %q, want %q", got, want)
		}
		if got := v.Task.Timeline[0].Time; !got.Equal(now) {
			t.Errorf("note time %v, want %v", got, now)
		}
	})

	t.Run("a patient filter without a value is invalid", func(t *testing.T) {
		_, err := planner.ListJobs(ctx, e.store, planner.JobFilter{Patient: "urn:oid:1.2.3|"})
		if !fhir.IsKind(err, fhir.KindInvalid) {
			t.Errorf("err %v, want invalid", err)
		}
	})
}

func TestRetryJob_FailedJobIsRequestedAgainAndSwept(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	id := e.plan(t, event("r"))[0]
	if n, err := e.p.Sweep(ctx, 0); err != nil || n != 1 {
		t.Fatalf("first publish: %d, %v", n, err)
	}
	e.runAs(t, id, planner.StateFailed, 10, "sources unreachable: hospital-b")
	before := e.row(t, id)

	// The planner's clock: the sweeper takes jobs updated before its now.
	v, err := planner.RetryJob(ctx, e.store, id, now)
	if err != nil {
		t.Fatal(err)
	}
	got := e.row(t, id)
	want := row{State: "requested", Attempts: 0, LastError: "", Revision: before.Revision + 1, Published: false, DueAt: now, UpdatedAt: now,
		TaskVersion: before.TaskVersion + 1, TaskStatus: "requested", TaskBiz: ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after retry (-want +got):\n%s", diff)
	}
	if got, want := notes(v), []string{"searching (attempt 1)", "retried by operator (was failed)"}; !slices.Equal(got, want) {
		t.Errorf("timeline %q, want %q", got, want)
	}
	task := e.task(t, id)
	for _, k := range []string{"statusReason", "executionPeriod", "businessStatus"} {
		if task[k] != nil {
			t.Errorf("Task keeps %s %v after the retry", k, task[k])
		}
	}
	if got, want := task["restriction"].(map[string]any)["period"].(map[string]any)["start"], "2026-03-01T06:00:00.000Z"; got != want {
		t.Errorf("Task restriction.period.start %v, want the new due time %v", got, want)
	}
	if got := e.searchTasks(t, "_id="+id+"&status=requested"); len(got) != 1 {
		t.Errorf("Task?status=requested found %d, want the retried Task (index in step)", len(got))
	}

	// The sweeper publishes the new revision under a new Nats-Msg-Id.
	if n, err := e.p.Sweep(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Sweep after retry: %d, %v; want 1", n, err)
	}
	if !e.row(t, id).Published {
		t.Error("the retried job is not marked published after the sweep")
	}
	if got := e.streamCounts(t)[planner.SubjectRoutine]; got != 2 {
		t.Errorf("%d routine messages, want the first run's and the retry's", got)
	}
}

func TestRetryJob_CancelledJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	id := e.plan(t, event("rc"))[0]
	if _, err := planner.CancelJob(ctx, e.store, id, "", now); err != nil {
		t.Fatal(err)
	}
	v, err := planner.RetryJob(ctx, e.store, id, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if v.State != planner.StateRequested || v.Task.Status != "requested" || !v.DueAt.Equal(now.Add(time.Minute)) {
		t.Errorf("after retry: state %s, Task %s, due %v", v.State, v.Task.Status, v.DueAt)
	}
	if got, want := notes(v), []string{"cancelled by operator", "retried by operator (was cancelled)"}; !slices.Equal(got, want) {
		t.Errorf("timeline %q, want %q", got, want)
	}
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	jobs := e.plan(t, event("q"), event("w"))

	t.Run("requested", func(t *testing.T) {
		id := jobs[0]
		before := e.row(t, id)
		v, err := planner.CancelJob(ctx, e.store, id, "  patient transferred  ", now)
		if err != nil {
			t.Fatal(err)
		}
		got := e.row(t, id)
		want := row{State: "cancelled", Revision: before.Revision + 1, Published: true, DueAt: before.DueAt, UpdatedAt: now,
			TaskVersion: before.TaskVersion + 1, TaskStatus: "cancelled", TaskBiz: "cancelled"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after cancel (-want +got):\n%s", diff)
		}
		if v.Task.StatusReason != "cancelled by operator: patient transferred" {
			t.Errorf("statusReason %q", v.Task.StatusReason)
		}
		if got, want := notes(v), []string{"cancelled by operator: patient transferred"}; !slices.Equal(got, want) {
			t.Errorf("timeline %q, want %q", got, want)
		}
		if got := e.searchTasks(t, "_id="+id+"&status=cancelled"); len(got) != 1 {
			t.Errorf("Task?status=cancelled found %d, want 1", len(got))
		}
		// Nothing is published for a cancelled job.
		if n, err := e.p.Sweep(ctx, 0); err != nil || n != 1 {
			t.Errorf("Sweep=%d, %v; want only the other job", n, err)
		}
	})

	t.Run("in progress", func(t *testing.T) {
		id := jobs[1]
		e.runAs(t, id, planner.StateInProgress, 1, "")
		v, err := planner.CancelJob(ctx, e.store, id, "", now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if v.State != planner.StateCancelled || v.Task.Status != "cancelled" || v.Task.BusinessStatus != "cancelled" || v.Attempts != 1 {
			t.Errorf("after cancel: %s, Task %s/%s, attempts %d", v.State, v.Task.Status, v.Task.BusinessStatus, v.Attempts)
		}
		period := e.task(t, id)["executionPeriod"].(map[string]any)
		if got, want := period["end"], "2026-03-01T07:00:00.000Z"; got != want {
			t.Errorf("executionPeriod.end %v, want %v", got, want)
		}
		if got, want := notes(v), []string{"searching (attempt 1)", "cancelled by operator"}; !slices.Equal(got, want) {
			t.Errorf("timeline %q, want %q", got, want)
		}
	})
}

func TestJobTransitions_InvalidAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	ctx := context.Background()
	jobs := e.plan(t, event("i1"), event("i2"), event("i3"), event("i4"))
	requested, completed, failed, cancelled := jobs[0], jobs[1], jobs[2], jobs[3]
	e.runAs(t, completed, planner.StateCompleted, 1, "")
	e.runAs(t, failed, planner.StateFailed, 1, "boom")
	if _, err := planner.CancelJob(ctx, e.store, cancelled, "", now); err != nil {
		t.Fatal(err)
	}
	retry := func(id string) error { _, err := planner.RetryJob(ctx, e.store, id, now); return err }
	cancel := func(id string) error { _, err := planner.CancelJob(ctx, e.store, id, "", now); return err }
	for _, tc := range []struct {
		name string
		op   func(string) error
		id   string
		want string
	}{
		{"retry requested", retry, requested, "job " + requested + " is requested; only failed or cancelled jobs can be retried"},
		{"retry completed", retry, completed, "job " + completed + " is completed; only failed or cancelled jobs can be retried"},
		{"cancel completed", cancel, completed, "job " + completed + " is completed; only requested or in-progress jobs can be cancelled"},
		{"cancel failed", cancel, failed, "job " + failed + " is failed; only requested or in-progress jobs can be cancelled"},
		{"cancel cancelled", cancel, cancelled, "job " + cancelled + " is cancelled; only requested or in-progress jobs can be cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.row(t, tc.id)
			err := tc.op(tc.id)
			if !fhir.IsKind(err, fhir.KindConflict) {
				t.Fatalf("err %v, want a conflict", err)
			}
			if err.Error() != tc.want {
				t.Errorf("message %q, want %q", err, tc.want)
			}
			if diff := cmp.Diff(before, e.row(t, tc.id)); diff != "" {
				t.Errorf("a refused transition changed the job (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("unknown job", func(t *testing.T) {
		for name, op := range map[string]func(string) error{
			"get":    func(id string) error { _, err := planner.GetJob(ctx, e.store, id); return err },
			"retry":  retry,
			"cancel": cancel,
		} {
			if err := op("pf-nope"); !fhir.IsKind(err, fhir.KindNotFound) || !strings.Contains(err.Error(), "pf-nope") {
				t.Errorf("%s: err %v, want not found naming the job", name, err)
			}
		}
	})
}
