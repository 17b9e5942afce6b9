package fhir

// AuditEvent returns the AuditEvent type with the R4 search parameters
// Priorflow records and searches by (http://hl7.org/fhir/R4/auditevent.html#search).
// Every remote query of the network search is written as an AuditEvent in
// the style of IHE Basic Audit Log Patterns (BALP): type DCM 110112 Query,
// the patient as an entity, the source as the observer. Every access to the
// HTTP APIs is recorded the same way by auth/audit.
func AuditEvent() *ResourceType {
	return &ResourceType{
		Name:     "AuditEvent",
		ReadOnly: true,
		Params: []*SearchParam{
			// R4 also counts a Patient agent (a patient's own access through a
			// patient-facing app) as the event's patient.
			{Name: "patient", Type: ParamReference, Path: "AuditEvent.agent.who | AuditEvent.entity.what", Targets: []string{"Patient"}, Description: "Identity of the patient the event is about", Definition: sp + "AuditEvent-patient"},
			{Name: "date", Type: ParamDate, Path: "AuditEvent.recorded", Description: "Time when the event was recorded", Definition: sp + "AuditEvent-date"},
			{Name: "agent", Type: ParamReference, Path: "AuditEvent.agent.who", Description: "Identifier of who", Definition: sp + "AuditEvent-agent"},
			// agent matches only agents whose who is a reference (a SMART
			// fhirUser); OAuth clients and subjects are identifiers, so
			// auth/audit also writes them to agent.name, found by agent-name.
			{Name: "agent-name", Type: ParamString, Path: "AuditEvent.agent.name", Description: "Human friendly name for the Agent", Definition: sp + "AuditEvent-agent-name"},
			{Name: "type", Type: ParamToken, Path: "AuditEvent.type", Description: "Type/identifier of event", Definition: sp + "AuditEvent-type"},
			{Name: "subtype", Type: ParamToken, Path: "AuditEvent.subtype", Description: "More specific type/id for the event", Definition: sp + "AuditEvent-subtype"},
			{Name: "outcome", Type: ParamToken, Path: "AuditEvent.outcome", Description: "Whether the event succeeded or failed", Definition: sp + "AuditEvent-outcome"},
			{Name: "entity", Type: ParamReference, Path: "AuditEvent.entity.what", Description: "Specific instance of resource", Definition: sp + "AuditEvent-entity"},
			{Name: "source", Type: ParamReference, Path: "AuditEvent.source.observer", Description: "The identity of source detecting the event", Definition: sp + "AuditEvent-source"},
			{Name: "action", Type: ParamToken, Path: "AuditEvent.action", Description: "Type of action performed during the event", Definition: sp + "AuditEvent-action"},
		},
		Sorts:    []string{"date"},
		Includes: []string{"patient", "entity"},
	}
}
