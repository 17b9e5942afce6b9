package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/jetstream"
)

// A prefetcher killed with SIGKILL in the middle of a pull leaves a job in
// progress and part of the study stored; a restarted prefetcher gets the
// job back from JetStream after the ack wait, fetches what is missing and
// completes it with the exact instance count and no duplicates.
func TestPrefetcher_KilledMidPull_RestartCompletes(t *testing.T) {
	t.Parallel()
	killedMidPull(t, func(o *orthanctest.Orthanc) (string, []string) {
		return fmt.Sprintf(`
  - name: hospital-b
    kind: dicomweb
    url: %s/dicom-web
    issuer: HOSP-B`, o.URL), nil
	}, syscall.SIGKILL)
}

// The same over DIMSE: the C-GET broken off by the kill, the restarted
// prefetcher's C-FIND finds what the archive lacks and C-GETs only that.
func TestPrefetcher_KilledMidPull_RestartCompletes_DIMSE(t *testing.T) {
	t.Parallel()
	killedMidPull(t, func(o *orthanctest.Orthanc) (string, []string) {
		return dimseSource(o, "c-get"), nil
	}, syscall.SIGKILL)
}

// dimseSource is Orthanc's DICOM port as a source pulled by method.
func dimseSource(o *orthanctest.Orthanc, method string) string {
	return fmt.Sprintf(`
  - name: hospital-b
    kind: dimse
    url: dicom://127.0.0.1:%d
    calledAETitle: %s
    callingAETitle: %s
    retrieveMethod: %s
    issuer: HOSP-B`, o.Port, o.AET, orthanctest.SCUAE, method)
}

// And by C-MOVE: the objects on their way to the killed prefetcher's
// Storage SCP are lost with it; the restarted one, on the same address,
// moves what the archive lacks.
func TestPrefetcher_KilledMidPull_RestartCompletes_CMove(t *testing.T) {
	t.Parallel()
	killedMidPull(t, cmoveSource(t), syscall.SIGKILL)
}

// Stopped with SIGTERM mid C-MOVE, the prefetcher lets the job finish
// within its grace: its Storage SCP takes the objects until the worker has
// stopped.
func TestPrefetcher_StoppedMidPull_FinishesTheMove(t *testing.T) {
	t.Parallel()
	killedMidPull(t, cmoveSource(t), syscall.SIGTERM)
}

func cmoveSource(t *testing.T) func(o *orthanctest.Orthanc) (string, []string) {
	return func(o *orthanctest.Orthanc) (string, []string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		o.MoveTo(t, "PF-KILL", port)
		return dimseSource(o, "c-move"), []string{"-dicom-addr", fmt.Sprintf("127.0.0.1:%d", port), "-dicom-ae-title", "PF-KILL"}
	}
}

