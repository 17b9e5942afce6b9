package search

import (
	"sync"
	"time"
)

// Breaker is a circuit breaker for one source: after Failures consecutive
// failed searches it opens and refuses calls for Cooldown, then lets one
// trial call through (half-open); the trial's success closes it, a failure
// opens it again. Safe for concurrent use.
type Breaker struct {
	failures int
	cooldown time.Duration
	now      func() time.Time

	mu       sync.Mutex
	state    BreakerState
	count    int
	openedAt time.Time
	trial    bool // a half-open trial is in flight
}

// BreakerState is the state of a Breaker.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// NewBreaker returns a closed breaker; now is the clock (time.Now when nil).
func NewBreaker(failures int, cooldown time.Duration, now func() time.Time) *Breaker {
	if failures < 1 {
		failures = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Breaker{failures: failures, cooldown: cooldown, now: now, state: BreakerClosed}
}

// Allow reports whether a call may go ahead. A true answer must be followed
// by Done.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return true
	case BreakerOpen:
		if b.now().Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state = BreakerHalfOpen
		b.trial = true
		return true
	default: // half-open: one trial at a time
		if b.trial {
			return false
		}
		b.trial = true
		return true
	}
}

// Done records the outcome of an allowed call.
func (b *Breaker) Done(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.state, b.count, b.trial = BreakerClosed, 0, false
		return
	}
	b.count++
	if b.state == BreakerHalfOpen || b.count >= b.failures {
		b.state, b.openedAt, b.trial = BreakerOpen, b.now(), false
	}
}

// State returns the current state (open turns half-open only on Allow).
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
