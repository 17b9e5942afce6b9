package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/triggers/planner"
)

const jobsUsage = `Usage:
  priorflow jobs [list] [-state S[,S]] [-patient SYSTEM|VALUE] [-rule R] [-limit N] [-json]
  priorflow jobs show [-json] ID
  priorflow jobs follow [-interval 1s] [-patient P] [-rule R] [ID]
  priorflow jobs retry ID
  priorflow jobs cancel [-reason TEXT] ID

Prefetch jobs, each also a FHIR Task with the same id, move through
requested → in-progress → completed, failed or cancelled.

  list    the jobs, newest first (50 unless -limit): state, progress (the
          Task's businessStatus and the studies loaded), rule, lane, due
          time, attempts, last error, last update. -patient takes
          SYSTEM|VALUE (a system or an assigning authority), a bare VALUE or
          Patient/ID.
  show    one job in full, with its Task's timeline and the ImagingStudy
          resources it loaded.
  follow  prints a job's timeline and state changes as they happen, until
          it ends: exit 0 when it completes, 1 when it fails or is
          cancelled. Without ID it follows every requested or in-progress
          job until Ctrl-C. It polls the database every -interval.
  retry   puts a failed or cancelled job back to requested, due now, with
          its attempts reset; a running prefetcher's sweeper hands it to
          the workers within about 40 s.
  cancel  cancels a requested or in-progress job; a worker running it
          stops before its next study, or at its next heartbeat (a third
          of PRIORFLOW_PREFETCH_ACK_WAIT) during a pull.

The commands read and write the services' database directly (not NATS, not
the API), so run them where the services run: -database-url, else
DATABASE_URL, else ` + database.DefaultURL + `.

Exit status: 0 on success, 1 when the job is unknown, the change is refused
or a followed job fails or is cancelled, 2 for usage errors.
`

// runJobs is `priorflow jobs …`: the operator's view of the prefetch jobs
// (triggers/planner), read from the database.
func runJobs(ctx context.Context, e *env, args []string) error {
	sub := "list"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(e.stdout, jobsUsage)
			return flag.ErrHelp
		}
		if !strings.HasPrefix(args[0], "-") {
			sub, args = args[0], args[1:]
		}
	}
	switch sub {
	case "list":
		return jobsList(ctx, e, args)
	case "show":
		return jobsShow(ctx, e, args)
	case "follow":
		return jobsFollow(ctx, e, args)
	case "retry":
		return jobsRetry(ctx, e, args)
	case "cancel":
		return jobsCancel(ctx, e, args)
	}
	return usagef("unknown jobs command %q (list, show, follow, retry or cancel; run 'priorflow help jobs')", sub)
}

// jobsFlags is the flag set of one jobs command, with the database flag
// every one of them takes.
type jobsFlags struct {
	*flag.FlagSet
	e     *env
	dbURL string
}

func newJobsFlags(e *env, name, synopsis string) *jobsFlags {
	f := &jobsFlags{FlagSet: flag.NewFlagSet("jobs "+name, flag.ContinueOnError), e: e}
	f.SetOutput(e.stderr)
	f.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: priorflow jobs %s\n\nFlags:\n", synopsis)
		f.PrintDefaults()
	}
	// No default shown: DATABASE_URL may hold a password.
	f.StringVar(&f.dbURL, "database-url", "", "PostgreSQL URL of the services' database (default DATABASE_URL, else the local development database)")
	return f
}

// parse parses flags that may come before or after the arguments, and
// checks the number of arguments.
func (f *jobsFlags) parse(args []string, minArgs, maxArgs int, what string) ([]string, error) {
	var rest []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err}
		}
		if f.NArg() == 0 {
			break
		}
		rest = append(rest, f.Arg(0))
		args = f.Args()[1:]
	}
	if len(rest) < minArgs || len(rest) > maxArgs {
		return nil, usagef("%s takes %s", f.Name(), what)
	}
	return rest, nil
}

// open connects to the database. It neither creates nor migrates it: that
// is the services' job, and a mistyped URL must not make a new database.
func (f *jobsFlags) open(ctx context.Context) (*postgres.Store, func(), error) {
	url := f.dbURL
	if url == "" {
		url = f.e.getenv("DATABASE_URL")
	}
	if url == "" {
		url = database.DefaultURL
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, usagef("-database-url (DATABASE_URL): %v", err)
	}
	cfg.MaxConns = 2
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("connect to database %s on %s: %w", cfg.ConnConfig.Database, cfg.ConnConfig.Host, err)
	}
	store, err := newJobStore(pool, f.e.stderr)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return store, pool.Close, nil
}

