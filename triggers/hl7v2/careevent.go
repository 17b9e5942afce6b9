package hl7v2

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/patientid"
	"github.com/priorflow/priorflow/triggers"
)

// Errors wrapped by [*MappingError]; each one calls for a different
// acknowledgement (see [MappingError.AckSpec]). Bad date/times wrap
// ErrBadTime.
var (
	// ErrUnsupportedMessageType: MSH-9.1 is not a message type Priorflow
	// takes (AR, table 0357 code 200).
	ErrUnsupportedMessageType = errors.New("unsupported message type")
	// ErrUnsupportedEvent: the message type is taken but not this trigger
	// event (MSH-9.2), or not this order control (ORC-1) (AR, code 201).
	ErrUnsupportedEvent = errors.New("unsupported trigger event")
	// ErrMissingField: data the care event needs is absent (AE, code 101).
	ErrMissingField = errors.New("required field missing")
	// ErrSeveralMerges: an ADT^A40 with more than one PID/MRG pair, which
	// would be several care events (AE, code 207).
	ErrSeveralMerges = errors.New("several merges in one message")
	// ErrMixedOrders: an order message whose ORC segments place some
	// orders and cancel others, which would be two care events (AE, code
	// 207).
	ErrMixedOrders = errors.New("placed and cancelled orders in one message")
)

// MappingError says why a parsed message could not become a care event and
// where. Its text names fields, never their values, so it may be logged and
// sent back in an acknowledgement.
type MappingError struct {
	// Location is the offending field (ERR-2); Segment is empty when the
	// error concerns the whole message.
	Location ErrorLocation
	// What describes the problem without patient data, e.g. "patient
	// identifier list" or "message type MDM^T02".
	What string
	// Err is one of ErrUnsupportedMessageType, ErrUnsupportedEvent,
	// ErrMissingField, ErrSeveralMerges, ErrMixedOrders, ErrBadTime or
	// ErrNotText.
	Err error
}

func (e *MappingError) Error() string {
	where := e.Location.Segment
	if where != "" && e.Location.Field > 0 {
		where = fmt.Sprintf("%s-%d", where, e.Location.Field)
	}
	switch {
	case where != "" && e.What != "":
		return fmt.Sprintf("hl7v2: %s (%s): %v", where, e.What, e.Err)
	case where != "":
		return fmt.Sprintf("hl7v2: %s: %v", where, e.Err)
	case e.What != "":
		return fmt.Sprintf("hl7v2: %s: %v", e.What, e.Err)
	}
	return fmt.Sprintf("hl7v2: %v", e.Err)
}

func (e *MappingError) Unwrap() error { return e.Err }

// AckSpec returns the acknowledgement the error calls for (HL7 v2.5.1
// section 2.9.2): AR with code 200 or 201 for what Priorflow does not take,
// AE with 101 for missing data and 102 for a malformed date/time, with ERR-2
// pointing at the field.
func (e *MappingError) AckSpec() AckSpec {
	spec := AckSpec{Code: ApplicationError, Error: ApplicationInternalError}
	switch {
	case errors.Is(e.Err, ErrUnsupportedMessageType):
		spec.Code, spec.Error = ApplicationReject, UnsupportedMessageType
	case errors.Is(e.Err, ErrUnsupportedEvent):
		spec.Code, spec.Error = ApplicationReject, UnsupportedEventCode
	case errors.Is(e.Err, ErrMissingField):
		spec.Error = RequiredFieldMissing
	case errors.Is(e.Err, ErrBadTime), errors.Is(e.Err, ErrNotText):
		spec.Error = DataTypeError
	}
	spec.Text = strings.TrimPrefix(e.Error(), "hl7v2: ")
	if e.Location.Segment != "" {
		l := e.Location
		spec.Location = &l
	}
	return spec
}

