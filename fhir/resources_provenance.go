package fhir

// Provenance returns the Provenance type with the R4 search parameters
// Priorflow records and searches by (http://hl7.org/fhir/R4/provenance.html#search).
// The prefetcher writes one Provenance per study it imports: the
// ImagingStudy as target, the remote source as the agent, and the prefetch
// rule and triggering care event as entities.
func Provenance() *ResourceType {
	return &ResourceType{
		Name: "Provenance",
		Params: []*SearchParam{
			{Name: "target", Type: ParamReference, Path: "Provenance.target", Description: "Target Reference(s) (usually version specific)", Definition: sp + "Provenance-target"},
			{Name: "patient", Type: ParamReference, Path: "Provenance.target", Targets: []string{"Patient"}, Description: "Target Reference(s) (usually version specific)", Definition: sp + "Provenance-patient"},
			{Name: "recorded", Type: ParamDate, Path: "Provenance.recorded", Description: "When the activity was recorded / updated", Definition: sp + "Provenance-recorded"},
			{Name: "agent", Type: ParamReference, Path: "Provenance.agent.who", Description: "Who participated", Definition: sp + "Provenance-agent"},
			{Name: "entity", Type: ParamReference, Path: "Provenance.entity.what", Description: "Identity of entity", Definition: sp + "Provenance-entity"},
		},
		Sorts:    []string{"recorded"},
		Includes: []string{"target", "patient", "agent", "entity"},
	}
}
