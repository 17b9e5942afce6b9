package tokenserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/priorflow/priorflow/auth"
)

// maxFormBytes bounds a token request: a form with one assertion.
const maxFormBytes = 64 << 10

// Error codes of RFC 6749 §5.2. invalid_grant is never sent: the
// client_credentials grant carries no grant that could be invalid, and a
// bad client assertion is invalid_client (RFC 7521 §4.2.1).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	codeServerError          = "server_error"
)

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func oauthErr(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, Code: code, Description: auth.ErrorDescription(fmt.Sprintf(format, args...))}
}

func invalidRequest(format string, args ...any) *oauthError {
	return oauthErr(http.StatusBadRequest, CodeInvalidRequest, format, args...)
}

func invalidClient(format string, args ...any) *oauthError {
	return oauthErr(http.StatusUnauthorized, CodeInvalidClient, format, args...)
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// TokenHandler is the token endpoint: POST, form encoded,
// grant_type=client_credentials with scope, client_assertion_type and
// client_assertion (SMART Backend Services "Obtaining an access token").
func (s *Server) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, e := s.token(w, r)
		if e != nil {
			s.log.Info("token request refused", "error", e.Code, "reason", e.Description, "remote", r.RemoteAddr)
			writeJSON(w, e.status, e)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, oauthErr(http.StatusMethodNotAllowed, CodeInvalidRequest, "the token endpoint takes POST")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, invalidRequest("the body is larger than %d bytes", maxFormBytes)
		}
		return nil, invalidRequest("the body is not a valid form")
	}
	form := r.PostForm
	for name, vs := range form {
		if len(vs) > 1 {
			// RFC 6749 §3.2: parameters must not repeat.
			return nil, invalidRequest("parameter %s is repeated", printable(name))
		}
	}
	if r.Header.Get("Authorization") != "" || form.Has("client_secret") {
		return nil, invalidClient("only private_key_jwt client authentication (a client_assertion) is supported")
	}
	switch gt := form.Get("grant_type"); gt {
	case "":
		return nil, invalidRequest("grant_type is required: client_credentials")
	case "client_credentials":
	default:
		return nil, oauthErr(http.StatusBadRequest, CodeUnsupportedGrantType, "grant_type %s is not supported; use client_credentials", printable(gt))
	}
	scope := form.Get("scope")
	if strings.TrimSpace(scope) == "" {
		return nil, invalidRequest("scope is required, e.g. system/ImagingStudy.rs")
	}
	requested, err := auth.ParseScopes(scope)
	if err != nil {
		return nil, oauthErr(http.StatusBadRequest, CodeInvalidScope, "%v", err)
	}
	switch at := form.Get("client_assertion_type"); {
	case at == "" && form.Get("client_assertion") == "":
		return nil, invalidClient("client authentication is required: client_assertion_type=%s and a client_assertion", AssertionType)
	case at != AssertionType:
		return nil, invalidClient("client_assertion_type must be %s", AssertionType)
	case form.Get("client_assertion") == "":
		return nil, invalidClient("client_assertion is required")
	}

	a, e := s.checkAssertion(r.Context(), form.Get("client_assertion"))
	if e != nil {
		return nil, e
	}
	fresh, err := s.replay.Use(r.Context(), a.client.ID, a.jti, a.expires)
	if err != nil {
		s.log.Error("token request failed", "client", a.client.ID, "err", err)
		return nil, oauthErr(http.StatusInternalServerError, codeServerError, "the server cannot issue tokens right now")
	}
	if !fresh {
		return nil, invalidClient("the client assertion's jti was used before; sign a new assertion for every token request")
	}

	// Grant the requested scopes the registration covers; the response's
	// scope tells the client when that is fewer than it asked for
	// (RFC 6749 §3.3).
	var granted auth.Scopes
	for _, sc := range requested {
		if sc.Within(a.client.Scopes) && !slices.ContainsFunc(granted, func(g auth.Scope) bool { return g.String() == sc.String() }) {
			granted = append(granted, sc)
		}
	}
	if len(granted) == 0 {
		return nil, oauthErr(http.StatusBadRequest, CodeInvalidScope,
			"none of the requested resource scopes is within client %s's registration (%s)", a.client.ID, a.client.Scopes)
	}
	tok, err := s.issue(a.client.ID, granted.String(), a.client.PurposeOfUse, s.cfg.TokenTTL)
	if err != nil {
		s.log.Error("token request failed", "client", a.client.ID, "err", err)
		return nil, oauthErr(http.StatusInternalServerError, codeServerError, "the server cannot issue tokens right now")
	}
	s.log.Info("issued access token", "client", a.client.ID, "scope", granted.String(), "ttl", s.cfg.TokenTTL)
	return &tokenResponse{
		AccessToken: tok,
		TokenType:   "bearer",
		ExpiresIn:   int(s.cfg.TokenTTL.Seconds()),
		Scope:       granted.String(),
	}, nil
}

// writeJSON writes a token endpoint response, never cached (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// JWKSHandler serves the server's public key set, the jwks_uri of its
// SMART configuration.
func (s *Server) JWKSHandler() http.Handler {
	body, err := json.Marshal(s.public)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the JWKS takes GET", http.StatusMethodNotAllowed)
			return
		}
		if err != nil {
			s.log.Error("encoding the public key set failed", "err", err)
			http.Error(w, "the key set is unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Short enough that a replaced key is picked up soon; verifiers
		// refetch at once anyway when a token names a key they lack.
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}

// SMARTConfiguration is the /.well-known/smart-configuration document of
// a server whose authorization server is this one (SMART App Launch 2.x,
// "Conformance"; Backend Services "Discovery").
type SMARTConfiguration struct {
	Issuer                                     string   `json:"issuer"`
	JWKSURI                                    string   `json:"jwks_uri"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported                            []string `json:"scopes_supported"`
	Capabilities                               []string `json:"capabilities"`
}

// SMARTConfiguration describes this server; jwksURI is the absolute URL
// where JWKSHandler is mounted. The result is also the handler that
// serves it.
func (s *Server) SMARTConfiguration(jwksURI string) *SMARTConfiguration {
	return &SMARTConfiguration{
		Issuer:                            s.cfg.Issuer,
		JWKSURI:                           jwksURI,
		TokenEndpoint:                     s.cfg.TokenURL,
		GrantTypesSupported:               []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported: []string{"private_key_jwt"},
		TokenEndpointAuthSigningAlgValuesSupported: []string{"RS384", "ES384"},
		ScopesSupported: s.scopesSupported(),
		Capabilities:    []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	}
}

// ServeHTTP serves c as JSON.
func (c *SMARTConfiguration) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the SMART configuration takes GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}