// MapOptions are the site-specific parts of the mapping. The zero value
// works: times without an offset are UTC and only the built-in tables apply.
type MapOptions struct {
	// TimeZone is the zone of date/times sent without an offset, which HL7
	// v2.5.1 section 2.A.22 leaves to site agreement; nil means UTC.
	TimeZone *time.Location
	// AuthoritySystems maps an assigning authority namespace (CX-4.1) to the
	// identifier system URI, for authorities sent without an ISO OID or a
	// URI in CX-4.2. It overrides the built-in entries (USSSA, for one).
	AuthoritySystems map[string]string
	// FacilitySystems maps a sending facility (MSH-4.1) to the system of the
	// identifiers it sends with no assigning authority at all.
	FacilitySystems map[string]string
	// WithoutAuthoritySystem is the system of identifiers sent with no
	// assigning authority by a facility not in FacilitySystems
	// (PRIORFLOW_CONFIG identifiers.withoutAuthority, which is also the
	// system of DICOM PatientIDs without IssuerOfPatientID); "" leaves
	// them without one, and they then name no Patient here.
	WithoutAuthoritySystem string
	// CodeSystems maps a coding system name (CWE-3, table 0396) to a URI,
	// overriding and extending the built-in table (LN, SCT, C4, ...).
	CodeSystems map[string]string
	// ModalityPrefixes maps a procedure code prefix (e.g. "CT", "MRI",
	// "RAD-US") to a DICOM modality, for local procedure codes. Matching is
	// case-insensitive and the longest prefix wins.
	ModalityPrefixes map[string]string
}

// ToCareEvent maps a parsed message to the care event it announces:
//
//	SIU^S12                 appointment-booked
//	SIU^S13                 appointment-rescheduled
//	SIU^S14                 appointment-rescheduled with a start, else appointment-booked
//	SIU^S15                 appointment-cancelled
//	SIU^S26                 appointment-noshow
//	ADT^A01                 admission, or ed-arrival when PV1-2 is E
//	ADT^A05 / A14           pre-admission, due by PV2-8 (expected admit date/time)
//	ADT^A06                 admission
//	ADT^A04                 registration, or ed-arrival when PV1-2 is E
//	ADT^A02 / A03           transfer (PV1-3 new, PV1-6 prior location) / discharge
//	ADT^A08 / A28 / A31     patient-updated
//	ADT^A11 / A27 / A38     visit-cancelled
//	ADT^A40                 patient-merged (MRG-1 into PID-3)
//	ORM^O01, OMI^O23,
//	OMG^O19                 ORC-1 NW, XO, SC: order-placed; CA, OC, CR, DC, OD, DR: order-cancelled
//
// ADT^A47 (change patient identifier list) is not taken: its MRG-1 was a
// wrong identifier, which may be another patient's, so it is no
// cross-reference to search by as a merged patient's is.
//
// The returned event has passed [triggers.CareEvent.Validate]. Errors are
// [*MappingError]s; their AckSpec is the acknowledgement to send.
func ToCareEvent(m *Message, opts MapOptions) (*triggers.CareEvent, error) {
	mp := &mapper{m: m, opts: opts, loc: opts.TimeZone}
	if mp.loc == nil {
		mp.loc = time.UTC
	}
	return mp.careEvent()
}

type mapper struct {
	m    *Message
	opts MapOptions
	loc  *time.Location
}

func (mp *mapper) careEvent() (*triggers.CareEvent, error) {
	m := mp.m
	mt := m.MessageType()
	ev := &triggers.CareEvent{SchemaVersion: triggers.SchemaVersion, Priority: triggers.PriorityRoutine}
	var family messageFamily
	switch mt.Code {
	case "SIU":
		family = siu
	case "ADT":
		family = adt
	case "ORM", "OMI", "OMG":
		family = order
	default:
		return nil, &MappingError{Location: ErrorLocation{Segment: "MSH", Sequence: 1, Field: 9, Component: 1},
			What: "message type " + safeCode(mt.Code), Err: ErrUnsupportedMessageType}
	}
	unsupported := &MappingError{Location: ErrorLocation{Segment: "MSH", Sequence: 1, Field: 9, Component: 2},
		What: "message type " + safeCode(mt.Code) + "^" + safeCode(mt.TriggerEvent), Err: ErrUnsupportedEvent}

	// Header: identity, source and time.
	msh := m.msh()
	controlID := m.ControlID()
	if controlID == "" {
		return nil, missing("MSH", 1, 10, "message control ID")
	}
	ev.SourceSystem = sourceSystem(m.SendingApplication(), m.SendingFacility())
	if ev.SourceSystem == "" {
		return nil, missing("MSH", 1, 3, "sending application")
	}
	ev.ID = triggers.EventID(msh.Raw(3), msh.Raw(4), controlID)
	ev.Origin = triggers.Origin{Reference: "hl7v2:" + ev.ID, MessageType: messageTypeString(mt), ControlID: controlID}
	occurred, err := mp.timeAt("EVN", 1, 2)
	if err != nil {
		return nil, err
	}
	if occurred == nil {
		if occurred, err = mp.timeAt("MSH", 1, 7); err != nil {
			return nil, err
		}
	}
	if occurred == nil {
		return nil, missing("MSH", 1, 7, "date/time of message")
	}
	ev.OccurredAt = *occurred

	// Patient.
	if err := mp.patient(&ev.Patient); err != nil {
		return nil, err
	}

	// What happened.
	switch family {
	case siu:
		err = mp.appointment(ev, mt.TriggerEvent, unsupported)
	case adt:
		err = mp.visit(ev, mt.TriggerEvent, unsupported)
	case order:
		err = mp.order(ev, mt, unsupported)
	}
	if err != nil {
		return nil, err
	}
	if ev.Kind == triggers.EDArrival {
		ev.Priority = triggers.PriorityStat
	}
	if bad, found := ev.InvalidText(); found {
		// Parse decoded the message's text, so this is a control
		// character, sent as is or as an \X\ escape, or \X\ bytes
		// that are not text.
		return nil, &MappingError{Location: mp.locate(bad), What: "a value that is not text (a control character, or escaped bytes that are not text)", Err: ErrNotText}
	}
	if err := ev.Validate(); err != nil {
		// Every required part was checked above; this is a mapping bug.
		return nil, &MappingError{What: "care event incomplete", Err: fmt.Errorf("%w: %w", ErrMissingField, err)}
	}
	return ev, nil
}

