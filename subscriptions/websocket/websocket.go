// Package websocket delivers subscription notifications over the websocket
// channel (FHIR R4 subscription.html#2.46.7.2): a client connects, sends
// "bind <subscription id>", is answered "bound <id>", and then receives
// "ping <id>" for each notification of a criteria-based subscription, or
// the notification Bundle JSON of a topic-based one (Subscriptions Backport
// IG, websocket channel). Notifications wait in the queue while no client
// is bound and are sent in order when one binds.
package websocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/subscriptions"
)

// States is what the hub needs of the delivery store
// (subscriptions/postgres.Store).
type States interface {
	State(ctx context.Context, id string) (*subscriptions.State, error)
	Wake(ctx context.Context, id string) error
}

// ErrNotBound is returned by Send when no client is bound to the
// subscription; the notification stays queued.
var ErrNotBound = errors.New("no websocket client is bound to the subscription")

// Hub accepts websocket clients and implements subscriptions.Sender.
type Hub struct {
	states States
	base   string
	log    *slog.Logger
	onBind func()

	mu    sync.Mutex
	conns map[string]map[*websocket.Conn]bool
}

// NewHub returns a hub.
func NewHub(states States, baseURL string, log *slog.Logger) (*Hub, error) {
	if states == nil || log == nil || baseURL == "" {
		return nil, errors.New("websocket hub: states, base URL and logger are required")
	}
	return &Hub{states: states, base: strings.TrimSuffix(baseURL, "/"), log: log, onBind: func() {}, conns: map[string]map[*websocket.Conn]bool{}}, nil
}

// OnBind sets a function called after a client bound (Deliverer.Kick).
func (h *Hub) OnBind(f func()) { h.onBind = f }

// ServeHTTP accepts a client and serves its bind requests until it leaves.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the error response
	}
	c.SetReadLimit(4096)
	ctx := r.Context()
	var bound []string
	defer func() {
		h.mu.Lock()
		for _, id := range bound {
			delete(h.conns[id], c)
			if len(h.conns[id]) == 0 {
				delete(h.conns, id)
			}
		}
		h.mu.Unlock()
		c.CloseNow()
	}()
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(string(msg)), " ")
		if cmd != "bind" || arg == "" {
			_ = c.Write(ctx, websocket.MessageText, []byte("error unsupported request; send: bind <subscription id>"))
			continue
		}
		if !fhir.ValidID(arg) {
			// Not echoed: it is whatever the client sent.
			_ = c.Write(ctx, websocket.MessageText, []byte("error not a subscription id; send: bind <subscription id>"))
			continue
		}
		st, err := h.states.State(ctx, arg)
		if err != nil || st.Sub.Channel != subscriptions.ChannelWebsocket {
			if err != nil && !fhir.IsKind(err, fhir.KindNotFound) {
				h.log.Warn("websocket: bind failed", "subscription", arg, "err", err)
			}
			_ = c.Write(ctx, websocket.MessageText, []byte("error "+arg+" is not a websocket subscription"))
			continue
		}
		h.mu.Lock()
		if h.conns[arg] == nil {
			h.conns[arg] = map[*websocket.Conn]bool{}
		}
		h.conns[arg][c] = true
		h.mu.Unlock()
		bound = append(bound, arg)
		if err := c.Write(ctx, websocket.MessageText, []byte("bound "+arg)); err != nil {
			return
		}
		if err := h.states.Wake(ctx, arg); err != nil {
			h.log.Warn("websocket: wake failed", "subscription", arg, "err", err)
		}
		h.onBind()
	}
}

// Send writes the notification to every client bound to the subscription;
// it succeeds when one of them took it.
func (h *Hub) Send(ctx context.Context, sub *subscriptions.Subscription, typ subscriptions.NotificationType, st subscriptions.StatusInfo, ns []*subscriptions.Notification) error {
	h.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(h.conns[sub.ID]))
	for c := range h.conns[sub.ID] {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	if len(conns) == 0 {
		return ErrNotBound
	}
	var msgs [][]byte
	if sub.TopicBased() {
		msgs = [][]byte{subscriptions.NotificationBundle(sub, typ, st, ns, h.base)}
	} else {
		for range max(1, len(ns)) {
			msgs = append(msgs, []byte("ping "+sub.ID))
		}
	}
	var errs []error
	ok := false
	for _, c := range conns {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		for _, m := range msgs {
			if err = c.Write(wctx, websocket.MessageText, m); err != nil {
				break
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok = true
	}
	if !ok {
		return fmt.Errorf("websocket: %w", errors.Join(errs...))
	}
	return nil
}
