package fhirintake

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/priorflow/priorflow/fhir"
)

// The JSON shapes below hold just the elements intake reads; the store has
// already validated the resources against R4, so decoding the stored JSON
// is enough and needs no protos.

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

type identifier struct {
	System   string           `json:"system"`
	Value    string           `json:"value"`
	Type     *codeableConcept `json:"type"`
	Assigner *reference       `json:"assigner"`
}

type reference struct {
	Reference  string      `json:"reference"`
	Type       string      `json:"type"`
	Identifier *identifier `json:"identifier"`
	Display    string      `json:"display"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type appointment struct {
	Status          string            `json:"status"`
	Start           string            `json:"start"`
	Priority        *int64            `json:"priority"`
	Identifier      []identifier      `json:"identifier"`
	ServiceType     []codeableConcept `json:"serviceType"`
	AppointmentType *codeableConcept  `json:"appointmentType"`
	BasedOn         []reference       `json:"basedOn"`
	Participant     []struct {
		Actor  *reference `json:"actor"`
		Status string     `json:"status"`
	} `json:"participant"`
}

type encounterLocation struct {
	Location reference `json:"location"`
	Status   string    `json:"status"`
}

type encounter struct {
	Status     string              `json:"status"`
	Class      *coding             `json:"class"`
	Priority   *codeableConcept    `json:"priority"`
	Identifier []identifier        `json:"identifier"`
	Subject    *reference          `json:"subject"`
	Period     *period             `json:"period"`
	Location   []encounterLocation `json:"location"`
	BasedOn    []reference         `json:"basedOn"`
	Type       []codeableConcept   `json:"type"`
}

type serviceRequest struct {
	Status             string            `json:"status"`
	Intent             string            `json:"intent"`
	Priority           string            `json:"priority"`
	Identifier         []identifier      `json:"identifier"`
	Subject            *reference        `json:"subject"`
	Code               *codeableConcept  `json:"code"`
	BodySite           []codeableConcept `json:"bodySite"`
	OccurrenceDateTime string            `json:"occurrenceDateTime"`
	OccurrencePeriod   *period           `json:"occurrencePeriod"`
	LocationReference  []reference       `json:"locationReference"`
}

type humanName struct {
	Use    string   `json:"use"`
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
}

type patient struct {
	Identifier []identifier `json:"identifier"`
	Name       []humanName  `json:"name"`
	BirthDate  string       `json:"birthDate"`
	Gender     string       `json:"gender"`
}

func decode[T any](body []byte) (*T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// localRef splits a relative reference "Type/id" (a version suffix
// "/_history/n" allowed), or an absolute one under base, this server's FHIR
// base (as fhir.Ref.Local reads them). Other absolute URLs, fragments and
// urn: references are not local: the id could name another server's
// resource.
func localRef(ref, base string) (typ, id string, ok bool) {
	if rest, under := fhir.UnderBase(ref, base); under {
		ref = rest
	}
	if ref == "" || strings.Contains(ref, ":") || strings.HasPrefix(ref, "#") {
		return "", "", false
	}
	parts := strings.Split(ref, "/")
	if n := len(parts); n == 4 && parts[2] == "_history" {
		parts = parts[:2]
	}
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// refType is the resource type a reference names: from its literal, or its
// type element when it is a logical reference.
func refType(r *reference) string {
	if r == nil {
		return ""
	}
	if r.Type != "" {
		return r.Type
	}
	parts := strings.Split(strings.TrimSuffix(r.Reference, "/"), "/")
	if n := len(parts); n >= 4 && parts[n-2] == "_history" {
		parts = parts[:n-2]
	}
	if n := len(parts); n >= 2 {
		return parts[n-2]
	}
	return ""
}

// label names a referenced resource for people: its display, else its id.
func label(r *reference) string {
	if r == nil {
		return ""
	}
	if r.Display != "" {
		return r.Display
	}
	if _, id, ok := localRef(r.Reference, ""); ok {
		return id
	}
	if r.Reference != "" {
		return r.Reference
	}
	if r.Identifier != nil {
		return r.Identifier.Value
	}
	return ""
}

// sameRef reports whether two references name the same resource.
func sameRef(a, b *reference) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Reference != "" || b.Reference != "" {
		return a.Reference == b.Reference
	}
	if a.Identifier != nil && b.Identifier != nil {
		return a.Identifier.System == b.Identifier.System && a.Identifier.Value == b.Identifier.Value
	}
	return a.Display == b.Display
}

// parseTime reads a FHIR instant or dateTime (a date alone means its
// start, in UTC). ok is false for an empty or unreadable value.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// sameTime compares two FHIR times as instants, or verbatim when either
// cannot be read.
func sameTime(a, b string) bool {
	ta, oka := parseTime(a)
	tb, okb := parseTime(b)
	if oka && okb {
		return ta.Equal(tb)
	}
	return a == b
}

func timePtr(s string) *time.Time {
	if t, ok := parseTime(s); ok {
		return &t
	}
	return nil
}

// placer is the business identifier of an appointment, visit or order: its
// first identifier with a value.
func placer(ids []identifier) string {
	for _, id := range ids {
		if id.Value != "" {
			return id.Value
		}
	}
	return ""
}
