package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/planner"
	"github.com/priorflow/priorflow/triggers/rules"
)

// jobsEnv is a database with prefetch jobs planned by the real planner, and
// the environment that points priorflow jobs at it.
type jobsEnv struct {
	environ map[string]string
	pool    *pgxpool.Pool
	store   *postgres.Store
	jobs    map[string]string // event id → job id
}

func newJobsEnv(t *testing.T, evs ...*triggers.CareEvent) *jobsEnv {
	t.Helper()
	ctx := context.Background()
	url := dbtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := newJobStore(pool, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.LoadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The planner needs JetStream to exist; PlanEvent does not publish.
	_, js := natstest.Start(t, "").Connect(t)
	p, err := planner.New(planner.Config{Rules: rs, Store: store, JetStream: js, Logger: dbtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	e := &jobsEnv{environ: map[string]string{"DATABASE_URL": url}, pool: pool, store: store, jobs: map[string]string{}}
	for _, ev := range evs {
		out, err := p.PlanEvent(ctx, ev)
		if err != nil || len(out.Publish) != 1 {
			t.Fatalf("plan %s: %+v, %v; want one job", ev.ID, out, err)
		}
		e.jobs[ev.ID] = out.Publish[0].ID
	}
	return e
}

func (e *jobsEnv) run(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, e.environ, append([]string{"jobs"}, args...)...)
}

func booking(id string) *triggers.CareEvent {
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	return &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.AppointmentBooked,
		OccurredAt: time.Now().UTC(), ScheduledStart: &start, Priority: triggers.PriorityRoutine, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: "MRN-" + id, Type: "MR"}}},
		SourceSystem: "test", Placer: "appt-" + id, Origin: triggers.Origin{Reference: "hl7v2:" + id}}
}

func edArrival(id string) *triggers.CareEvent {
	ev := booking(id)
	ev.Kind, ev.Priority, ev.ScheduledStart, ev.Placer = triggers.EDArrival, triggers.PriorityStat, nil, "visit-"+id
	return ev
}

