package audit

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
)

// ref is the part of a FHIR Reference we read.
type ref struct {
	Reference string `json:"reference"`
}

// resourceFields are the elements of the resource types Priorflow serves
// that name a patient, decoded in one pass. Field names are shared between
// types only where their shapes agree (subject and target are References,
// entity[].what is one in AuditEvent and Provenance alike), so one struct
// serves them all; patientsIn picks the elements by resourceType.
type resourceFields struct {
	ResourceType string             `json:"resourceType"`
	ID           string             `json:"id"`
	Subject      *ref               `json:"subject"`
	For          *ref               `json:"for"`
	Participant  []participantField `json:"participant"`
	Entity       []entityField      `json:"entity"`
	Target       []ref              `json:"target"`
	// Bundle
	Type  json.RawMessage `json:"type"`
	Entry []entryField    `json:"entry"`
	// OperationOutcome
	Issue []issueField `json:"issue"`
}

type (
	participantField struct {
		Actor *ref `json:"actor"`
	}
	entityField struct {
		What *ref `json:"what"`
	}
	entryField struct {
		Resource *resourceFields `json:"resource"`
		Request  *requestField   `json:"request"`
		Response *responseField  `json:"response"`
	}
	requestField struct {
		URL string `json:"url"`
	}
	responseField struct {
		Location string `json:"location"`
	}
	issueField struct {
		Diagnostics string `json:"diagnostics"`
	}
)

// decodeResource decodes the elements of body we read. A value of an
// unexpected shape only leaves its own field empty: encoding/json completes
// the rest and reports an UnmarshalTypeError, which we ignore.
func decodeResource(body []byte) (*resourceFields, bool) {
	if r, ok, sure := skimResource(body); sure {
		return r, ok
	}
	return decodeJSON(body)
}

// decodeJSON is decodeResource by encoding/json, for what skimResource is
// not sure of.
func decodeJSON(body []byte) (*resourceFields, bool) {
	var r resourceFields
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, false
		}
	}
	return &r, r.ResourceType != ""
}

// patientsIn returns the patients a resource is about, by type:
//
//   - Patient: itself;
//   - ImagingStudy, Encounter, ServiceRequest: subject;
//   - Appointment: the participants' actors that are Patients;
//   - Task: for;
//   - AuditEvent: entity[].what that are Patients;
//   - Provenance: target[] that are Patients (a Provenance of another
//     resource names no patient of its own; following its targets would
//     cost a read per entry);
//   - Bundle: every entry's resource, request URL (a transaction's
//     DELETE Patient/x) and response location (a created Patient);
//   - anything else (Endpoint, Subscription, OperationOutcome): none.
//
// References that are not to a Patient (Group, urn:uuid: placeholders of a
// transaction) are skipped.
func patientsIn(r *resourceFields, add func(string), depth int) {
	if r == nil {
		return
	}
	addRef := func(x *ref) {
		if x != nil {
			add(x.Reference)
		}
	}
	switch r.ResourceType {
	case "Patient":
		if r.ID != "" {
			add("Patient/" + r.ID)
		}
	case "ImagingStudy", "Encounter", "ServiceRequest":
		addRef(r.Subject)
	case "Appointment":
		for _, p := range r.Participant {
			addRef(p.Actor)
		}
	case "Task":
		addRef(r.For)
	case "AuditEvent":
		for _, e := range r.Entity {
			addRef(e.What)
		}
	case "Provenance":
		for i := range r.Target {
			addRef(&r.Target[i])
		}
	case "Bundle":
		if depth > 2 {
			return // a Bundle in a Bundle in a Bundle: not one we serve
		}
		for _, e := range r.Entry {
			patientsIn(e.Resource, add, depth+1)
			if e.Request != nil {
				add(pathRef(e.Request.URL))
			}
			if e.Response != nil {
				add(pathRef(e.Response.Location))
			}
		}
	}
}

