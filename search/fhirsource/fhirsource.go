// Package fhirsource is a search.Source over a FHIR R4 server (kind fhir)
// or a peer Priorflow node's FHIR API (kind priorflow): the patient is
// found with Patient?identifier= (or by family name and birth date), then
// their studies with ImagingStudy?patient=…&started=ge…&_include=
// ImagingStudy:endpoint, following the Bundle's next links (FHIR R4
// 3.1.1.5.7). The included Endpoint gives each study's WADO-RS base.
package fhirsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/search"
)

// Limits of one search.
const (
	maxPatients = 10
	maxPages    = 50
	pageSize    = 100
)

// Source is a FHIR server.
type Source struct {
	info search.SourceInfo
	http *http.Client
}

// New returns a source for the FHIR base info.URL.
func New(info search.SourceInfo, client *http.Client) (*Source, error) {
	if info.Name == "" || info.URL == "" || client == nil {
		return nil, errors.New("fhir source: name, URL and HTTP client are required")
	}
	info.URL = strings.TrimSuffix(info.URL, "/")
	return &Source{info: info, http: client}, nil
}

// Describe implements search.Source.
func (s *Source) Describe() search.SourceInfo { return s.info }

var oidRE = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// System is the identifier system of an issuer at a FHIR source: the
// issuer itself when it is a URI, urn:oid: for an OID, else Priorflow's
// urn:priorflow:issuer: form (as archive.PatientSystem maps it).
func System(issuer string) string {
	switch {
	case strings.Contains(issuer, "://") || strings.HasPrefix(issuer, "urn:"):
		return issuer
	case oidRE.MatchString(issuer):
		return "urn:oid:" + issuer
	}
	return "urn:priorflow:issuer:" + url.PathEscape(issuer)
}

type bundle struct {
	ResourceType string `json:"resourceType"`
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		Resource json.RawMessage
		Search   struct{ Mode string }
	}
}

type patient struct {
	ID         string
	Identifier []struct{ System, Value string }
	Name       []fhir.PatientName
	BirthDate  string
	Gender     string
}

type coding struct{ System, Code, Display string }

type imagingStudy struct {
	ResourceType string
	ID           string
	Identifier   []struct{ System, Value string }
	Started      string
	Modality     []coding
	Description  string
	Endpoint     []struct{ Reference string }
	NumberOfSer  int `json:"numberOfSeries"`
	NumberOfIns  int `json:"numberOfInstances"`
	Series       []struct {
		UID               string
		Modality          coding
		BodySite          coding
		Description       string
		NumberOfInstances int
	}
	// Address, for included Endpoints.
	Address string
}

