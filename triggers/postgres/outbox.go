package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/priorflow/priorflow/triggers"
)

// OutboxChannel is the LISTEN/NOTIFY channel that tells the relay a
// transaction added outbox rows. The notification is delivered at commit, so
// the relay never wakes up for rows it cannot see yet.
const OutboxChannel = "priorflow_outbox"

// OutboxEntry is a care event waiting in the outbox (table event_outbox,
// migration 005) to be published.
type OutboxEntry struct {
	// Seq orders the outbox; it is set by the database.
	Seq   int64
	Event *triggers.CareEvent
	// PatientRef is the FHIR reference the event's patient was resolved
	// from ("Patient/123"), empty when there was none.
	PatientRef string
	// Blocked, when not empty, keeps the entry from being published and
	// says why, for the integration engineer who looks at it. It never
	// holds patient data.
	Blocked string
}

// Enqueue writes entries into the outbox inside tx, the transaction that
// writes what the events are about, and notifies the relay at commit. An
// entry whose event id is already in the outbox is skipped: the same event
// is stored once.
func Enqueue(ctx context.Context, tx pgx.Tx, entries ...OutboxEntry) error {
	if len(entries) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range entries {
		payload, err := json.Marshal(e.Event)
		if err != nil {
			return fmt.Errorf("enqueue care event: %w", err)
		}
		b.Queue(`INSERT INTO event_outbox (event_id, subject, payload, blocked_reason, patient_ref)
			VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''))
			ON CONFLICT (event_id) DO NOTHING`,
			e.Event.ID, e.Event.Subject(), string(payload), e.Blocked, e.PatientRef)
	}
	b.Queue(`SELECT pg_notify($1, '')`, OutboxChannel)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("enqueue care event: %w", err)
	}
	return nil
}

// EnqueuedInTx returns the entries tx itself enqueued for patientRef, in
// seq order: a Patient written later in the same transaction (a transaction
// Bundle writes entries in its own order) completes them with Update.
func EnqueuedInTx(ctx context.Context, tx pgx.Tx, patientRef string) ([]OutboxEntry, error) {
	rows, err := tx.Query(ctx, `
		SELECT seq, payload, COALESCE(blocked_reason, '')
		FROM event_outbox
		WHERE xact = pg_current_xact_id() AND patient_ref = $1
		ORDER BY seq`, patientRef)
	if err != nil {
		return nil, fmt.Errorf("outbox entries of this transaction: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		e := OutboxEntry{PatientRef: patientRef, Event: &triggers.CareEvent{}}
		var payload []byte
		if err := rows.Scan(&e.Seq, &payload, &e.Blocked); err != nil {
			return nil, fmt.Errorf("outbox entries of this transaction: %w", err)
		}
		if err := json.Unmarshal(payload, e.Event); err != nil {
			return nil, fmt.Errorf("outbox entry %d: %w", e.Seq, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox entries of this transaction: %w", err)
	}
	return out, nil
}

// Update rewrites the event and the blocked reason of an entry (by Seq)
// inside tx. The event id stays what it was.
func Update(ctx context.Context, tx pgx.Tx, e OutboxEntry) error {
	payload, err := json.Marshal(e.Event)
	if err != nil {
		return fmt.Errorf("update outbox entry %d: %w", e.Seq, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE event_outbox SET payload = $2, blocked_reason = NULLIF($3, '') WHERE seq = $1`,
		e.Seq, string(payload), e.Blocked); err != nil {
		return fmt.Errorf("update outbox entry %d: %w", e.Seq, err)
	}
	return nil
}
