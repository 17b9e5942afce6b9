// Package audit keeps the audit trail of the HTTP APIs: every read, search
// and write of patient data through FHIR (/fhir) and DICOMweb (/dicomweb) is
// written as a FHIR AuditEvent in the shape of IHE Basic Audit Log Patterns
// (BALP, https://profiles.ihe.net/ITI/BALP/).
//
// Middlewares (Recorder.FHIR, Recorder.DICOMweb) classify each request, watch
// its response for the patients it disclosed, and hand an Event to the
// Recorder. The Recorder queues events and a background writer (Run) stores
// them in batches, one transaction per batch, retrying failed writes. The
// queue is bounded and never drops: when it is full, requests wait for room,
// so that no access goes unrecorded.
//
// Wiring (cmd/api): NewRecorder, then go Run(ctx); mount the APIs as
//
//	token middleware → rec.FHIR() → FHIR handler      (at /fhir)
//	token middleware → rec.DICOMweb(StudyPatientLookup(store)) → DICOMweb handler
//
// so that the caller is in the request context when the audit middleware
// runs, and have the token middleware's error writer call rec.Rejected for
// the requests it refuses itself. On shutdown stop the HTTP server first,
// then cancel Run's context: Run writes what is queued before it returns.
//
// A record names the patients, the data and the caller; it never holds an
// access token (the token's jti is kept, as BALP asks, and access_token query
// parameters are cut from recorded queries). The recorder's own log lines
// carry no patient data: interactions, statuses, counts and error classes
// only.
package audit

import (
	"net/http"
	"time"

	"github.com/priorflow/priorflow/auth"
)

// Interaction is what a request did. The FHIR ones are the codes of
// http://hl7.org/fhir/restful-interaction (FHIR R4 http.html); the DICOMweb
// ones name the PS3.18 services.
type Interaction string

// FHIR RESTful interactions (FHIR R4 codesystem-restful-interaction).
const (
	Read            Interaction = "read"
	VRead           Interaction = "vread"
	HistoryInstance Interaction = "history-instance"
	HistoryType     Interaction = "history-type"
	SearchType      Interaction = "search-type"
	SearchSystem    Interaction = "search-system"
	Create          Interaction = "create"
	Update          Interaction = "update"
	Patch           Interaction = "patch"
	Delete          Interaction = "delete"
	Transaction     Interaction = "transaction"
	Batch           Interaction = "batch"
	Operation       Interaction = "operation"
)

// DICOMweb services (DICOM PS3.18): search, retrieve, store, and the
// deletion of a study.
const (
	QIDORS      Interaction = "qido-rs"
	WADORS      Interaction = "wado-rs"
	STOWRS      Interaction = "stow-rs"
	DICOMDelete Interaction = "dicomweb-delete"
)

// DICOMweb reports whether i is a DICOMweb service rather than a FHIR
// interaction.
func (i Interaction) DICOMweb() bool {
	switch i {
	case QIDORS, WADORS, STOWRS, DICOMDelete:
		return true
	}
	return false
}

// Action is AuditEvent.action (FHIR R4 valueset audit-event-action).
type Action string

const (
	ActionCreate  Action = "C"
	ActionRead    Action = "R"
	ActionUpdate  Action = "U"
	ActionDelete  Action = "D"
	ActionExecute Action = "E"
)

// ActionOf is the action BALP records for i: searches and queries execute
// (E), reads and retrievals read (R), writes create, update or delete.
// Transactions and batches, which mix them, execute.
func ActionOf(i Interaction) Action {
	switch i {
	case Read, VRead, HistoryInstance, HistoryType, WADORS:
		return ActionRead
	case Create, STOWRS:
		return ActionCreate
	case Update, Patch:
		return ActionUpdate
	case Delete, DICOMDelete:
		return ActionDelete
	}
	return ActionExecute
}

// Study is a DICOM study an event touched, and its patient when known.
type Study struct {
	InstanceUID string // StudyInstanceUID (0020,000D)
	Patient     string // Patient/x; "" when not (yet) known
}

// Event is one access to record. The Recorder writes it as one AuditEvent per
// patient it names (BALP: "one AuditEvent is created for every Patient
// identified"), or one without a patient when it names none.
type Event struct {
	Interaction Interaction
	// Action is derived from Interaction (ActionOf) when empty.
	Action Action
	// ResourceType, ResourceID and VersionID name the FHIR resource an
	// instance interaction touched (the BALP "data" entity).
	ResourceType string
	ResourceID   string
	VersionID    string
	// Studies are the DICOM studies a DICOMweb request touched.
	Studies []Study
	// Query is the search request of a search or query, its path and query
	// string, with credentials removed (BALP entity[query]).
	Query string
	// Patients are the references (Patient/x) of the patients whose data the
	// request reached.
	Patients []string
	// Status is the HTTP status answered; it sets the outcome (0 success, 4
	// minor failure for 4xx, 8 serious failure for 5xx).
	Status int
	// OutcomeDesc says more about a failure.
	OutcomeDesc string
	// Principal is the caller; nil when authorization is off.
	Principal *auth.Principal
	// ClientAddress is the caller's network address (IP).
	ClientAddress string
	// ServerHost is the host name the request was sent to.
	ServerHost string
	// RequestID is the X-Request-Id of the request, when it had one.
	RequestID string
	// Start and Recorded bound the request; Recorded defaults to the time
	// Record is called.
	Start    time.Time
	Recorded time.Time

	// lookup finds the patients of Studies that have none; the DICOMweb
	// middleware sets it, and the writer calls it off the request path.
	lookup StudyPatients
	// response is a FHIR response body whose patients the writer reads,
	// off the request path, and adds to Patients; scopePatient is the
	// patient of a patient-scoped grant, recorded when none is found.
	response     []byte
	scopePatient string
}

// FHIR R4 audit-event-outcome codes.
const (
	outcomeSuccess      = "0"
	outcomeMinorFailure = "4"
	outcomeSerious      = "8"
)

// outcomeOf maps an HTTP status to AuditEvent.outcome: a client error is a
// minor failure (the request was refused, nothing happened), a server error
// a serious one.
func outcomeOf(status int) string {
	switch {
	case status >= 500:
		return outcomeSerious
	case status >= 400:
		return outcomeMinorFailure
	}
	return outcomeSuccess
}

// outcomeDesc is the HTTP status in words, with detail appended.
func outcomeDesc(status int, detail string) string {
	if status == 0 {
		return detail
	}
	s := http.StatusText(status)
	if s == "" {
		s = "status"
	}
	desc := itoa(status) + " " + s
	if detail != "" {
		desc += ": " + detail
	}
	return desc
}
