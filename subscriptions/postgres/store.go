// Package postgres keeps the delivery state of FHIR Subscriptions in
// PostgreSQL (migration 008): the state of each subscription with its event
// counter, the queue of notifications per subscription, and the outbox of
// resource changes relayed to JetStream. It plugs into the FHIR store with
// write hooks, so a Subscription's state and a resource's change event
// commit with the resource.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/fhir"
	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/internal/database"
	"github.com/priorflow/priorflow/subscriptions"
)

// EndpointGuard decides whether a rest-hook endpoint may be used
// (resthook.Guard); a refusal is a fhir.Error.
type EndpointGuard interface {
	Check(ctx context.Context, endpoint string) error
}

// Store is the subscription delivery store.
type Store struct {
	pool    *pgxpool.Pool
	matcher *subscriptions.Matcher
	guard   EndpointGuard
	log     *slog.Logger
}

// New returns a store over a migrated database.
func New(pool *pgxpool.Pool, matcher *subscriptions.Matcher, guard EndpointGuard, log *slog.Logger) (*Store, error) {
	if pool == nil || matcher == nil || guard == nil || log == nil {
		return nil, errors.New("subscriptions store: pool, matcher, guard and logger are required")
	}
	return &Store{pool: pool, matcher: matcher, guard: guard, log: log}, nil
}

// ChangeChannel is notified when resource_change_outbox has new rows.
const ChangeChannel = "priorflow_resource_changes"

// Register installs the write hooks on the FHIR store: Subscription writes
// keep subscription_state, and writes of changeTypes enqueue a
// ResourceChanged event. Call it before the FHIR store serves.
func (s *Store) Register(fs *fhirpg.Store, changeTypes ...string) {
	fs.OnWrite("Subscription", s.subscriptionWritten)
	for _, t := range changeTypes {
		fs.OnWrite(t, s.resourceWritten)
	}
}

// subscriptionWritten validates a written Subscription and keeps its state.
// A changed channel or criteria starts over at requested (rest-hook, which
// must answer a handshake) or active (websocket, whose endpoint is ours);
// status off stops delivery; any other update keeps the delivery state.
// FHIR R4 subscription.html: the server, not the client, moves status.
func (s *Store) subscriptionWritten(ctx context.Context, tx *fhirpg.Tx, _, next *fhir.Resource) error {
	ptx := tx.PgxTx()
	if next.Deleted {
		_, err := ptx.Exec(ctx, `DELETE FROM subscription_state WHERE id = $1`, next.ID)
		if err != nil {
			return fmt.Errorf("subscription %s: delete state: %w", next.ID, err)
		}
		return bumpGeneration(ctx, ptx)
	}
	sub, err := s.matcher.Decode(next.Body)
	if err != nil {
		return err
	}
	if sub.Channel == subscriptions.ChannelRestHook {
		if err := s.guard.Check(ctx, sub.Endpoint); err != nil {
			return err
		}
	}
	def, err := json.Marshal(sub)
	if err != nil {
		return fmt.Errorf("subscription %s: %w", sub.ID, err)
	}
	var oldDef []byte
	var oldStatus string
	err = ptx.QueryRow(ctx, `SELECT definition, status FROM subscription_state WHERE id = $1 FOR UPDATE`, sub.ID).Scan(&oldDef, &oldStatus)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("subscription %s: read state: %w", sub.ID, err)
	}
	old := storedDefinition(oldDef)
	var lastErr *string
	if _, cerr := s.matcher.Compile(sub); cerr != nil {
		// Criteria this server accepted once and no longer does (an
		// upgrade read them more strictly) are kept, in error, so that
		// the subscription can still be read, turned off or corrected;
		// new criteria are refused.
		if !sameCriteria(old, sub) {
			return cerr
		}
		reason := subscriptions.CriteriaError(cerr)
		lastErr = &reason
	}
	status := subscriptions.StatusRequested
	if sub.Channel == subscriptions.ChannelWebsocket {
		status = subscriptions.StatusActive
	}
	if sameChannel(old, sub) && oldStatus != string(subscriptions.StatusOff) {
		status = subscriptions.Status(oldStatus)
	}
	if lastErr != nil {
		status = subscriptions.StatusError
	}
	if sub.Status == subscriptions.StatusOff {
		status, lastErr = subscriptions.StatusOff, nil
	}
	_, err = ptx.Exec(ctx, `
		INSERT INTO subscription_state (id, definition, status, heartbeat_seconds, next_attempt, last_error)
		VALUES ($1, $2, $3, $4, now(), $5)
		ON CONFLICT (id) DO UPDATE SET definition = $2, status = $3, heartbeat_seconds = $4,
			next_attempt = CASE WHEN subscription_state.status = $3 THEN subscription_state.next_attempt ELSE now() END,
			attempts = CASE WHEN subscription_state.status = $3 THEN subscription_state.attempts ELSE 0 END,
			last_error = CASE WHEN $5::text IS NOT NULL THEN $5 WHEN subscription_state.status = $3 THEN subscription_state.last_error END,
			updated_at = now()`,
		sub.ID, def, string(status), int(sub.Heartbeat/time.Second), lastErr)
	if err != nil {
		return fmt.Errorf("subscription %s: write state: %w", sub.ID, err)
	}
	return bumpGeneration(ctx, ptx)
}

