package audit

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
)

// Code systems of the records (FHIR R4 terminology, DICOM PS3.16, BALP).
const (
	SystemAuditEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	SystemRESTInteraction  = "http://hl7.org/fhir/restful-interaction"
	SystemDCM              = "http://dicom.nema.org/resources/ontology/DCM"
	SystemEntityType       = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	SystemObjectRole       = "http://terminology.hl7.org/CodeSystem/object-role"
	SystemParticipation    = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemActReason        = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	SystemSecuritySource   = "http://terminology.hl7.org/CodeSystem/security-source-type"
	SystemBALPEntityType   = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	SystemDICOMUID         = "urn:dicom:uid"
	jtiPrefix              = "urn:ietf:params:oauth:jti:"
	networkTypeMachineName = "1"
	networkTypeIP          = "2"
)

// SystemDICOMwebInteraction codes the DICOMweb service of a record in its
// subtype (qido-rs, wado-rs, stow-rs, delete): no standard code system names
// them, and the DICOM event type (110103, 110112) does not tell them apart.
const SystemDICOMwebInteraction = "urn:priorflow:audit:dicomweb"

// The AuditEvent elements we write, in the shape of their R4 JSON
// (auditevent.html): the writer builds the protos from them (message), the
// tests print and parse them to hold the protos to what the JSON gives.
// Empty strings are left out: FHIR forbids them.
type (
	auditEvent struct {
		ResourceType string   `json:"resourceType"`
		Type         coding   `json:"type"`
		Subtype      []coding `json:"subtype,omitempty"`
		Action       string   `json:"action,omitempty"`
		Period       *period  `json:"period,omitempty"`
		Recorded     string   `json:"recorded"`
		Outcome      string   `json:"outcome,omitempty"`
		OutcomeDesc  string   `json:"outcomeDesc,omitempty"`
		Agent        []agent  `json:"agent"`
		Source       source   `json:"source"`
		Entity       []entity `json:"entity,omitempty"`
	}
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	concept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	period struct {
		Start string `json:"start,omitempty"`
		End   string `json:"end,omitempty"`
	}
	identifier struct {
		Type   *concept `json:"type,omitempty"`
		System string   `json:"system,omitempty"`
		Value  string   `json:"value,omitempty"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	network struct {
		Address string `json:"address,omitempty"`
		Type    string `json:"type,omitempty"`
	}
	agent struct {
		Type         *concept   `json:"type,omitempty"`
		Role         []concept  `json:"role,omitempty"`
		Who          *reference `json:"who,omitempty"`
		Name         string     `json:"name,omitempty"`
		Requestor    bool       `json:"requestor"`
		Policy       []string   `json:"policy,omitempty"`
		Network      *network   `json:"network,omitempty"`
		PurposeOfUse []concept  `json:"purposeOfUse,omitempty"`
	}
	source struct {
		Observer reference `json:"observer"`
		Type     []coding  `json:"type,omitempty"`
	}
	entity struct {
		What        *reference `json:"what,omitempty"`
		Type        *coding    `json:"type,omitempty"`
		Role        *coding    `json:"role,omitempty"`
		Description string     `json:"description,omitempty"`
		Query       []byte     `json:"query,omitempty"` // base64 in the JSON
	}
)

var (
	typeREST          = coding{SystemAuditEventType, "rest", "Restful Operation"}
	typeDICOMAccessed = coding{SystemDCM, "110103", "DICOM Instances Accessed"}
	typeDICOMQuery    = coding{SystemDCM, "110112", "Query"}

	roleSource      = coding{SystemDCM, "110153", "Source Role ID"}
	roleDestination = coding{SystemDCM, "110152", "Destination Role ID"}
	roleApplication = coding{SystemDCM, "110150", "Application"}

	userRecipient = coding{SystemParticipation, "IRCP", "information recipient"}
	userAuthor    = coding{SystemParticipation, "AUT", "author (originator)"}
	userCustodian = coding{SystemParticipation, "CST", "custodian"}

	entityPerson = coding{SystemEntityType, "1", "Person"}
	entitySystem = coding{SystemEntityType, "2", "System Object"}
	rolePatient  = coding{SystemObjectRole, "1", "Patient"}
	roleReport   = coding{SystemObjectRole, "3", "Report"}
	roleDomain   = coding{SystemObjectRole, "4", "Domain Resource"}
	roleQuery    = coding{SystemObjectRole, "24", "Query"}
	entityXReqID = coding{SystemBALPEntityType, "XrequestId", "X-Request-Id"}

	studyUIDType     = concept{Coding: []coding{{SystemDCM, "110180", "Study Instance UID"}}}
	sourceAppServer  = coding{SystemSecuritySource, "4", "Application Server"}
	dicomwebSubtypes = map[Interaction]coding{
		QIDORS:      {SystemDICOMwebInteraction, "qido-rs", "QIDO-RS search"},
		WADORS:      {SystemDICOMwebInteraction, "wado-rs", "WADO-RS retrieve"},
		STOWRS:      {SystemDICOMwebInteraction, "stow-rs", "STOW-RS store"},
		DICOMDelete: {SystemDICOMwebInteraction, "delete", "Delete study"},
	}
)

// whoTypes are the targets R4 allows for AuditEvent.agent.who; a fhirUser of
// another type (Person) is kept as a name, not a reference.
var whoTypes = []string{"Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Organization", "Device"}

// instant formats t as a FHIR instant at microsecond precision, the finest
// the store keeps.
func instant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

// build turns ev into its AuditEvents: one per patient, each carrying the
// event's other entities (BALP PatientRead, PatientQuery ...), or one with
// no patient entity when none is known. DICOM studies go with their own
// patient's record; studies whose patient is unknown get a record of their
// own. minimal leaves out every element that came from the caller's token
// or request text, for the rare record the codec refuses otherwise.
// The records are the same but for their entities: encode checks only the
// first whole (held by FuzzEncode_SameAsParsedJSON).
func build(ev *Event, observer string, minimal bool) []auditEvent {
	base := auditEvent{
		ResourceType: "AuditEvent",
		Action:       string(ev.Action),
		Recorded:     instant(ev.Recorded),
		Outcome:      outcomeOf(ev.Status),
	}
	if base.Action == "" {
		base.Action = string(ActionOf(ev.Interaction))
	}
	if !ev.Start.IsZero() {
		base.Period = &period{Start: instant(ev.Start), End: instant(ev.Recorded)}
	}
	if !minimal {
		base.OutcomeDesc = fhirString(outcomeDesc(ev.Status, ev.OutcomeDesc), 1024)
	} else {
		base.OutcomeDesc = outcomeDesc(ev.Status, "")
	}
	switch {
	case ev.Interaction.DICOMweb():
		base.Type = typeDICOMAccessed
		if ev.Interaction == QIDORS {
			base.Type = typeDICOMQuery
		}
		base.Subtype = []coding{dicomwebSubtypes[ev.Interaction]}
	default:
		base.Type = typeREST
		if ev.Interaction != "" {
			base.Subtype = []coding{{SystemRESTInteraction, string(ev.Interaction), string(ev.Interaction)}}
		}
	}
	base.Agent = agents(ev, observer, minimal)
	base.Source = source{
		Observer: reference{Identifier: &identifier{Value: observer}, Display: observer},
		Type:     []coding{sourceAppServer},
	}

	// Entities shared by every record of the event.
	var shared []entity
	if ref := dataRef(ev); ref != "" {
		shared = append(shared, entity{What: &reference{Reference: ref}, Type: &entitySystem, Role: &roleDomain})
	}
	if q := ev.Query; q != "" && !minimal {
		shared = append(shared, entity{
			Type:        &entitySystem,
			Role:        &roleQuery,
			Description: fhirString(q, 4096),
			Query:       []byte(q),
		})
	}
	if id := fhirString(ev.RequestID, 200); id != "" && !minimal {
		shared = append(shared, entity{What: &reference{Identifier: &identifier{Value: id}}, Type: &entityXReqID})
	}

	patients := patientsOf(ev)
	var out []auditEvent
	for _, p := range patients {
		ae := base
		ae.Entity = append([]entity{{What: &reference{Reference: p}, Type: &entityPerson, Role: &rolePatient}}, shared...)
		for _, s := range ev.Studies {
			if s.Patient == p {
				ae.Entity = append(ae.Entity, studyEntity(s.InstanceUID))
			}
		}
		out = append(out, ae)
	}
	var orphans []entity
	for _, s := range ev.Studies {
		if s.Patient == "" || !slices.Contains(patients, s.Patient) {
			orphans = append(orphans, studyEntity(s.InstanceUID))
		}
	}
	if len(out) == 0 || len(orphans) > 0 {
		ae := base
		ae.Entity = append(slices.Clip(shared), orphans...)
		out = append(out, ae)
	}
	return out
}

// patientsOf is the distinct valid patient references of ev, in order.
func patientsOf(ev *Event) []string {
	var out []string
	add := func(p string) {
		if p = patientRef(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, p := range ev.Patients {
		add(p)
	}
	for _, s := range ev.Studies {
		add(s.Patient)
	}
	return out
}

func studyEntity(uid string) entity {
	return entity{
		What: &reference{Identifier: &identifier{Type: &studyUIDType, System: SystemDICOMUID, Value: "urn:oid:" + uid}},
		Type: &entitySystem,
		Role: &roleReport,
	}
}

// dataRef is the reference of the resource an instance interaction touched,
// with its version when known; "" when there is none or it is malformed.
func dataRef(ev *Event) string {
	if ev.ResourceType == "" || ev.ResourceID == "" || !fhir.IsResourceType(ev.ResourceType) || !fhir.ValidID(ev.ResourceID) {
		return ""
	}
	ref := ev.ResourceType + "/" + ev.ResourceID
	if v := ev.VersionID; v != "" && fhir.ValidID(v) {
		ref += "/_history/" + v
	}
	return ref
}

// agents are the participants of a BALP record: the client application,
// the user when the token names one apart from the client, and this server.
// For a read the data flows from the server (Source Role ID) to the client
// (Destination Role ID); for queries and writes the request flows the other
// way, and BALP keeps the roles of DICOM's query pattern.
func agents(ev *Event, observer string, minimal bool) []agent {
	clientRole, serverRole := roleSource, roleDestination
	userType := userRecipient
	switch ActionOf(ev.Interaction) {
	case ActionRead:
		clientRole, serverRole = roleDestination, roleSource
	case ActionCreate, ActionUpdate:
		userType = userAuthor
	case ActionDelete:
		userType = userCustodian
	}
	if ev.Interaction == Transaction || ev.Interaction == Batch {
		userType = userAuthor
	}

	client := agent{Type: &concept{Coding: []coding{clientRole}}, Role: []concept{{Coding: []coding{roleApplication}}}}
	if addr := fhirString(ev.ClientAddress, 256); addr != "" {
		client.Network = &network{Address: addr, Type: networkTypeIP}
	}
	server := agent{
		Type: &concept{Coding: []coding{serverRole}},
		Who:  &reference{Identifier: &identifier{Value: observer}, Display: observer},
	}
	if host := fhirString(ev.ServerHost, 256); host != "" {
		server.Network = &network{Address: host, Type: networkTypeMachineName}
	}

	p := ev.Principal
	if p == nil {
		// Authorization is off (or the request was refused before its token
		// was accepted): the caller is known by its address only.
		client.Who = &reference{Display: "unauthenticated caller"}
		client.Requestor = true
		return []agent{client, server}
	}
	clientID := p.ClientID
	if clientID == "" {
		clientID = p.Subject
	}
	client.Who = &reference{Identifier: &identifier{System: uri(p.Issuer), Value: fhirString(clientID, 256)}}
	if !minimal {
		client.Name = fhirString(clientID, 256)
	}
	if client.Who.Identifier.Value == "" {
		client.Who = &reference{Display: "unidentified client"}
	}

	hasUser := p.FHIRUser != "" || (p.Subject != "" && p.ClientID != "" && p.Subject != p.ClientID)
	requestor := &client
	var user agent
	if hasUser {
		user = agent{Type: &concept{Coding: []coding{userType}}, Requestor: true, Who: &reference{}}
		if ref := whoRef(p.FHIRUser); ref != "" {
			user.Who.Reference = ref
		}
		if sub := fhirString(p.Subject, 256); sub != "" {
			user.Who.Identifier = &identifier{System: uri(p.Issuer), Value: sub}
		}
		if !minimal {
			user.Name = fhirString(firstNonEmpty(p.FHIRUser, p.Subject), 256)
		}
		if user.Who.Reference == "" && user.Who.Identifier == nil {
			user.Who.Display = "unidentified user"
		}
		requestor = &user
	} else {
		client.Requestor = true
	}
	if !minimal {
		if jti := uri(p.TokenID); jti != "" {
			requestor.Policy = []string{jtiPrefix + jti}
		}
		requestor.PurposeOfUse = purposes(p)
	}
	if hasUser {
		return []agent{user, client, server}
	}
	return []agent{client, server}
}

// purposes codes the token's purpose of use in v3-ActReason; a value that
// is not a valid FHIR code is left out rather than make the record invalid.
func purposes(p *auth.Principal) []concept {
	var out []concept
	for _, c := range p.PurposeOfUse {
		if validCode(c) && len(c) <= 64 {
			out = append(out, concept{Coding: []coding{{System: SystemActReason, Code: c}}})
		}
	}
	return out
}

// whoRef is fhirUser as an agent.who reference: a relative Type/id of a type
// R4 allows there, or an absolute URL ending in one. Anything else is "".
func whoRef(fhirUser string) string {
	if fhirUser == "" || len(fhirUser) > 1024 {
		return ""
	}
	path, abs := fhirUser, strings.Contains(fhirUser, "://")
	if abs {
		u, err := url.Parse(fhirUser)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || uri(fhirUser) == "" {
			return ""
		}
		path = strings.Trim(u.Path, "/")
	}
	segs := strings.Split(path, "/")
	n := len(segs)
	if n < 2 || (!abs && n != 2) || !slices.Contains(whoTypes, segs[n-2]) || !fhir.ValidID(segs[n-1]) {
		return ""
	}
	return fhirUser
}

// patientRef normalizes a reference to a Patient: Patient/x (a version is
// dropped), or an absolute URL ending in Patient/x, kept as it is because it
// names another server's patient. Anything else is "".
func patientRef(ref string) string {
	if ref == "" || len(ref) > 1024 {
		return ""
	}
	if strings.Contains(ref, "://") {
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || uri(ref) == "" {
			return ""
		}
		segs := strings.Split(strings.Trim(u.Path, "/"), "/")
		if n := len(segs); n >= 4 && segs[n-2] == "_history" {
			segs = segs[:n-2]
		}
		if n := len(segs); n >= 2 && segs[n-2] == "Patient" && fhir.ValidID(segs[n-1]) {
			return ref
		}
		return ""
	}
	segs := strings.Split(ref, "/")
	if len(segs) == 4 && segs[2] == "_history" {
		segs = segs[:2]
	}
	if len(segs) == 2 && segs[0] == "Patient" && fhir.ValidID(segs[1]) {
		return "Patient/" + segs[1]
	}
	return ""
}

// fhirString makes s fit for a FHIR string: valid UTF-8, at most max bytes,
// not blank. "" means leave the element out.
func fhirString(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return s
}

// uri returns s when it is a valid FHIR uri (no whitespace), else "".
func uri(s string) string {
	if s == "" || len(s) > 1024 || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsSpace) {
		return ""
	}
	return s
}

// validCode reports whether s matches the FHIR code pattern
// [^\s]+( [^\s]+)*.
func validCode(s string) bool {
	return s != "" && utf8.ValidString(s) && s == strings.Join(strings.Fields(s), " ") && !strings.ContainsAny(s, "\t\r\n")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }
