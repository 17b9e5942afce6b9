package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/priorflow/priorflow/internal/printable"
)

// State is a subscription's delivery state as the store keeps it.
type State struct {
	Sub    *Subscription
	Status Status
	// EventsSinceStart is the event number of the latest notification.
	EventsSinceStart int64
	// DeliveredThrough is the highest event number delivered or abandoned;
	// notifications after it are pending, in event-number order.
	DeliveredThrough int64
	// Attempts counts failed attempts of the current head (or handshake)
	// since FirstFailure.
	Attempts     int
	FirstFailure time.Time
	LastSent     time.Time
	Error        string
}

// DeliveryStore is the delivery state the Deliverer works on
// (subscriptions/postgres.Store). A subscription is delivered by one
// Deliverer at a time: the one holding its lease.
type DeliveryStore interface {
	// Due lists subscriptions with work due at now and no live lease:
	// a handshake, pending notifications, or a heartbeat.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Lease takes the subscription's lease for d; ok is false when another
	// owner holds it.
	Lease(ctx context.Context, id, owner string, d time.Duration) (st *State, ok bool, err error)
	// Release gives the lease up.
	Release(ctx context.Context, id, owner string) error
	// Pending returns up to limit notifications after DeliveredThrough, in
	// event-number order.
	Pending(ctx context.Context, id string, after int64, limit int) ([]*Notification, error)
	// Record stores the outcome of an attempt while the lease is held and
	// returns the status the subscription now has; it fails with
	// ErrLeaseLost when the lease is not held.
	Record(ctx context.Context, id, owner string, o Outcome) (Status, error)
}

// ErrLeaseLost reports that a Deliverer no longer holds a subscription's
// lease: another one took it over, so this one stops.
var ErrLeaseLost = errors.New("subscription delivery lease lost")

// Outcome is the state change of one delivery attempt.
type Outcome struct {
	// From is the status the attempt started in; the store keeps a status
	// changed meanwhile (a client set off, or a new endpoint that needs a
	// handshake) instead of Status.
	From   Status
	Status Status
	// DeliveredThrough, when > 0, marks notifications up to it done.
	DeliveredThrough int64
	// Abandoned marks the notifications up to DeliveredThrough as given up.
	Abandoned    bool
	Attempts     int
	FirstFailure time.Time
	NextAttempt  time.Time
	Sent         bool // something reached the endpoint (resets the heartbeat)
	Error        string
	Lease        time.Duration
}

// Sender sends notifications over one channel type.
type Sender interface {
	Send(ctx context.Context, s *Subscription, typ NotificationType, st StatusInfo, ns []*Notification) error
}

// DeliveryConfig tunes a Deliverer. The zero value gives the defaults.
type DeliveryConfig struct {
	// Workers bounds concurrent subscriptions in delivery; 0 means 64.
	Workers int
	// Poll is how often due work is looked for without a Kick; 0 means 1s.
	Poll time.Duration
	// Lease is how long a subscription stays with this Deliverer without
	// progress; 0 means 30s. It must exceed the longest send.
	Lease time.Duration
	// Batch is the most notifications per Bundle; 0 means 20.
	Batch int
	// Backoff schedules retries: InitialBackoff doubling up to MaxBackoff,
	// with jitter, for RetryWindow (0s mean 1s, 10m and 24h). After the
	// window the subscription goes to error and its pending notifications
	// are abandoned (a client finds them with $events); it becomes active
	// again when a delivery succeeds.
	InitialBackoff, MaxBackoff, RetryWindow time.Duration
	// Owner names this Deliverer in leases; empty picks a random one.
	Owner string
}

// Deliverer sends each subscription's notifications in event-number order,
// at least once: the state moves only after the endpoint acknowledged.
type Deliverer struct {
	store   DeliveryStore
	senders map[ChannelType]Sender
	log     *slog.Logger
	cfg     DeliveryConfig
	now     func() time.Time

	onStatus func(ctx context.Context, id string, status Status, reason string)

	kick chan struct{}
	mu   sync.Mutex
	busy map[string]bool
}

