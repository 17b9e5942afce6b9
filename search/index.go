package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/printable"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Tags and codes the search writes.
const (
	// TagSystem and TagRemote mark an ImagingStudy that describes a study
	// held elsewhere (meta.tag).
	TagSystem = "urn:priorflow:tag"
	TagRemote = "remote"
	// TaskSystem and TaskReviewIdentity code a review Task.
	TaskSystem         = "urn:priorflow:task"
	TaskReviewIdentity = "review-identity"
	// ReviewSystem identifies a review Task per job and source.
	ReviewSystem = "urn:priorflow:review"
	// SourceSystem identifies a remote source's Endpoint.
	SourceSystem = "urn:priorflow:source"
)

// EndpointID is the id of the Endpoint of a remote source.
func EndpointID(source string) string {
	return "priorflow-source-" + nonID.ReplaceAllString(source, "-")
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9.-]`)

// errUnindexable marks a study whose description by its source is no
// valid ImagingStudy.
var errUnindexable = errors.New("the source's description of the study is not a valid ImagingStudy")

// index writes the found studies as ImagingStudy resources of the job's
// patient, in one transaction. A study already indexed locally is left as
// it is; one indexed for another patient is never touched nor retrieved.
// Without a local patient nothing is indexed.
func (s *Searcher) index(ctx context.Context, id *identity, found []RemoteStudy, srcs []*source, res *Result) error {
	if id.ref == "" || len(found) == 0 {
		return nil
	}
	// In StudyInstanceUID order, the order in which the archive takes the
	// same identifier locks for a request of several studies: the two then
	// cannot deadlock.
	found = slices.SortedFunc(slices.Values(found), func(a, b RemoteStudy) int {
		return strings.Compare(a.StudyInstanceUID, b.StudyInstanceUID)
	})
	kinds := map[string]Kind{}
	for _, src := range srcs {
		kinds[src.info.Name] = src.info.Kind
	}
	bases := map[string]string{}
	err := s.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		for _, st := range found {
			ep, ok := bases[st.Source]
			if !ok {
				var err error
				if ep, err = s.ensureEndpoint(ctx, tx, st.Source, kinds[st.Source], st.RetrieveBase); err != nil {
					return err
				}
				bases[st.Source] = ep
			}
			isID, reason, err := s.indexStudy(ctx, tx, id.ref, ep, st)
			if errors.Is(err, errUnindexable) {
				// The other studies are indexed, and this one is
				// retrieved all the same: the archive indexes it from
				// its own DICOM when it arrives.
				s.log.WarnContext(ctx, "remote study not indexed", "source", st.Source, "err", err)
				continue
			}
			if err != nil {
				return fmt.Errorf("index %s: %w", st.StudyInstanceUID, err)
			}
			res.Indexed[st.StudyInstanceUID] = isID
			if reason != "" {
				res.Skipped = append(res.Skipped, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: st.Source, Reason: reason})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// DIMSE has no code in R4's endpoint-connection-type; IHE's Shared
// Management of Radiation Treatments profile defines one for it, which a
// client that knows only R4's codes reads by its display.
const (
	SystemDIMSEEndpoint = "https://profiles.ihe.net/RO/SMRT/CodeSystem/dicom-endpoint-connection-type"
	codeDIMSE           = "dicom-dimse"
)

func (s *Searcher) ensureEndpoint(ctx context.Context, tx *postgres.Tx, name string, kind Kind, address string) (string, error) {
	id := EndpointID(name)
	cur, err := tx.Read(ctx, "Endpoint", id)
	if err == nil && strings.Contains(string(cur.Body), `"address":"`+address+`"`) {
		return id, nil
	}
	if err != nil && !fhir.IsKind(err, fhir.KindNotFound) && !fhir.IsKind(err, fhir.KindGone) {
		return "", fmt.Errorf("endpoint %s: %w", name, err)
	}
	ep := map[string]any{
		"resourceType":    "Endpoint",
		"id":              id,
		"identifier":      []any{map[string]any{"system": SourceSystem, "value": name}},
		"status":          "active",
		"name":            "Remote source " + name + " (DICOMweb)",
		"connectionType":  map[string]any{"system": archive.SystemEndpoint, "code": "dicom-wado-rs"},
		"payloadType":     []any{map[string]any{"text": "DICOM"}},
		"payloadMimeType": []any{"application/dicom"},
		"address":         address,
	}
	if kind == KindDIMSE {
		ep["name"] = "Remote source " + name + " (DICOM DIMSE)"
		ep["connectionType"] = map[string]any{"system": SystemDIMSEEndpoint, "code": codeDIMSE, "display": "DICOM DIMSE"}
	}
	msg, err := s.parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %s: %w", name, err)
	}
	if _, _, err := tx.Put(ctx, msg, 0); err != nil {
		return "", fmt.Errorf("endpoint %s: %w", name, err)
	}
	return id, nil
}

func (s *Searcher) parse(v map[string]any) (protoMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	msg, _, err := s.cfg.Store.Codec().Parse(b)
	return msg, err
}

// indexStudy creates or refreshes the remote ImagingStudy of st. It
// returns the ImagingStudy id ("" when none may describe it for this
// patient) and a skip reason when the study must not be retrieved.
func (s *Searcher) indexStudy(ctx context.Context, tx *postgres.Tx, patientRef, endpoint string, st RemoteStudy) (string, SkipReason, error) {
	tok := archive.StudyIdentifier(st.StudyInstanceUID)
	// The archive's conditional-create lock key: the archive and the
	// search never both create an ImagingStudy for one study.
	if err := tx.Lock(ctx, "ImagingStudy?"+url.Values{"identifier": {tok.System + "|" + tok.Code}}.Encode()); err != nil {
		return "", "", err
	}
	rt := s.cfg.Store.Registry().Type("ImagingStudy")
	found, err := tx.Search(ctx, &search.Query{Type: rt, Count: 2, Clauses: []search.Clause{{
		Param: rt.Param("identifier"), Values: []search.Value{{Token: tok, SystemSet: true}}}}})
	if err != nil {
		return "", "", err
	}
	is := map[string]any{}
	switch len(found.Matches) {
	case 0:
	case 1:
		if err := json.Unmarshal(found.Matches[0].Body, &is); err != nil {
			return "", "", err
		}
		subj, _ := is["subject"].(map[string]any)
		if ref, _ := subj["reference"].(string); ref != patientRef {
			s.log.WarnContext(ctx, "remote study is indexed for another patient", "imagingStudy", found.Matches[0].ID)
			return "", SkipOtherPatient, nil
		}
		if !isRemote(is) {
			return found.Matches[0].ID, "", nil // local: never overwritten
		}
		if n, _ := is["numberOfInstances"].(float64); int(n) >= st.NumberOfInstances && sameEndpoint(is, endpoint) {
			return found.Matches[0].ID, "", nil
		}
	default:
		return "", SkipAmbiguousUID, nil
	}
	is["resourceType"] = "ImagingStudy"
	is["meta"] = map[string]any{"tag": []any{map[string]any{"system": TagSystem, "code": TagRemote, "display": "held by a remote source"}}}
	ids := []any{map[string]any{"use": "official", "system": archive.SystemDICOMUID, "value": tok.Code}}
	is["identifier"] = ids
	is["status"] = "available"
	is["subject"] = map[string]any{"reference": patientRef}
	is["endpoint"] = []any{map[string]any{"reference": "Endpoint/" + endpoint}}
	set := func(k string, v any, ok bool) {
		if ok {
			is[k] = v
		} else {
			delete(is, k)
		}
	}
	set("started", st.Date.Format(time.RFC3339), !st.Date.IsZero())
	// What a source says of a study is written into FHIR text; a control
	// character in a remote description made the whole job's index fail.
	set("description", printable.Replace(st.Description), st.Description != "")
	set("numberOfSeries", st.NumberOfSeries, st.NumberOfSeries > 0)
	set("numberOfInstances", st.NumberOfInstances, st.NumberOfInstances > 0)
	var mods []any
	for _, m := range st.ModalitiesInStudy {
		mods = append(mods, map[string]any{"system": archive.SystemDCM, "code": printable.Replace(m)})
	}
	set("modality", mods, len(mods) > 0)
	var series []any
	for _, se := range st.Series { // their UIDs are valid (validUIDs)
		mod := se.Modality
		if mod == "" {
			mod = "OT"
		}
		x := map[string]any{"uid": se.SeriesInstanceUID, "modality": map[string]any{"system": archive.SystemDCM, "code": printable.Replace(mod)}}
		if se.NumberOfInstances > 0 {
			x["numberOfInstances"] = se.NumberOfInstances
		}
		if se.Description != "" {
			x["description"] = printable.Replace(se.Description)
		}
		series = append(series, x)
	}
	set("series", series, len(series) > 0)
	msg, err := s.parse(is)
	if err != nil {
		// What is still not a valid ImagingStudy (a modality code with
		// spaces around it, say) is this study's problem alone.
		return "", "", fmt.Errorf("%w: %w", errUnindexable, err)
	}
	if len(found.Matches) == 0 {
		r, err := tx.Create(ctx, msg)
		if err != nil {
			return "", "", err
		}
		return r.ID, "", nil
	}
	r, _, err := tx.Put(ctx, msg, 0)
	if err != nil {
		return "", "", err
	}
	return r.ID, "", nil
}

func isRemote(is map[string]any) bool {
	meta, _ := is["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		m, _ := t.(map[string]any)
		if m["system"] == TagSystem && m["code"] == TagRemote {
			return true
		}
	}
	return false
}

func sameEndpoint(is map[string]any, endpoint string) bool {
	eps, _ := is["endpoint"].([]any)
	for _, e := range eps {
		m, _ := e.(map[string]any)
		if m["reference"] == "Endpoint/"+endpoint {
			return true
		}
	}
	return false
}

// compare looks the study up in the local archive: fully present (at
// least as many instances as the source reports), partly present (the
// series with fewer instances here are missing), or absent.
func (s *Searcher) compare(ctx context.Context, st RemoteStudy) (sel Selected, present bool, err error) {
	sel.Study = st
	perSeries := map[string]int{}
	total := 0
	for offset := 0; ; offset += archive.MaxSearchResults {
		rows, more, err := s.cfg.Local.SearchInstances(ctx, archive.Query{StudyInstanceUID: []string{st.StudyInstanceUID},
			Limit: archive.MaxSearchResults, Offset: offset})
		if err != nil {
			return sel, false, fmt.Errorf("local index %s: %w", st.StudyInstanceUID, err)
		}
		for _, r := range rows {
			perSeries[r.Series.SeriesInstanceUID]++
			sel.HaveInstances = append(sel.HaveInstances, r.SOPInstanceUID)
			total++
		}
		if !more {
			break
		}
	}
	if total == 0 {
		return sel, false, nil
	}
	if st.NumberOfInstances > 0 && total >= st.NumberOfInstances {
		return sel, true, nil
	}
	sel.Partial = true
	for _, se := range st.Series {
		if perSeries[se.SeriesInstanceUID] < se.NumberOfInstances || se.NumberOfInstances == 0 && perSeries[se.SeriesInstanceUID] == 0 {
			sel.MissingSeries = append(sel.MissingSeries, se.SeriesInstanceUID)
		}
	}
	return sel, false, nil
}

// review creates a review-identity Task for each source whose demographic
// search did not find exactly one patient, naming the candidates. One Task
// per job and source: a retried job finds its Task again.
func (s *Searcher) review(ctx context.Context, job Job, id *identity, outs []sourceResult, res *Result) error {
	reg := s.cfg.Store.Registry()
	for _, o := range outs {
		if o.outcome.Status != StatusReview {
			continue
		}
		if reg.Type("Task") == nil {
			s.log.WarnContext(ctx, "identity review needed but Task is not registered", "source", o.outcome.Source, "job", job.ID)
			continue
		}
		key := job.ID + "/" + o.outcome.Source
		rt := reg.Type("Task")
		var taskID string
		err := s.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
			tok := fhir.Token{System: ReviewSystem, Code: key}
			if err := tx.Lock(ctx, "Task?identifier="+url.QueryEscape(ReviewSystem+"|"+key)); err != nil {
				return err
			}
			found, err := tx.Search(ctx, &search.Query{Type: rt, Count: 1, Clauses: []search.Clause{{
				Param: rt.Param("identifier"), Values: []search.Value{{Token: tok, SystemSet: true}}}}})
			if err != nil {
				return err
			}
			if len(found.Matches) > 0 {
				taskID = found.Matches[0].ID
				return nil
			}
			var inputs []any
			var names []string
			for _, c := range o.candidates {
				desc := printable.Replace(fmt.Sprintf("%s|%s %s^%s born %s sex %s", c.Issuer, c.ID, c.Family, strings.Join(c.Given, " "), c.BirthDate, c.Sex))
				names = append(names, desc)
				inputs = append(inputs, map[string]any{
					"type":        map[string]any{"coding": []any{map[string]any{"system": TaskSystem, "code": "candidate"}}, "text": "candidate patient"},
					"valueString": desc,
				})
			}
			t := map[string]any{
				"resourceType": "Task",
				"identifier":   []any{map[string]any{"system": ReviewSystem, "value": key}},
				"status":       "requested",
				"intent":       "order",
				"priority":     "routine",
				"code":         map[string]any{"coding": []any{map[string]any{"system": TaskSystem, "code": TaskReviewIdentity, "display": "Review patient identity at a remote source"}}},
				"description": fmt.Sprintf("Source %s: %d candidate patients for rule %s; nothing was imported. Candidates: %s",
					o.outcome.Source, len(o.candidates), job.Rule, strings.Join(names, "; ")),
				"authoredOn": s.now().UTC().Format(time.RFC3339),
				"input":      inputs,
			}
			if id.ref != "" {
				t["for"] = map[string]any{"reference": id.ref}
			}
			if len(inputs) == 0 {
				delete(t, "input")
			}
			msg, err := s.parse(t)
			if err != nil {
				return err
			}
			r, err := tx.Create(ctx, msg)
			if err != nil {
				return err
			}
			taskID = r.ID
			return nil
		})
		if err != nil {
			return fmt.Errorf("review task for %s: %w", o.outcome.Source, err)
		}
		res.ReviewTasks = append(res.ReviewTasks, taskID)
	}
	return nil
}

// AuditEvent codes (IHE BALP, DICOM PS3.15 A.5, FHIR R4 audit-event-outcome).
const (
	dcm             = "http://dicom.nema.org/resources/ontology/DCM"
	auditOutcomeOK  = "0"
	auditOutcomeBad = "8" // serious failure
)

// audit records every remote query as an AuditEvent (IHE BALP Query
// pattern: type DCM 110112 Query, action E, the patient and the query as
// entities, the source as the agent queried). Without AuditEvent in the
// registry the records go to the log.
func (s *Searcher) audit(ctx context.Context, job Job, id *identity, outs []SourceOutcome) error {
	reg := s.cfg.Store.Registry()
	if reg.Type("AuditEvent") == nil {
		for _, o := range outs {
			s.log.InfoContext(ctx, "remote query", "job", job.ID, "rule", job.Rule, "source", o.Source, "status", o.Status, "studies", o.Studies)
		}
		return nil
	}
	now := s.now().UTC().Format(time.RFC3339Nano)
	return s.cfg.Store.InTx(ctx, func(tx *postgres.Tx) error {
		for _, o := range outs {
			if o.Status == StatusSkipped {
				continue // nothing was asked
			}
			outcome, desc := auditOutcomeOK, string(o.Status)
			if o.Status == StatusFailed || o.Status == StatusCircuitOpen {
				outcome = auditOutcomeBad
				if o.Err != nil {
					// A source's error may quote what it answered.
					desc += ": " + printable.Replace(o.Err.Error())
				}
			}
			patient := map[string]any{
				"type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
				"role": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
			}
			if id.ref != "" {
				patient["what"] = map[string]any{"reference": id.ref}
			} else if len(job.Patient) > 0 {
				p := job.Patient[0]
				patient["what"] = map[string]any{"identifier": map[string]any{"system": firstNonEmpty(p.System, p.Authority), "value": p.Value}}
			}
			ev := map[string]any{
				"resourceType": "AuditEvent",
				"type":         map[string]any{"system": dcm, "code": "110112", "display": "Query"},
				"subtype":      []any{map[string]any{"system": "urn:priorflow:audit", "code": "network-search", "display": "Network search of a remote source"}},
				"action":       "E",
				"recorded":     now,
				"outcome":      outcome,
				"outcomeDesc":  desc,
				"agent": []any{
					map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110153", "display": "Source Role ID"}}},
						"who": map[string]any{"display": "Priorflow network search"}, "requestor": true},
					map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": dcm, "code": "110152", "display": "Destination Role ID"}}},
						"who": map[string]any{"identifier": map[string]any{"system": SourceSystem, "value": o.Source}, "display": o.Source}, "requestor": false},
				},
				"source": map[string]any{"observer": map[string]any{"display": "Priorflow"},
					"type": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}}},
				"entity": []any{patient, map[string]any{
					"type":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
					"role":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
					"detail": details("rule", job.Rule, "job", job.ID, "source", o.Source, "results", strconv.Itoa(o.Studies), "accepted", strconv.Itoa(o.Accepted)),
				}},
			}
			msg, err := s.parse(ev)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if _, err := tx.Create(ctx, msg); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		}
		return nil
	})
}

func details(kv ...string) []any {
	var out []any
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, map[string]any{"type": kv[i], "valueString": kv[i+1]})
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

type protoMessage = interface{ ProtoReflect() protoreflect.Message }
