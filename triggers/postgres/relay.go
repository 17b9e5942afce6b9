package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/triggers"
)

// Publisher stores care events durably (triggers/jetstream.Publisher): it
// returns only once the event is stored, and an event id it has seen within
// its duplicate window is acknowledged but stored once.
type Publisher interface {
	Publish(ctx context.Context, ev *triggers.CareEvent) (duplicate bool, err error)
}

// RelayConfig tunes a Relay. The zero value works.
type RelayConfig struct {
	// PollInterval is how often the relay looks at the outbox without a
	// notification, and how long it waits after a failed publish or a lost
	// database connection; 0 means 2s.
	PollInterval time.Duration
	// PublishTimeout bounds one publish; 0 means 10s.
	PublishTimeout time.Duration
	// BatchSize is how many rows one read of the outbox takes; 0 means 100.
	BatchSize int
	// Registerer, if set, receives the outbox depth gauges.
	Registerer prometheus.Registerer
}

// Relay publishes the outbox: rows in seq order, each deleted once the
// Publisher has acknowledged it. A crash between the ack and the delete
// resends the same event id later, which the stream's duplicate window drops;
// so an event is never lost and, within that window, never stored twice.
//
// Of several replicas one relays at a time: the leader holds a session
// advisory lock on its own connection, which PostgreSQL releases when the
// connection dies, and the others try to take it every PollInterval. One
// leader publishing in seq order keeps the order in which the writes of one
// resource committed (they lock the resource row, so their seq follows
// their commit order), which SKIP LOCKED workers in parallel would not.
// Blocked rows are skipped and kept.
type Relay struct {
	pool *pgxpool.Pool
	pub  Publisher
	log  *slog.Logger
	cfg  RelayConfig

	depth *prometheus.GaugeVec
}

// relayLockKey names the advisory lock of the relay leader; hashed the way
// fhir/postgres hashes its lock keys.
const relayLockKey = "priorflow.event_outbox.relay"

// NewRelay returns a relay over the outbox in pool's database.
func NewRelay(pool *pgxpool.Pool, pub Publisher, log *slog.Logger, cfg RelayConfig) (*Relay, error) {
	if pool == nil || pub == nil || log == nil {
		return nil, errors.New("outbox relay: pool, publisher and logger are required")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	r := &Relay{pool: pool, pub: pub, log: log, cfg: cfg}
	r.depth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "priorflow_event_outbox_rows",
		Help: "Care events in the outbox: pending (waiting to be published) and blocked (kept for an integration engineer).",
	}, []string{"state"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(r.depth); err != nil {
			return nil, fmt.Errorf("outbox relay: register metrics: %w", err)
		}
	}
	return r, nil
}

// Run relays until ctx is cancelled, then returns nil. Rows not yet
// published stay in the outbox for the next run; a publish cut short by the
// cancellation is retried then (and deduplicated if it had been stored).
func (r *Relay) Run(ctx context.Context) error {
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("outbox relay: database session ended; retrying", "err", err)
		if !sleep(ctx, r.cfg.PollInterval) {
			return nil
		}
	}
}

// session runs on one dedicated connection (outside the pool, so the
// session lock and LISTEN end with it): wait to lead, then relay.
func (r *Relay) session(ctx context.Context) error {
	conn, err := database.Lead(ctx, r.pool, relayLockKey, r.cfg.PollInterval, func(conn *pgx.Conn) error {
		return r.measure(ctx, conn) // followers keep the depth gauge current
	})
	if err != nil {
		return err
	}
	defer database.CloseLeader(ctx, conn)
	r.log.Info("outbox relay: leading")
	if _, err := conn.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		err := r.drain(ctx, conn)
		var pe *publishError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &pe):
			// NATS is down or slow: keep the rows, try again later.
			r.log.Warn("outbox relay: publish failed; will retry", "event", pe.id, "err", pe.err)
			if err := r.measure(ctx, conn); err != nil {
				return err
			}
			if !sleep(ctx, r.cfg.PollInterval) {
				return ctx.Err()
			}
			continue
		case err != nil:
			return err
		}
		if err := r.measure(ctx, conn); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.PollInterval)
		_, err = conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		if err != nil && !timedOut {
			return fmt.Errorf("wait for notification: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

type publishError struct {
	id  string
	err error
}

func (e *publishError) Error() string { return fmt.Sprintf("publish %s: %v", e.id, e.err) }

type outboxRow struct {
	seq     int64
	eventID string
	payload []byte
}

// drain publishes pending rows in seq order until none are left or a
// publish fails; a row after a failed one is not published before it.
func (r *Relay) drain(ctx context.Context, conn *pgx.Conn) error {
	for {
		rows, err := conn.Query(ctx, `
			SELECT seq, event_id, payload FROM event_outbox
			WHERE blocked_reason IS NULL ORDER BY seq LIMIT $1`, r.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxRow, error) {
			var o outboxRow
			return o, row.Scan(&o.seq, &o.eventID, &o.payload)
		})
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		for _, o := range batch {
			if err := r.relayOne(ctx, conn, o); err != nil {
				return err
			}
		}
		if len(batch) < r.cfg.BatchSize {
			return nil
		}
	}
}

func (r *Relay) relayOne(ctx context.Context, conn *pgx.Conn, o outboxRow) error {
	var ev triggers.CareEvent
	err := json.Unmarshal(o.payload, &ev)
	if err == nil {
		err = ev.Validate()
	}
	if err == nil && ev.ID != o.eventID {
		err = fmt.Errorf("payload id %q is not the row's event id", ev.ID)
	}
	if err != nil {
		// A row that can never be published must not hold up the rows
		// after it: block it and say why.
		reason := "invalid event: " + err.Error()
		r.log.Error("outbox relay: blocking an invalid event", "event", o.eventID, "seq", o.seq, "reason", reason)
		if _, err := conn.Exec(ctx, `UPDATE event_outbox SET blocked_reason = $2 WHERE seq = $1`, o.seq, reason); err != nil {
			return fmt.Errorf("block outbox row %d: %w", o.seq, err)
		}
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	duplicate, err := r.pub.Publish(pctx, &ev)
	cancel()
	if err != nil {
		return &publishError{id: o.eventID, err: err}
	}
	// The event is stored: delete its row even if ctx was cancelled just
	// now, so a stopping relay does not leave a resend behind.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(dctx, `DELETE FROM event_outbox WHERE seq = $1`, o.seq); err != nil {
		return fmt.Errorf("delete outbox row %d: %w", o.seq, err)
	}
	r.log.Debug("outbox relay: published", "event", o.eventID, "kind", ev.Kind, "duplicate", duplicate)
	return nil
}

// measure sets the depth gauges.
func (r *Relay) measure(ctx context.Context, conn *pgx.Conn) error {
	var pending, blocked int64
	err := conn.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE blocked_reason IS NULL), count(*) FILTER (WHERE blocked_reason IS NOT NULL)
		FROM event_outbox`).Scan(&pending, &blocked)
	if err != nil {
		return fmt.Errorf("measure outbox: %w", err)
	}
	r.depth.WithLabelValues("pending").Set(float64(pending))
	r.depth.WithLabelValues("blocked").Set(float64(blocked))
	return nil
}

// sleep waits d or until ctx is done, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