// storedDefinition decodes the definition subscription_state holds (nil
// when there is none, or it does not decode).
func storedDefinition(def []byte) *subscriptions.Subscription {
	if def == nil {
		return nil
	}
	var old subscriptions.Subscription
	if json.Unmarshal(def, &old) != nil {
		return nil
	}
	return &old
}

// sameChannel reports whether the stored definition old delivers to the
// same place under the same criteria as sub.
func sameChannel(old, sub *subscriptions.Subscription) bool {
	return sameCriteria(old, sub) && old.Channel == sub.Channel && old.Endpoint == sub.Endpoint &&
		slices.Equal(old.Headers, sub.Headers)
}

// sameCriteria reports whether the stored definition old has sub's topic
// and criteria.
func sameCriteria(old, sub *subscriptions.Subscription) bool {
	return old != nil && old.Topic == sub.Topic && old.Criteria == sub.Criteria
}

func bumpGeneration(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `UPDATE subscription_generation SET generation = generation + 1`); err != nil {
		return fmt.Errorf("subscription generation: %w", err)
	}
	return nil
}

// resourceWritten enqueues the change in the writing transaction.
func (s *Store) resourceWritten(ctx context.Context, tx *fhirpg.Tx, _, next *fhir.Resource) error {
	ev := subscriptions.ResourceChanged{
		SchemaVersion: 1,
		EventID:       fmt.Sprintf("%s/%s/_history/%d", next.Type, next.ID, next.Version),
		Type:          next.Type, ID: next.ID, Version: next.Version, Method: next.Method,
		OccurredAt: next.LastUpdated,
	}
	if !next.Deleted {
		ev.Resource = next.Body
	}
	payload, err := json.Marshal(&ev)
	if err != nil {
		return fmt.Errorf("resource change %s: %w", ev.EventID, err)
	}
	// Written with the transaction's index rows; PostgreSQL delivers the
	// notification once per transaction however often it is sent.
	tx.Defer(`INSERT INTO resource_change_outbox (event_id, subject, payload) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING`,
		ev.EventID, ev.Subject(), string(payload))
	tx.Defer(`SELECT pg_notify($1, '')`, ChangeChannel)
	return nil
}

// Generation returns the counter bumped by every subscription change.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var g int64
	if err := s.pool.QueryRow(ctx, `SELECT generation FROM subscription_generation`).Scan(&g); err != nil {
		return 0, fmt.Errorf("subscription generation: %w", err)
	}
	return g, nil
}

// Subscriptions returns the subscriptions that take notifications
// (requested, active or error) and the generation they are current at.
func (s *Store) Subscriptions(ctx context.Context) (int64, []*subscriptions.Subscription, error) {
	var gen int64
	var subs []*subscriptions.Subscription
	// REPEATABLE READ: the generation and the rows are one snapshot.
	err := database.InTx(ctx, s.pool, pgx.RepeatableRead, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT generation FROM subscription_generation`).Scan(&gen); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT definition FROM subscription_state WHERE status <> 'off' ORDER BY id`)
		if err != nil {
			return err
		}
		subs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*subscriptions.Subscription, error) {
			var def []byte
			if err := row.Scan(&def); err != nil {
				return nil, err
			}
			sub := &subscriptions.Subscription{}
			return sub, json.Unmarshal(def, sub)
		})
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("load subscriptions: %w", err)
	}
	return gen, subs, nil
}

