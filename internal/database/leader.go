package database

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Lead opens a connection of its own (outside the pool, so the session
// lock and any LISTEN end with it) and returns once that connection holds
// the session advisory lock on key: one process among replicas leads, and
// when its connection dies another takes over within poll. While waiting it
// calls wait (nil for none) between tries. The caller closes the connection
// with CloseLeader.
func Lead(ctx context.Context, pool *pgxpool.Pool, key string, poll time.Duration, wait func(*pgx.Conn) error) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	for {
		var leader bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&leader)
		if err == nil && leader {
			return conn, nil
		}
		if err == nil && wait != nil {
			err = wait(conn)
		}
		if err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(poll):
				continue
			}
		}
		CloseLeader(ctx, conn)
		return nil, fmt.Errorf("lead %s: %w", key, err)
	}
}

// CloseLeader closes a connection from Lead, releasing its lock, even when
// ctx is already cancelled.
func CloseLeader(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}