// FindStudies implements search.Source.
func (s *Source) FindStudies(ctx context.Context, q search.PatientQuery) ([]search.RemoteStudy, error) {
	v := url.Values{"_count": {fmt.Sprint(maxPatients)}}
	switch {
	case q.PatientID != "":
		v.Set("identifier", System(q.Issuer)+"|"+q.PatientID)
	case q.Demographics != nil && q.Demographics.Family != "":
		v.Set("family", q.Demographics.Family)
		if q.Demographics.BirthDate != "" {
			v.Set("birthdate", q.Demographics.BirthDate)
		}
	default:
		return nil, fmt.Errorf("fhir %s: %w: no patient identifier or family name", s.info.Name, search.ErrRejected)
	}
	var pats []patient
	err := s.pages(ctx, s.info.URL+"/Patient?"+v.Encode(), 1, func(raw json.RawMessage, _ string) error {
		var p patient
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		pats = append(pats, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []search.RemoteStudy
	for _, p := range pats {
		id := s.identity(p, q)
		sv := url.Values{"patient": {"Patient/" + p.ID}, "_include": {"ImagingStudy:endpoint"}, "_count": {fmt.Sprint(pageSize)}}
		if !q.Since.IsZero() {
			sv.Set("started", "ge"+q.Since.Format("2006-01-02"))
		}
		var studies []imagingStudy
		endpoints := map[string]string{}
		err := s.pages(ctx, s.info.URL+"/ImagingStudy?"+sv.Encode(), maxPages, func(raw json.RawMessage, mode string) error {
			var r imagingStudy
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			switch r.ResourceType {
			case "Endpoint":
				endpoints["Endpoint/"+r.ID] = r.Address
			case "ImagingStudy":
				studies = append(studies, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, r := range studies {
			if st, ok := s.study(r, id, endpoints); ok {
				out = append(out, st)
			}
		}
	}
	return out, nil
}

// identity is the patient as the source reports them: the identifier in
// the source's issuer domain (the one asked for), else the first one.
func (s *Source) identity(p patient, q search.PatientQuery) search.PatientIdentity {
	id := search.PatientIdentity{BirthDate: p.BirthDate, Sex: p.Gender, Ref: "Patient/" + p.ID}
	sys := System(s.info.Issuer)
	for _, x := range p.Identifier {
		if s.info.Issuer != "" && x.System == sys {
			id.ID, id.Issuer = x.Value, s.info.Issuer
			break
		}
	}
	if id.ID == "" && len(p.Identifier) > 0 {
		id.ID, id.Issuer = p.Identifier[0].Value, p.Identifier[0].System
	}
	// The name compared with the local patient's, picked as the local
	// side picks its own (search's identity): a name in ideographs or kana,
	// which JP Core lists first, would never match. Else the first.
	if n, ok := fhir.ComparedName(p.Name); ok {
		id.Family, id.Given = n.Family, n.Given
	} else if len(p.Name) > 0 {
		id.Family, id.Given = p.Name[0].Family, p.Name[0].Given
	}
	return id
}

func (s *Source) study(r imagingStudy, p search.PatientIdentity, endpoints map[string]string) (search.RemoteStudy, bool) {
	st := search.RemoteStudy{Patient: p, Description: r.Description, NumberOfSeries: r.NumberOfSer, NumberOfInstances: r.NumberOfIns, Source: s.info.Name}
	for _, x := range r.Identifier {
		if x.System == "urn:dicom:uid" {
			st.StudyInstanceUID = strings.TrimPrefix(x.Value, "urn:oid:")
		}
	}
	if st.StudyInstanceUID == "" {
		return st, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, r.Started); err == nil {
			st.Date = t
			break
		}
	}
	for _, m := range r.Modality {
		st.ModalitiesInStudy = append(st.ModalitiesInStudy, m.Code)
	}
	for _, se := range r.Series {
		part := se.BodySite.Display
		if part == "" {
			part = se.BodySite.Code
		}
		st.Series = append(st.Series, search.RemoteSeries{SeriesInstanceUID: se.UID, Modality: se.Modality.Code,
			BodyPartExamined: part, Description: se.Description, NumberOfInstances: se.NumberOfInstances})
		if part != "" {
			st.BodyParts = append(st.BodyParts, part)
		}
	}
	for _, e := range r.Endpoint {
		if a := endpoints[e.Reference]; a != "" {
			st.RetrieveBase = a
			break
		}
	}
	return st, true
}

// pages reads a searchset and its next pages, calling fn for every entry.
// Next links must stay on the source's base.
func (s *Source) pages(ctx context.Context, u string, max int, fn func(json.RawMessage, string) error) error {
	for page := 0; u != ""; page++ {
		if page == max {
			return fmt.Errorf("fhir %s: %w: more than %d pages", s.info.Name, search.ErrBadResponse, max)
		}
		body, err := search.Get(ctx, s.http, u, "application/fhir+json")
		if err != nil {
			return fmt.Errorf("fhir %s: %w", s.info.Name, err)
		}
		var b bundle
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
			return fmt.Errorf("fhir %s: %w: not a Bundle", s.info.Name, search.ErrBadResponse)
		}
		for _, e := range b.Entry {
			if err := fn(e.Resource, e.Search.Mode); err != nil {
				return fmt.Errorf("fhir %s: %w: %v", s.info.Name, search.ErrBadResponse, err)
			}
		}
		u = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				if !strings.HasPrefix(l.URL, s.info.URL+"/") {
					return fmt.Errorf("fhir %s: %w: next link leaves the source's base", s.info.Name, search.ErrBadResponse)
				}
				u = l.URL
			}
		}
	}
	return nil
}
