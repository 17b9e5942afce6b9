package hl7v2_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/hl7v2"
)

// latin1ADT is an ADT^A04 in ISO 8859-1: facility HÔPITAL, patient MÜLLER^JOSÉ
// with identifier ÄB<n>. msh18 is its MSH-18.
func latin1ADT(controlID, msh18 string) []byte {
	return []byte(strings.Join([]string{
		"MSH|^~\\&|ADT|H\xd4PITAL|PF|PF|20240101120000||ADT^A04|" + controlID + "|P|2.5|||||FR|" + msh18,
		"PID|1||\xc4B" + controlID + "^^^H\xd4P^MR||M\xdcLLER^JOS\xc9||19800101|M",
		"PV1|1|O",
	}, "\r") + "\r")
}

// storedEvents returns every care event in the stream.
func storedEvents(tb testing.TB, st *stack) []triggers.CareEvent {
	tb.Helper()
	var out []triggers.CareEvent
	for _, m := range streamed(tb, st.js) {
		out = append(out, m.ev)
	}
	return out
}

// TestIntake_MLLP_CharacterSets sends messages in ISO 8859-1 over MLLP to
// the intake on PostgreSQL and JetStream. Read as bytes (before MSH-18 was
// honoured), the facility's name made PostgreSQL refuse the raw message
// row, and the sender got AE 207 "resend" for ever.
func TestIntake_MLLP_CharacterSets(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewPool(t)
	st := startStackConfig(t, pool, hl7v2.IntakeConfig{Timeout: 5 * time.Second})
	c := dial(t, st.addr)

	declared := latin1ADT("C1", "8859/1")
	if code, ctl, errCode := send(t, c, declared); code != "AA" || ctl != "C1" {
		t.Fatalf("declared 8859/1: MSA %s %s (ERR-3 %s), want AA", code, ctl, errCode)
	}
	// Not declared, and no site default: refused, nothing stored.
	if code, _, errCode := send(t, c, latin1ADT("C2", "")); code != "AR" || errCode != "102" {
		t.Errorf("undeclared 8859/1: MSA-1 %s ERR-3 %s, want AR 102", code, errCode)
	}
	// A set not read here, with more than ASCII in it: refused.
	if code, _, errCode := send(t, c, latin1ADT("C3", "GB 18030-2000")); code != "AR" || errCode != "103" {
		t.Errorf("GB 18030: MSA-1 %s ERR-3 %s, want AR 103", code, errCode)
	}

	evs := storedEvents(t, st)
	if len(evs) != 1 {
		t.Fatalf("stream holds %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Patient.Family != "MÜLLER" || !slices.Equal(ev.Patient.Given, []string{"JOSÉ"}) ||
		len(ev.Patient.Identifiers) != 1 || ev.Patient.Identifiers[0].Value != "ÄBC1" ||
		ev.Patient.Identifiers[0].Authority != "HÔP" || ev.SourceSystem != "ADT@HÔPITAL" {
		t.Errorf("event patient %+v from %q", ev.Patient, ev.SourceSystem)
	}
	raw, err := st.store.Get(context.Background(), ev.ID)
	if err != nil {
		t.Fatalf("raw message: %v", err)
	}
	if !bytes.Equal(raw.Data, declared) || raw.SendingFacility != "HÔPITAL" {
		t.Errorf("raw message from %q stored as %q, want the bytes sent", raw.SendingFacility, raw.Data)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM hl7_message`).Scan(&n); err != nil || n != 1 {
		t.Errorf("hl7_message holds %d rows (%v), want 1: refused messages leave none", n, err)
	}

	// The site says what its senders use without declaring it.
	site := startStackConfig(t, dbtest.NewPool(t), hl7v2.IntakeConfig{Timeout: 5 * time.Second, DefaultCharset: "8859/1"})
	if code, _, errCode := send(t, dial(t, site.addr), latin1ADT("C4", "")); code != "AA" {
		t.Fatalf("undeclared 8859/1 with a site default: MSA-1 %s (ERR-3 %s), want AA", code, errCode)
	}
	if evs := storedEvents(t, site); len(evs) != 1 || evs[0].Patient.Family != "MÜLLER" {
		t.Errorf("site default: events %+v, want MÜLLER's", evs)
	}
}

// TestIntake_MLLP_ControlCharacter: a NUL in the patient's name was
// acknowledged AA, and the planner, whose search for the patient and whose
// Task could not carry it, failed the event at every delivery until
// JetStream gave up on it. Now the sender is told, and nothing is kept.
func TestIntake_MLLP_ControlCharacter(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewPool(t)
	st := startStackConfig(t, pool, hl7v2.IntakeConfig{Timeout: 5 * time.Second})
	msg := []byte(strings.Join([]string{
		"MSH|^~\\&|ADT|HOSP|PF|PF|20240101120000||ADT^A04|N1|P|2.5",
		"PID|1||AB1^^^HOSP^MR||DOE\x00^JOHN||19800101|M",
		"PV1|1|O",
	}, "\r") + "\r")
	if code, ctl, errCode := send(t, dial(t, st.addr), msg); code != "AE" || ctl != "N1" || errCode != "102" {
		t.Errorf("NUL in PID-5: MSA %s %s ERR-3 %s, want AE N1 102", code, ctl, errCode)
	}
	if evs := storedEvents(t, st); len(evs) != 0 {
		t.Errorf("stream holds %d events, want none", len(evs))
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM hl7_message`).Scan(&n); err != nil || n != 0 {
		t.Errorf("hl7_message holds %d rows (%v), want none", n, err)
	}
}

func TestNewIntake_RefusesUnknownCharset(t *testing.T) {
	t.Parallel()
	_, err := hl7v2.NewIntake(nopStore{}, nopPublisher{}, dbtest.Logger(), hl7v2.IntakeConfig{DefaultCharset: "latin1"})
	if !errors.Is(err, hl7v2.ErrUnsupportedCharset) {
		t.Errorf("NewIntake: %v, want ErrUnsupportedCharset", err)
	}
}

type nopStore struct{}

func (nopStore) Save(context.Context, *triggers.RawMessage) (bool, error) { return true, nil }
func (nopStore) Get(context.Context, string) (*triggers.RawMessage, error) {
	return nil, triggers.ErrNotFound
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, *triggers.CareEvent) (bool, error) { return false, nil }
