package fhir

// Care event resources: the scheduling, encounter and order resources whose
// writes are care events (see triggers/fhirintake). Their search parameters
// are the R4 definitions, declared like those in resources.go.

// Appointment returns the Appointment type (FHIR R4 appointment.html) with
// the parameters a scheduling feed and the prefetch rules search on.
func Appointment() *ResourceType {
	return &ResourceType{
		Name: "Appointment",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "Appointment.identifier", Description: "An Identifier of the Appointment", Definition: sp + "Appointment-identifier"},
			{Name: "patient", Type: ParamReference, Path: "Appointment.participant.actor", Targets: []string{"Patient"}, Description: "One of the individuals of the appointment is this patient", Definition: sp + "Appointment-patient"},
			{Name: "actor", Type: ParamReference, Path: "Appointment.participant.actor", Targets: []string{"Practitioner", "Device", "Patient", "HealthcareService", "PractitionerRole", "RelatedPerson", "Location"}, Description: "Any one of the individuals participating in the appointment", Definition: sp + "Appointment-actor"},
			{Name: "date", Type: ParamDate, Path: "Appointment.start", Description: "Appointment date/time.", Definition: sp + "Appointment-date"},
			{Name: "status", Type: ParamToken, Path: "Appointment.status", Description: "The overall status of the appointment", Definition: sp + "Appointment-status"},
			{Name: "location", Type: ParamReference, Path: "Appointment.participant.actor", Targets: []string{"Location"}, Description: "This location is listed in the participants of the appointment", Definition: sp + "Appointment-location"},
			{Name: "service-type", Type: ParamToken, Path: "Appointment.serviceType", Description: "The specific service that is to be performed during this appointment", Definition: sp + "Appointment-service-type"},
			{Name: "appointment-type", Type: ParamToken, Path: "Appointment.appointmentType", Description: "The style of appointment or patient that has been booked in the slot (not service type)", Definition: sp + "Appointment-appointment-type"},
			{Name: "based-on", Type: ParamReference, Path: "Appointment.basedOn", Targets: []string{"ServiceRequest"}, Description: "The service request this appointment is allocated to assess", Definition: sp + "Appointment-based-on"},
			{Name: "practitioner", Type: ParamReference, Path: "Appointment.participant.actor", Targets: []string{"Practitioner"}, Description: "One of the individuals of the appointment is this practitioner", Definition: sp + "Appointment-practitioner"},
			{Name: "specialty", Type: ParamToken, Path: "Appointment.specialty", Description: "The specialty of a practitioner that would be required to perform the service requested in this appointment", Definition: sp + "Appointment-specialty"},
		},
		Sorts:    []string{"date", "status", "identifier"},
		Includes: []string{"patient", "actor", "location", "based-on", "practitioner"},
	}
}

// Encounter returns the Encounter type (FHIR R4 encounter.html): visits,
// ED arrivals and admissions as an ADT feed or an EHR writes them.
func Encounter() *ResourceType {
	return &ResourceType{
		Name: "Encounter",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "Encounter.identifier", Description: "Identifier(s) by which this encounter is known", Definition: sp + "clinical-identifier"},
			{Name: "patient", Type: ParamReference, Path: "Encounter.subject", Targets: []string{"Patient"}, Description: "The patient or group present at the encounter", Definition: sp + "clinical-patient"},
			{Name: "subject", Type: ParamReference, Path: "Encounter.subject", Targets: []string{"Patient", "Group"}, Description: "The patient or group present at the encounter", Definition: sp + "Encounter-subject"},
			{Name: "date", Type: ParamDate, Path: "Encounter.period", Description: "A date within the period the Encounter lasted", Definition: sp + "clinical-date"},
			{Name: "status", Type: ParamToken, Path: "Encounter.status", Description: "planned | arrived | triaged | in-progress | onleave | finished | cancelled +", Definition: sp + "Encounter-status"},
			// Encounter.class is a Coding (proto field class_value).
			{Name: "class", Type: ParamToken, Path: "Encounter.class", Description: "Classification of patient encounter", Definition: sp + "Encounter-class"},
			{Name: "location", Type: ParamReference, Path: "Encounter.location.location", Targets: []string{"Location"}, Description: "Location the encounter takes place", Definition: sp + "Encounter-location"},
			{Name: "type", Type: ParamToken, Path: "Encounter.type", Description: "Specific type of encounter", Definition: sp + "clinical-type"},
			{Name: "based-on", Type: ParamReference, Path: "Encounter.basedOn", Targets: []string{"ServiceRequest"}, Description: "The ServiceRequest that initiated this encounter", Definition: sp + "Encounter-based-on"},
			{Name: "service-provider", Type: ParamReference, Path: "Encounter.serviceProvider", Targets: []string{"Organization"}, Description: "The organization (facility) responsible for this encounter", Definition: sp + "Encounter-service-provider"},
			{Name: "appointment", Type: ParamReference, Path: "Encounter.appointment", Targets: []string{"Appointment"}, Description: "The appointment that scheduled this encounter", Definition: sp + "Encounter-appointment"},
		},
		Sorts:    []string{"date", "status", "identifier"},
		Includes: []string{"patient", "subject", "location", "based-on", "service-provider", "appointment"},
	}
}

