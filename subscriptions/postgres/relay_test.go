package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// failingPublisher records what it publishes and fails the call numbered
// failAt (1-based) once: a JetStream that did not acknowledge in time.
type failingPublisher struct {
	failAt, calls int
	got           []string
}

func (p *failingPublisher) Publish(_ context.Context, _, msgID string, _ []byte) error {
	p.calls++
	if p.calls == p.failAt {
		return errors.New("publish timed out")
	}
	p.got = append(p.got, msgID)
	return nil
}

// A publish failing in the middle of a batch deletes the events published
// before it and keeps the rest; the next drain sends them in order.
func TestRelay_FailedPublishKeepsTheRestInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("ImagingStudy/s%d/_history/1", i)
		want = append(want, id)
		if _, err := pool.Exec(ctx, `INSERT INTO resource_change_outbox (event_id, subject, payload) VALUES ($1, 'priorflow.fhir.changed.ImagingStudy', '{}')`, id); err != nil {
			t.Fatal(err)
		}
	}
	pub := &failingPublisher{failAt: 3}
	r, err := NewRelay(pool, pub, dbtest.Logger(), 0)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()

	if err := r.drain(ctx, conn.Conn()); err == nil {
		t.Fatal("drain with a failing publish returned no error")
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT event_id FROM resource_change_outbox ORDER BY seq`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if !slices.Equal(left, want[2:]) {
		t.Errorf("after the failure the outbox holds %v, want %v", left, want[2:])
	}

	if err := r.drain(ctx, conn.Conn()); err != nil {
		t.Fatalf("second drain: %v", err)
	}
	if !slices.Equal(pub.got, want) {
		t.Errorf("published %v, want %v", pub.got, want)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM resource_change_outbox`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d events left in the outbox (err %v)", n, err)
	}
}