// killedMidPull runs the kill and restart with the source source returns,
// and the prefetcher's extra arguments. With SIGTERM, the prefetcher stops
// gracefully instead: the job must end completed before it exits, and no
// restart is needed.
func killedMidPull(t *testing.T, source func(*orthanctest.Orthanc) (string, []string), sig syscall.Signal) {
	if testing.Short() {
		t.Skip("builds the binary and runs Orthanc")
	}
	bin := filepath.Join(t.TempDir(), "prefetcher")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := orthanctest.Start(t)
	st, err := dicomtest.NewGenerator(t).Study(dicomtest.WithPatient("B900", "HOSP-B", "DOE^JANE"), dicomtest.WithModality("CT"),
		dicomtest.WithStudyDate(time.Now().AddDate(-1, 0, 0)), dicomtest.WithTemplate(dicomtest.FileMR),
		dicomtest.WithSeries(4), dicomtest.WithInstancesPerSeries(40),
		dicomtest.WithEdits(dicomtest.Set(tag.PatientBirthDate, "19800101"), dicomtest.Set(tag.PatientSex, "F")))
	if err != nil {
		t.Fatal(err)
	}
	o.UploadStudy(t, st)
	total := len(st.Instances())

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "priorflow.yaml")
	sourceYAML, extra := source(o)
	cfg := fmt.Sprintf(`
sources:%s
rules:
  - name: ct-priors
    on: [appointment-booked]
    leadTime: 12h
    lookback: 5y
    maxPriors: 2
    modalities: same
    bodyRegion: any
`, sourceYAML)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, "")
	_, js := srv.Connect(t)
	dbURL := dbtest.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	start := func(name string) *exec.Cmd {
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		cmd := exec.Command(bin, append([]string{"-config", cfgPath, "-database-url", dbURL, "-nats-url", srv.URL(), "-http-addr", "127.0.0.1:0",
			"-data-dir", filepath.Join(dir, "data"), "-ack-wait", "2s", "-retrieve-backoff", "100ms", "-retrieve-backoff-max", "1s"}, extra...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		})
		return cmd
	}
	first := start("first")

	// The planner migrates the database; then the patient is registered.
	waitFor(t, 60*time.Second, "migrations", func() bool {
		var n int
		return pool.QueryRow(ctx, `SELECT count(*) FROM prefetch_job`).Scan(&n) == nil
	})
	createPatient(t, pool)
	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	pub, _ := jetstream.NewPublisher(js)
	appt := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := pub.Publish(ctx, &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: "ev-kill", Kind: triggers.AppointmentBooked,
		OccurredAt: time.Now().UTC(), ScheduledStart: &appt, Priority: triggers.PriorityRoutine, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: "A9", Type: "MR"}}},
		SourceSystem: "test", Placer: "appt-kill", Origin: triggers.Origin{Reference: "hl7v2:ev-kill"}}); err != nil {
		t.Fatal(err)
	}

	var atKill int
	waitFor(t, 60*time.Second, "the pull to begin", func() bool {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM dicom_instance`).Scan(&atKill)
		return atKill > 0
	})
	if err := first.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	exit := first.Wait()
	var state string
	_ = pool.QueryRow(ctx, `SELECT state FROM prefetch_job`).Scan(&state)
	if sig == syscall.SIGTERM {
		if exit != nil || state != "completed" {
			t.Fatalf("stopped with SIGTERM: exit %v, job %s; want a clean exit after the job completed", exit, state)
		}
	} else {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM dicom_instance`).Scan(&atKill)
		if atKill >= total {
			t.Fatalf("the pull finished (%d instances) before the kill; make the study larger", atKill)
		}
		if state != "in-progress" {
			t.Fatalf("job %s after the kill, want in-progress", state)
		}
		start("second")
		waitFor(t, 90*time.Second, "the job to end", func() bool {
			_ = pool.QueryRow(ctx, `SELECT state FROM prefetch_job`).Scan(&state)
			return state == "completed" || state == "failed"
		})
		if state != "completed" {
			t.Fatalf("job %s, want completed", state)
		}
	}
	var n, distinct, isN int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT sop_uid) FROM dicom_instance WHERE study_uid = $1`, st.StudyInstanceUID).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != total || distinct != total {
		t.Errorf("%d instances (%d distinct) after restart, want %d; %d were stored at the kill", n, distinct, total, atKill)
	}
	var body []byte
	if err := pool.QueryRow(ctx, `SELECT body FROM resource WHERE type = 'ImagingStudy' AND NOT deleted`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var is struct{ NumberOfInstances int }
	_ = json.Unmarshal(body, &is)
	if isN = is.NumberOfInstances; isN != total {
		t.Errorf("ImagingStudy numberOfInstances %d, want %d", isN, total)
	}
	t.Logf("%s with %d of %d instances stored", sig, atKill, total)
}

func createPatient(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.Patient())
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(pool, reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	msg, _, err := codec.Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"urn:hosp-a:mrn","value":"A9"},
		{"system":"urn:priorflow:issuer:HOSP-B","value":"B900"}],"name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-01-01","gender":"female"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InTx(context.Background(), func(tx *postgres.Tx) error { _, err := tx.Create(context.Background(), msg); return err }); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