// locate finds the value a care event string came from: the first
// subcomponent, in message order, that is not text and holds it. The
// location is empty when none does.
func (mp *mapper) locate(bad string) ErrorLocation {
	seq := map[string]int{}
	for _, seg := range mp.m.AllSegments() {
		seq[seg.ID()]++
		for n := 1; n <= seg.NumFields(); n++ {
			for r, rep := range seg.Field(n) {
				for c, comp := range rep {
					for sc, v := range comp {
						if !triggers.IsText(v) && strings.Contains(v, bad) {
							return ErrorLocation{Segment: seg.ID(), Sequence: seq[seg.ID()], Field: n, Repetition: r + 1, Component: c + 1, Subcomponent: sc + 1}
						}
					}
				}
			}
		}
	}
	return ErrorLocation{}
}

type messageFamily int

const (
	siu messageFamily = iota + 1
	adt
	order
)

// appointment fills in an SIU event (HL7 v2.5.1 chapter 10).
func (mp *mapper) appointment(ev *triggers.CareEvent, trigger string, unsupported error) error {
	start, err := mp.appointmentStart()
	if err != nil {
		return err
	}
	switch trigger {
	case "S12":
		ev.Kind = triggers.AppointmentBooked
	case "S13":
		ev.Kind = triggers.AppointmentRescheduled
	case "S14":
		// A modification may move the appointment or change something else
		// (location, resources); only a start time tells the two apart.
		ev.Kind = triggers.AppointmentBooked
		if start != nil {
			ev.Kind = triggers.AppointmentRescheduled
		}
	case "S15":
		ev.Kind = triggers.AppointmentCancelled
	case "S26":
		ev.Kind = triggers.AppointmentNoShow
	default:
		return unsupported
	}
	ev.ScheduledStart = start
	if ev.Priority, err = mp.priority(); err != nil {
		return err
	}
	for _, ais := range mp.m.Segments("AIS") {
		if c, ok := mp.code(ais.Field(3).Repetition(1)); ok {
			ev.Procedures = appendCode(ev.Procedures, c)
		}
	}
	ev.Modality = mp.modality(ev.Procedures, mp.m.Segments("AIS"), 3)
	for _, ail := range mp.m.Segments("AIL") {
		if l := location(ail.Field(3)); l != "" {
			ev.Location = l
			break
		}
	}
	if ev.Location == "" {
		ev.Location = location(mp.field("PV1", 3))
	}
	// The filler appointment ID (SCH-2) is required in every message the
	// filler (the scheduling system, which sends SIU) sends, HL7 v2.5.1
	// section 10.6.1.2; the placer's (SCH-1) only when a placer asked for
	// the appointment. Preferring SCH-2 keeps Placer the same across a
	// booking and its later changes.
	ev.Placer = firstNonEmpty(mp.field("SCH", 2).String(), mp.field("SCH", 1).String())
	return nil
}

