package tokenserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sweepInterval is how often, at most, a replica deletes expired jti rows.
const sweepInterval = time.Minute

// ReplayStore remembers the ids (jti) of the client assertions the token
// endpoint accepted, in table oauth_assertion_jti (migration 009), so that
// none is accepted twice by any replica.
type ReplayStore struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	nextSweep atomic.Int64 // unix nanoseconds
}

// NewReplayStore returns a store on pool.
func NewReplayStore(pool *pgxpool.Pool, log *slog.Logger) (*ReplayStore, error) {
	if pool == nil || log == nil {
		return nil, errors.New("tokenserver: replay store needs a pool and a logger")
	}
	return &ReplayStore{pool: pool, log: log}, nil
}

// Use records that clientID used jti in an assertion valid until expires.
// It reports false when the pair was recorded before: a replay.
func (s *ReplayStore) Use(ctx context.Context, clientID, jti string, expires time.Time) (bool, error) {
	// The primary key decides between concurrent requests with the same
	// jti: exactly one insert wins, whatever the isolation level.
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO oauth_assertion_jti (client_id, jti, expires_at)
		VALUES ($1, $2, $3)
		ON CONFLICT (client_id, jti) DO NOTHING`, clientID, jti, expires)
	if err != nil {
		return false, fmt.Errorf("record assertion jti: %w", err)
	}
	s.sweep(ctx, time.Now())
	return tag.RowsAffected() == 1, nil
}

// sweep deletes expired rows, at most once per sweepInterval per
// replica. A failure only delays the clean-up, so it is logged, not
// returned. The cut-off is this process's clock, the one that computed
// expires_at.
func (s *ReplayStore) sweep(ctx context.Context, now time.Time) {
	next := s.nextSweep.Load()
	if now.UnixNano() < next || !s.nextSweep.CompareAndSwap(next, now.Add(sweepInterval).UnixNano()) {
		return
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM oauth_assertion_jti WHERE expires_at < $1`, now)
	if err != nil {
		s.log.Warn("deleting expired assertion ids failed", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Debug("deleted expired assertion ids", "rows", n)
	}
}
