package subscriptions

import (
	"errors"
	"testing"
	"time"

	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestDeliverer_Outcome_StateMachine(t *testing.T) {
	d, err := NewDeliverer(nopStore{}, map[ChannelType]Sender{ChannelRestHook: nil}, dbtest.Logger(),
		DeliveryConfig{InitialBackoff: time.Second, MaxBackoff: time.Minute, RetryWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	ns := []*Notification{{EventNumber: 4}, {EventNumber: 5}}
	fail := errors.New("503")

	t.Run("success makes active and moves delivered-through", func(t *testing.T) {
		o := d.outcome(&State{Status: StatusError, EventsSinceStart: 5, DeliveredThrough: 3, Attempts: 2}, TypeEvent, ns, nil)
		if o.Status != StatusActive || o.DeliveredThrough != 5 || o.Attempts != 0 || o.Error != "" {
			t.Errorf("outcome = %+v", o)
		}
	})
	t.Run("failure backs off within the window", func(t *testing.T) {
		o := d.outcome(&State{Status: StatusActive, EventsSinceStart: 5, DeliveredThrough: 3, Attempts: 3, FirstFailure: now.Add(-time.Minute)}, TypeEvent, ns, fail)
		if o.Status != StatusActive || o.DeliveredThrough != 0 || o.Attempts != 4 {
			t.Errorf("outcome = %+v", o)
		}
		if wait := o.NextAttempt.Sub(now); wait < 6*time.Second || wait > 10*time.Second {
			t.Errorf("4th retry after %s, want 8s ± 20%%", wait)
		}
	})
	t.Run("failure after the window sets error and abandons", func(t *testing.T) {
		o := d.outcome(&State{Status: StatusActive, EventsSinceStart: 9, DeliveredThrough: 3, Attempts: 30, FirstFailure: now.Add(-time.Hour)}, TypeEvent, ns, fail)
		if o.Status != StatusError || o.DeliveredThrough != 9 || !o.Abandoned || o.Error == "" {
			t.Errorf("outcome = %+v", o)
		}
	})
	t.Run("backoff is capped", func(t *testing.T) {
		if b := d.backoff(40); b > time.Minute*12/10 {
			t.Errorf("backoff(40) = %s, want at most MaxBackoff + jitter", b)
		}
	})
}

type nopStore struct{ DeliveryStore }
