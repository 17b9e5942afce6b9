package search_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
	"gocloud.dev/blob/fileblob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/search"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// local is this Priorflow node: FHIR store and archive on a fresh database.
type local struct {
	store   *postgres.Store
	archive *archive.Archive
}

func registry(tb testing.TB) *fhir.Registry {
	tb.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.Task(), fhir.AuditEvent())
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

func newLocal(tb testing.TB) *local {
	tb.Helper()
	pool := dbtest.NewPool(tb)
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	store, err := postgres.New(pool, registry(tb), codec, dbtest.Logger())
	if err != nil {
		tb.Fatal(err)
	}
	bucket, err := fileblob.OpenBucket(tb.TempDir(), &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bucket.Close() })
	a, err := archive.New(store, bucket, dbtest.Logger(), archive.Config{DICOMwebURL: "http://local.test/dicom-web", SpoolDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	return &local{store: store, archive: a}
}

// put writes a resource given as JSON and returns its id.
func (l *local) put(tb testing.TB, v map[string]any) string {
	tb.Helper()
	b, _ := json.Marshal(v)
	msg, _, err := l.store.Codec().Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	var id string
	err = l.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		r, err := tx.Create(context.Background(), msg)
		if err == nil {
			id = r.ID
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// storeLocal stores instances in the local archive.
func (l *local) storeLocal(tb testing.TB, ins ...*dicomtest.Instance) {
	tb.Helper()
	var objs []*archive.Object
	for _, in := range ins {
		o, err := l.archive.Spool(bytes.NewReader(in.Bytes))
		if err != nil {
			tb.Fatal(err)
		}
		objs = append(objs, o)
	}
	for _, r := range l.archive.Store(context.Background(), objs, "") {
		if r.Err != nil {
			tb.Fatalf("local store: %v", r.Err)
		}
	}
}

// search reads resources of a type matching params.
func (l *local) resources(tb testing.TB, typ string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	rows, err := l.store.Pool().Query(context.Background(),
		`SELECT body FROM resource WHERE type = $1 AND NOT deleted`, typ)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			tb.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		out = append(out, m)
	}
	return out
}

// person is a patient as a remote archive files them.
type person struct {
	id, issuer, name, birth, sex string
}

func study(tb testing.TB, g *dicomtest.Generator, p person, date time.Time, modality, bodyPart string, opts ...dicomtest.Option) *dicomtest.Study {
	tb.Helper()
	eds := []dicomtest.Edition{dicomtest.Set(tag.PatientBirthDate, p.birth), dicomtest.Set(tag.PatientSex, p.sex)}
	if bodyPart != "" {
		eds = append(eds, dicomtest.Set(tag.BodyPartExamined, bodyPart))
	}
	o := append([]dicomtest.Option{dicomtest.WithPatient(p.id, p.issuer, p.name), dicomtest.WithStudyDate(date),
		dicomtest.WithModality(modality), dicomtest.WithTemplate(dicomtest.FileMR), dicomtest.WithEdits(eds...)}, opts...)
	st, err := g.Study(o...)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 9, 0, 0, 0, time.UTC) }

func outcome(res *search.Result, name string) search.SourceOutcome {
	for _, o := range res.Sources {
		if o.Source == name {
			return o
		}
	}
	return search.SourceOutcome{}
}

func skipReason(res *search.Result, uid string) search.SkipReason {
	for _, s := range res.Skipped {
		if s.StudyInstanceUID == uid {
			return s.Reason
		}
	}
	return ""
}

func discard() *slog.Logger { return dbtest.Logger() }
