package fhirintake

import (
	"fmt"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/triggers"
)

// draft is a care event derived from a resource write, before its patient
// and the orders it is based on are resolved.
type draft struct {
	ev triggers.CareEvent
	// patient is the reference to resolve into ev.Patient.
	patient *reference
	// basedOn are orders that complete ev's procedures, modality and body
	// sites when the resource itself does not name them.
	basedOn []reference
}

// derive compares the replaced version of a resource with the new one and
// returns the care events the write means:
//
//	Appointment     create, or status into pending|booked|arrived|checked-in  appointment-booked
//	                start changed while in those statuses                       appointment-rescheduled
//	                → cancelled; → entered-in-error or deleted while booked     appointment-cancelled
//	                → noshow                                                    appointment-noshow
//	Encounter       entering arrived|triaged|in-progress (or a class change      ed-arrival (EMER, always stat),
//	                while there), by class                                       admission (IMP, ACUTE, NONAC),
//	                                                                             registration (AMB)
//	                current location changed while there (and no event above)   transfer (PriorLocation set)
//	                planned (IMP, ACUTE, NONAC), or its period.start changed     pre-admission (scheduledStart
//	                while planned                                                period.start)
//	                → finished from arrived|triaged|in-progress|onleave          discharge
//	                → cancelled|entered-in-error or deleted from those or       visit-cancelled
//	                from planned (IMP, ACUTE, NONAC)
//	ServiceRequest  active with an order intent, on create or into active        order-placed
//	                → revoked|entered-in-error, or deleted while active|on-hold  order-cancelled
//
// A write that changes nothing of the above (a re-sent resource, a new
// note) means no event.
//
// prev is nil on a create (or when it was a deletion); next is Deleted on a
// delete, and the event is then described by prev.
func derive(prev, next *fhir.Resource) ([]draft, error) {
	var pb, nb []byte
	if prev != nil && !prev.Deleted {
		pb = prev.Body
	}
	if !next.Deleted {
		nb = next.Body
	}
	var drafts []draft
	var err error
	switch next.Type {
	case "Appointment":
		drafts, err = deriveAppointment(pb, nb)
	case "Encounter":
		drafts, err = deriveEncounter(pb, nb)
	case "ServiceRequest":
		drafts, err = deriveServiceRequest(pb, nb)
	}
	if err != nil {
		return nil, fmt.Errorf("derive care events from %s/%s: %w", next.Type, next.ID, err)
	}
	return drafts, nil
}

func decodePair[T any](pb, nb []byte) (prev, next *T, err error) {
	if pb != nil {
		if prev, err = decode[T](pb); err != nil {
			return nil, nil, err
		}
	}
	if nb != nil {
		if next, err = decode[T](nb); err != nil {
			return nil, nil, err
		}
	}
	return prev, next, nil
}

