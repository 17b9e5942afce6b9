// Package service wires FHIR Subscriptions together for cmd/api: the write
// hooks on the FHIR store, the resource change relay, the JetStream
// dispatcher, the deliverer with its rest-hook and websocket senders, and
// the HTTP handlers of $status, $events and the websocket endpoint.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	fhirpg "github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/jetstream"
	"github.com/priorflow/priorflow/subscriptions/postgres"
	"github.com/priorflow/priorflow/subscriptions/rest"
	"github.com/priorflow/priorflow/subscriptions/resthook"
	"github.com/priorflow/priorflow/subscriptions/websocket"
)

// EnvEndpoints names the allow-list of rest-hook endpoint URL prefixes.
const EnvEndpoints = "PRIORFLOW_SUBSCRIPTION_ENDPOINTS"

// Config configures subscriptions.
type Config struct {
	// BaseURL is the absolute FHIR base, e.g. https://pacs.example.org/fhir.
	BaseURL string
	// AllowedEndpoints are the rest-hook endpoint URL prefixes
	// (resthook.ParseAllowList(os.Getenv(EnvEndpoints))).
	AllowedEndpoints []string
	// Delivery tunes retries (default: for 24 h, backoff 1 s to 10 min).
	Delivery subscriptions.DeliveryConfig
	// StreamReplicas is the replica count of the RESOURCE_EVENTS stream.
	StreamReplicas int
	// Retention is how long delivered notifications stay available to
	// $events; 0 means 7 days.
	Retention time.Duration
	// RelayPoll is how often the change relay looks without a
	// notification; 0 means 2s.
	RelayPoll time.Duration
}

// Service is the running subscriptions machinery of one API process.
type Service struct {
	store      *postgres.Store
	relay      *postgres.Relay
	dispatcher *jetstream.Dispatcher
	deliverer  *subscriptions.Deliverer
	hub        *websocket.Hub
	ops        *rest.Handler
	log        *slog.Logger
	retention  time.Duration
}

// New wires subscriptions onto the FHIR store (whose registry must include
// fhir.Subscription()) and JetStream, creating the RESOURCE_EVENTS stream.
// It registers write hooks on fs, so call it before fs serves requests.
func New(ctx context.Context, fs *fhirpg.Store, js njs.JetStream, cfg Config, log *slog.Logger) (*Service, error) {
	if fs == nil || js == nil || log == nil {
		return nil, errors.New("subscriptions: FHIR store, JetStream and logger are required")
	}
	if fs.Registry().Type("Subscription") == nil {
		return nil, errors.New("subscriptions: the FHIR registry lacks the Subscription type (fhir.Subscription())")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("subscriptions: base URL is required")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	log = log.With("component", "subscriptions")
	matcher, err := subscriptions.NewMatcher(fs.Registry(), fs.Codec(), cfg.BaseURL, "ImagingStudy")
	if err != nil {
		return nil, err
	}
	guard, err := resthook.NewGuard(cfg.AllowedEndpoints)
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(fs.Pool(), matcher, guard, log)
	if err != nil {
		return nil, err
	}
	if err := jetstream.EnsureStream(ctx, js, cfg.StreamReplicas, 0); err != nil {
		return nil, err
	}
	pub, err := jetstream.NewPublisher(js)
	if err != nil {
		return nil, err
	}
	relay, err := postgres.NewRelay(fs.Pool(), pub, log, cfg.RelayPoll)
	if err != nil {
		return nil, err
	}
	hook, err := resthook.NewSender(guard, resthook.Config{BaseURL: cfg.BaseURL}, log)
	if err != nil {
		return nil, err
	}
	hub, err := websocket.NewHub(store, cfg.BaseURL, log)
	if err != nil {
		return nil, err
	}
	deliverer, err := subscriptions.NewDeliverer(store, map[subscriptions.ChannelType]subscriptions.Sender{
		subscriptions.ChannelRestHook:  hook,
		subscriptions.ChannelWebsocket: hub,
	}, log, cfg.Delivery)
	if err != nil {
		return nil, err
	}
	hub.OnBind(deliverer.Kick)
	resStatus := postgres.NewResourceStatus(fs)
	deliverer.OnStatusChange(func(ctx context.Context, id string, status subscriptions.Status, reason string) {
		if err := resStatus.Set(ctx, id, status, reason); err != nil {
			log.Warn("subscriptions: reflecting status in the resource failed", "subscription", id, "err", err)
		}
	})
	dispatcher, err := jetstream.NewDispatcher(js, store, matcher, fs, deliverer.Kick, log)
	if err != nil {
		return nil, err
	}
	// The resource's write hook sees the same criteria fail to compile and
	// sets the delivery state to error with the same reason.
	dispatcher.OnUncompilable(func(ctx context.Context, id, reason string) {
		if err := resStatus.Set(ctx, id, subscriptions.StatusError, reason); err != nil {
			log.Warn("subscriptions: setting a subscription whose criteria no longer compile to error failed", "subscription", id, "err", err)
		}
	})
	ops, err := rest.New(store, cfg.BaseURL, log)
	if err != nil {
		return nil, err
	}
	store.Register(fs, "ImagingStudy")
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	return &Service{store: store, relay: relay, dispatcher: dispatcher, deliverer: deliverer, hub: hub, ops: ops,
		log: log, retention: cfg.Retention}, nil
}

// Run relays, dispatches and delivers until ctx is cancelled; it returns
// after in-flight deliveries finished and their leases were released.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.relay.Run(ctx) })
	g.Go(func() error { return s.dispatcher.Run(ctx) })
	g.Go(func() error { return s.deliverer.Run(ctx) })
	g.Go(func() error { s.prune(ctx); return nil })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	return nil
}

// StatusHandler serves GET /fhir/Subscription/{id}/$status; the id is the
// path segment before "$status".
func (s *Service) StatusHandler() http.Handler { return http.HandlerFunc(s.ops.Status) }

// EventsHandler serves GET /fhir/Subscription/{id}/$events.
func (s *Service) EventsHandler() http.Handler { return http.HandlerFunc(s.ops.Events) }

// WebsocketHandler serves the websocket channel (mount it at
// /fhir/subscription-ws).
func (s *Service) WebsocketHandler() http.Handler { return s.hub }

// Store is the delivery store, for $status-like reads and tests.
func (s *Service) Store() *postgres.Store { return s.store }

// prune drops old delivered notifications every hour.
func (s *Service) prune(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.store.Prune(ctx, s.retention); err != nil {
			s.log.Warn("subscriptions: pruning notifications failed", "err", err)
		} else if n > 0 {
			s.log.Info("subscriptions: pruned delivered notifications", "count", n)
		}
	}
}
