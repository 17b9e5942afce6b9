package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/auth/jwtauth"
	"github.com/priorflow/priorflow/auth/tokenserver"
)

// devTokenTTL is how long the token `make run` prints stays good: a
// working day at the machine.
const devTokenTTL = 12 * time.Hour

// devScope is everything: a development machine holds demo data only.
const devScope = "system/*.cruds"

// security is the api's authorization: the access-token verifier every
// patient-data route passes through, and the built-in SMART Backend
// Services token endpoint when this server issues its own tokens.
type security struct {
	mode     string
	verifier *jwtauth.Verifier   // nil when authorization is off
	tokens   *tokenserver.Server // nil with an external issuer
	smart    any                 // the /.well-known/smart-configuration document
}

func newSecurity(ctx context.Context, cfg *config, pool *pgxpool.Pool, log *slog.Logger) (*security, error) {
	s := &security{mode: cfg.Auth}
	if cfg.Auth == "off" {
		log.Warn("authorization is off (PRIORFLOW_AUTH=off): every caller may read and write patient data")
		return s, nil
	}
	if cfg.AuthIssuer != "" {
		v, err := jwtauth.NewVerifier(ctx, jwtauth.Config{Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience,
			JWKSURL: cfg.AuthJWKSURL, ClockSkew: cfg.AuthClockSkew}, log)
		if err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
		s.verifier = v
		s.smart = &tokenserver.SMARTConfiguration{
			Issuer: cfg.AuthIssuer, JWKSURI: cfg.AuthJWKSURL, TokenEndpoint: cfg.AuthTokenURL,
			GrantTypesSupported:                        []string{"client_credentials"},
			TokenEndpointAuthMethodsSupported:          []string{"private_key_jwt"},
			TokenEndpointAuthSigningAlgValuesSupported: []string{"RS384", "ES384"},
			Capabilities:                               []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
		}
		log.Info("authorization: access tokens of an external issuer", "issuer", cfg.AuthIssuer, "audience", cfg.AuthAudience)
		return s, nil
	}

	// The built-in issuer: this server's base URL.
	key, err := tokenserver.LoadOrCreateKey(cfg.AuthKeyFile)
	if err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	clients := &tokenserver.Clients{}
	if cfg.AuthClients != "" {
		if clients, err = tokenserver.LoadClients(cfg.AuthClients); err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
	}
	replay, err := tokenserver.NewReplayStore(pool, log)
	if err != nil {
		return nil, err
	}
	srv, err := tokenserver.New(tokenserver.Config{Issuer: cfg.BaseURL, TokenURL: cfg.BaseURL + "/auth/token",
		Audience: cfg.AuthAudience, TokenTTL: cfg.AuthTokenTTL, Key: key, Clients: clients}, replay, log)
	if err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	v, err := jwtauth.NewVerifier(ctx, jwtauth.Config{Issuer: cfg.BaseURL, Audience: cfg.AuthAudience,
		Keys: srv.PublicKeys(), ClockSkew: cfg.AuthClockSkew}, log)
	if err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	s.verifier, s.tokens = v, srv
	s.smart = srv.SMARTConfiguration(cfg.BaseURL + "/auth/jwks.json")
	log.Info("authorization: built-in SMART Backend Services token endpoint", "token_endpoint", cfg.BaseURL+"/auth/token",
		"clients", len(clients.IDs()), "mode", cfg.Auth)

	if cfg.Auth == "dev" {
		path, err := writeDevToken(srv, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		// The path, never the token: logs are shipped and kept.
		log.Info("development access token written", "file", path, "scope", devScope, "valid", devTokenTTL.String())
	}
	return s, nil
}

// writeDevToken mints the development token and writes it where `make
// run` reads it, readable by this user only.
func writeDevToken(srv *tokenserver.Server, dataDir string) (string, error) {
	tok, err := srv.Mint("dev", devScope, devTokenTTL)
	if err != nil {
		return "", fmt.Errorf("development token: %w", err)
	}
	path := filepath.Join(dataDir, "dev-token")
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", fmt.Errorf("development token: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("development token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("development token: %w", err)
	}
	return path, nil
}

func (s *security) close() {
	if s.verifier != nil {
		_ = s.verifier.Close()
	}
}

// authenticate puts the caller of every request through the verifier;
// onError renders a refusal in the protocol of the routes it guards. With
// authorization off it passes requests through untouched.
func (s *security) authenticate(onError func(http.ResponseWriter, *http.Request, *jwtauth.Error)) func(http.Handler) http.Handler {
	if s.verifier == nil {
		return func(next http.Handler) http.Handler { return next }
	}
	return s.verifier.Middleware(onError)
}

// require refuses callers whose scopes do not grant perm on typ
// unnarrowed; it guards routes outside the FHIR handler (the subscription
// operations), which do their own lookups.
func (s *security) require(typ string, perm auth.Perm, onError func(http.ResponseWriter, *http.Request, *jwtauth.Error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if s.verifier == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := auth.FromContext(r.Context()).Allow(typ, perm)
			var de *auth.DeniedError
			switch {
			case errors.As(err, &de):
				onError(w, r, jwtauth.InsufficientScope(de.Error()))
				return
			case err != nil:
				onError(w, r, jwtauth.InsufficientScope(err.Error()))
				return
			case !n.None():
				onError(w, r, jwtauth.InsufficientScope(fmt.Sprintf("%s needs a %s scope without patient or search restrictions", r.URL.Path, typ)))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// smartConfiguration serves the SMART discovery document (SMART App
// Launch 2.0 §2.5), which FHIR clients fetch before they have a token.
func (s *security) smartConfiguration(w http.ResponseWriter, _ *http.Request) {
	if s.smart == nil {
		http.Error(w, "authorization is off on this server", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_ = json.NewEncoder(w).Encode(s.smart)
}
