// Package jetstream carries the events subscriptions match over NATS
// JetStream: the stream of resource changes and imaging.study.available
// events, their publisher (used by the change relay and the prefetcher),
// and the Dispatcher, a durable consumer that turns each event into
// notifications stored per subscription before it acknowledges the event.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/subscriptions"
)

// StreamName is the stream of subscription source events.
const StreamName = "RESOURCE_EVENTS"

// DurableName is the dispatcher's durable consumer; replicas share it.
const DurableName = "subscriptions-dispatcher"

// EnsureStream creates or updates the stream (file storage, a one-hour
// duplicate window on the event id, kept for maxAge; 0 means 7 days).
func EnsureStream(ctx context.Context, js njs.JetStream, replicas int, maxAge time.Duration) error {
	if replicas <= 0 {
		replicas = 1
	}
	if maxAge <= 0 {
		maxAge = 7 * 24 * time.Hour
	}
	_, err := js.CreateOrUpdateStream(ctx, njs.StreamConfig{
		Name:        StreamName,
		Description: "Priorflow resource changes and imaging.study.available (package subscriptions)",
		Subjects:    []string{subscriptions.SubjectChangedPrefix + ">", subscriptions.SubjectStudyAvailable},
		Storage:     njs.FileStorage,
		Retention:   njs.LimitsPolicy,
		Replicas:    replicas,
		Duplicates:  time.Hour,
		MaxAge:      maxAge,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return nil
}

// Publisher publishes subscription source events.
type Publisher struct {
	js njs.JetStream
}

// NewPublisher returns a publisher on js.
func NewPublisher(js njs.JetStream) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("subscriptions publisher: JetStream is required")
	}
	return &Publisher{js: js}, nil
}

// Publish stores data on subject, deduplicated by msgID; it returns once
// JetStream acknowledged it.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	if _, err := p.js.Publish(ctx, subject, data, njs.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// PublishStudyAvailable publishes ev on subscriptions.SubjectStudyAvailable.
func (p *Publisher) PublishStudyAvailable(ctx context.Context, ev *subscriptions.StudyAvailable) error {
	if ev.SchemaVersion == 0 {
		ev.SchemaVersion = 1
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = time.Now().UTC()
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("publish study available: %w", err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish study available: %w", err)
	}
	return p.Publish(ctx, subscriptions.SubjectStudyAvailable, ev.EventID, data)
}

// Queue is where the dispatcher stores notifications
// (subscriptions/postgres.Store).
type Queue interface {
	Generation(ctx context.Context) (int64, error)
	Subscriptions(ctx context.Context) (int64, []*subscriptions.Subscription, error)
	Enqueue(ctx context.Context, ev *subscriptions.Event, resource []byte, subs []*subscriptions.Subscription) (int, error)
}

// ResourceReader reads the current version of a resource
// (fhir/postgres.Store), for full-resource payloads of StudyAvailable.
type ResourceReader interface {
	Read(ctx context.Context, typ, id string) (*fhir.Resource, error)
}

// Dispatcher consumes the stream and stores notifications.
type Dispatcher struct {
	js      njs.JetStream
	queue   Queue
	matcher *subscriptions.Matcher
	reader  ResourceReader
	log     *slog.Logger
	// Enqueued is called after notifications were stored (Deliverer.Kick).
	enqueued func()
	// uncompilable is told of subscriptions whose stored criteria no
	// longer compile.
	uncompilable func(ctx context.Context, id, reason string)

	gen     int64
	filters []*subscriptions.Filter
}

// NewDispatcher returns a dispatcher; enqueued may be nil.
func NewDispatcher(js njs.JetStream, queue Queue, matcher *subscriptions.Matcher, reader ResourceReader, enqueued func(), log *slog.Logger) (*Dispatcher, error) {
	if js == nil || queue == nil || matcher == nil || reader == nil || log == nil {
		return nil, errors.New("subscriptions dispatcher: JetStream, queue, matcher, reader and logger are required")
	}
	if enqueued == nil {
		enqueued = func() {}
	}
	return &Dispatcher{js: js, queue: queue, matcher: matcher, reader: reader, log: log, enqueued: enqueued, gen: -1}, nil
}

// OnUncompilable sets f to be called, at each reload, for each stored
// subscription whose criteria Compile no longer accepts (after an upgrade
// that reads them more strictly), with subscriptions.CriteriaError's
// reason; such a subscription matches nothing, so f should make that
// visible (its status).
func (d *Dispatcher) OnUncompilable(f func(ctx context.Context, id, reason string)) {
	d.uncompilable = f
}

// Run consumes until ctx is cancelled. Messages are handled one at a time in
// stream order; one that cannot be stored is retried in place (not nak'ed,
// which would let later ones pass it). Messages pulled but not handled at
// cancel are nak'ed for immediate redelivery (after a crash, JetStream
// redelivers them after AckWait); event numbers are assigned when a
// notification is stored, so each subscription still sees them in order.
func (d *Dispatcher) Run(ctx context.Context) error {
	cons, err := d.js.CreateOrUpdateConsumer(ctx, StreamName, njs.ConsumerConfig{
		Durable:        DurableName,
		AckPolicy:      njs.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxAckPending:  256,
		DeliverPolicy:  njs.DeliverAllPolicy,
		FilterSubjects: []string{subscriptions.SubjectChangedPrefix + ">", subscriptions.SubjectStudyAvailable},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: nothing was pulled
		}
		return fmt.Errorf("subscriptions dispatcher: consumer: %w", err)
	}
	// Loaded now rather than at the first event, so that subscriptions
	// this version no longer accepts show so from the start.
	if err := d.refresh(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("subscriptions dispatcher: loading subscriptions failed; retried at the first event", "err", err)
	}
	it, err := cons.Messages(njs.PullMaxMessages(64))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscriptions dispatcher: messages: %w", err)
	}
	// On cancel, drain: stop pulling and nak what was already pulled, so
	// the next dispatcher gets it at once rather than after AckWait.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if ctx.Err() != nil {
			if err != nil {
				return nil
			}
			_ = msg.Nak()
			continue
		}
		if err != nil {
			if errors.Is(err, njs.ErrMsgIteratorClosed) {
				return nil
			}
			d.log.Warn("subscriptions dispatcher: next message", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		d.handle(ctx, msg)
	}
}

