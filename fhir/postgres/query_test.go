package postgres_test

import (
	"context"
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