// newJobStore is the FHIR store as far as jobs need it: their Tasks.
func newJobStore(pool *pgxpool.Pool, stderr io.Writer) (*postgres.Store, error) {
	reg, err := fhir.NewRegistry(fhir.Task())
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	return postgres.New(pool, reg, codec, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// jobID accepts a job id or its Task's reference (they share the id).
func jobID(arg string) string { return strings.TrimPrefix(arg, "Task/") }

func jobsList(ctx context.Context, e *env, args []string) error {
	f := newJobsFlags(e, "list", "[list] [-state S[,S]] [-patient SYSTEM|VALUE] [-rule R] [-limit N] [-json]")
	state := f.String("state", "", "only jobs in these states (comma-separated): requested, in-progress, completed, failed, cancelled")
	patient := f.String("patient", "", "only jobs of this patient: SYSTEM|VALUE, VALUE or Patient/ID")
	rule := f.String("rule", "", "only jobs of this rule")
	limit := f.Int("limit", planner.DefaultJobLimit, fmt.Sprintf("most jobs shown, newest first (at most %d)", planner.MaxJobLimit))
	asJSON := f.Bool("json", false, "print JSON instead of a table")
	if _, err := f.parse(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	states, err := parseStates(*state)
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > planner.MaxJobLimit {
		return usagef("-limit %d must be between 1 and %d", *limit, planner.MaxJobLimit)
	}
	store, closeDB, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	views, err := planner.ListJobs(ctx, store, planner.JobFilter{States: states, Patient: *patient, Rule: *rule, Limit: *limit})
	if err != nil {
		return cliError(err)
	}
	if *asJSON {
		out := make([]jobJSON, 0, len(views))
		for _, v := range views {
			out = append(out, toJSON(v, false))
		}
		return printJSON(e.stdout, out)
	}
	if len(views) == 0 {
		fmt.Fprintln(e.stdout, "no jobs")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPROGRESS\tRULE\tLANE\tDUE\tATTEMPTS\tLAST ERROR\tUPDATED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.ID, v.State, progress(v), v.Rule, v.Lane, clock(v.DueAt),
			v.Attempts, dash(oneLine(v.LastError, 40)), clock(v.UpdatedAt))
	}
	return tw.Flush()
}

func parseStates(s string) ([]planner.State, error) {
	if s == "" {
		return nil, nil
	}
	var out []planner.State
	for _, x := range strings.Split(s, ",") {
		st := planner.State(strings.TrimSpace(x))
		switch st {
		case planner.StateRequested, planner.StateInProgress, planner.StateCompleted, planner.StateFailed, planner.StateCancelled:
			out = append(out, st)
		default:
			return nil, usagef("-state %q: want requested, in-progress, completed, failed or cancelled", x)
		}
	}
	return out, nil
}

func jobsShow(ctx context.Context, e *env, args []string) error {
	f := newJobsFlags(e, "show", "show [-json] ID")
	asJSON := f.Bool("json", false, "print JSON")
	rest, err := f.parse(args, 1, 1, "one job ID")
	if err != nil {
		return err
	}
	store, closeDB, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	v, err := planner.GetJob(ctx, store, jobID(rest[0]))
	if err != nil {
		return cliError(err)
	}
	if *asJSON {
		return printJSON(e.stdout, toJSON(v, true))
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "job\t%s\n", v.ID)
	fmt.Fprintf(tw, "task\tTask/%s (%s)\n", v.TaskID, dash(v.Task.Status))
	fmt.Fprintf(tw, "state\t%s\n", v.State)
	fmt.Fprintf(tw, "progress\t%s\n", progress(v))
	fmt.Fprintf(tw, "rule\t%s (lane %s, priority %s)\n", v.Rule, v.Lane, v.Priority)
	pat := v.PatientKey
	if v.PatientRef != "" {
		pat += " (" + v.PatientRef + ")"
	}
	fmt.Fprintf(tw, "patient\t%s\n", pat)
	trig := v.Trigger
	if v.OriginRef != "" {
		trig += " (from " + v.OriginRef + ")"
	}
	fmt.Fprintf(tw, "trigger\t%s, event %s at %s\n", trig, v.EventID, clock(v.EventAt))
	due := clock(v.DueAt)
	if v.NeedBy != nil {
		due += ", needed by " + clock(*v.NeedBy)
	}
	fmt.Fprintf(tw, "due\t%s\n", due)
	fmt.Fprintf(tw, "attempts\t%d\n", v.Attempts)
	fmt.Fprintf(tw, "last error\t%s\n", dash(oneLine(v.LastError, 0)))
	if v.Task.StatusReason != "" && v.Task.StatusReason != v.LastError {
		fmt.Fprintf(tw, "reason\t%s\n", oneLine(v.Task.StatusReason, 0))
	}
	fmt.Fprintf(tw, "created\t%s\n", clock(v.CreatedAt))
	fmt.Fprintf(tw, "updated\t%s (revision %d)\n", clock(v.UpdatedAt), v.Revision)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "\ntimeline")
	if len(v.Task.Timeline) == 0 {
		fmt.Fprintln(e.stdout, "  (none yet: no worker has claimed the job)")
	}
	for _, n := range v.Task.Timeline {
		fmt.Fprintf(e.stdout, "  %s  %s\n", clock(n.Time), n.Text)
	}
	fmt.Fprintln(e.stdout, "\nstudies")
	if len(v.Task.Studies) == 0 {
		fmt.Fprintln(e.stdout, "  (none)")
	}
	for _, s := range v.Task.Studies {
		fmt.Fprintf(e.stdout, "  %s\n", s)
	}
	return nil
}

func jobsFollow(ctx context.Context, e *env, args []string) error {
	f := newJobsFlags(e, "follow", "follow [-interval 1s] [-patient P] [-rule R] [ID]")
	interval := f.Duration("interval", time.Second, "how often to poll the database")
	patient := f.String("patient", "", "without ID: only jobs of this patient (SYSTEM|VALUE, VALUE or Patient/ID)")
	rule := f.String("rule", "", "without ID: only jobs of this rule")
	rest, err := f.parse(args, 0, 1, "at most one job ID")
	if err != nil {
		return err
	}
	if *interval < 10*time.Millisecond {
		return usagef("-interval %s is too short", *interval)
	}
	if len(rest) == 1 && (*patient != "" || *rule != "") {
		return usagef("-patient and -rule select jobs to follow when no ID is given")
	}
	store, closeDB, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	if len(rest) == 1 {
		return followJob(ctx, e.stdout, store, jobID(rest[0]), *interval)
	}
	return followJobs(ctx, e.stdout, store, planner.JobFilter{Patient: *patient, Rule: *rule}, *interval)
}

// followJob prints job id's timeline and state changes until it ends.
func followJob(ctx context.Context, w io.Writer, store *postgres.Store, id string, interval time.Duration) error {
	seen := map[string]bool{} // timeline entries printed
	last := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		v, err := planner.GetJob(ctx, store, id)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("stopped following job %s", id)
			}
			return cliError(err)
		}
		for _, n := range v.Task.Timeline {
			if k := n.Time.UTC().Format(time.RFC3339Nano) + " " + n.Text; !seen[k] {
				seen[k] = true
				fmt.Fprintf(w, "%s  %s\n", clock(n.Time), n.Text)
			}
		}
		if now := status(v); now != last {
			fmt.Fprintf(w, "%s  state: %s\n", clock(v.UpdatedAt), now)
			last = now
		}
		switch v.State {
		case planner.StateCompleted:
			return nil
		case planner.StateFailed:
			return fmt.Errorf("job %s failed: %s", id, dash(oneLine(v.LastError, 0)))
		case planner.StateCancelled:
			return fmt.Errorf("job %s was cancelled", id)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following job %s, which is %s", id, v.State)
		case <-t.C:
		}
	}
}

