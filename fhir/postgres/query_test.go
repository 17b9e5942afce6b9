package postgres_test

import (
	"context"
	"errors"
	"slices"
	"testing"

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
