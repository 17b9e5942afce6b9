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
		ia := []code{{"read"}, {"vread"}, {"search-type"}, {"history-instance"}, {"history-type"}}
		if !t.ReadOnly {
			ia = append(ia, code{"create"}, code{"update"}, code{"delete"})
		}
		rs := resource{Type: t.Name, Interaction: ia, Versioning: "versioned", ReadHistory: true,
			UpdateCreate: !t.ReadOnly, ConditionalCreate: !t.ReadOnly, ConditionalRead: "not-supported",
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
	}
	rest := map[string]any{
		"mode":        "server",
		"resource":    resources,
		"interaction": []code{{"transaction"}, {"batch"}},
	}
	if h.cfg.Auth {
		rest["security"] = h.security()
	}
	cs["rest"] = []any{rest}
	writeJSON(w, http.StatusOK, mustJSON(cs))
}

// security describes the SMART on FHIR protection of the API (FHIR R4
// CapabilityStatement.rest.security; SMART App Launch 1.0.0 "Declaring
// support for OAuth2 endpoints"). cors is false: this handler adds no CORS
// headers, so browser apps on other origins cannot call it directly.
func (h *Handler) security() map[string]any {
	sec := map[string]any{
		"cors": false,
		"service": []any{map[string]any{
			"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
				"code":   "SMART-on-FHIR",
			}},
			"text": "OAuth2 bearer tokens with SMART on FHIR scopes",
		}},
		"description": "Every interaction but the CapabilityStatement needs an access token whose SMART scopes (v1 or v2) grant it; patient/ scopes and scopes with a search restriction narrow what reads reach, and writes need a system/ or user/ scope.",
	}
	if h.cfg.TokenURL != "" {
		sec["extension"] = []any{map[string]any{
			"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": []any{map[string]any{
				"url":      "token",
				"valueUri": h.cfg.TokenURL,
			}},
		}}
	}
	return sec
}