// appointmentStart is the earliest AIS-4 (service start), else TQ1-7, else
// SCH-11.4 (the TQ start of senders before v2.6, where TQ1 replaced it).
func (mp *mapper) appointmentStart() (*time.Time, error) {
	var start *time.Time
	for i, ais := range mp.m.Segments("AIS") {
		t, err := mp.parseTime(ais.Field(4).String(), ErrorLocation{Segment: "AIS", Sequence: i + 1, Field: 4})
		if err != nil {
			return nil, err
		}
		if t != nil && (start == nil || t.Before(*start)) {
			start = t
		}
	}
	if start != nil {
		return start, nil
	}
	if t, err := mp.timeAt("TQ1", 1, 7); t != nil || err != nil {
		return t, err
	}
	return mp.parseTime(mp.field("SCH", 11).Repetition(1).Component(4).Subcomponent(1),
		ErrorLocation{Segment: "SCH", Sequence: 1, Field: 11, Component: 4})
}

// visit fills in an ADT event (HL7 v2.5.1 chapter 3).
func (mp *mapper) visit(ev *triggers.CareEvent, trigger string, unsupported error) error {
	patientClass := mp.field("PV1", 2).String()
	switch trigger {
	case "A01":
		ev.Kind = triggers.Admission
		if patientClass == "E" {
			ev.Kind = triggers.EDArrival
		}
	case "A05", "A14":
		// Pre-admit and pending admit (HL7 v2.5.1 3.3.5, 3.3.14): an
		// admission planned for PV2-8, announced ahead of it, which is
		// when priors are worth fetching. A01 of the same visit number
		// (PV1-19) then finds the job.
		ev.Kind = triggers.PreAdmission
	case "A06":
		// An outpatient or ED patient admitted (3.3.6).
		ev.Kind = triggers.Admission
	case "A04":
		ev.Kind = triggers.Registration
		if patientClass == "E" {
			ev.Kind = triggers.EDArrival
		}
	case "A02":
		ev.Kind = triggers.Transfer
		ev.PriorLocation = location(mp.field("PV1", 6))
	case "A03":
		ev.Kind = triggers.Discharge
	case "A08", "A28", "A31":
		// Update patient information, and add or update person
		// information from a master patient index (3.3.28, 3.3.31).
		ev.Kind = triggers.PatientUpdated
	case "A11", "A27", "A38":
		// Cancel admit or visit, cancel pending admit, cancel pre-admit.
		ev.Kind = triggers.VisitCancelled
	case "A40":
		ev.Kind = triggers.PatientMerged
		// HL7 v2.5.1 section 3.3.40: each PID/MRG pair merges MRG-1 into
		// PID-3. A care event is one merge; a second pair, which was
		// acknowledged and lost, is refused so that the sender sends it
		// on its own.
		if mp.m.segmentN("MRG", 2) != nil || mp.m.segmentN("PID", 2) != nil {
			return &MappingError{Location: ErrorLocation{Segment: "MRG", Sequence: 2},
				What: "a second PID/MRG pair; send each merge in its own ADT^A40", Err: ErrSeveralMerges}
		}
		ev.PriorIdentifiers = mp.identifiers(mp.field("MRG", 1))
		if len(ev.PriorIdentifiers) == 0 {
			return missing("MRG", 1, 1, "prior patient identifier list")
		}
	default:
		return unsupported
	}
	start, err := mp.timeAt("PV2", 1, 8) // expected admit date/time
	if err != nil {
		return err
	}
	ev.ScheduledStart = start
	ev.Location = location(mp.field("PV1", 3))
	ev.Placer = mp.field("PV1", 19).String()
	return nil
}

