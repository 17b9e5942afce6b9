package search_test

import (
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/priorflow/priorflow/auth/tokenserver"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/search"
)

// TestNewHTTPClient_OAuth_PriorflowTokenServer gets tokens from Priorflow's
// own SMART Backend Services token server, the one a peer Priorflow
// instance runs, and presents them to a resource that verifies them with
// that server's public keys.
func TestNewHTTPClient_OAuth_PriorflowTokenServer(t *testing.T) {
	t.Parallel()
	_, rsaKey := newRSAKey(t, "priorflow-a-rsa")
	_, ecKey := newECKey(t, elliptic.P384(), "priorflow-a-ec")

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tokenURL, audience := srv.URL+"/auth/token", srv.URL+"/fhir"

	publicSet := func(k jwk.Key) string {
		set := jwk.NewSet()
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := t.TempDir()
	clientsFile := filepath.Join(dir, "clients.yaml")
	// JSON is YAML: the key sets go in as they are.
	if err := os.WriteFile(clientsFile, []byte(`clients:
  - id: priorflow-a-rsa
    jwks: `+publicSet(rsaKey.public)+`
    scope: system/ImagingStudy.rs system/Patient.rs system/Endpoint.rs
  - id: priorflow-a-ec
    jwks: `+publicSet(ecKey.public)+`
    scope: system/ImagingStudy.rs system/Patient.rs system/Endpoint.rs
`), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, err := tokenserver.LoadClients(clientsFile)
	if err != nil {
		t.Fatal(err)
	}
	signing, err := tokenserver.LoadOrCreateKey(filepath.Join(dir, "signing.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	replay, err := tokenserver.NewReplayStore(dbtest.NewPool(t), dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tokenserver.New(tokenserver.Config{Issuer: srv.URL, TokenURL: tokenURL, Audience: audience,
		Key: signing, Clients: clients}, replay, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	var tokenRequests atomic.Int32
	mux.Handle("/auth/token", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		ts.TokenHandler().ServeHTTP(w, r)
	}))
	mux.HandleFunc("/fhir/", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(ts.PublicKeys()), jwt.WithValidate(true),
			jwt.WithIssuer(srv.URL), jwt.WithAudience(audience))
		if err != nil {
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		var scope string
		if err := tok.Get("scope", &scope); err != nil || !strings.Contains(scope, "system/ImagingStudy.rs") {
			http.Error(w, "insufficient scope", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, "[]")
	})

	for _, tc := range []struct {
		clientID string
		key      jwk.Key
	}{
		{"priorflow-a-rsa", rsaKey.private},
		{"priorflow-a-ec", ecKey.private},
	} {
		t.Run(tc.clientID, func(t *testing.T) {
			before := tokenRequests.Load()
			c := newClient(t, sourceConfig("hospital-b", audience, search.Auth{OAuth: &search.OAuth{
				TokenURL: tokenURL, ClientID: tc.clientID, PrivateKeyFile: jwkFile(t, tc.key), Scope: testScope}}))
			for i := range 3 {
				if err := get(c, audience+"/ImagingStudy"); err != nil {
					t.Fatalf("Get %d: %v", i, err)
				}
			}
			if got := tokenRequests.Load() - before; got != 1 {
				t.Errorf("%d token requests for 3 resource requests, want 1", got)
			}
		})
	}
	t.Run("unregistered client is refused with invalid_client", func(t *testing.T) {
		c := newClient(t, sourceConfig("hospital-b", audience, search.Auth{OAuth: &search.OAuth{
			TokenURL: tokenURL, ClientID: "stranger", PrivateKeyFile: jwkFile(t, rsaKey.private), Scope: testScope}}))
		err := get(c, audience+"/ImagingStudy")
		if err == nil || !strings.Contains(err.Error(), "error invalid_client") {
			t.Errorf("Get = %v, want the token endpoint's invalid_client", err)
		}
	})
}