func set(ss ...string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// appointmentBooked are the Appointment statuses (FHIR R4 appointmentstatus)
// in which the appointment will happen: entering one is a booking.
var appointmentBooked = set("pending", "booked", "arrived", "checked-in")

func deriveAppointment(pb, nb []byte) ([]draft, error) {
	prev, next, err := decodePair[appointment](pb, nb)
	if err != nil {
		return nil, err
	}
	var ps, ns string
	if prev != nil {
		ps = prev.Status
	}
	if next != nil {
		ns = next.Status
	}
	var kind triggers.Kind
	switch {
	case next == nil: // deleted
		if appointmentBooked[ps] {
			kind = triggers.AppointmentCancelled
		}
	case appointmentBooked[ns] && !appointmentBooked[ps]:
		kind = triggers.AppointmentBooked
	case appointmentBooked[ns] && appointmentBooked[ps] && !sameTime(prev.Start, next.Start):
		kind = triggers.AppointmentRescheduled
	case ns == "cancelled" && prev != nil && ps != "cancelled",
		ns == "entered-in-error" && appointmentBooked[ps]:
		kind = triggers.AppointmentCancelled
	case ns == "noshow" && prev != nil && ps != "noshow":
		kind = triggers.AppointmentNoShow
	}
	if kind == "" {
		return nil, nil
	}
	a := next
	if a == nil {
		a = prev
	}
	d := draft{basedOn: a.BasedOn}
	d.ev.Kind = kind
	d.ev.Priority = appointmentPriority(a.Priority)
	d.ev.ScheduledStart = timePtr(a.Start)
	d.ev.Procedures = codes(ptrs(a.ServiceType)...)
	d.ev.Modality = modalityOf(append(ptrs(a.ServiceType), a.AppointmentType)...)
	d.ev.Placer = placer(a.Identifier)
	for _, p := range a.Participant {
		switch refType(p.Actor) {
		case "Patient":
			if d.patient == nil {
				d.patient = p.Actor
			}
		case "Location":
			if d.ev.Location == "" {
				d.ev.Location = label(p.Actor)
			}
		}
	}
	return []draft{d}, nil
}

// encounterActive are the Encounter statuses (FHIR R4 encounter-status) of
// a patient who is there; onleave counts, so that coming back from leave
// is no new arrival.
var encounterActive = set("arrived", "triaged", "in-progress", "onleave")

// visitKind is the care event that entering e's status means, by its class
// (v3 ActCode: EMER emergency, IMP inpatient, ACUTE and NONAC inpatient
// acute and non-acute, AMB ambulatory), or "" when e is not active.
func visitKind(e *encounter) triggers.Kind {
	if e == nil || !encounterActive[e.Status] || e.Class == nil {
		return ""
	}
	switch e.Class.Code {
	case "EMER":
		return triggers.EDArrival
	case "IMP", "ACUTE", "NONAC":
		return triggers.Admission
	case "AMB":
		return triggers.Registration
	}
	return ""
}

// plannedAdmission reports whether e is an inpatient stay planned ahead
// (status planned), which is what ADT^A05 announces in HL7 v2.
func plannedAdmission(e *encounter) bool {
	if e == nil || e.Status != "planned" || e.Class == nil {
		return false
	}
	switch e.Class.Code {
	case "IMP", "ACUTE", "NONAC":
		return true
	}
	return false
}

// plannedStart is the planned start of e, or "".
func plannedStart(e *encounter) string {
	if e == nil || e.Period == nil {
		return ""
	}
	return e.Period.Start
}

// currentLocation is where the patient is now: the location entry with
// status active, else the last one that is not merely planned.
func currentLocation(e *encounter) *reference {
	if e == nil {
		return nil
	}
	for i := range e.Location {
		if e.Location[i].Status == "active" {
			return &e.Location[i].Location
		}
	}
	for i := len(e.Location) - 1; i >= 0; i-- {
		if e.Location[i].Status != "planned" {
			return &e.Location[i].Location
		}
	}
	return nil
}

func deriveEncounter(pb, nb []byte) ([]draft, error) {
	prev, next, err := decodePair[encounter](pb, nb)
	if err != nil {
		return nil, err
	}
	prevActive := prev != nil && encounterActive[prev.Status]
	var kinds []triggers.Kind
	var priorLocation string
	switch {
	case next == nil || next.Status == "cancelled" || next.Status == "entered-in-error":
		if prevActive || plannedAdmission(prev) {
			kinds = append(kinds, triggers.VisitCancelled)
		}
	case plannedAdmission(next):
		// Planned, or planned for another time: the job moves with it.
		if !plannedAdmission(prev) || plannedStart(prev) != plannedStart(next) {
			kinds = append(kinds, triggers.PreAdmission)
		}
	case next.Status == "finished":
		if prevActive {
			kinds = append(kinds, triggers.Discharge)
		}
	case next.Status != "onleave" && visitKind(next) != "" && visitKind(next) != visitKind(prev):
		// Arriving, or becoming another kind of visit while there (an ED
		// patient admitted: class EMER → IMP). The event names the new
		// location, so a move in the same write is no separate transfer.
		kinds = append(kinds, visitKind(next))
	case prevActive && encounterActive[next.Status]:
		from, to := currentLocation(prev), currentLocation(next)
		if from != nil && to != nil && !sameRef(from, to) {
			kinds = append(kinds, triggers.Transfer)
			priorLocation = label(from)
		}
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	e := next
	if e == nil {
		e = prev
	}
	var out []draft
	for _, k := range kinds {
		d := draft{patient: e.Subject, basedOn: e.BasedOn}
		d.ev.Kind = k
		d.ev.Priority = encounterPriority(e.Priority)
		if k == triggers.EDArrival {
			d.ev.Priority = triggers.PriorityStat
		}
		d.ev.Location = label(currentLocation(e))
		d.ev.PriorLocation = priorLocation
		d.ev.Placer = placer(e.Identifier)
		if k == triggers.PreAdmission {
			d.ev.ScheduledStart = timePtr(plannedStart(e))
		}
		out = append(out, d)
	}
	return out, nil
}

// orderIntents are the ServiceRequest intents (FHIR R4 request-intent) of
// an actual order; proposals and plans are not acted on.
var orderIntents = set("order", "original-order", "reflex-order", "filler-order", "instance-order")

// orderEnded are statuses from which an order cannot be cancelled.
var orderEnded = set("revoked", "entered-in-error", "completed")

func deriveServiceRequest(pb, nb []byte) ([]draft, error) {
	prev, next, err := decodePair[serviceRequest](pb, nb)
	if err != nil {
		return nil, err
	}
	var kind triggers.Kind
	switch {
	case next == nil: // deleted
		if prev != nil && (prev.Status == "active" || prev.Status == "on-hold") {
			kind = triggers.OrderCancelled
		}
	case next.Status == "active" && orderIntents[next.Intent] && (prev == nil || prev.Status != "active"):
		kind = triggers.OrderPlaced
	case (next.Status == "revoked" || next.Status == "entered-in-error") && prev != nil && !orderEnded[prev.Status]:
		kind = triggers.OrderCancelled
	}
	if kind == "" {
		return nil, nil
	}
	sr := next
	if sr == nil {
		sr = prev
	}
	d := draft{patient: sr.Subject}
	d.ev.Kind = kind
	d.ev.Priority = requestPriority(sr.Priority)
	d.ev.ScheduledStart = timePtr(sr.OccurrenceDateTime)
	if d.ev.ScheduledStart == nil && sr.OccurrencePeriod != nil {
		d.ev.ScheduledStart = timePtr(sr.OccurrencePeriod.Start)
	}
	d.ev.Procedures = codes(sr.Code)
	d.ev.Modality = modalityOf(sr.Code)
	d.ev.BodySites = codes(ptrs(sr.BodySite)...)
	if len(sr.LocationReference) > 0 {
		d.ev.Location = label(&sr.LocationReference[0])
	}
	d.ev.Placer = placer(sr.Identifier)
	return []draft{d}, nil
}