// order fills in an ORM, OMI or OMG event (HL7 v2.5.1 chapter 4). A message
// may carry several orders; the first ORC decides the kind and placer, every
// OBR adds its procedure, and orders of the other kind are refused.
func (mp *mapper) order(ev *triggers.CareEvent, mt MessageType, unsupported error) error {
	switch mt.Code + "^" + mt.TriggerEvent {
	case "ORM^O01", "OMI^O23", "OMG^O19":
	default:
		return unsupported
	}
	if mp.m.Segment("ORC") == nil {
		return &MappingError{Location: ErrorLocation{Segment: "ORC"}, What: "common order segment", Err: ErrMissingField}
	}
	control := mp.field("ORC", 1).String()
	switch ev.Kind = orderKind(control); {
	case ev.Kind != "":
	case control == "":
		return missing("ORC", 1, 1, "order control")
	default:
		return &MappingError{Location: ErrorLocation{Segment: "ORC", Sequence: 1, Field: 1},
			What: "order control " + safeCode(control), Err: ErrUnsupportedEvent}
	}
	// One event has one kind: a message that places one order and cancels
	// another would lose one of the two, so it is refused. An ORC Priorflow
	// takes nothing from (a status request, say) is not in the way.
	for i, orc := range mp.m.Segments("ORC")[1:] {
		if k := orderKind(orc.Field(1).String()); k != "" && k != ev.Kind {
			return &MappingError{Location: ErrorLocation{Segment: "ORC", Sequence: i + 2, Field: 1},
				What: "an order control of another kind than the first ORC's; send placed and cancelled orders apart", Err: ErrMixedOrders}
		}
	}
	start, err := mp.timeAt("TQ1", 1, 7)
	if err != nil {
		return err
	}
	if start == nil {
		start, err = mp.parseTime(mp.field("ORC", 7).Repetition(1).Component(4).Subcomponent(1),
			ErrorLocation{Segment: "ORC", Sequence: 1, Field: 7, Component: 4})
		if err != nil {
			return err
		}
	}
	if start == nil {
		start, err = mp.parseTime(mp.field("OBR", 27).Repetition(1).Component(4).Subcomponent(1),
			ErrorLocation{Segment: "OBR", Sequence: 1, Field: 27, Component: 4})
		if err != nil {
			return err
		}
	}
	ev.ScheduledStart = start
	if ev.Priority, err = mp.priority(); err != nil {
		return err
	}
	obrs := mp.m.Segments("OBR")
	for _, obr := range obrs {
		if c, ok := mp.code(obr.Field(4).Repetition(1)); ok {
			ev.Procedures = appendCode(ev.Procedures, c)
		}
		// OBR-15 specimen source (v2.3 to v2.6): component 4 is the body
		// site, a CWE in subcomponents.
		if bs := obr.Field(15).Repetition(1).Component(4); bs.String() != "" {
			ev.BodySites = appendCode(ev.BodySites, triggers.Code{
				Code: bs.Subcomponent(1), Display: bs.Subcomponent(2), System: mp.codeSystem(bs.Subcomponent(3)),
			})
		}
	}
	// OMI's IPC-5 is the DICOM modality itself (HL7 v2.5.1 section 4.5.6.5).
	for _, ipc := range mp.m.Segments("IPC") {
		if mod := strings.ToUpper(ipc.Field(5).String()); dicomModalities[mod] {
			ev.Modality = mod
			break
		}
	}
	if ev.Modality == "" {
		ev.Modality = mp.modality(ev.Procedures, obrs, 4)
	}
	ev.Location = location(mp.field("PV1", 3))
	ev.Placer = firstNonEmpty(mp.field("ORC", 2).String(), mp.field("OBR", 2).String(),
		mp.field("ORC", 3).String(), mp.field("OBR", 3).String())
	return nil
}

// orderKind is the care event an order control code (ORC-1, table 0119)
// announces; "" for one Priorflow does not take.
func orderKind(control string) triggers.Kind {
	switch control {
	case "NW", "XO", "SC":
		return triggers.OrderPlaced
	case "CA", "OC", "CR", "DC", "OD", "DR":
		return triggers.OrderCancelled
	}
	return ""
}

// patient reads PID: identifiers (PID-3), name (PID-5), birth date (PID-7)
// and sex (PID-8).
func (mp *mapper) patient(p *triggers.Patient) error {
	if mp.m.Segment("PID") == nil {
		return &MappingError{Location: ErrorLocation{Segment: "PID"}, What: "patient identification segment", Err: ErrMissingField}
	}
	p.Identifiers = mp.identifiers(mp.field("PID", 3))
	if len(p.Identifiers) == 0 {
		return missing("PID", 1, 3, "patient identifier list")
	}
	p.Family, p.Given = personName(mp.field("PID", 5))
	dob := mp.field("PID", 7).String()
	if dob != "" {
		if _, err := ParseDTM(dob, mp.loc); err != nil {
			return badTime(ErrorLocation{Segment: "PID", Sequence: 1, Field: 7})
		}
		p.BirthDate = birthDate(dob)
	}
	p.Sex = gender(mp.field("PID", 8).String())
	return nil
}

// identifiers maps the repetitions of a CX field (PID-3, MRG-1).
func (mp *mapper) identifiers(f Field) []triggers.Identifier {
	var out []triggers.Identifier
	for _, cx := range CXList(f) {
		out = append(out, triggers.Identifier{
			System:    mp.identifierSystem(cx.AssigningAuthority),
			Value:     cx.ID,
			Authority: cx.AssigningAuthority.NamespaceID,
			Type:      cx.IdentifierTypeCode,
		})
	}
	return out
}