// followJobs prints a line whenever a requested or in-progress job f selects
// appears or changes, and how it ends, until ctx ends. Each poll reads the
// active jobs (the state index) and those that just left them (by id).
func followJobs(ctx context.Context, w io.Writer, store *postgres.Store, f planner.JobFilter, interval time.Duration) error {
	f.States = []planner.State{planner.StateRequested, planner.StateInProgress}
	f.Limit = planner.MaxJobLimit
	watched := map[string]string{} // job id → last status printed
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		active, err := planner.ListJobs(ctx, store, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return cliError(err)
		}
		isActive := map[string]bool{}
		for _, v := range active {
			isActive[v.ID] = true
		}
		var gone []string
		for id := range watched {
			if !isActive[id] {
				gone = append(gone, id)
			}
		}
		var ended []*planner.JobView
		if len(gone) > 0 {
			if ended, err = planner.ListJobs(ctx, store, planner.JobFilter{IDs: gone, Limit: planner.MaxJobLimit}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return cliError(err)
			}
		}
		changed := slices.Concat(active, ended)
		slices.SortFunc(changed, func(a, b *planner.JobView) int {
			return cmpTime(a.UpdatedAt, b.UpdatedAt, a.ID, b.ID)
		})
		for _, v := range changed {
			s := status(v)
			if watched[v.ID] != s {
				line := fmt.Sprintf("%s  %s  %s  %s", clock(v.UpdatedAt), v.ID, s, v.Rule)
				if v.State == planner.StateFailed && v.LastError != "" {
					line += ": " + oneLine(v.LastError, 80)
				}
				fmt.Fprintln(w, line)
			}
			watched[v.ID] = s
		}
		for _, id := range gone {
			delete(watched, id) // ended, or deleted
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func cmpTime(a, b time.Time, ida, idb string) int {
	if c := a.Compare(b); c != 0 {
		return c
	}
	return strings.Compare(ida, idb)
}

func jobsRetry(ctx context.Context, e *env, args []string) error {
	f := newJobsFlags(e, "retry", "retry ID")
	rest, err := f.parse(args, 1, 1, "one job ID")
	if err != nil {
		return err
	}
	store, closeDB, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	v, err := planner.RetryJob(ctx, store, jobID(rest[0]), time.Now())
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(e.stdout, "job %s is requested again, due now (revision %d); a running prefetcher's sweeper hands it to the workers within about 40 s\n",
		v.ID, v.Revision)
	return nil
}

func jobsCancel(ctx context.Context, e *env, args []string) error {
	f := newJobsFlags(e, "cancel", "cancel [-reason TEXT] ID")
	reason := f.String("reason", "", "why, for the Task's statusReason and timeline")
	rest, err := f.parse(args, 1, 1, "one job ID")
	if err != nil {
		return err
	}
	store, closeDB, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	v, err := planner.CancelJob(ctx, store, jobID(rest[0]), *reason, time.Now())
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(e.stdout, "job %s is cancelled; a worker running it stops before its next study, or at its next heartbeat\n", v.ID)
	return nil
}

// cliError makes an invalid filter a usage error (exit 2); a refused or
// unknown job stays a failure (exit 1).
func cliError(err error) error {
	if fhir.IsKind(err, fhir.KindInvalid) {
		return &usageError{err}
	}
	return err
}

// status is a job's state with its progress, as follow prints it.
func status(v *planner.JobView) string {
	var more []string
	if p := progress(v); p != "-" {
		more = append(more, p)
	}
	if v.Attempts > 1 {
		more = append(more, fmt.Sprintf("attempt %d", v.Attempts))
	}
	if len(more) == 0 {
		return string(v.State)
	}
	return string(v.State) + " (" + strings.Join(more, ", ") + ")"
}

// progress is the Task's businessStatus and the studies loaded so far.
func progress(v *planner.JobView) string {
	p := v.Task.BusinessStatus
	switch n := len(v.Task.Studies); {
	case n == 1:
		p += ", 1 study"
	case n > 1:
		p += fmt.Sprintf(", %d studies", n)
	}
	return dash(strings.TrimPrefix(p, ", "))
}

// clock is a time as operators read it: local, to the second.
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// oneLine folds s onto one line and cuts it to n runes (0: no limit).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); n > 0 && len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jobJSON is a job in -json output.
type jobJSON struct {
	ID             string     `json:"id"`
	Task           string     `json:"task"`
	State          string     `json:"state"`
	TaskStatus     string     `json:"taskStatus,omitempty"`
	BusinessStatus string     `json:"businessStatus,omitempty"`
	StatusReason   string     `json:"statusReason,omitempty"`
	Rule           string     `json:"rule"`
	Lane           string     `json:"lane"`
	Priority       string     `json:"priority"`
	Patient        string     `json:"patient"`
	PatientRef     string     `json:"patientRef,omitempty"`
	Trigger        string     `json:"trigger"`
	Origin         string     `json:"origin,omitempty"`
	Event          string     `json:"event"`
	DueAt          time.Time  `json:"dueAt"`
	NeedBy         *time.Time `json:"needBy,omitempty"`
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"lastError,omitempty"`
	Revision       int        `json:"revision"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
	Studies        []string   `json:"studies"`
	Timeline       []noteJSON `json:"timeline,omitempty"`
}

type noteJSON struct {
	Time *time.Time `json:"time,omitempty"`
	Text string     `json:"text"`
}

func toJSON(v *planner.JobView, timeline bool) jobJSON {
	utc := func(t time.Time) time.Time { return t.UTC() }
	j := jobJSON{ID: v.ID, Task: "Task/" + v.TaskID, State: string(v.State), TaskStatus: v.Task.Status, BusinessStatus: v.Task.BusinessStatus,
		StatusReason: v.Task.StatusReason, Rule: v.Rule, Lane: string(v.Lane), Priority: string(v.Priority), Patient: v.PatientKey,
		PatientRef: v.PatientRef, Trigger: v.Trigger, Origin: v.OriginRef, Event: v.EventID, DueAt: utc(v.DueAt), Attempts: v.Attempts,
		LastError: v.LastError, Revision: v.Revision, CreatedAt: utc(v.CreatedAt), UpdatedAt: utc(v.UpdatedAt),
		Studies: append([]string{}, v.Task.Studies...)}
	if v.NeedBy != nil {
		nb := v.NeedBy.UTC()
		j.NeedBy = &nb
	}
	if timeline {
		j.Timeline = []noteJSON{}
		for _, n := range v.Task.Timeline {
			nj := noteJSON{Text: n.Text}
			if !n.Time.IsZero() {
				t := n.Time.UTC()
				nj.Time = &t
			}
			j.Timeline = append(j.Timeline, nj)
		}
	}
	return j
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
