package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	eppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/endpoint_go_proto"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.Patient(), fhir.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(dbtest.NewPool(t), reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TokenMatches finds what the search typ?param=system|code finds, for many
// codes at once.
func TestStore_TokenMatches(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	create := func(body string) string {
		t.Helper()
		res, _, err := s.Codec().Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var id string
		err = s.InTx(ctx, func(tx *postgres.Tx) error {
			out, err := tx.Create(ctx, res)
			if err == nil {
				id = out.ID
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := create(`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"A"},{"system":"urn:s","value":"A"}]}`)
	b1 := create(`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"B"}]}`)
	b2 := create(`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"B"},{"system":"urn:other","value":"C"}]}`)
	create(`{"resourceType":"Patient","identifier":[{"system":"urn:other","value":"A"}]}`)
	create(`{"resourceType":"Endpoint","status":"active","connectionType":{"system":"urn:s","code":"A"},"payloadType":[{"text":"x"}],"address":"http://x"}`)
	gone := create(`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"D"}]}`)
	if err := s.InTx(ctx, func(tx *postgres.Tx) error { _, err := tx.Delete(ctx, "Patient", gone, 0); return err }); err != nil {
		t.Fatal(err)
	}

	got, err := s.TokenMatches(ctx, "Patient", "identifier", "urn:s", []string{"B", "A", "C", "D", "E"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]string{}
	for code, ms := range got {
		for _, m := range ms {
			if m.Type != "Patient" || m.Version != 1 || len(m.Body) == 0 {
				t.Errorf("%s: match %+v", code, m)
			}
			ids[code] = append(ids[code], m.ID)
		}
	}
	want := map[string][]string{"A": {a}, "B": {b1, b2}}
	if len(ids) != len(want) || !slices.Equal(ids["A"], want["A"]) || !slices.Equal(ids["B"], want["B"]) {
		t.Errorf("matches %v, want %v (oldest first; none for another system, type or a deleted Patient)", ids, want)
	}
	if got, err := s.TokenMatches(ctx, "Patient", "identifier", "urn:s", nil); err != nil || len(got) != 0 {
		t.Errorf("no codes: %v %v", got, err)
	}
}

// A deferred write goes in with the commit, not at all when the transaction
// rolls back, and fails the transaction when it fails.
func TestTx_Defer(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	outbox := func() int {
		t.Helper()
		var n int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM resource_change_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	patient, _, err := s.Codec().Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"DEFER"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO resource_change_outbox (event_id, subject, payload) VALUES ($1, 's', '{}')`

	err = s.InTx(ctx, func(tx *postgres.Tx) error {
		tx.Defer(insert, "committed")
		if n := outbox(); n != 0 {
			t.Errorf("%d outbox rows before the commit", n)
		}
		_, err := tx.Create(ctx, patient)
		return err
	})
	if err != nil || outbox() != 1 {
		t.Fatalf("committed: err %v, %d rows, want 1", err, outbox())
	}

	boom := errors.New("boom")
	if err := s.InTx(ctx, func(tx *postgres.Tx) error { tx.Defer(insert, "rolled back"); return boom }); !errors.Is(err, boom) || outbox() != 1 {
		t.Errorf("rolled back: err %v, %d rows, want 1", err, outbox())
	}

	err = s.InTx(ctx, func(tx *postgres.Tx) error {
		tx.Defer(insert, "committed") // a duplicate event_id: the write fails
		_, err := tx.Create(ctx, patient)
		return err
	})
	if err == nil {
		t.Error("a failing deferred write did not fail the transaction")
	}
	if got, err := s.TokenMatches(ctx, "Patient", "identifier", "urn:s", []string{"DEFER"}); err != nil || len(got["DEFER"]) != 1 {
		t.Errorf("Patients after the failed transaction: %v %v, want the first one only", got, err)
	}
}

// CreateMany stores what Create stores, one resource at a time: the same
// JSON but for id and meta, the same search index rows, the write hooks of
// each; across more resources than one statement takes, in order, and with
// runs of alike resources whose search values are partly the first's.
func TestTx_CreateMany(t *testing.T) {
	t.Parallel()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := fhir.NewRegistry(fhir.Patient(), fhir.ImagingStudy(), fhir.AuditEvent())
	if err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(dbtest.NewPool(t), reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	hooked := map[string]int{}
	for _, typ := range []string{"ImagingStudy", "AuditEvent"} {
		s.OnWrite(typ, func(_ context.Context, _ *postgres.Tx, prev, next *fhir.Resource) error {
			if prev != nil || next.RID == 0 || next.Version != 1 {
				t.Errorf("hook of %s/%s: prev %v, next version %d rid %d", next.Type, next.ID, prev, next.Version, next.RID)
			}
			hooked[next.Type+"/"+next.ID]++
			return nil
		})
	}
	ctx := context.Background()
	// Two of each type, alike but in a few indexed fields: each worker's
	// run begins with a different one (six bodies, runs of 250 and 100),
	// and later ones of its type share some search values with it.
	bodies := []string{
		`{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"action":"E","recorded":"2026-12-06T10:00:00.000000Z","agent":[{"who":{"reference":"Practitioner/pr1"},"requestor":true,"name":"viewer"}],"source":{"observer":{"display":"Priorflow"}},"entity":[{"what":{"reference":"Patient/p1"}},{"what":{"reference":"https://other.example.org/fhir/Patient/p9"}}]}`,
		`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p1"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"started":"2026-12-06T10:00:00Z","series":[{"uid":"1.2.3.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
		`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"MANY"}],"name":[{"family":"Many","given":["Ann"]}],"birthDate":"1970-01-01"}`,
		`{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"action":"E","recorded":"2026-12-06T10:00:01.000000Z","agent":[{"who":{"reference":"Practitioner/pr1"},"requestor":true,"name":"viewer"}],"source":{"observer":{"display":"Priorflow"}},"entity":[{"what":{"reference":"Patient/p2"}},{"what":{"reference":"https://other.example.org/fhir/Patient/p9"}}]}`,
		`{"resourceType":"ImagingStudy","status":"available","subject":{"reference":"Patient/p2"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"started":"2026-12-06T10:00:00Z","series":[{"uid":"1.2.3.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"MR"}}]}`,
		`{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"MANY"}],"name":[{"family":"Other","given":["Ann"]}],"birthDate":"1970-01-01"}`,
	}
	var msgs []proto.Message
	for i := range 1201 { // more than one statement's worth
		m, _, err := codec.Parse([]byte(bodies[i%len(bodies)]))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}

	// One of each through Create, for what they must match.
	var one []*fhir.Resource
	if err := s.InTx(ctx, func(tx *postgres.Tx) error {
		for _, m := range msgs[:len(bodies)] {
			r, err := tx.Create(ctx, m)
			if err != nil {
				return err
			}
			one = append(one, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var many []*fhir.Resource
	if err := s.InTx(ctx, func(tx *postgres.Tx) error {
		var err error
		many, err = tx.CreateMany(ctx, msgs, 2)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	if len(many) != len(msgs) {
		t.Fatalf("%d results for %d resources", len(many), len(msgs))
	}
	ids := map[string]bool{}
	for i, r := range many {
		if ids[r.ID] {
			t.Fatalf("id %s twice", r.ID)
		}
		ids[r.ID] = true
		want := one[i%len(bodies)]
		if r.Type != want.Type || r.Version != 1 || r.Method != "POST" || r.RID == 0 {
			t.Fatalf("result %d: %+v", i, r)
		}
		stored, err := s.Read(ctx, r.Type, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(stored.Body) != string(r.Body) || stored.RID != r.RID || !stored.LastUpdated.Equal(r.LastUpdated) {
			t.Fatalf("result %d is not what was stored", i)
		}
		var own struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(stored.Body, &own); err != nil || own.ID != r.ID || own.Meta.VersionID != "1" {
			t.Fatalf("result %d: the body carries id %q, version %q (%v), want %s and 1", i, own.ID, own.Meta.VersionID, err, r.ID)
		}
		if got, want := withoutIDAndMeta(t, stored.Body), withoutIDAndMeta(t, want.Body); got != want {
			t.Fatalf("result %d: stored\n%s\nwant (as Create stores it)\n%s", i, got, want)
		}
		if got, want := indexRows(t, s, r.RID), indexRows(t, s, want.RID); !slices.Equal(got, want) {
			t.Fatalf("result %d: search index\n%v\nwant (as Create indexes it)\n%v", i, got, want)
		}
		if r.Type != "Patient" && hooked[r.Type+"/"+r.ID] != 1 {
			t.Fatalf("result %d: write hook ran %d times", i, hooked[r.Type+"/"+r.ID])
		}
	}

	for _, workers := range []int{0, 1} {
		patient, _, err := codec.Parse([]byte(bodies[2]))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.InTx(ctx, func(tx *postgres.Tx) error {
			_, err := tx.CreateMany(ctx, []proto.Message{patient, &eppb.Endpoint{}}, workers)
			return err
		}); !fhir.IsKind(err, fhir.KindNotFound) {
			t.Errorf("an unregistered type (%d workers): %v, want not found", workers, err)
		}
	}
	if got, err := s.TokenMatches(ctx, "Patient", "identifier", "urn:s", []string{"MANY"}); err != nil || len(got["MANY"]) != 2+400 {
		t.Errorf("%d Patients found by identifier (%v), want 402: nothing of the failed call", len(got["MANY"]), err)
	}
}

// withoutIDAndMeta is a stored body without the elements the store sets.
func withoutIDAndMeta(t *testing.T, body []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "id")
	delete(m, "meta")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// indexRows are the search index rows of rid, sorted, without the rid.
func indexRows(t *testing.T, s *postgres.Store, rid int64) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
		SELECT 'token ' || param || ' ' || system || '|' || code FROM idx_token WHERE rid = $1
		UNION ALL SELECT 'string ' || param || ' ' || norm || ' ' || exact FROM idx_string WHERE rid = $1
		UNION ALL SELECT 'date ' || param || ' ' || lo::text || ' ' || hi::text FROM idx_date WHERE rid = $1
		UNION ALL SELECT 'ref ' || param || ' ' || target_type || '/' || target_id || ' ' || url FROM idx_ref WHERE rid = $1
		UNION ALL SELECT 'number ' || param || ' ' || value::text FROM idx_number WHERE rid = $1`, rid)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no search index rows for rid %d", rid)
	}
	slices.Sort(out)
	return out
}
