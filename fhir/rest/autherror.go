package rest

import (
	"net/http"

	"github.com/priorflow/priorflow/fhir"
)

// WriteAuthError renders a refusal of the access-token check, made in
// front of the FHIR API (RFC 6750), as an OperationOutcome with the
// status it carries. The caller has set WWW-Authenticate, which holds the
// OAuth error code; the outcome carries the FHIR issue code.
func WriteAuthError(w http.ResponseWriter, _ *http.Request, status int, description string) {
	kind := fhir.KindInvalid
	switch status {
	case http.StatusUnauthorized:
		kind = fhir.KindUnauthorized
	case http.StatusForbidden:
		kind = fhir.KindForbidden
	case http.StatusServiceUnavailable:
		kind = fhir.KindUnavailable
	}
	writeJSON(w, status, outcomeFor(fhir.Errorf(kind, "%s", description)))
}