// identifierSystem derives the system URI of an assigning authority (CX-4)
// as patientid.ForIssuer does, which is how the archive reads
// IssuerOfPatientID and its qualifiers: the universal ID when it is an ISO
// OID, a URI or a UUID, else the namespace through
// MapOptions.AuthoritySystems, the built-in table, urn:oid: for an OID, or
// urn:priorflow:issuer:<namespace>. Without any authority, the sending
// facility's entry in MapOptions.FacilitySystems, else
// MapOptions.WithoutAuthoritySystem.
func (mp *mapper) identifierSystem(hd HD) string {
	if s := patientid.ForIssuer(hd.NamespaceID, hd.UniversalID, hd.UniversalIDType, mp.opts.AuthoritySystems); s != "" {
		return s
	}
	if s, ok := mp.opts.FacilitySystems[mp.m.SendingFacility().NamespaceID]; ok {
		return s
	}
	return mp.opts.WithoutAuthoritySystem
}

// personName reads an XPN field (PID-5): among the alphabetic repetitions
// (XPN-8, HL7 table 4000, A or empty), the legal name (XPN-7 = L) when one
// is, else the first; family name FN.1 and given names XPN-2 and XPN-3. A
// name in ideographs or kana (XPN-8 I or P, as Japanese ADT sends them
// beside or instead of the alphabetic one) is not the name the Patient's
// alphabetic name is compared with; with none alphabetic, no name is read.
func personName(f Field) (family string, given []string) {
	var r Repetition
	found := false
	for _, rep := range f {
		if code := rep.Component(8).String(); code != "" && code != "A" {
			continue
		}
		if !found || (rep.Component(7).String() == "L" && r.Component(7).String() != "L") {
			r, found = rep, true
		}
	}
	if !found {
		return "", nil
	}
	family = r.Component(1).Subcomponent(1)
	for _, n := range []int{2, 3} {
		if g := r.Component(n).String(); g != "" {
			given = append(given, g)
		}
	}
	return family, given
}

// birthDate turns a validated DTM into YYYY, YYYY-MM or YYYY-MM-DD as
// written, without converting zones: a birth date is a calendar date.
func birthDate(dtm string) string {
	if i := indexAnyByte(dtm, "+-."); i >= 0 {
		dtm = dtm[:i]
	}
	switch {
	case len(dtm) >= 8:
		return dtm[:4] + "-" + dtm[4:6] + "-" + dtm[6:8]
	case len(dtm) >= 6:
		return dtm[:4] + "-" + dtm[4:6]
	default:
		return dtm
	}
}

// gender maps administrative sex (PID-8, table 0001) to FHIR
// administrative-gender.
func gender(code string) string {
	switch strings.ToUpper(code) {
	case "":
		return ""
	case "M":
		return "male"
	case "F":
		return "female"
	case "O", "A", "X":
		return "other"
	default: // U, N and local codes
		return "unknown"
	}
}

// priority reads the first priority present: TQ1-9, SCH-11.6 or ORC-7.6
// (TQ priority component), OBR-27.6, OBR-5 (table 0027 S, A, R; anything
// else is routine).
func (mp *mapper) priority() (triggers.Priority, error) {
	code := firstNonEmpty(
		mp.field("TQ1", 9).String(),
		mp.field("SCH", 11).Repetition(1).Component(6).String(),
		mp.field("ORC", 7).Repetition(1).Component(6).String(),
		mp.field("OBR", 27).Repetition(1).Component(6).String(),
		mp.field("OBR", 5).String(),
	)
	switch strings.ToUpper(code) {
	case "S", "STAT":
		return triggers.PriorityStat, nil
	case "A", "ASAP":
		return triggers.PriorityASAP, nil
	default:
		return triggers.PriorityRoutine, nil
	}
}

// builtinCodeSystems maps coding system names of HL7 table 0396 (and
// common variants) to FHIR code system URIs.
var builtinCodeSystems = map[string]string{
	"LN":       "http://loinc.org",
	"LOINC":    "http://loinc.org",
	"SCT":      "http://snomed.info/sct",
	"SNM":      "http://snomed.info/sct",
	"SNM3":     "http://snomed.info/sct",
	"SNOMED":   "http://snomed.info/sct",
	"SNOMEDCT": "http://snomed.info/sct",
	"C4":       "http://www.ama-assn.org/go/cpt",
	"C5":       "http://www.ama-assn.org/go/cpt",
	"CPT":      "http://www.ama-assn.org/go/cpt",
	"CPT4":     "http://www.ama-assn.org/go/cpt",
	"HCPCS":    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
	"I10":      "http://hl7.org/fhir/sid/icd-10",
	"I10C":     "http://hl7.org/fhir/sid/icd-10-cm",
	"ICD10CM":  "http://hl7.org/fhir/sid/icd-10-cm",
	"I10P":     "http://www.cms.gov/Medicare/Coding/ICD10",
	"I9":       "http://hl7.org/fhir/sid/icd-9-cm",
	"I9C":      "http://hl7.org/fhir/sid/icd-9-cm",
	"RADLEX":   "http://radlex.org",
	"RADLX":    "http://radlex.org",
	"DCM":      "http://dicom.nema.org/resources/ontology/DCM",
}

// codeSystem maps a coding system name (CWE-3) to a URI: MapOptions first,
// then the built-in table, then HL7 tables (HL7nnnn), else
// urn:priorflow:codesystem:<name> for local systems ("L", "99zzz").
func (mp *mapper) codeSystem(name string) string {
	if name == "" {
		return ""
	}
	if s, ok := mp.opts.CodeSystems[name]; ok {
		return s
	}
	up := strings.ToUpper(name)
	if s, ok := builtinCodeSystems[up]; ok {
		return s
	}
	if len(up) == 8 && strings.HasPrefix(up, "HL7") && digits(up[3:]) {
		return "http://terminology.hl7.org/CodeSystem/v2-" + up[3:]
	}
	return "urn:priorflow:codesystem:" + url.PathEscape(name)
}

// code reads a CWE/CE procedure code (AIS-3, OBR-4).
func (mp *mapper) code(r Repetition) (triggers.Code, bool) {
	c := triggers.Code{Code: r.Component(1).String(), Display: r.Component(2).String()}
	if c.Code == "" {
		// Only the alternate coding (CWE-4..6) is sent.
		c = triggers.Code{Code: r.Component(4).String(), Display: r.Component(5).String()}
		c.System = mp.codeSystem(r.Component(6).String())
	} else {
		c.System = mp.codeSystem(r.Component(3).String())
	}
	if c.Display == "" {
		c.Display = r.Component(5).String()
	}
	return c, c.Code != ""
}

// appendCode appends c unless a code with its system and code is there.
func appendCode(codes []triggers.Code, c triggers.Code) []triggers.Code {
	for _, have := range codes {
		if have.System == c.System && have.Code == c.Code {
			return codes
		}
	}
	return append(codes, c)
}

// dicomModalities are the DICOM modality defined terms (PS3.3 C.7.3.1.1.1)
// of acquisitions whose priors are worth fetching.
var dicomModalities = map[string]bool{
	"BMD": true, "CR": true, "CT": true, "DX": true, "ES": true, "IO": true, "MG": true, "MR": true,
	"NM": true, "OP": true, "PT": true, "PX": true, "RF": true, "US": true, "XA": true, "XC": true,
}

// serviceSectionModality maps an OBR-24 diagnostic service section (table
// 0074) to a DICOM modality: the codes that are DICOM modalities as well,
// except PT (physical therapy in 0074, PET in DICOM), and the imaging
// sections with their own codes.
var serviceSectionModality = map[string]string{
	"CR": "CR", "CT": "CT", "DX": "DX", "MG": "MG", "MR": "MR", "NM": "NM", "RF": "RF", "US": "US", "XA": "XA",
	"NMR": "MR", "NMS": "NM", "RUS": "US", "OUS": "US", "VUS": "US", "CUS": "US", "XRC": "RF",
}

// modality derives the DICOM modality: OBR-24 (orders), then
// MapOptions.ModalityPrefixes on the procedure codes, then words of the
// procedure text ("CT Head", "XR Chest", "MRI Knee").
func (mp *mapper) modality(procs []triggers.Code, segs []*Segment, field int) string {
	for _, s := range segs {
		if s.ID() != "OBR" {
			break
		}
		if mod, ok := serviceSectionModality[strings.ToUpper(s.Field(24).String())]; ok {
			return mod
		}
	}
	if len(mp.opts.ModalityPrefixes) > 0 {
		prefixes := make([]string, 0, len(mp.opts.ModalityPrefixes))
		for p := range mp.opts.ModalityPrefixes {
			prefixes = append(prefixes, p)
		}
		sort.Slice(prefixes, func(i, j int) bool { return len(prefixes[i]) > len(prefixes[j]) })
		for _, s := range segs {
			r := s.Field(field).Repetition(1)
			for _, c := range []string{r.Component(1).String(), r.Component(4).String()} {
				for _, p := range prefixes {
					if c != "" && strings.HasPrefix(strings.ToUpper(c), strings.ToUpper(p)) {
						return mp.opts.ModalityPrefixes[p]
					}
				}
			}
		}
	}
	for _, c := range procs {
		if mod := modalityFromText(c.Display); mod != "" {
			return mod
		}
	}
	return ""
}

