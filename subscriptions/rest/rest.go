// Package rest serves the Subscription operations of the Subscriptions
// Backport IG over HTTP: $status (OperationDefinition
// backport-subscription-status) and $events (backport-subscription-events),
// answering with the Bundles of package subscriptions.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/subscriptions"
)

// Store is what the operations read (subscriptions/postgres.Store).
type Store interface {
	State(ctx context.Context, id string) (*subscriptions.State, error)
	Events(ctx context.Context, id string, from, to int64, limit int) ([]*subscriptions.Notification, error)
}

// MaxEvents bounds one $events answer.
const MaxEvents = 1000

// Handler serves $status and $events.
type Handler struct {
	store Store
	base  string
	log   *slog.Logger
}

// New returns a handler.
func New(store Store, baseURL string, log *slog.Logger) (*Handler, error) {
	if store == nil || log == nil || baseURL == "" {
		return nil, errors.New("subscription operations: store, base URL and logger are required")
	}
	return &Handler{store: store, base: strings.TrimSuffix(baseURL, "/"), log: log}, nil
}

// subscriptionID takes the id from ".../Subscription/{id}/$op".
func subscriptionID(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

// Status serves GET Subscription/{id}/$status: a searchset Bundle with the
// SubscriptionStatus (type query-status).
func (h *Handler) Status(w http.ResponseWriter, r *http.Request) {
	st, err := h.store.State(r.Context(), subscriptionID(r.URL.Path))
	if err != nil {
		h.writeError(w, err)
		return
	}
	info := subscriptions.StatusInfo{Status: st.Status, EventsSinceStart: st.EventsSinceStart, Error: st.Error}
	writeBundle(w, subscriptions.NotificationBundle(st.Sub, subscriptions.TypeQueryStatus, info, nil, h.base))
}

// Events serves GET Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=
// (inclusive; content=empty|id-only|full-resource overrides the
// subscription's): a history Bundle of type query-event with the stored
// notifications, so a client that saw a gap in event numbers can fetch it.
func (h *Handler) Events(w http.ResponseWriter, r *http.Request) {
	id := subscriptionID(r.URL.Path)
	q := r.URL.Query()
	from, to := int64(1), int64(1<<62)
	var err error
	if v := q.Get("eventsSinceNumber"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 0 {
			h.writeError(w, fhir.Errorf(fhir.KindInvalid, "eventsSinceNumber must be a non-negative integer").At("eventsSinceNumber"))
			return
		}
	}
	if v := q.Get("eventsUntilNumber"); v != "" {
		if to, err = strconv.ParseInt(v, 10, 64); err != nil || to < from {
			h.writeError(w, fhir.Errorf(fhir.KindInvalid, "eventsUntilNumber must be an integer not below eventsSinceNumber").At("eventsUntilNumber"))
			return
		}
	}
	st, err := h.store.State(r.Context(), id)
	if err != nil {
		h.writeError(w, err)
		return
	}
	sub := *st.Sub
	switch c := subscriptions.Content(q.Get("content")); c {
	case "":
	case subscriptions.ContentEmpty, subscriptions.ContentIDOnly, subscriptions.ContentFullResource:
		sub.Content = c
	default:
		h.writeError(w, fhir.Errorf(fhir.KindInvalid, "content must be empty, id-only or full-resource").At("content"))
		return
	}
	if sub.Content == subscriptions.ContentEmpty && !sub.TopicBased() {
		sub.Content = subscriptions.ContentIDOnly
	}
	ns, err := h.store.Events(r.Context(), id, from, to, MaxEvents)
	if err != nil {
		h.writeError(w, err)
		return
	}
	info := subscriptions.StatusInfo{Status: st.Status, EventsSinceStart: st.EventsSinceStart, Error: st.Error}
	writeBundle(w, subscriptions.NotificationBundle(&sub, subscriptions.TypeQueryEvent, info, ns, h.base))
}

func writeBundle(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	_, _ = w.Write(b)
}

// writeError answers an OperationOutcome; internal details are logged, not
// shown.
func (h *Handler) writeError(w http.ResponseWriter, err error) {
	status, code, msg := http.StatusInternalServerError, "exception", "internal error"
	var fe *fhir.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		switch fe.Kind {
		case fhir.KindNotFound:
			status, code = http.StatusNotFound, "not-found"
		case fhir.KindInvalid:
			status, code = http.StatusBadRequest, "invalid"
		}
	}
	if status == http.StatusInternalServerError {
		h.log.Error("subscription operation failed", "err", err)
	}
	issue := map[string]any{"severity": "error", "code": code, "diagnostics": msg}
	if fe != nil && len(fe.Expression) > 0 {
		issue["expression"] = fe.Expression
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []any{issue}})
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
