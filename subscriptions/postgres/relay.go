package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/internal/database"
)

// Publisher stores a message durably (subscriptions/jetstream.Publisher);
// msgID deduplicates a resend.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
}

// Relay publishes resource_change_outbox in seq order and deletes the rows
// JetStream acknowledged; a crash between the two resends the same event
// ids, which the stream's duplicate window drops. One replica relays at
// a time (a session advisory lock), which keeps the commit order of the
// changes of one resource (they lock its row).
type Relay struct {
	pool *pgxpool.Pool
	pub  Publisher
	log  *slog.Logger
	poll time.Duration
}

const relayLockKey = "priorflow.resource_change_outbox.relay"

// NewRelay returns a relay; poll is how often it looks without a
// notification (0 means 2s).
func NewRelay(pool *pgxpool.Pool, pub Publisher, log *slog.Logger, poll time.Duration) (*Relay, error) {
	if pool == nil || pub == nil || log == nil {
		return nil, errors.New("resource change relay: pool, publisher and logger are required")
	}
	if poll <= 0 {
		poll = 2 * time.Second
	}
	return &Relay{pool: pool, pub: pub, log: log, poll: poll}, nil
}

// Run relays until ctx is cancelled, then returns nil.
func (r *Relay) Run(ctx context.Context) error {
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("resource change relay: session ended; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.poll):
		}
	}
}

func (r *Relay) session(ctx context.Context) error {
	conn, err := database.Lead(ctx, r.pool, relayLockKey, r.poll, nil)
	if err != nil {
		return err
	}
	defer database.CloseLeader(ctx, conn)
	if _, err := conn.Exec(ctx, "LISTEN "+ChangeChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		if err := r.drain(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("resource change relay: publish failed; will retry", "err", err)
		}
		wctx, cancel := context.WithTimeout(ctx, r.poll)
		_, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !timedOut {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

func (r *Relay) drain(ctx context.Context, conn *pgx.Conn) error {
	type row struct {
		seq              int64
		eventID, subject string
		payload          []byte
	}
	for {
		rows, err := conn.Query(ctx, `SELECT seq, event_id, subject, payload FROM resource_change_outbox ORDER BY seq LIMIT 100`)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
			var o row
			return o, cr.Scan(&o.seq, &o.eventID, &o.subject, &o.payload)
		})
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		// Published rows are deleted together: one commit per batch, not
		// per event (a WAL flush each; the relay fell behind a bulk load
		// that way). A crash before the delete resends at most this batch,
		// which the duplicate window drops.
		published := make([]int64, 0, len(batch))
		var perr error
		for _, o := range batch {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.pub.Publish(pctx, o.subject, o.eventID, o.payload)
			cancel()
			if err != nil {
				perr = fmt.Errorf("publish %s: %w", o.eventID, err)
				break
			}
			published = append(published, o.seq)
		}
		if len(published) > 0 {
			// Also at shutdown: what JetStream has is not sent again.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, err := conn.Exec(dctx, `DELETE FROM resource_change_outbox WHERE seq = ANY($1)`, published)
			cancel()
			if err != nil {
				return errors.Join(perr, fmt.Errorf("delete %d published events: %w", len(published), err))
			}
		}
		if perr != nil {
			return perr
		}
	}
}
