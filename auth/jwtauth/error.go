package jwtauth

import (
	"fmt"
	"net/http"

	"github.com/priorflow/priorflow/auth"
)

// Error codes of RFC 6750 §3.1.
const (
	// CodeInvalidRequest: the request is malformed (a broken Authorization
	// header, several of them). HTTP 400.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidToken: the token is expired, revoked, malformed or
	// otherwise not acceptable. HTTP 401.
	CodeInvalidToken = "invalid_token"
	// CodeInsufficientScope: the token is good but does not grant the
	// request. HTTP 403.
	CodeInsufficientScope = "insufficient_scope"
	// CodeUnavailable: the issuer's keys could not be fetched, so the token
	// could be neither accepted nor refused. HTTP 503. Not an RFC 6750 code
	// (it is RFC 6749's temporarily_unavailable): a client must not throw
	// away a token that may well be good.
	CodeUnavailable = "temporarily_unavailable"
)

// Realm is the realm of every challenge this package issues.
const Realm = "priorflow"

// Error is why a request's bearer token was refused. Its Description is
// fit to show the client: it names the rule the token broke and never
// contains the token.
type Error struct {
	Status      int    // HTTP status: 400, 401, 403 or 503
	Code        string // invalid_request | invalid_token | insufficient_scope; "" when no credentials were sent
	Description string
	err         error // the underlying cause, for logs only
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Description
	}
	return e.Code + ": " + e.Description
}

// Unwrap returns the underlying cause, if any (a failed JWKS fetch).
func (e *Error) Unwrap() error { return e.err }

// WWWAuthenticate is the RFC 6750 §3 challenge for the response:
// `Bearer realm="priorflow"` alone when the request carried no credentials
// (§3.1: no error code then), else with error and error_description.
func (e *Error) WWWAuthenticate() string {
	if e.Code == "" {
		return fmt.Sprintf("Bearer realm=%q", Realm)
	}
	return fmt.Sprintf("Bearer realm=%q, error=%q, error_description=%q", Realm, e.Code, auth.ErrorDescription(e.Description))
}

// InsufficientScope is the 403 a handler answers when the caller's token
// is valid but its scopes do not grant the request (auth.DeniedError).
func InsufficientScope(description string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeInsufficientScope, Description: description}
}

func invalidToken(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: fmt.Sprintf(format, args...)}
}

func invalidRequest(description string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: description}
}

// WriteError is the default error writer of Middleware: the description
// as plain text with e.Status. FHIR and DICOMweb endpoints pass their own
// writer (OperationOutcome, DICOM JSON); the WWW-Authenticate header is set
// before any writer runs.
func WriteError(w http.ResponseWriter, _ *http.Request, e *Error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = fmt.Fprintln(w, e.Description)
}
