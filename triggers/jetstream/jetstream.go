// Package jetstream publishes care events durably on NATS JetStream: a file
// stream with a duplicate window keyed by the event id (Nats-Msg-Id), so a
// message resent by an interface engine is acknowledged again but stored
// once.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/triggers"
)

// StreamName is the care event stream; its subjects are
// priorflow.events.<kind>.
const StreamName = "CARE_EVENTS"

// StreamConfig tunes the care event stream.
type StreamConfig struct {
	// Name and SubjectPrefix default to StreamName and
	// triggers.SubjectPrefix; tests on a shared NATS server set their own.
	Name, SubjectPrefix string
	// Replicas is the number of copies in a cluster (1 for a single server).
	Replicas int
	// DuplicateWindow is how long an event id is remembered for
	// deduplication; interface engines resend within minutes, not days.
	DuplicateWindow time.Duration
	// MaxAge bounds how long events are kept.
	MaxAge time.Duration
}

// EnsureStream creates or updates the care event stream.
func EnsureStream(ctx context.Context, js njs.JetStream, cfg StreamConfig) error {
	cfg = cfg.withDefaults()
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = time.Hour
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 30 * 24 * time.Hour
	}
	_, err := js.CreateOrUpdateStream(ctx, njs.StreamConfig{
		Name:        cfg.Name,
		Description: "Priorflow care events (triggers.CareEvent JSON, schemaVersion 1)",
		Subjects:    []string{cfg.SubjectPrefix + ">"},
		Storage:     njs.FileStorage,
		Retention:   njs.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return nil
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Name == "" {
		c.Name = StreamName
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = triggers.SubjectPrefix
	}
	return c
}

// Publisher publishes care events.
type Publisher struct {
	js  njs.JetStream
	cfg StreamConfig
}

// NewPublisher returns a publisher on js, to the care event stream.
func NewPublisher(js njs.JetStream) (*Publisher, error) {
	return NewPublisherFor(js, StreamConfig{})
}

// NewPublisherFor returns a publisher to the stream cfg names.
func NewPublisherFor(js njs.JetStream, cfg StreamConfig) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("jetstream publisher: JetStream is required")
	}
	return &Publisher{js: js, cfg: cfg.withDefaults()}, nil
}

// Publish stores ev in the stream and returns once JetStream has
// acknowledged it (durably stored; replicated when Replicas > 1). duplicate
// reports that the same event id was already stored.
func (p *Publisher) Publish(ctx context.Context, ev *triggers.CareEvent) (duplicate bool, err error) {
	if err := ev.Validate(); err != nil {
		return false, fmt.Errorf("publish care event: %w", err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return false, fmt.Errorf("publish care event: %w", err)
	}
	subject := p.cfg.SubjectPrefix + string(ev.Kind)
	ack, err := p.js.Publish(ctx, subject, data, njs.WithMsgID(ev.ID), njs.WithExpectStream(p.cfg.Name))
	if err != nil {
		return false, fmt.Errorf("publish care event: %w", err)
	}
	return ack.Duplicate, nil
}
