// Package triggers turns care events into prefetch work. A care event is
// something that happened to a patient that makes their prior images needed
// soon: an appointment booked or moved, an ED arrival, an admission, a
// transfer, an imaging order. Events arrive as FHIR resources (fhir
// intake) or HL7 v2 messages (triggers/hl7v2 over triggers/mllp), are
// normalized into one CareEvent, and are published durably on NATS
// JetStream (triggers/jetstream) before the sender is acknowledged.
package triggers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/printable"
)

// SchemaVersion is the version of the CareEvent JSON. Consumers refuse
// versions they do not know rather than guess; additive changes keep the
// version, anything else bumps it.
const SchemaVersion = 1

// Kind says what happened.
type Kind string

const (
	AppointmentBooked      Kind = "appointment-booked"
	AppointmentRescheduled Kind = "appointment-rescheduled"
	AppointmentCancelled   Kind = "appointment-cancelled"
	AppointmentNoShow      Kind = "appointment-noshow"
	EDArrival              Kind = "ed-arrival"
	PreAdmission           Kind = "pre-admission" // an admission planned for scheduledStart (ADT^A05, A14; Encounter planned)
	Admission              Kind = "admission"
	Registration           Kind = "registration" // outpatient visit (ADT^A04, Encounter AMB)
	Transfer               Kind = "transfer"
	Discharge              Kind = "discharge"
	VisitCancelled         Kind = "visit-cancelled" // ADT^A11, A27, A38
	PatientUpdated         Kind = "patient-updated" // ADT^A08, A28, A31: demographics and identifiers
	PatientMerged          Kind = "patient-merged"  // ADT^A40
	OrderPlaced            Kind = "order-placed"
	OrderCancelled         Kind = "order-cancelled"
)

// Kinds lists every kind, for validation and documentation.
var Kinds = []Kind{AppointmentBooked, AppointmentRescheduled, AppointmentCancelled, AppointmentNoShow, EDArrival,
	PreAdmission, Admission, Registration, Transfer, Discharge, VisitCancelled, PatientUpdated, PatientMerged, OrderPlaced, OrderCancelled}

// Priority of the need, in the FHIR request-priority codes.
type Priority string

const (
	PriorityStat    Priority = "stat"
	PriorityASAP    Priority = "asap"
	PriorityUrgent  Priority = "urgent"
	PriorityRoutine Priority = "routine"
)

// Identifier is a patient identifier with its assigning authority: FHIR
// Identifier.system/value, or HL7 v2 CX-1 with CX-4 (namespace, universal id
// and its type) and CX-5.
type Identifier struct {
	System string `json:"system,omitempty"` // URI of the assigning authority (urn:oid:… when CX-4.2 is an ISO OID)
	Value  string `json:"value"`
	// Authority is the assigning authority's namespace id (CX-4.1), kept
	// verbatim so rules and sources can match on it.
	Authority string `json:"authority,omitempty"`
	Type      string `json:"type,omitempty"` // identifier type code (v2 table 0203: MR, PI, PT, SS, …)
}

// Patient is who the event is about.
type Patient struct {
	Identifiers []Identifier `json:"identifiers"`
	Family      string       `json:"family,omitempty"`
	Given       []string     `json:"given,omitempty"`
	BirthDate   string       `json:"birthDate,omitempty"` // YYYY, YYYY-MM or YYYY-MM-DD
	Sex         string       `json:"sex,omitempty"`       // FHIR administrative-gender
	// FHIRID is the Patient resource id on this server, when known.
	FHIRID string `json:"fhirId,omitempty"`
}

// Code is a coded concept (procedure, body site, reason).
type Code struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Origin links the event to what it was made from.
type Origin struct {
	// Reference is a FHIR reference ("Appointment/123") on this server for
	// FHIR intake, or "hl7v2:<id>" naming the stored raw message.
	Reference string `json:"reference"`
	// MessageType and ControlID of an HL7 v2 message (MSH-9, MSH-10).
	MessageType string `json:"messageType,omitempty"`
	ControlID   string `json:"controlId,omitempty"`
}