// textModalities are words of procedure names that name a modality, in
// the order they are tried: "PET CT" is PT, "CT angiography" is CT.
var textModalities = []struct {
	modality string
	words    []string
}{
	{"PT", []string{"PET"}},
	{"CT", []string{"CT", "CTA", "CAT", "COMPUTED TOMOGRAPHY"}},
	{"MR", []string{"MR", "MRI", "MRA", "MRV", "MAGNETIC RESONANCE"}},
	{"NM", []string{"NM", "SPECT", "SCINTIGRAPHY", "NUCLEAR MEDICINE"}},
	{"MG", []string{"MAMMO", "MAMMOGRAM", "MAMMOGRAPHY", "TOMOSYNTHESIS"}},
	{"US", []string{"US", "ULTRASOUND", "SONOGRAM", "SONOGRAPHY", "DOPPLER", "ECHOGRAPHY"}},
	{"RF", []string{"FLUORO", "FLUOROSCOPY"}},
	{"XA", []string{"ANGIO", "ANGIOGRAM", "ANGIOGRAPHY"}},
	{"DX", []string{"XR", "XRAY", "X RAY", "RADIOGRAPH", "RADIOGRAPHY"}},
}

func modalityFromText(s string) string {
	// Pad with spaces and match whole words.
	words := " " + strings.Join(strings.FieldsFunc(strings.ToUpper(s), func(r rune) bool {
		return !('A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}), " ") + " "
	for _, tm := range textModalities {
		for _, w := range tm.words {
			if strings.Contains(words, " "+w+" ") {
				return tm.modality
			}
		}
	}
	return ""
}

// location formats a PL field (PV1-3, PV1-6, AIL-3) as its point of care,
// room, bed and facility, the parts that are present, joined by " / ".
func location(f Field) string {
	r := f.Repetition(1)
	var parts []string
	for n := 1; n <= 4; n++ {
		if v := r.Component(n).Subcomponent(1); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, " / ")
}

// field returns field n of the first segment id, or nil.
func (mp *mapper) field(id string, n int) Field {
	s := mp.m.Segment(id)
	if s == nil {
		return nil
	}
	return s.Field(n)
}

// timeAt parses the TS/DTM in field n of occurrence occ of segment id; nil
// when absent.
func (mp *mapper) timeAt(id string, occ, n int) (*time.Time, error) {
	s := mp.m.segmentN(id, occ)
	if s == nil {
		return nil, nil
	}
	return mp.parseTime(s.Field(n).String(), ErrorLocation{Segment: id, Sequence: occ, Field: n})
}

func (mp *mapper) parseTime(v string, at ErrorLocation) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := ParseDTM(v, mp.loc)
	if err != nil || t.Before(earliestCareTime) {
		// The parse error quotes the value; the mapping error must not.
		return nil, badTime(at)
	}
	return &t, nil
}

// earliestCareTime bounds the times of care events: an earlier one is a
// placeholder ("0000", "00010101"), not a time. Taken as a time, year 1 is
// Go's zero time, which reads as no time at all, and any such time would
// order the event before every real one (a cancellation "older" than the
// booking it cancels would be ignored).
var earliestCareTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

func missing(seg string, seq, field int, what string) error {
	return &MappingError{Location: ErrorLocation{Segment: seg, Sequence: seq, Field: field}, What: what, Err: ErrMissingField}
}

func badTime(at ErrorLocation) error {
	return &MappingError{Location: at, What: "date/time", Err: ErrBadTime}
}

// sourceSystem names the sender as application@facility (MSH-3, MSH-4).
func sourceSystem(app, facility HD) string {
	a := firstNonEmpty(app.NamespaceID, app.UniversalID)
	f := firstNonEmpty(facility.NamespaceID, facility.UniversalID)
	switch {
	case a != "" && f != "":
		return a + "@" + f
	default:
		return a + f
	}
}

func messageTypeString(mt MessageType) string {
	return strings.TrimRight(mt.Code+"^"+mt.TriggerEvent+"^"+mt.Structure, "^")
}

// safeCode keeps a code from the message fit for logs and acknowledgements:
// short and plain, since it is echoed without knowing what the sender put
// there.
func safeCode(s string) string {
	if len(s) > 8 {
		s = s[:8]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return "?"
		}
	}
	return s
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