// Enqueue stores a notification of ev for each of subs under the
// subscription's next event number, all in one transaction. A subscription
// that already has ev (a redelivered message) is skipped without using a
// number. resource, when not nil, is kept as the focus's content for
// full-resource payloads. It returns how many notifications were stored.
func (s *Store) Enqueue(ctx context.Context, ev *subscriptions.Event, resource []byte, subs []*subscriptions.Subscription) (int, error) {
	if len(subs) == 0 {
		return 0, nil
	}
	// The focus's content is kept only for full-resource subscriptions.
	var full, bare []string
	for _, sub := range subs {
		if sub.Content == subscriptions.ContentFullResource {
			full = append(full, sub.ID)
		} else {
			bare = append(bare, sub.ID)
		}
	}
	// Lock rows in id order so that concurrent dispatchers cannot deadlock.
	slices.Sort(full)
	slices.Sort(bare)
	var res *string
	if resource != nil {
		r := string(resource)
		res = &r
	}
	var n int
	// READ COMMITTED is enough: the counter update locks each
	// subscription's row, so numbers are assigned one at a time per
	// subscription, in commit order.
	err := database.InTx(ctx, s.pool, pgx.ReadCommitted, func(tx pgx.Tx) error {
		n1, err := enqueue(ctx, tx, ev, res, full)
		if err != nil {
			return err
		}
		n2, err := enqueue(ctx, tx, ev, nil, bare)
		n = n1 + n2
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", ev.ID, err)
	}
	return n, nil
}

func enqueue(ctx context.Context, tx pgx.Tx, ev *subscriptions.Event, res *string, ids []string) (int, error) {
	const chunk = 1000
	n := 0
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		tag, err := tx.Exec(ctx, `
			WITH todo AS (
				SELECT id FROM unnest($1::text[]) AS t(id)
				WHERE NOT EXISTS (SELECT 1 FROM subscription_notification n WHERE n.subscription_id = t.id AND n.event_id = $2)
				ORDER BY id),
			numbered AS (
				UPDATE subscription_state s SET events_since_start = events_since_start + 1
				FROM todo WHERE s.id = todo.id AND s.status <> 'off'
				RETURNING s.id, s.events_since_start)
			INSERT INTO subscription_notification (subscription_id, event_number, event_id, focus, method, resource, occurred_at)
			SELECT id, events_since_start, $2, $3, $4, $5::jsonb, $6 FROM numbered`,
			part, ev.ID, ev.Focus, ev.Method, res, ev.Time)
		if err != nil {
			return 0, err
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

// Due implements subscriptions.DeliveryStore.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM subscription_state
		WHERE status <> 'off' AND next_attempt <= $1 AND lease_until < $1
		  AND (status = 'requested' OR events_since_start > delivered_through
		       OR (status = 'active' AND heartbeat_seconds > 0 AND last_sent + heartbeat_seconds * interval '1 second' <= $1))
		ORDER BY next_attempt LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("due subscriptions: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("due subscriptions: %w", err)
	}
	return ids, nil
}

// Lease implements subscriptions.DeliveryStore.
func (s *Store) Lease(ctx context.Context, id, owner string, d time.Duration) (*subscriptions.State, bool, error) {
	st := &subscriptions.State{Sub: &subscriptions.Subscription{}}
	var def []byte
	var status string
	var firstFailure *time.Time
	var lastErr *string
	err := s.pool.QueryRow(ctx, `
		UPDATE subscription_state SET lease_owner = $2, lease_until = now() + $3::interval
		WHERE id = $1 AND (lease_until < now() OR lease_owner = $2) AND status <> 'off'
		RETURNING definition, status, events_since_start, delivered_through, attempts, first_failure, last_sent, last_error`,
		id, owner, d).Scan(&def, &status, &st.EventsSinceStart, &st.DeliveredThrough, &st.Attempts, &firstFailure, &st.LastSent, &lastErr)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lease subscription %s: %w", id, err)
	}
	if err := json.Unmarshal(def, st.Sub); err != nil {
		return nil, false, fmt.Errorf("lease subscription %s: definition: %w", id, err)
	}
	st.Status = subscriptions.Status(status)
	if firstFailure != nil {
		st.FirstFailure = *firstFailure
	}
	if lastErr != nil {
		st.Error = *lastErr
	}
	return st, true, nil
}

// Release implements subscriptions.DeliveryStore.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	_, err := s.pool.Exec(ctx, `UPDATE subscription_state SET lease_owner = NULL, lease_until = '-infinity' WHERE id = $1 AND lease_owner = $2`, id, owner)
	if err != nil {
		return fmt.Errorf("release subscription %s: %w", id, err)
	}
	return nil
}

// Pending implements subscriptions.DeliveryStore.
func (s *Store) Pending(ctx context.Context, id string, after int64, limit int) ([]*subscriptions.Notification, error) {
	return s.events(ctx, id, after+1, 1<<62, limit)
}

// Events returns the notifications of a subscription with event numbers in
// [from, to], oldest first, at most limit (for $events).
func (s *Store) Events(ctx context.Context, id string, from, to int64, limit int) ([]*subscriptions.Notification, error) {
	return s.events(ctx, id, from, to, limit)
}

func (s *Store) events(ctx context.Context, id string, from, to int64, limit int) ([]*subscriptions.Notification, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT n.event_number, n.event_id, n.focus, n.method, n.resource, n.occurred_at, n.abandoned, n.event_number <= s.delivered_through
		FROM subscription_notification n JOIN subscription_state s ON s.id = n.subscription_id
		WHERE n.subscription_id = $1 AND n.event_number BETWEEN $2 AND $3
		ORDER BY n.event_number LIMIT $4`, id, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("notifications of %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*subscriptions.Notification, error) {
		n := &subscriptions.Notification{SubscriptionID: id}
		var res []byte
		err := row.Scan(&n.EventNumber, &n.EventID, &n.Focus, &n.Method, &res, &n.Time, &n.Abandoned, &n.Delivered)
		if res != nil {
			n.Resource = res
		}
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("notifications of %s: %w", id, err)
	}
	return out, nil
}

// Record implements subscriptions.DeliveryStore.
func (s *Store) Record(ctx context.Context, id, owner string, o subscriptions.Outcome) (subscriptions.Status, error) {
	var status string
	var firstFailure *time.Time
	if !o.FirstFailure.IsZero() {
		firstFailure = &o.FirstFailure
	}
	var lastErr *string
	if o.Error != "" {
		lastErr = &o.Error
	}
	// READ COMMITTED: one row, updated under its own lock; the lease
	// condition makes a stale owner's update a no-op.
	err := database.InTx(ctx, s.pool, pgx.ReadCommitted, func(tx pgx.Tx) error {
		if o.Abandoned && o.DeliveredThrough > 0 {
			// Before the state moves: only what was still pending is abandoned.
			if _, err := tx.Exec(ctx, `UPDATE subscription_notification SET abandoned = true
				WHERE subscription_id = $1 AND event_number <= $3
				  AND event_number > (SELECT delivered_through FROM subscription_state WHERE id = $1 AND lease_owner = $2)`,
				id, owner, o.DeliveredThrough); err != nil {
				return fmt.Errorf("record delivery of %s: %w", id, err)
			}
		}
		err := tx.QueryRow(ctx, `
			UPDATE subscription_state SET status = CASE WHEN status = $11 THEN $3 ELSE status END,
				delivered_through = GREATEST(delivered_through, $4),
				attempts = $5, first_failure = $6, next_attempt = $7,
				last_sent = CASE WHEN $8 THEN now() ELSE last_sent END,
				last_error = $9, lease_until = now() + $10::interval, updated_at = now()
			WHERE id = $1 AND lease_owner = $2
			RETURNING status`,
			id, owner, string(o.Status), o.DeliveredThrough, o.Attempts, firstFailure, o.NextAttempt, o.Sent, lastErr, o.Lease, string(o.From)).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return subscriptions.ErrLeaseLost
		}
		if err != nil {
			return fmt.Errorf("record delivery of %s: %w", id, err)
		}
		return nil
	})
	return subscriptions.Status(status), err
}

// State returns a subscription's delivery state (for $status); a
// subscription without state is not found.
func (s *Store) State(ctx context.Context, id string) (*subscriptions.State, error) {
	if !fhir.ValidID(id) {
		// No Subscription has it, and the database refuses some (a
		// NUL), which would be a 500 for a client's typo.
		return nil, fhir.Errorf(fhir.KindNotFound, "no Subscription has that id")
	}
	st := &subscriptions.State{Sub: &subscriptions.Subscription{}}
	var def []byte
	var status string
	var lastErr *string
	err := s.pool.QueryRow(ctx, `SELECT definition, status, events_since_start, delivered_through, last_error FROM subscription_state WHERE id = $1`, id).
		Scan(&def, &status, &st.EventsSinceStart, &st.DeliveredThrough, &lastErr)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fhir.Errorf(fhir.KindNotFound, "Subscription/%s is not known", id)
	}
	if err != nil {
		return nil, fmt.Errorf("subscription %s state: %w", id, err)
	}
	if err := json.Unmarshal(def, st.Sub); err != nil {
		return nil, fmt.Errorf("subscription %s state: %w", id, err)
	}
	st.Status = subscriptions.Status(status)
	if lastErr != nil && st.Status == subscriptions.StatusError {
		st.Error = *lastErr
	}
	return st, nil
}

var _ subscriptions.DeliveryStore = (*Store)(nil)

// Wake makes a subscription's pending work due now (a websocket client just
// bound, so waiting out the backoff is pointless).
func (s *Store) Wake(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE subscription_state SET next_attempt = now() WHERE id = $1 AND next_attempt > now()`, id); err != nil {
		return fmt.Errorf("wake subscription %s: %w", id, err)
	}
	return nil
}

// Prune deletes delivered (or abandoned) notifications older than age,
// which $events can then no longer return. It returns how many went.
func (s *Store) Prune(ctx context.Context, age time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM subscription_notification n USING subscription_state s
		WHERE s.id = n.subscription_id AND n.event_number <= s.delivered_through
		  AND n.created_at < now() - $1::interval`, age)
	if err != nil {
		return 0, fmt.Errorf("prune notifications: %w", err)
	}
	return tag.RowsAffected(), nil
}
