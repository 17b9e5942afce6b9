package resthook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/subscriptions"
	"github.com/priorflow/priorflow/subscriptions/resthook"
)

func TestSender_RefusesPrivateAddressAtDialTime(t *testing.T) {
	var hit atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit.Store(true) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	// Listed by host name: admitted by prefix, but the name resolves to
	// loopback, which only an IP-literal entry may reach.
	byName := "http://localhost:" + u.Port() + "/"
	g, err := resthook.NewGuard([]string{byName})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Check(context.Background(), byName+"hook"); !fhir.IsKind(err, fhir.KindUnprocessable) {
		t.Errorf("Check = %v, want unprocessable", err)
	}
	s, err := resthook.NewSender(g, resthook.Config{BaseURL: "http://x/fhir"}, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	sub := &subscriptions.Subscription{ID: "a", Channel: subscriptions.ChannelRestHook, Endpoint: byName + "hook"}
	err = s.Send(context.Background(), sub, subscriptions.TypeHandshake, subscriptions.StatusInfo{}, nil)
	if err == nil || !strings.Contains(err.Error(), "private address") || hit.Load() {
		t.Errorf("Send = %v (receiver hit %v), want a refusal before connecting", err, hit.Load())
	}
}

func TestSender_RedirectIsAFailure(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer srv.Close()
	g, _ := resthook.NewGuard([]string{srv.URL + "/"})
	s, _ := resthook.NewSender(g, resthook.Config{BaseURL: "http://x/fhir"}, dbtest.Logger())
	sub := &subscriptions.Subscription{ID: "a", Channel: subscriptions.ChannelRestHook, Endpoint: srv.URL + "/hook"}
	if err := s.Send(context.Background(), sub, subscriptions.TypeHandshake, subscriptions.StatusInfo{}, nil); err == nil {
		t.Error("Send followed a redirect, want a failure")
	}
}

func TestGuard_PrivateRanges(t *testing.T) {
	g, _ := resthook.NewGuard([]string{"http://10.0.0.5:8080/hooks/", "https://ehr.example.org/fhir/"})
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"http://10.0.0.5:8080/hooks/a", true},  // listed as an IP literal
		{"http://10.0.0.6:8080/hooks/a", false}, // not listed
		{"http://10.0.0.5:8080/other", false},   // outside the path
		{"https://ehr.example.org.evil/fhir/", false},
		{"https://user@ehr.example.org/fhir/x", false},
	} {
		err := g.Check(context.Background(), tc.endpoint)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%s) = %v, want ok=%v", tc.endpoint, err, tc.ok)
		}
	}
}