// NewDeliverer returns a Deliverer over store with a sender per channel.
func NewDeliverer(store DeliveryStore, senders map[ChannelType]Sender, log *slog.Logger, cfg DeliveryConfig) (*Deliverer, error) {
	if store == nil || len(senders) == 0 || log == nil {
		return nil, errors.New("subscriptions deliverer: store, senders and logger are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 20
	}
	def(&cfg.Poll, time.Second)
	def(&cfg.Lease, 30*time.Second)
	def(&cfg.InitialBackoff, time.Second)
	def(&cfg.MaxBackoff, 10*time.Minute)
	def(&cfg.RetryWindow, 24*time.Hour)
	if cfg.Owner == "" {
		cfg.Owner = newUUID()
	}
	return &Deliverer{store: store, senders: senders, log: log, cfg: cfg, now: time.Now,
		kick: make(chan struct{}, 1), busy: map[string]bool{}}, nil
}

// OnStatusChange sets f to be called after a subscription's status moved
// (requested → active, active ↔ error), to reflect it in the Subscription
// resource. Call it before Run.
func (d *Deliverer) OnStatusChange(f func(ctx context.Context, id string, status Status, reason string)) {
	d.onStatus = f
}

// Kick makes the Deliverer look for due work now (the dispatcher calls it
// after storing notifications).
func (d *Deliverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is cancelled; deliveries in flight finish (or time
// out) and their leases are released before it returns.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, d.cfg.Workers)
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for {
		ids, err := d.store.Due(ctx, d.now(), 4*d.cfg.Workers)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("subscriptions: looking for due deliveries failed", "err", err)
		}
		for _, id := range ids {
			d.mu.Lock()
			if d.busy[id] {
				d.mu.Unlock()
				continue
			}
			d.busy[id] = true
			d.mu.Unlock()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				d.unbusy(id)
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				defer d.Kick() // work that arrived while busy
				defer d.unbusy(id)
				d.deliver(ctx, id)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
		case <-t.C:
		}
	}
}

func (d *Deliverer) unbusy(id string) {
	d.mu.Lock()
	delete(d.busy, id)
	d.mu.Unlock()
}

// deliver works on one subscription while it holds the lease.
func (d *Deliverer) deliver(ctx context.Context, id string) {
	st, ok, err := d.store.Lease(ctx, id, d.cfg.Owner, d.cfg.Lease)
	if err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			d.log.Warn("subscriptions: lease failed", "subscription", id, "err", err)
		}
		return
	}
	keepLease := false
	defer func() {
		if keepLease {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.store.Release(rctx, id, d.cfg.Owner); err != nil {
			d.log.Warn("subscriptions: release failed", "subscription", id, "err", err)
		}
	}()
	log := d.log.With("subscription", id)
	sender := d.senders[st.Sub.Channel]
	if sender == nil {
		log.Error("subscriptions: no sender for channel", "channel", st.Sub.Channel)
		return
	}
	for ctx.Err() == nil {
		var (
			typ = TypeEvent
			ns  []*Notification
		)
		switch {
		case st.Status == StatusRequested:
			typ = TypeHandshake
		case st.EventsSinceStart > st.DeliveredThrough:
			ns, err = d.store.Pending(ctx, id, st.DeliveredThrough, d.cfg.Batch)
			if err != nil {
				keepLease = ctx.Err() == nil // still due: see Record below
				log.Warn("subscriptions: reading pending notifications failed", "err", err)
				return
			}
		case st.Status == StatusActive && st.Sub.Heartbeat > 0 && !d.now().Before(st.LastSent.Add(st.Sub.Heartbeat)):
			typ = TypeHeartbeat
		default:
			return
		}
		if typ == TypeEvent && len(ns) == 0 {
			return
		}
		info := StatusInfo{Status: st.Status, EventsSinceStart: st.EventsSinceStart}
		if typ == TypeHandshake || st.Status == StatusError {
			info.Status = StatusActive // the status the notification reports once accepted
			if typ == TypeHandshake {
				info.Status = StatusRequested
			}
		}
		sctx, cancel := context.WithTimeout(ctx, d.sendTimeout(st.Sub))
		err := sender.Send(sctx, st.Sub, typ, info, ns)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: the lease is released, the attempt is retried
		}
		o := d.outcome(st, typ, ns, err)
		if err != nil {
			log.Info("subscriptions: delivery failed", "type", typ, "attempts", o.Attempts, "next", o.NextAttempt, "err", err)
		}
		now, rerr := d.store.Record(ctx, id, d.cfg.Owner, o)
		if rerr != nil {
			if !errors.Is(rerr, ErrLeaseLost) && ctx.Err() == nil {
				// The attempt's next_attempt was not written, so the
				// subscription is still due: released, it would be sent
				// again at once, over and over. Held, it waits out the
				// lease, as it would had this process died.
				keepLease = true
				log.Warn("subscriptions: recording delivery failed; retried when the lease expires", "lease", d.cfg.Lease, "err", rerr)
			}
			return
		}
		if now != o.Status {
			return // changed meanwhile (off, or a new endpoint): start over
		}
		if o.Status != st.Status && d.onStatus != nil {
			d.onStatus(ctx, id, o.Status, o.Error)
		}
		st.Status, st.Attempts, st.FirstFailure, st.Error = o.Status, o.Attempts, o.FirstFailure, o.Error
		if o.DeliveredThrough > 0 {
			st.DeliveredThrough = o.DeliveredThrough
		}
		if o.Sent {
			st.LastSent = d.now()
		}
		if err != nil {
			return // retried when NextAttempt is due
		}
	}
}

