package bench

import (
	"context"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// The benchmark waits for queued change events to be relayed, and reports
// what is left when it stops waiting.
func TestWaitOutboxDrained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.NewPool(t)
	if _, err := db.Exec(ctx, `INSERT INTO resource_change_outbox (event_id, subject, payload)
		SELECT 'ImagingStudy/s' || i || '/_history/1', 'priorflow.resources.ImagingStudy', '{}' FROM generate_series(1, 3) i`); err != nil {
		t.Fatal(err)
	}
	var readings []int64
	left, err := WaitOutboxDrained(ctx, db, 0, time.Millisecond, func(n int64) { readings = append(readings, n) })
	if err != nil || left != 3 {
		t.Errorf("without waiting: %d left (err %v), want 3", left, err)
	}
	if len(readings) != 1 || readings[0] != 3 {
		t.Errorf("progress readings %v, want [3]", readings)
	}

	// A relay publishing one event at a time.
	go func() {
		for range 3 {
			time.Sleep(20 * time.Millisecond)
			_, _ = db.Exec(ctx, `DELETE FROM resource_change_outbox WHERE seq = (SELECT min(seq) FROM resource_change_outbox)`)
		}
	}()
	left, err = WaitOutboxDrained(ctx, db, time.Minute, 5*time.Millisecond, func(int64) {})
	if err != nil || left != 0 {
		t.Errorf("waiting for the relay: %d left (err %v), want 0", left, err)
	}
}
