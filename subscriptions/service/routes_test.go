package service_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/service"
)

// The operations mount beside the FHIR API the way cmd/api mounts it: the
// more specific routes win over the /fhir mount.
func TestRoutes_MountBesideFHIRAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, service.Config{Delivery: fastDelivery()})
	sub := e.mustCreate(topicSub("websocket", "", subscriptions.TopicStudyChanged, "", "id-only"))

	r := chi.NewRouter()
	r.Get("/fhir/Subscription/{id}/$status", e.svc.StatusHandler().ServeHTTP)
	r.Get("/fhir/Subscription/{id}/$events", e.svc.EventsHandler().ServeHTTP)
	r.Handle("/fhir/subscription-ws", e.svc.WebsocketHandler())
	r.Mount("/fhir", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "fhir api", http.StatusTeapot) }))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	for _, op := range []string{"$status", "$events"} {
		resp, err := http.Get(srv.URL + "/fhir/Subscription/" + sub.ID + "/" + op)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+json") {
			t.Errorf("GET %s: %d %s, want 200 FHIR JSON", op, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/fhir/subscription-ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("bind "+sub.ID)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "bound "+sub.ID {
		t.Errorf("bind answer = %q, %v; want bound %s", msg, err, sub.ID)
	}

	// Ids no Subscription can have: not found, never a 500 (a NUL reached
	// the database), and never echoed back.
	for _, bad := range []string{"a\x00b", "a\xffb", strings.Repeat("z", 65)} {
		if err := c.Write(ctx, websocket.MessageText, []byte("bind "+bad)); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || !strings.HasPrefix(string(msg), "error not a subscription id") {
			t.Errorf("bind %q answer = %q, %v; want an error that does not echo it", bad, msg, err)
		}
	}
	for _, bad := range []string{"%00", "a%FFb", strings.Repeat("z", 65)} {
		for _, op := range []string{"$status", "$events"} {
			resp, err := http.Get(srv.URL + "/fhir/Subscription/" + bad + "/" + op)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET Subscription/%s/%s: %d, want 404", bad, op, resp.StatusCode)
			}
		}
	}
}
