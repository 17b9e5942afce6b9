package rest

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/priorflow/priorflow/fhir"
)

// The one table from error kind to HTTP status and OperationOutcome issue
// type (FHIR R4 http.html "General Considerations", valueset issue-type).
var kindStatus = map[fhir.Kind]struct {
	status int
	code   string
}{
	fhir.KindInternal:         {http.StatusInternalServerError, "exception"},
	fhir.KindInvalid:          {http.StatusBadRequest, "invalid"},
	fhir.KindNotFound:         {http.StatusNotFound, "not-found"},
	fhir.KindNotAllowed:       {http.StatusMethodNotAllowed, "not-supported"},
	fhir.KindConflict:         {http.StatusConflict, "conflict"},
	fhir.KindGone:             {http.StatusGone, "deleted"},
	fhir.KindPrecondition:     {http.StatusPreconditionFailed, "conflict"},
	fhir.KindUnsupportedMedia: {http.StatusUnsupportedMediaType, "not-supported"},
	fhir.KindUnprocessable:    {http.StatusUnprocessableEntity, "invalid"},
	fhir.KindTooLarge:         {http.StatusRequestEntityTooLarge, "too-costly"},
	fhir.KindUnauthorized:     {http.StatusUnauthorized, "login"},
	fhir.KindForbidden:        {http.StatusForbidden, "forbidden"},
	fhir.KindUnavailable:      {http.StatusServiceUnavailable, "transient"},
}

// StatusOf returns the HTTP status for err.
func StatusOf(err error) int { return kindStatus[fhir.ErrorKind(err)].status }

type issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

type operationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []issue `json:"issue"`
}

// outcomeFor builds the OperationOutcome for err. Internal errors get a
// generic message: their details are logged, never shown.
func outcomeFor(err error) []byte {
	kind := fhir.ErrorKind(err)
	is := issue{Severity: "error", Code: kindStatus[kind].code}
	var fe *fhir.Error
	if kind != fhir.KindInternal && errors.As(err, &fe) {
		is.Diagnostics = fe.Message
		is.Expression = fe.Expression
	} else {
		is.Diagnostics = "internal server error; the details are in the server log"
	}
	return mustJSON(operationOutcome{ResourceType: "OperationOutcome", Issue: []issue{is}})
}

func informationOutcome(msg string) []byte {
	return mustJSON(operationOutcome{ResourceType: "OperationOutcome", Issue: []issue{{Severity: "information", Code: "informational", Diagnostics: msg}}})
}

func warningOutcome(msg string, expr []string) []byte {
	return mustJSON(operationOutcome{ResourceType: "OperationOutcome", Issue: []issue{{Severity: "warning", Code: "not-supported", Diagnostics: msg, Expression: expr}}})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled here
	}
	return b
}

// writeError writes err as an OperationOutcome, logging internal errors once.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusOf(err)
	if status >= 500 {
		h.log.ErrorContext(r.Context(), "fhir request failed", "method", r.Method, "route", routePattern(r), "err", err)
	}
	// RFC 6750 3: a missing token is challenged, a token that does not
	// reach the data is refused as insufficient_scope.
	switch fhir.ErrorKind(err) {
	case fhir.KindUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
	case fhir.KindForbidden:
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="insufficient_scope"`)
	}
	writeJSON(w, status, outcomeFor(err))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