// pathRef turns a request URL or Location (Patient/x, Patient/x/_history/2,
// http://base/Patient/x/_history/2) into a relative reference; patientRef
// later keeps it only when it is a Patient.
func pathRef(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if strings.Contains(u, "://") {
		return u
	}
	return strings.Trim(u, "/")
}

// bundleType is Bundle.type, "" when r is not a Bundle.
func bundleType(r *resourceFields) string {
	if r == nil || r.ResourceType != "Bundle" {
		return ""
	}
	var s string
	_ = json.Unmarshal(r.Type, &s)
	return s
}

// diagnostics is the first diagnostics of an OperationOutcome.
func diagnostics(r *resourceFields) string {
	if r == nil || r.ResourceType != "OperationOutcome" {
		return ""
	}
	for _, is := range r.Issue {
		if is.Diagnostics != "" {
			return is.Diagnostics
		}
	}
	return ""
}

// patientSet collects distinct patient references in order.
type patientSet []string

func (s *patientSet) add(r string) {
	if r = patientRef(r); r != "" && !slices.Contains(*s, r) {
		*s = append(*s, r)
	}
}

// queryPatients finds the patients a search asks about by its parameters:
// patient and subject (with or without the :Patient modifier), and _id of a
// Patient search. BALP records the requested patient even when the search
// finds nothing. Chained parameters (patient.identifier=…) name no id and
// are skipped.
func queryPatients(typ string, q url.Values, add func(string)) {
	for key, vals := range q {
		name, mod, _ := strings.Cut(key, ":")
		var bareIsPatient bool
		switch {
		case name == "patient" && (mod == "" || mod == "Patient"):
			bareIsPatient = true
		case name == "subject" && mod == "Patient":
			bareIsPatient = true
		case name == "subject" && mod == "":
		case name == "_id" && mod == "" && typ == "Patient":
			bareIsPatient = true
		default:
			continue
		}
		for _, v := range vals {
			for _, one := range strings.Split(v, ",") {
				switch {
				case strings.Contains(one, "/"):
					add(one)
				case bareIsPatient && one != "":
					add("Patient/" + one)
				}
			}
		}
	}
}

// DICOM JSON (PS3.18 F.2) attributes we read: StudyInstanceUID
// (0020,000D), RetrieveURL (0008,1190) and ReferencedSOPSequence
// (0008,1199).
type (
	dicomStrings struct {
		Value []string `json:"Value"`
	}
	qidoResult struct {
		Study dicomStrings `json:"0020000D"`
	}
	stowResponse struct {
		RetrieveURL dicomStrings `json:"00081190"`
		Referenced  struct {
			Value []struct {
				RetrieveURL dicomStrings `json:"00081190"`
			} `json:"Value"`
		} `json:"00081199"`
	}
)

// qidoStudies returns the distinct StudyInstanceUIDs of a QIDO-RS response
// (every level's results carry the study's UID).
func qidoStudies(body []byte, add func(string)) {
	var results []qidoResult
	if err := json.Unmarshal(body, &results); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return
		}
	}
	for _, r := range results {
		for _, uid := range r.Study.Value {
			add(uid)
		}
	}
}

// stowStudies returns the studies a STOW-RS response reports stored: from
// the RetrieveURL of the response and of each ReferencedSOPSequence item
// (…/studies/{uid}[/…]).
func stowStudies(body []byte, add func(string)) {
	var r stowResponse
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return
		}
	}
	urls := slices.Clone(r.RetrieveURL.Value)
	for _, it := range r.Referenced.Value {
		urls = append(urls, it.RetrieveURL.Value...)
	}
	for _, u := range urls {
		if _, rest, ok := strings.Cut(u, "/studies/"); ok {
			uid, _, _ := strings.Cut(rest, "/")
			add(uid)
		}
	}
}

// validUID reports whether s is a DICOM UID (PS3.5 9.1): digits and dots,
// at most 64 characters.
func validUID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.') || (c == '.' && s[i-1] == '.') {
			return false
		}
	}
	return true
}
