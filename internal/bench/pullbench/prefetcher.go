package pullbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/bench/dicombench"
	"github.com/priorflow/priorflow/triggers"
	cejs "github.com/priorflow/priorflow/triggers/jetstream"
)

// Rule is the prefetch rule of the runs: an ED arrival (stat lane, due at
// once) pulls the patient's most recent CT of the last 5 years from the
// source. The source keeps the default timeouts: Orthanc builds a whole
// study's answer before it sends the headers, which the retrieval's own
// retrieveTimeout (default 5 min), not the query timeout, waits for.
const rulesYAML = `sources:
  - name: %s
    issuer: %s
%s
rules:
  - name: pull-bench
    on: [ed-arrival]
    leadTime: 12h
    lookback: 5y
    maxPriors: 1
    modalities: same
    bodyRegion: any
`

// PrefetcherConfig starts one bin/prefetcher.
type PrefetcherConfig struct {
	Bin         string
	DatabaseURL string
	NATSURL     string
	DataDir     string // its own: spool, blob store, configuration, log
	// Source is how the source is reached: DICOMweb or C-MOVE.
	Source SourceAccess
}

// SourceAccess is the source as a prefetcher reaches it: the keys of its
// config entry, and the prefetcher's arguments it needs.
type SourceAccess struct {
	Keys string
	Args []string
}

// DICOMweb reaches the source at a DICOMweb root (of the source or of a
// Proxy).
func DICOMweb(root string) SourceAccess {
	return SourceAccess{Keys: "    kind: dicomweb\n    url: " + root}
}

// CMove reaches the source's DICOM port (127.0.0.1:port, AE title aet) by
// C-FIND and pulls by C-MOVE to the prefetcher's Storage SCP, AE title
// PrefetcherAET on 127.0.0.1:scpPort.
func CMove(port int, aet string, scpPort int) SourceAccess {
	return SourceAccess{
		Keys: fmt.Sprintf("    kind: dimse\n    url: dicom://127.0.0.1:%d\n    calledAETitle: %s\n    callingAETitle: %s\n    retrieveMethod: c-move",
			port, aet, PrefetcherAET),
		Args: []string{"-dicom-addr", fmt.Sprintf("127.0.0.1:%d", scpPort), "-dicom-ae-title", PrefetcherAET},
	}
}

// PrefetcherAET is the prefetcher's AE title towards a DIMSE source, as
// the caller of its C-FINDs and C-MOVEs and as their destination.
const PrefetcherAET = "PRIORFLOW"

// StartPrefetcher runs bin/prefetcher with a configuration naming the
// source and the rule, its metrics on a free loopback port, and waits until
// /healthz answers (migrations applied, consumers created).
func StartPrefetcher(ctx context.Context, c *dicombench.Client, cfg PrefetcherConfig, log *slog.Logger) (*dicombench.Process, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("start prefetcher: %w", err)
	}
	rules := filepath.Join(cfg.DataDir, "priorflow.yaml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, rulesYAML, SourceName, SourceIssuer, cfg.Source.Keys), 0o600); err != nil {
		return nil, fmt.Errorf("start prefetcher: %w", err)
	}
	port, err := dicombench.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(cfg.Bin, append([]string{"-config", rules, "-database-url", cfg.DatabaseURL, "-nats-url", cfg.NATSURL,
		"-http-addr", addr, "-data-dir", cfg.DataDir, "-log-level", "warn",
		"-retrieve-backoff", "1s", "-retrieve-backoff-max", "5s", "-retrieve-tries", "3"}, cfg.Source.Args...)...)
	cmd.Env = os.Environ()
	p, err := dicombench.StartProcess("prefetcher", "http://"+addr, filepath.Join(cfg.DataDir, "prefetcher.log"), cmd, log)
	if err != nil {
		return nil, err
	}
	if err := c.WaitReady(ctx, p.URL+"/healthz", 2*time.Minute, p.Exited()); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("start prefetcher: %w\n%s", err, p.Tail())
	}
	return p, nil
}

// Node is the local side every prefetcher of a run shares: its database
// (the FHIR store, where the patients are registered and the jobs are
// read) and the care event stream.
type Node struct {
	DB    *pgxpool.Pool
	store *postgres.Store
	pub   *cejs.Publisher
}

// NewNode returns a Node on a migrated database; pub publishes to
// CARE_EVENTS.
func NewNode(db *pgxpool.Pool, pub *cejs.Publisher, log *slog.Logger) (*Node, error) {
	reg, err := fhir.NewRegistry(fhir.Patient(), fhir.Task())
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(db, reg, codec, log)
	if err != nil {
		return nil, err
	}
	return &Node{DB: db, store: store, pub: pub}, nil
}

// MRN is the local medical record number of a source patient.
func MRN(sourcePatientID string) string { return "MRN-" + sourcePatientID }

