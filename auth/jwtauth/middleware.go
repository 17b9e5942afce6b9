package jwtauth

import (
	"net/http"
	"strings"

	"github.com/priorflow/priorflow/auth"
)

// Middleware authenticates every request with its bearer token (RFC 6750
// §2.1, the Authorization header; tokens in query strings or form bodies
// are not read, since they end up in logs). A request with a good token
// reaches next with its auth.Principal in the context (auth.FromContext);
// any other gets the WWW-Authenticate challenge and is answered by
// onError — the caller's FHIR OperationOutcome or DICOMweb writer — or by
// WriteError when onError is nil.
func (v *Verifier) Middleware(onError func(http.ResponseWriter, *http.Request, *Error)) func(http.Handler) http.Handler {
	if onError == nil {
		onError = WriteError
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, e := bearerToken(r)
			if e == nil {
				var p *auth.Principal
				p, e = v.verify(r.Context(), raw)
				if e == nil {
					next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
					return
				}
			}
			if e.err != nil {
				v.log.Warn("a bearer token could not be checked", "path", r.URL.Path, "err", e.err)
			} else {
				v.log.Debug("request refused", "path", r.URL.Path, "code", e.Code, "reason", e.Description)
			}
			if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusBadRequest {
				w.Header().Set("WWW-Authenticate", e.WWWAuthenticate())
			}
			onError(w, r, e)
		})
	}
}

// bearerToken reads the token of the request's Authorization header.
func bearerToken(r *http.Request) (string, *Error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", &Error{Status: http.StatusUnauthorized, Description: "the request carries no access token; send one as Authorization: Bearer <token>"}
	case 1:
	default:
		return "", invalidRequest("the request has more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Credentials of another scheme are no access token: answer with
		// the bare challenge, which tells the client what to send.
		return "", &Error{Status: http.StatusUnauthorized, Description: "the Authorization header is not a Bearer token; send Authorization: Bearer <token>"}
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", invalidRequest("the Authorization header has the Bearer scheme but no token")
	}
	return token, nil
}