// finish ends a job as the worker does: row and Task in one transaction.
func (e *jobsEnv) finish(t *testing.T, id string, state planner.State, lastError string, studies ...string) {
	t.Helper()
	ctx := context.Background()
	err := e.store.InTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.PgxTx().Exec(ctx, `UPDATE prefetch_job SET state = $2, attempts = 1, last_error = $3 WHERE id = $1`, id, state, lastError); err != nil {
			return err
		}
		cur, err := tx.Read(ctx, "Task", id)
		if err != nil {
			return err
		}
		task := map[string]any{}
		if err := json.Unmarshal(cur.Body, &task); err != nil {
			return err
		}
		delete(task, "meta")
		task["status"] = string(state)
		task["businessStatus"] = map[string]any{"text": string(state)}
		var outs []any
		for _, s := range studies {
			outs = append(outs, map[string]any{"type": map[string]any{"text": "imaging-study"}, "valueReference": map[string]any{"reference": s}})
		}
		if outs != nil {
			task["output"] = outs
		}
		task["note"] = []any{map[string]any{"time": "2026-03-01T06:00:00.000Z", "text": "searching (attempt 1)"},
			map[string]any{"time": "2026-03-01T06:00:05.000Z", "text": string(state)}}
		b, _ := json.Marshal(task)
		msg, _, err := e.store.Codec().Parse(b)
		if err != nil {
			return err
		}
		_, _, err = tx.Put(ctx, msg, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func wantExit(t *testing.T, r result, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestJobs_ListShowCancelRetry(t *testing.T) {
	t.Parallel()
	e := newJobsEnv(t, booking("b1"), edArrival("s1"), booking("f1"))
	b1, s1, f1 := e.jobs["b1"], e.jobs["s1"], e.jobs["f1"]
	e.finish(t, f1, planner.StateFailed, "search failed: hospital-b: connection refused\nafter 10 tries")

	t.Run("list is a table of every job", func(t *testing.T) {
		r := e.run(t)
		wantExit(t, r, exitOK, []string{"ID", "STATE", "PROGRESS", "LAST ERROR"}, nil)
		for id, want := range map[string]*regexp.Regexp{
			b1: regexp.MustCompile(`(?m)^` + b1 + ` +requested +- +priors-before-visits +routine +\S+ \S+ +0 +- +`),
			s1: regexp.MustCompile(`(?m)^` + s1 + ` +requested +- +priors-before-visits +stat +`),
			f1: regexp.MustCompile(`(?m)^` + f1 + ` +failed +failed +priors-before-visits +routine +\S+ \S+ +1 +search failed: hospital-b: connection r… +`),
		} {
			if !want.MatchString(r.stdout) {
				t.Errorf("no row of %s matching %s:\n%s", id, want, r.stdout)
			}
		}
	})
	t.Run("filters", func(t *testing.T) {
		wantExit(t, e.run(t, "list", "-state", "failed"), exitOK, []string{f1}, nil)
		if r := e.run(t, "-state", "failed"); strings.Contains(r.stdout, b1) {
			t.Errorf("-state failed lists a requested job:\n%s", r.stdout)
		}
		wantExit(t, e.run(t, "list", "-rule", "ct-orders-only"), exitOK, []string{"no jobs"}, nil)
		r := e.run(t, "list", "-patient", "urn:hosp-a:mrn|MRN-s1", "-json")
		wantExit(t, r, exitOK, nil, nil)
		var got []jobJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("-json: %v\n%s", err, r.stdout)
		}
		if len(got) != 1 || got[0].ID != s1 || got[0].Lane != "stat" || got[0].State != "requested" || got[0].Task != "Task/"+s1 {
			t.Errorf("-patient -json: %+v, want the stat job", got)
		}
		wantExit(t, e.run(t, "list", "-limit", "1"), exitOK, []string{f1}, nil)
	})
	t.Run("cancel a requested job", func(t *testing.T) {
		r := e.run(t, "cancel", "-reason", "visit cancelled by phone", b1)
		wantExit(t, r, exitOK, []string{"job " + b1 + " is cancelled"}, nil)
		r = e.run(t, "show", b1)
		wantExit(t, r, exitOK, []string{"Task/" + b1 + " (cancelled)", "cancelled by operator: visit cancelled by phone"}, nil)
		if !regexp.MustCompile(`(?m)^state +cancelled$`).MatchString(r.stdout) {
			t.Errorf("show lacks the state:\n%s", r.stdout)
		}
	})
	t.Run("retry the cancelled job", func(t *testing.T) {
		r := e.run(t, "retry", "Task/"+b1)
		wantExit(t, r, exitOK, []string{"job " + b1 + " is requested again"}, nil)
		r = e.run(t, "show", "-json", b1)
		wantExit(t, r, exitOK, nil, nil)
		var got jobJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("show -json: %v\n%s", err, r.stdout)
		}
		var notes []string
		for _, n := range got.Timeline {
			notes = append(notes, n.Text)
		}
		if got.State != "requested" || got.TaskStatus != "requested" || got.Attempts != 0 || time.Since(got.DueAt) > time.Minute ||
			strings.Join(notes, "; ") != "cancelled by operator: visit cancelled by phone; retried by operator (was cancelled)" {
			t.Errorf("after retry: %+v", got)
		}
	})
	t.Run("retry a failed job", func(t *testing.T) {
		wantExit(t, e.run(t, "retry", f1), exitOK, []string{"requested again"}, nil)
		wantExit(t, e.run(t, "show", f1), exitOK, []string{"retried by operator (was failed)"}, nil)
	})
	t.Run("refused and unknown", func(t *testing.T) {
		wantExit(t, e.run(t, "retry", s1), exitFailure, nil, []string{"job " + s1 + " is requested; only failed or cancelled jobs can be retried"})
		wantExit(t, e.run(t, "cancel", "nope"), exitFailure, nil, []string{"job nope is not known"})
		wantExit(t, e.run(t, "show", "nope"), exitFailure, nil, []string{"job nope is not known"})
		wantExit(t, e.run(t, "list", "-patient", "urn:hosp-a:mrn|"), exitUsage, nil, []string{"no identifier value"})
	})
}

func TestJobs_ShowListsTheStudies(t *testing.T) {
	t.Parallel()
	e := newJobsEnv(t, booking("c1"))
	c1 := e.jobs["c1"]
	e.finish(t, c1, planner.StateCompleted, "", "ImagingStudy/is-1", "ImagingStudy/is-2")
	r := e.run(t, "show", c1)
	wantExit(t, r, exitOK, []string{"completed, 2 studies", "  ImagingStudy/is-1\n  ImagingStudy/is-2\n", "searching (attempt 1)"}, nil)
	// A followed job that has ended ends the follow at once, with its status.
	wantExit(t, e.run(t, "follow", c1), exitOK, []string{"searching (attempt 1)", "state: completed (completed, 2 studies)"}, nil)
	e2 := newJobsEnv(t, booking("x1"))
	e2.finish(t, e2.jobs["x1"], planner.StateFailed, "sources unreachable: hospital-b")
	wantExit(t, e2.run(t, "follow", e2.jobs["x1"]), exitFailure, []string{"state: failed"}, []string{"failed: sources unreachable: hospital-b"})
}

// syncBuffer is a buffer a running command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs priorflow jobs in the background; wait returns its result.
func (e *jobsEnv) start(t *testing.T, ctx context.Context, args ...string) (out *syncBuffer, wait func() result) {
	t.Helper()
	out = &syncBuffer{}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		err := run(ctx, append([]string{"jobs"}, args...), out, &stderr, func(k string) string { return e.environ[k] })
		done <- exitCode(err, &stderr)
	}()
	return out, func() result {
		select {
		case code := <-done:
			return result{code, out.String(), stderr.String()}
		case <-time.After(30 * time.Second):
			t.Fatal("priorflow jobs did not return")
			return result{}
		}
	}
}