func (d *Dispatcher) handle(ctx context.Context, msg njs.Msg) {
	ev, err := subscriptions.DecodeEvent(msg.Subject(), msg.Data())
	if err != nil {
		d.log.Error("subscriptions dispatcher: dropping undecodable event", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	for attempt := 0; ; attempt++ {
		err = d.dispatch(ctx, ev)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			_ = msg.Nak()
			return
		}
		d.log.Warn("subscriptions dispatcher: storing notifications failed; retrying", "event", ev.ID, "err", err)
		_ = msg.InProgress()
		sleep(ctx, min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second))
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Redelivered later; the notifications are stored once per event id.
		d.log.Warn("subscriptions dispatcher: ack failed", "event", ev.ID, "err", err)
	}
}

func (d *Dispatcher) dispatch(ctx context.Context, ev *subscriptions.Event) error {
	if err := d.refresh(ctx); err != nil {
		return err
	}
	matched := d.matcher.Match(ev, d.filters)
	if len(matched) == 0 {
		return nil
	}
	subs := make([]*subscriptions.Subscription, len(matched))
	full := false
	for i, f := range matched {
		subs[i] = f.Sub
		full = full || f.Sub.Content == subscriptions.ContentFullResource
	}
	resource := []byte(ev.Resource)
	if full && resource == nil && ev.Kind == subscriptions.KindStudyAvailable {
		typ, id, _ := strings.Cut(ev.Focus, "/")
		r, err := d.reader.Read(ctx, typ, id)
		switch {
		case err == nil:
			resource = r.Body
		case fhir.IsKind(err, fhir.KindNotFound), fhir.IsKind(err, fhir.KindGone):
		default:
			return err
		}
	}
	n, err := d.queue.Enqueue(ctx, ev, resource, subs)
	if err != nil {
		return err
	}
	if n > 0 {
		d.enqueued()
	}
	return nil
}

// refresh reloads the subscriptions when their generation moved.
func (d *Dispatcher) refresh(ctx context.Context) error {
	g, err := d.queue.Generation(ctx)
	if err != nil {
		return err
	}
	if g == d.gen {
		return nil
	}
	g, subs, err := d.queue.Subscriptions(ctx)
	if err != nil {
		return err
	}
	fs := make([]*subscriptions.Filter, 0, len(subs))
	for _, s := range subs {
		f, err := d.matcher.Compile(s)
		if err != nil {
			// Not the error: it may quote the criteria's values.
			d.log.Warn("subscriptions dispatcher: subscription's criteria no longer compile; it matches nothing", "subscription", s.ID)
			if d.uncompilable != nil {
				d.uncompilable(ctx, s.ID, subscriptions.CriteriaError(err))
			}
			continue
		}
		fs = append(fs, f)
	}
	d.gen, d.filters = g, fs
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