// CareEvent is the normalized care event, version SchemaVersion.
type CareEvent struct {
	SchemaVersion int       `json:"schemaVersion"`
	ID            string    `json:"id"`
	Kind          Kind      `json:"kind"`
	OccurredAt    time.Time `json:"occurredAt"`
	// ScheduledStart is when the care happens (appointment start, order's
	// requested time); nil when it is now.
	ScheduledStart *time.Time `json:"scheduledStart,omitempty"`
	Priority       Priority   `json:"priority"`
	Patient        Patient    `json:"patient"`
	// PriorIdentifiers are the identifiers a merge retired (ADT^A40 MRG-1).
	PriorIdentifiers []Identifier `json:"priorIdentifiers,omitempty"`
	Procedures       []Code       `json:"procedures,omitempty"`
	Modality         string       `json:"modality,omitempty"` // DICOM modality (CT, MR …) when known
	BodySites        []Code       `json:"bodySites,omitempty"`
	Location         string       `json:"location,omitempty"`
	PriorLocation    string       `json:"priorLocation,omitempty"` // transfers
	// Placer is the business identifier of the appointment, visit or order
	// (SCH-1/2, PV1-19, ORC-2/OBR-2), so later events can find the same
	// thing (a reschedule moves the jobs of its booking).
	Placer       string `json:"placer,omitempty"`
	SourceSystem string `json:"sourceSystem"`
	Origin       Origin `json:"origin"`
}

// Validate checks the invariants every consumer relies on.
func (e *CareEvent) Validate() error {
	var errs []error
	if e.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion %d is not %d", e.SchemaVersion, SchemaVersion))
	}
	if e.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	known := false
	for _, k := range Kinds {
		known = known || k == e.Kind
	}
	if !known {
		errs = append(errs, fmt.Errorf("kind %q is unknown", e.Kind))
	}
	if e.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurredAt is missing"))
	}
	switch e.Priority {
	case PriorityStat, PriorityASAP, PriorityUrgent, PriorityRoutine:
	default:
		errs = append(errs, fmt.Errorf("priority %q is not stat, asap, urgent or routine", e.Priority))
	}
	if len(e.Patient.Identifiers) == 0 {
		errs = append(errs, errors.New("the patient has no identifier"))
	}
	for i, id := range e.Patient.Identifiers {
		if id.Value == "" {
			errs = append(errs, fmt.Errorf("patient identifier %d has no value", i))
		}
	}
	if e.SourceSystem == "" {
		errs = append(errs, errors.New("sourceSystem is empty"))
	}
	if !e.ValidText() {
		errs = append(errs, errors.New("a value is not text: not UTF-8, or holding a control character"))
	}
	return errors.Join(errs...)
}

// ValidText reports whether every string of the event is text (IsText).
func (e *CareEvent) ValidText() bool {
	_, bad := e.InvalidText()
	return !bad
}

// InvalidText returns the first string of the event that is not text
// (IsText), if any.
func (e *CareEvent) InvalidText() (string, bool) {
	return invalidText(reflect.ValueOf(e).Elem())
}

// IsText reports whether s is text a care event may carry
// (internal/printable): UTF-8, which JSON needs (encoding/json would turn
// other bytes into U+FFFD, so that two identifiers that differ only there
// would become one), and free of the control characters PostgreSQL and
// FHIR refuse. Downstream an identifier is searched for and written into a
// Task, so an event carrying one would fail at every delivery and be lost.
func IsText(s string) bool { return printable.Valid(s) }

func invalidText(v reflect.Value) (string, bool) {
	switch v.Kind() {
	case reflect.String:
		if s := v.String(); !IsText(s) {
			return s, true
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return invalidText(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			if s, bad := invalidText(v.Index(i)); bad {
				return s, true
			}
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return "", false
		}
		for i := range v.NumField() {
			if s, bad := invalidText(v.Field(i)); bad {
				return s, true
			}
		}
	}
	return "", false
}

// Subject is the NATS subject an event is published on:
// priorflow.events.<kind>.
func (e *CareEvent) Subject() string { return SubjectPrefix + string(e.Kind) }

// SubjectPrefix starts every care event subject.
const SubjectPrefix = "priorflow.events."

// EventID derives a stable event id from the source and the source's own
// message or resource version id, so that a resent message yields the same
// id and JetStream's duplicate window drops it.
func EventID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x1f")))
	return hex.EncodeToString(h[:16])
}

// Immediate reports whether the event needs its priors now rather than
// before a scheduled start: stat and asap events and ED arrivals.
func (e *CareEvent) Immediate() bool {
	return e.Priority == PriorityStat || e.Priority == PriorityASAP || e.Kind == EDArrival
}
