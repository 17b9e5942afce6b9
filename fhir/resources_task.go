package fhir

// Task returns the Task type with its R4 search parameters
// (http://hl7.org/fhir/R4/task.html#search). Priorflow records every
// prefetch job as a Task (code urn:priorflow:task|prefetch), so clients see
// the planned and running work with ordinary FHIR searches.
func Task() *ResourceType {
	return &ResourceType{
		Name: "Task",
		Params: []*SearchParam{
			{Name: "identifier", Type: ParamToken, Path: "Task.identifier", Description: "Search for a task instance by its business identifier", Definition: sp + "Task-identifier"},
			{Name: "patient", Type: ParamReference, Path: "Task.for", Targets: []string{"Patient"}, Description: "Search by patient", Definition: sp + "Task-patient"},
			{Name: "subject", Type: ParamReference, Path: "Task.for", Description: "Search by subject", Definition: sp + "Task-subject"},
			{Name: "status", Type: ParamToken, Path: "Task.status", Description: "Search by task status", Definition: sp + "Task-status"},
			{Name: "code", Type: ParamToken, Path: "Task.code", Description: "Search by task code", Definition: sp + "Task-code"},
			{Name: "business-status", Type: ParamToken, Path: "Task.businessStatus", Description: "Search by business status", Definition: sp + "Task-business-status"},
			{Name: "authored-on", Type: ParamDate, Path: "Task.authoredOn", Description: "Search by creation date", Definition: sp + "Task-authored-on"},
			{Name: "modified", Type: ParamDate, Path: "Task.lastModified", Description: "Search by last modification date", Definition: sp + "Task-modified"},
			{Name: "period", Type: ParamDate, Path: "Task.executionPeriod", Description: "Search by period Task is/was underway", Definition: sp + "Task-period"},
			{Name: "focus", Type: ParamReference, Path: "Task.focus", Description: "Search by task focus", Definition: sp + "Task-focus"},
			{Name: "based-on", Type: ParamReference, Path: "Task.basedOn", Description: "Search by requests this task is based on", Definition: sp + "Task-based-on"},
			{Name: "part-of", Type: ParamReference, Path: "Task.partOf", Targets: []string{"Task"}, Description: "Search by task this task is part of", Definition: sp + "Task-part-of"},
			{Name: "encounter", Type: ParamReference, Path: "Task.encounter", Targets: []string{"Encounter"}, Description: "Search by encounter", Definition: sp + "Task-encounter"},
			{Name: "owner", Type: ParamReference, Path: "Task.owner", Targets: []string{"Practitioner", "Organization", "CareTeam", "HealthcareService", "Patient", "Device", "PractitionerRole", "RelatedPerson"}, Description: "Search by task owner", Definition: sp + "Task-owner"},
			{Name: "requester", Type: ParamReference, Path: "Task.requester", Targets: []string{"Practitioner", "Organization", "Patient", "PractitionerRole", "RelatedPerson", "Device"}, Description: "Search by task requester", Definition: sp + "Task-requester"},
			{Name: "performer", Type: ParamToken, Path: "Task.performerType", Description: "Search by recommended type of performer (e.g., Requester, Performer, Scheduler)", Definition: sp + "Task-performer"},
			{Name: "priority", Type: ParamToken, Path: "Task.priority", Description: "Search by task priority", Definition: sp + "Task-priority"},
			{Name: "intent", Type: ParamToken, Path: "Task.intent", Description: "Search by task intent", Definition: sp + "Task-intent"},
			{Name: "group-identifier", Type: ParamToken, Path: "Task.groupIdentifier", Description: "Search by group identifier", Definition: sp + "Task-group-identifier"},
		},
		Sorts:    []string{"authored-on", "modified", "period", "status", "priority"},
		Includes: []string{"patient", "subject", "focus", "based-on", "owner", "part-of", "encounter", "requester"},
	}
}
