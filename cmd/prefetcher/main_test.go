package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/natsjs/natstest"
	"github.com/priorflow/priorflow/internal/tlstest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/jetstream"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func TestRun_InvalidRulesStopStartupWithTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  - name: x\n    on: [appointment-booked]\n    leadTime: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", path, "-database-url", "postgres://nobody@127.0.0.1:1/x"}, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), ":4:") {
		t.Errorf("err = %v, want one naming line 4", err)
	}
}

func TestRun_InvalidIdentifiersStopStartupWithTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "priorflow.yaml")
	if err := os.WriteFile(path, []byte("rules: []\nidentifiers:\n  withoutAuthority: local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", path, "-database-url", "postgres://nobody@127.0.0.1:1/x"}, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), path+":3:") {
		t.Errorf("err = %v, want one naming line 3", err)
	}
}

func TestLoadConfig_RefusesUnknownDICOMCharset(t *testing.T) {
	_, err := loadConfig([]string{"-dicom-charset", "latin1"})
	if err == nil || !strings.Contains(err.Error(), "PRIORFLOW_DICOM_CHARSET") {
		t.Errorf("err = %v, want one naming PRIORFLOW_DICOM_CHARSET", err)
	}
	if _, err := loadConfig([]string{"-dicom-charset", "ISO_IR 101"}); err != nil {
		t.Errorf("ISO_IR 101: %v", err)
	}
}

func TestLoadConfig_StorageSCP(t *testing.T) {
	c, err := loadConfig(nil)
	if err != nil || c.DICOMAddr != ":11112" || c.DICOMAETitle != "PRIORFLOW" {
		t.Errorf("defaults: %+v, %v; want :11112 and PRIORFLOW", c, err)
	}
	_, err = loadConfig([]string{"-dicom-addr", "11112", "-dicom-ae-title", "A_TITLE_OF_17_CHR"})
	if err == nil || !strings.Contains(err.Error(), "PRIORFLOW_DICOM_ADDR") || !strings.Contains(err.Error(), "PRIORFLOW_DICOM_AE_TITLE") {
		t.Errorf("err = %v, want one naming PRIORFLOW_DICOM_ADDR and PRIORFLOW_DICOM_AE_TITLE", err)
	}
}

// The Storage SCP exists only for C-MOVE sources, and speaks TLS when
// one of them is reached over DICOM TLS.
func TestStorageSCP(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	_, cert, key := ca.Issue(t, "scp", true)
	srcs, err := search.ParseSources("p.yaml", []byte(`sources:
  - name: by-get
    kind: dimse
    url: dicom://pacs:104
    calledAETitle: PACS
    issuer: A
  - name: by-move
    kind: dimse
    url: dicom://pacs:104
    calledAETitle: PACS
    retrieveMethod: c-move
    issuer: A
  - name: by-move-tls
    kind: dimse
    url: dicom://pacs:2762
    calledAETitle: PACS
    retrieveMethod: c-move
    issuer: A
    auth: {mTLS: {caFile: /etc/pacs-ca.pem}}
`))
	if err != nil {
		t.Fatal(err)
	}
	log := dbtest.Logger()
	cfg := &config{DICOMAETitle: "PF1", RulesFile: "p.yaml"}
	if scp, err := storageSCP(cfg, srcs[:1], nil, log); scp != nil || err != nil {
		t.Errorf("C-GET only: %v, %v; want no SCP", scp, err)
	}
	if scp, err := storageSCP(cfg, srcs[:2], nil, log); scp == nil || scp.AETitle != "PF1" || scp.TLS != nil || err != nil {
		t.Errorf("a C-MOVE source: %+v, %v; want a plain SCP called PF1", scp, err)
	}
	if _, err := storageSCP(cfg, srcs, nil, log); err == nil || !strings.Contains(err.Error(), "p.yaml:13: source by-move-tls") ||
		!strings.Contains(err.Error(), "PRIORFLOW_DICOM_TLS_CERT") {
		t.Errorf("a C-MOVE source over TLS, no SCP certificate: %v", err)
	}
	cfg.DICOMTLSCert, cfg.DICOMTLSKey, cfg.DICOMTLSClientCA = cert, key, ca.File
	if scp, err := storageSCP(cfg, srcs, nil, log); err != nil || scp.TLS == nil || scp.TLS.ClientCAs == nil {
		t.Errorf("with a certificate: %+v, %v; want a TLS SCP requiring client certificates", scp, err)
	}
}

// A care event published on CARE_EVENTS becomes a prefetch job with its
// Task, planned by the running prefetcher, which stops cleanly.
func TestRun_PlansJobsFromCareEvents(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, "")
	_, js := srv.Connect(t)
	dbURL := dbtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "prefetcher.log"))
	go func() {
		errc <- run(ctx, []string{"-config", "../../config/priorflow.yaml", "-database-url", dbURL, "-nats-url", srv.URL(), "-http-addr", "127.0.0.1:0", "-data-dir", t.TempDir()}, logf)
	}()

	if err := jetstream.EnsureStream(ctx, js, jetstream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	pub, _ := jetstream.NewPublisher(js)
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, ID: "ev-1", Kind: triggers.AppointmentBooked,
		OccurredAt: time.Now().UTC(), ScheduledStart: &start, Priority: triggers.PriorityRoutine, Modality: "CT",
		Patient:      triggers.Patient{Identifiers: []triggers.Identifier{{System: "urn:oid:1.2.3", Value: "MRN9", Type: "MR"}}},
		SourceSystem: "test", Placer: "appt-1", Origin: triggers.Origin{Reference: "hl7v2:ev-1"}}
	if _, err := pub.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var jobs, tasks int
	var due time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = pool.QueryRow(ctx, `SELECT count(*), max(due_at) FROM prefetch_job`).Scan(&jobs, &due)
		if jobs > 0 {
			break
		}
	}
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM resource WHERE type = 'Task' AND NOT deleted`).Scan(&tasks)
	if jobs != 1 || tasks != 1 {
		t.Fatalf("%d jobs and %d Tasks, want 1 each", jobs, tasks)
	}
	if want := start.Add(-12 * time.Hour); !due.Equal(want) {
		t.Errorf("due %v, want start - leadTime 12h = %v", due, want)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("prefetcher did not stop")
	}
}
