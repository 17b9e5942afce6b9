// Package postgres is the PostgreSQL adapter of the triggers domain: it keeps
// the raw HL7 v2 messages behind care events (table hl7_message, migration
// 004) and the outbox of care events derived from FHIR writes, with the relay
// that publishes them to JetStream (table event_outbox, migration 005).
package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/triggers"
)

// RawStore keeps raw inbound messages keyed by care event id.
type RawStore struct {
	pool *pgxpool.Pool
}

// NewRawStore returns a store on pool.
func NewRawStore(pool *pgxpool.Pool) (*RawStore, error) {
	if pool == nil {
		return nil, errors.New("postgres raw store: pool is required")
	}
	return &RawStore{pool: pool}, nil
}

// Save stores msg unless a message with its id is already stored, and
// reports whether it inserted it. Saving the same message twice is
// harmless: the first copy is kept.
//
// The insert commits with synchronous_commit off: the sender's ACK waits for
// the care event to be durable in JetStream, not for this copy, and not
// waiting for the WAL flush doubles the intake rate. A database crash can
// lose at most the last fraction of a second of raw copies, never an event.
func (s *RawStore) Save(ctx context.Context, msg *triggers.RawMessage) (inserted bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`SET LOCAL synchronous_commit = off`)
		ins := b.Queue(`
			INSERT INTO hl7_message (id, received_at, remote_addr, sending_application, sending_facility,
			                         message_type, control_id, raw)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO NOTHING`,
			msg.ID, msg.ReceivedAt, msg.Remote, msg.SendingApplication, msg.SendingFacility,
			msg.MessageType, msg.ControlID, msg.Data)
		ins.Exec(func(tag pgconn.CommandTag) error {
			inserted = tag.RowsAffected() == 1
			return nil
		})
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return false, fmt.Errorf("save raw message: %w", err)
	}
	return inserted, nil
}

// Get returns the message stored under id, or an error wrapping
// triggers.ErrNotFound.
func (s *RawStore) Get(ctx context.Context, id string) (*triggers.RawMessage, error) {
	var m triggers.RawMessage
	err := s.pool.QueryRow(ctx, `
		SELECT id, received_at, remote_addr, sending_application, sending_facility, message_type, control_id, raw
		FROM hl7_message WHERE id = $1`, id).
		Scan(&m.ID, &m.ReceivedAt, &m.Remote, &m.SendingApplication, &m.SendingFacility,
			&m.MessageType, &m.ControlID, &m.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get raw message: %w", triggers.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get raw message: %w", err)
	}
	return &m, nil
}