func (d *Deliverer) sendTimeout(s *Subscription) time.Duration {
	t := 10 * time.Second
	if s.Timeout > 0 {
		t = s.Timeout
	}
	return min(t, d.cfg.Lease/2)
}

// outcome is the state machine: success makes the subscription active and
// moves DeliveredThrough; failure schedules a retry with backoff, and after
// RetryWindow (or any failure while in error) sets error and abandons what
// is pending.
func (d *Deliverer) outcome(st *State, typ NotificationType, ns []*Notification, err error) Outcome {
	now := d.now()
	o := Outcome{Lease: d.cfg.Lease, From: st.Status}
	if err == nil {
		o.Status, o.Sent, o.NextAttempt = StatusActive, true, now
		if len(ns) > 0 {
			o.DeliveredThrough = ns[len(ns)-1].EventNumber
		}
		return o
	}
	// The error may quote the endpoint (its status line, a TLS alert), so
	// it is outside text like any other.
	o.Status, o.Error = st.Status, printable.Truncate(printable.Replace(err.Error()), 500)
	o.Attempts, o.FirstFailure = st.Attempts+1, st.FirstFailure
	if o.FirstFailure.IsZero() {
		o.FirstFailure = now
	}
	if st.Status == StatusError || now.Sub(o.FirstFailure) >= d.cfg.RetryWindow {
		o.Status = StatusError
		o.Error = fmt.Sprintf("delivery failed for %s: %s", now.Sub(o.FirstFailure).Round(time.Second), o.Error)
		if typ == TypeEvent {
			o.DeliveredThrough, o.Abandoned = st.EventsSinceStart, true
		}
		o.NextAttempt = now.Add(d.cfg.MaxBackoff)
		return o
	}
	o.NextAttempt = now.Add(d.backoff(o.Attempts))
	return o
}

// backoff is InitialBackoff·2^(n-1), at most MaxBackoff, with ±20 % jitter
// so that endpoints recovering together are not hit in lockstep.
func (d *Deliverer) backoff(n int) time.Duration {
	b := d.cfg.InitialBackoff
	for i := 1; i < n && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
}