// ServiceRequest returns the ServiceRequest type (FHIR R4
// servicerequest.html): orders, imaging orders among them.
func ServiceRequest() *ResourceType {
	return &ResourceType{
		Name: "ServiceRequest",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "ServiceRequest.identifier", Description: "Identifiers assigned to this order", Definition: sp + "clinical-identifier"},
			{Name: "patient", Type: ParamReference, Path: "ServiceRequest.subject", Targets: []string{"Patient"}, Description: "Search by subject - a patient", Definition: sp + "clinical-patient"},
			{Name: "subject", Type: ParamReference, Path: "ServiceRequest.subject", Targets: []string{"Patient", "Group", "Location", "Device"}, Description: "Search by subject", Definition: sp + "ServiceRequest-subject"},
			{Name: "status", Type: ParamToken, Path: "ServiceRequest.status", Description: "draft | active | on-hold | revoked | completed | entered-in-error | unknown", Definition: sp + "ServiceRequest-status"},
			{Name: "intent", Type: ParamToken, Path: "ServiceRequest.intent", Description: "proposal | plan | directive | order | original-order | reflex-order | filler-order | instance-order | option", Definition: sp + "ServiceRequest-intent"},
			{Name: "code", Type: ParamToken, Path: "ServiceRequest.code", Description: "What is being requested/ordered", Definition: sp + "clinical-code"},
			{Name: "authored", Type: ParamDate, Path: "ServiceRequest.authoredOn", Description: "Date request signed", Definition: sp + "ServiceRequest-authored"},
			{Name: "occurrence", Type: ParamDate, Path: "ServiceRequest.occurrence", Description: "When service should occur", Definition: sp + "ServiceRequest-occurrence"},
			{Name: "priority", Type: ParamToken, Path: "ServiceRequest.priority", Description: "routine | urgent | asap | stat", Definition: sp + "ServiceRequest-priority"},
			{Name: "based-on", Type: ParamReference, Path: "ServiceRequest.basedOn", Targets: []string{"CarePlan", "ServiceRequest", "MedicationRequest"}, Description: "What request fulfills", Definition: sp + "ServiceRequest-based-on"},
			{Name: "encounter", Type: ParamReference, Path: "ServiceRequest.encounter", Targets: []string{"Encounter"}, Description: "An encounter in which this request is made", Definition: sp + "clinical-encounter"},
			{Name: "requester", Type: ParamReference, Path: "ServiceRequest.requester", Targets: []string{"Practitioner", "Organization", "Patient", "PractitionerRole", "RelatedPerson", "Device"}, Description: "Who/what is requesting service", Definition: sp + "ServiceRequest-requester"},
			{Name: "category", Type: ParamToken, Path: "ServiceRequest.category", Description: "Classification of service", Definition: sp + "ServiceRequest-category"},
			{Name: "body-site", Type: ParamToken, Path: "ServiceRequest.bodySite", Description: "Where procedure is going to be done", Definition: sp + "ServiceRequest-body-site"},
		},
		Sorts:    []string{"authored", "occurrence", "identifier"},
		Includes: []string{"patient", "subject", "encounter", "based-on", "requester"},
	}
}
