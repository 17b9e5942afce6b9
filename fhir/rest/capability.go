package rest

import (
	"net/http"
	"time"
)

// metadata serves the CapabilityStatement (FHIR R4 3.1.0.13), generated from
// the registry so that it claims exactly the types, interactions and
// parameters that are implemented.
func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	type param struct {
		Name          string `json:"name"`
		Definition    string `json:"definition,omitempty"`
		Type          string `json:"type"`
		Documentation string `json:"documentation,omitempty"`
	}
	type code struct {
		Code string `json:"code"`
	}
	type resource struct {
		Type              string   `json:"type"`
		Interaction       []code   `json:"interaction"`
		Versioning        string   `json:"versioning"`
		ReadHistory       bool     `json:"readHistory"`
		UpdateCreate      bool     `json:"updateCreate"`
		ConditionalCreate bool     `json:"conditionalCreate"`
		ConditionalRead   string   `json:"conditionalRead"`
		ConditionalUpdate bool     `json:"conditionalUpdate"`
		ConditionalDelete string   `json:"conditionalDelete"`
		SearchInclude     []string `json:"searchInclude,omitempty"`
		SearchRevInclude  []string `json:"searchRevInclude,omitempty"`
		SearchParam       []param  `json:"searchParam"`
	}
	var resources []resource
	for _, t := range h.reg.Types() {
		ia := []code{{"read"}, {"vread"}, {"search-type"}, {"history-instance"}, {"history-type"}, {"create"}}
		if !t.ReadOnly {
			ia = append(ia, code{"update"}, code{"delete"})
		}
		rs := resource{Type: t.Name, Interaction: ia, Versioning: "versioned", ReadHistory: true,
			UpdateCreate: !t.ReadOnly, ConditionalCreate: true, ConditionalRead: "not-supported",
			ConditionalUpdate: !t.ReadOnly, ConditionalDelete: "not-supported"}
		for _, inc := range t.Includes {
			rs.SearchInclude = append(rs.SearchInclude, t.Name+":"+inc)
		}
		rs.SearchRevInclude = h.reg.RevIncludes(t.Name)
		for _, name := range []string{"_id", "_lastUpdated"} {
			p := t.Param(name)
			rs.SearchParam = append(rs.SearchParam, param{Name: p.Name, Definition: p.Definition, Type: string(p.Type), Documentation: p.Description})
		}
		for _, p := range t.Params {
			rs.SearchParam = append(rs.SearchParam, param{Name: p.Name, Definition: p.Definition, Type: string(p.Type), Documentation: p.Description})
		}
		resources = append(resources, rs)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         h.start.UTC().Format(time.RFC3339),
		"kind":         "instance",
		"software":     map[string]any{"name": h.cfg.Software, "version": h.cfg.Version},
		"implementation": map[string]any{
			"description": "Priorflow FHIR server: ImagingStudy and the resources around it",
			"url":         h.cfg.BaseURL,
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []any{map[string]any{
			"mode":        "server",
			"resource":    resources,
			"interaction": []code{{"transaction"}, {"batch"}},
		}},
	}
	writeJSON(w, http.StatusOK, mustJSON(cs))
}