func waitFor(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q after 20s:\n%s", s, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJobs_FollowSeesTheCancellation(t *testing.T) {
	t.Parallel()
	e := newJobsEnv(t, booking("w1"))
	w1 := e.jobs["w1"]
	out, wait := e.start(t, context.Background(), "follow", "-interval", "20ms", w1)
	waitFor(t, out, "state: requested")
	if _, err := planner.CancelJob(context.Background(), e.store, w1, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	r := wait()
	wantExit(t, r, exitFailure, []string{"cancelled by operator", "state: cancelled (cancelled)"}, []string{"job " + w1 + " was cancelled"})
}

func TestJobs_FollowAllUntilInterrupted(t *testing.T) {
	t.Parallel()
	e := newJobsEnv(t, booking("a1"), booking("a2"))
	a1, a2 := e.jobs["a1"], e.jobs["a2"]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, wait := e.start(t, ctx, "follow", "-interval", "20ms")
	waitFor(t, out, a1+"  requested")
	waitFor(t, out, a2+"  requested")
	if _, err := planner.CancelJob(ctx, e.store, a2, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, a2+"  cancelled (cancelled)")
	cancel() // Ctrl-C
	r := wait()
	wantExit(t, r, exitOK, nil, nil)
	if n := strings.Count(r.stdout, a1); n != 1 {
		t.Errorf("the unchanged job is printed %d times, want once:\n%s", n, r.stdout)
	}
}

func TestJobs_Usage(t *testing.T) {
	t.Parallel()
	// Nothing here reaches a database.
	environ := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"}
	for _, tc := range []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"help", []string{"help", "jobs"}, exitOK, ""},
		{"-h", []string{"jobs", "-h"}, exitOK, ""},
		{"unknown subcommand", []string{"jobs", "frob"}, exitUsage, `unknown jobs command "frob"`},
		{"show without ID", []string{"jobs", "show"}, exitUsage, "jobs show takes one job ID"},
		{"retry with two IDs", []string{"jobs", "retry", "a", "b"}, exitUsage, "jobs retry takes one job ID"},
		{"bad state", []string{"jobs", "list", "-state", "done"}, exitUsage, `-state "done"`},
		{"bad limit", []string{"jobs", "-limit", "0"}, exitUsage, "-limit 0"},
		{"list takes no arguments", []string{"jobs", "list", "x"}, exitUsage, "jobs list takes no arguments"},
		{"follow one with filters", []string{"jobs", "follow", "-rule", "r", "x"}, exitUsage, "-patient and -rule"},
		{"database down", []string{"jobs", "show", "x"}, exitFailure, "connect to database none on 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, environ, tc.args...)
			if r.code != tc.want || !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", r.code, tc.want, tc.msg, r.stdout, r.stderr)
			}
		})
	}
}