// AddPatient registers a patient known at the source as sourceID (issuer
// SourceIssuer) under the local MRN(sourceID), with the birth date the
// source's instances carry.
func (n *Node) AddPatient(ctx context.Context, sourceID string) error {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "Patient",
		"identifier": []any{
			map[string]any{"system": "urn:hosp-a:mrn", "value": MRN(sourceID)},
			map[string]any{"system": "urn:priorflow:issuer:" + SourceIssuer, "value": sourceID},
		},
		"name":      []any{map[string]any{"family": "Bench", "given": []any{"Pull"}}},
		"birthDate": birthDate[:4] + "-" + birthDate[4:6] + "-" + birthDate[6:],
		"gender":    "female",
	})
	msg, _, err := n.store.Codec().Parse(body)
	if err != nil {
		return fmt.Errorf("patient %s: %w", sourceID, err)
	}
	return n.store.InTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.Create(ctx, msg)
		return err
	})
}

// Arrive publishes an ED arrival of the patient known at the source as
// sourceID and returns the event's id and time.
func (n *Node) Arrive(ctx context.Context, sourceID string) (id string, at time.Time, err error) {
	at = time.Now().UTC()
	id = fmt.Sprintf("pullbench-%s-%d", sourceID, at.UnixNano())
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: id, Kind: triggers.EDArrival, OccurredAt: at,
		Priority: triggers.PriorityStat, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: MRN(sourceID), Type: "MR"}}},
		SourceSystem: "pullbench", Origin: triggers.Origin{Reference: "pullbench:" + id}}
	if _, err := n.pub.Publish(ctx, ev); err != nil {
		return "", time.Time{}, fmt.Errorf("publish %s: %w", id, err)
	}
	return id, at, nil
}

// Job is what the database tells of one prefetch job.
type Job struct {
	ID, State, LastError string
	EventAt, Planned     time.Time // the care event's time, the job row's creation
	Finished             time.Time // the job row's last update: completed, with its Task
	// PullStart and PullEnd are the times of the Task notes written just
	// before the study's retrieval and once it is complete (indexed, its
	// ImagingStudy local, Provenance and AuditEvent written); milliseconds.
	PullStart, PullEnd time.Time
	Bytes              int64 // from the completion note
}

// ErrJobFailed is returned by WaitJob for a job that ended other than
// completed.
var ErrJobFailed = errors.New("prefetch job did not complete")

// WaitJob waits until the job of a care event has ended and returns it.
// It polls the job row; the times it returns are the ones the prefetcher
// recorded, so the polling interval does not enter them.
func (n *Node) WaitJob(ctx context.Context, eventID string, timeout time.Duration, exited <-chan struct{}) (*Job, error) {
	deadline := time.Now().Add(timeout)
	var state, taskID string
	for {
		err := n.DB.QueryRow(ctx, `SELECT state, task_id FROM prefetch_job WHERE event_id = $1`, eventID).Scan(&state, &taskID)
		if err == nil && (state == "completed" || state == "failed" || state == "cancelled") {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("job of event %s: still %q after %s", eventID, state, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-exited:
			return nil, fmt.Errorf("job of event %s: the prefetcher exited", eventID)
		case <-time.After(5 * time.Millisecond):
		}
	}
	j := &Job{}
	if err := n.DB.QueryRow(ctx, `SELECT id, state, last_error, event_at, created_at, updated_at FROM prefetch_job WHERE event_id = $1`, eventID).
		Scan(&j.ID, &j.State, &j.LastError, &j.EventAt, &j.Planned, &j.Finished); err != nil {
		return nil, fmt.Errorf("job of event %s: %w", eventID, err)
	}
	if j.State != "completed" {
		return j, fmt.Errorf("%w: job %s is %s: %s", ErrJobFailed, j.ID, j.State, j.LastError)
	}
	if err := n.readNotes(ctx, j, taskID); err != nil {
		return j, err
	}
	return j, nil
}

// readNotes finds the retrieval's start and end in the job's Task notes
// (retrieve/worker: "study X: retrieving from S", "study X: complete (N
// new, M already here, B bytes)").
func (n *Node) readNotes(ctx context.Context, j *Job, taskID string) error {
	r, err := n.store.Read(ctx, "Task", taskID)
	if err != nil {
		return fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	var t struct {
		Note []struct{ Time, Text string }
	}
	if err := json.Unmarshal(r.Body, &t); err != nil {
		return fmt.Errorf("task of job %s: %w", j.ID, err)
	}
	for _, note := range t.Note {
		at, err := time.Parse(time.RFC3339Nano, note.Time)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(note.Text, ": retrieving from "):
			j.PullStart = at
		case strings.Contains(note.Text, ": complete ("):
			j.PullEnd = at
			_, rest, _ := strings.Cut(note.Text, "already here, ")
			_, _ = fmt.Sscanf(rest, "%d bytes", &j.Bytes)
		}
	}
	if j.PullStart.IsZero() || j.PullEnd.IsZero() {
		return fmt.Errorf("task of job %s: no retrieval notes (the worker's note texts changed?)", j.ID)
	}
	return nil
}
