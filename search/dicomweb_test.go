package search_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/orthanctest"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dicomweb"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

// remote is an Orthanc loaded with studies of several patients, identity
// traps included.
type remote struct {
	url     string
	studies map[string]*dicomtest.Study
}

var (
	jane      = person{"B100", "HOSP-B", "DOE^JANE", "19800101", "F"}
	janeC     = person{"B100", "HOSP-C", "DOE^JANE", "19800101", "F"} // same ID, other issuer
	janeOld   = person{"B200", "HOSP-B", "DOE^JANE", "19750505", "F"} // same name, other birth date
	janeWrong = person{"B100", "HOSP-B", "DOE^JANE", "19990909", "F"} // mis-filed: our ID, other birth date
	twinAlex  = person{"B300", "HOSP-B", "TWIN^ALEX", "20000202", "M"}
	twinSam   = person{"B301", "HOSP-B", "TWIN^SAM", "20000202", "M"}
	johnA     = person{"B400", "HOSP-B", "SMITH^JOHN", "19600303", "M"} // duplicate registration
	johnB     = person{"B401", "HOSP-B", "SMITH^JOHN", "19600303", "M"}
)

func startRemote(t *testing.T) *remote {
	t.Helper()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	r := &remote{url: o.URL + "/dicom-web", studies: map[string]*dicomtest.Study{}}
	add := func(key string, st *dicomtest.Study) {
		r.studies[key] = st
		o.UploadStudy(t, st)
	}
	add("ct-chest-2025", study(t, g, jane, day(2025, 6, 1), "CT", "CHEST", dicomtest.WithSeries(2), dicomtest.WithStudyDescription("CT CHEST")))
	add("ct-head-2024", study(t, g, jane, day(2024, 1, 10), "CT", "HEAD"))
	add("ct-chest-2024", study(t, g, jane, day(2024, 3, 1), "CT", "CHEST"))
	add("pt-chest-2023", study(t, g, jane, day(2023, 5, 1), "PT", "CHEST"))
	add("ct-chest-2015", study(t, g, jane, day(2015, 2, 1), "CT", "CHEST"))
	add("sr-2025", study(t, g, jane, day(2025, 1, 5), "SR", ""))
	add("mr-chest-2024", study(t, g, jane, day(2024, 6, 1), "MR", "CHEST"))
	add("trap-issuer", study(t, g, janeC, day(2025, 7, 1), "CT", "CHEST"))
	add("trap-birth", study(t, g, janeOld, day(2025, 7, 2), "CT", "CHEST"))
	add("trap-misfiled", study(t, g, janeWrong, day(2025, 7, 3), "CT", "CHEST"))
	add("twin-alex", study(t, g, twinAlex, day(2025, 2, 1), "CT", "CHEST"))
	add("twin-sam", study(t, g, twinSam, day(2025, 2, 2), "CT", "CHEST"))
	add("john-a", study(t, g, johnA, day(2025, 3, 1), "CT", "CHEST"))
	add("john-b", study(t, g, johnB, day(2025, 3, 2), "CT", "CHEST"))
	return r
}

func dicomwebSource(t testing.TB, name, url string, match search.Match, mode search.Mode) search.Entry {
	t.Helper()
	src, err := dicomweb.New(search.SourceInfo{Name: name, Kind: search.KindDICOMweb, URL: url, Issuer: "HOSP-B", Match: match, Mode: mode},
		&http.Client{Transport: &http.Transport{DisableCompression: true}})
	if err != nil {
		t.Fatal(err)
	}
	return search.Entry{Source: src, Timeout: 10 * time.Second, Retries: 1, Concurrency: 2}
}

func newSearcher(t testing.TB, l *local, entries ...search.Entry) *search.Searcher {
	t.Helper()
	s, err := search.NewSearcher(search.Config{Sources: entries, Store: l.store, Local: l.archive, Logger: dbtest.Logger(),
		InitialBackoff: 10 * time.Millisecond, BreakerFailures: 2, BreakerCooldown: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func localPatient(t testing.TB, l *local, family string, given []string, birth, gender string, ids ...map[string]any) string {
	t.Helper()
	var idl []any
	for _, x := range ids {
		idl = append(idl, x)
	}
	return "Patient/" + l.put(t, map[string]any{"resourceType": "Patient", "identifier": idl,
		"name": []any{map[string]any{"family": family, "given": given}}, "birthDate": birth, "gender": gender})
}

func chestCTCriteria() rules.Criteria {
	since := time.Date(2021, 11, 23, 0, 0, 0, 0, time.UTC)
	return rules.Criteria{Lookback: "5y", Since: &since, MaxPriors: 2, Modalities: rules.ExpandModalities("CT"),
		BodyRegions: []string{rules.RegionChest}, ExcludeModalities: []string{"SR", "KO", "PR"}}
}

func TestSearcher_DICOMweb(t *testing.T) {
	t.Parallel()
	r := startRemote(t)
	ctx := context.Background()

	t.Run("identifier through cross-reference, selection, local compare, indexing", func(t *testing.T) {
		l := newLocal(t)
		ref := localPatient(t, l, "Doe", []string{"Jane"}, "1980-01-01", "female",
			map[string]any{"system": "urn:hosp-a:mrn", "value": "A1"},
			map[string]any{"system": "urn:priorflow:issuer:HOSP-B", "value": "B100"})
		// The 2024 chest CT is here in full, the 2025 one in part.
		l.storeLocal(t, r.studies["ct-chest-2024"].Instances()...)
		l.storeLocal(t, r.studies["ct-chest-2025"].Series[0].Instances...)
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b", r.url, search.MatchIdentifier, search.ModeImport))
		res, err := s.Search(ctx, search.Job{ID: "job-1", Rule: "priors", Criteria: chestCTCriteria(),
			Patient: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: "A1", Authority: "HOSP-A"}}})
		if err != nil {
			t.Fatal(err)
		}
		if o := outcome(res, "hospital-b"); o.Status != search.StatusOK {
			t.Fatalf("source outcome = %+v", o)
		}
		uid := func(k string) string { return r.studies[k].StudyInstanceUID }
		if got := len(res.Retrieve); got != 1 {
			t.Fatalf("retrieve %d studies, want 1: %+v", got, res.Retrieve)
		}
		sel := res.Retrieve[0]
		if sel.Study.StudyInstanceUID != uid("ct-chest-2025") || !sel.Partial {
			t.Errorf("retrieve = %s partial %v, want the 2025 chest CT, partial", sel.Study.StudyInstanceUID, sel.Partial)
		}
		if want := []string{r.studies["ct-chest-2025"].Series[1].SeriesInstanceUID}; !slices.Equal(sel.MissingSeries, want) {
			t.Errorf("missing series = %v, want %v", sel.MissingSeries, want)
		}
		if got, want := len(sel.HaveInstances), 1; got != want {
			t.Errorf("have instances = %d, want %d", got, want)
		}
		for k, want := range map[string]search.SkipReason{
			"ct-chest-2024": search.SkipPresent,
			"ct-head-2024":  search.SkipBodyRegion,
			"pt-chest-2023": search.SkipBeyondMax,
			"sr-2025":       search.SkipExcluded,
			"mr-chest-2024": search.SkipModality,
			"trap-misfiled": search.SkipIdentity,
		} {
			if got := skipReason(res, uid(k)); got != want {
				t.Errorf("%s: skip reason %q, want %q", k, got, want)
			}
		}
		for _, k := range []string{"ct-chest-2015", "trap-issuer", "trap-birth", "twin-alex"} {
			if _, ok := res.Indexed[uid(k)]; ok || skipReason(res, uid(k)) != "" && k != "trap-issuer" {
				t.Errorf("%s: found for Jane (indexed %v, skipped %q)", k, ok, skipReason(res, uid(k)))
			}
		}
		// Remote ImagingStudies: tagged, on Jane, with the source's Endpoint;
		// the local ones keep the local Endpoint.
		remote, localN := 0, 0
		for _, is := range l.resources(t, "ImagingStudy") {
			subj := is["subject"].(map[string]any)["reference"]
			if subj != ref {
				t.Errorf("ImagingStudy %v on %v, want %s", is["id"], subj, ref)
			}
			ep := is["endpoint"].([]any)[0].(map[string]any)["reference"]
			meta := is["meta"].(map[string]any)
			if _, tagged := meta["tag"]; tagged {
				remote++
				if ep != "Endpoint/"+search.EndpointID("hospital-b") || is["status"] != "available" {
					t.Errorf("remote ImagingStudy endpoint %v status %v", ep, is["status"])
				}
			} else {
				localN++
			}
		}
		// Six of Jane's studies are in the lookback; two are (partly) here.
		if remote != 4 || localN != 2 {
			t.Errorf("%d remote and %d local ImagingStudies, want 4 and 2", remote, localN)
		}
		audits := l.resources(t, "AuditEvent")
		if len(audits) != 1 || audits[0]["outcome"] != "0" {
			t.Errorf("audit events = %v, want one successful", audits)
		}
		// A second run is idempotent: no new remote ImagingStudy.
		before := len(l.resources(t, "ImagingStudy"))
		if _, err := s.Search(ctx, search.Job{ID: "job-1", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref}); err != nil {
			t.Fatal(err)
		}
		if after := len(l.resources(t, "ImagingStudy")); after != before {
			t.Errorf("ImagingStudies %d after a second search, want %d", after, before)
		}
	})

	// An ADT^A40 leaves the retired identifier on the surviving Patient
	// with use "old" (triggers/planner's merge): it is still the patient's,
	// and the source is asked by it.
	t.Run("identifier retired by a merge is still a cross-reference", func(t *testing.T) {
		l := newLocal(t)
		localPatient(t, l, "Doe", []string{"Jane"}, "1980-01-01", "female",
			map[string]any{"system": "urn:hosp-a:mrn", "value": "A9"},
			map[string]any{"use": "old", "system": "urn:priorflow:issuer:HOSP-B", "value": "B100"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b", r.url, search.MatchIdentifier, search.ModeImport))
		res, err := s.Search(ctx, search.Job{ID: "job-merge", Rule: "priors", Criteria: chestCTCriteria(),
			Patient: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: "A9", Authority: "HOSP-A"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Indexed[r.studies["ct-chest-2025"].StudyInstanceUID]; !ok {
			t.Errorf("the 2025 chest CT filed under the retired B100 was not found (outcome %+v)", outcome(res, "hospital-b"))
		}
	})

	// A merge in the source's own domain leaves the patient with its
	// current identifier and the retired one (use old) there: the source
	// is asked by each. It was not asked at all ("several identifiers in
	// the source's issuer domain").
	t.Run("a merged patient's identifiers in one domain are each asked", func(t *testing.T) {
		l := newLocal(t)
		localPatient(t, l, "Smith", []string{"John"}, "1960-03-03", "male",
			map[string]any{"system": "urn:priorflow:issuer:HOSP-B", "value": "B400"},
			map[string]any{"use": "old", "system": "urn:priorflow:issuer:HOSP-B", "value": "B401"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b", r.url, search.MatchIdentifier, search.ModeImport))
		since := day(2020, 1, 1)
		res, err := s.Search(ctx, search.Job{ID: "job-merged", Rule: "priors", Criteria: rules.Criteria{Since: &since, MaxPriors: 5},
			Patient: []triggers.Identifier{{System: "urn:priorflow:issuer:HOSP-B", Value: "B400", Authority: "HOSP-B"}}})
		if err != nil {
			t.Fatal(err)
		}
		o := outcome(res, "hospital-b")
		if o.Status != search.StatusOK || o.Attempts != 2 {
			t.Errorf("source outcome %+v, want ok after two queries", o)
		}
		for _, k := range []string{"john-a", "john-b"} {
			if _, ok := res.Indexed[r.studies[k].StudyInstanceUID]; !ok {
				t.Errorf("%s not found for the merged patient", k)
			}
		}
	})

	t.Run("no identifier in the source's domain asks nothing", func(t *testing.T) {
		l := newLocal(t)
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b", r.url, search.MatchIdentifier, search.ModeImport))
		res, err := s.Search(ctx, search.Job{ID: "job-2", Rule: "priors", Criteria: chestCTCriteria(),
			Patient: []triggers.Identifier{{System: "urn:hosp-a:mrn", Value: "A1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if o := outcome(res, "hospital-b"); o.Status != search.StatusSkipped || len(res.Retrieve) != 0 {
			t.Errorf("outcome %+v, retrieve %d", o, len(res.Retrieve))
		}
	})

	t.Run("demographics: twins told apart by given name", func(t *testing.T) {
		l := newLocal(t)
		ref := localPatient(t, l, "Twin", []string{"Alex"}, "2000-02-02", "male", map[string]any{"system": "urn:hosp-a:mrn", "value": "A3"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b-demo", r.url, search.MatchDemographics, search.ModeRemoteView))
		res, err := s.Search(ctx, search.Job{ID: "job-3", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref})
		if err != nil {
			t.Fatal(err)
		}
		o := outcome(res, "hospital-b-demo")
		if o.Status != search.StatusOK || o.Accepted != 1 {
			t.Fatalf("outcome %+v, want one accepted study", o)
		}
		if _, ok := res.Indexed[r.studies["twin-alex"].StudyInstanceUID]; !ok {
			t.Error("Alex's study is not indexed")
		}
		if _, ok := res.Indexed[r.studies["twin-sam"].StudyInstanceUID]; ok {
			t.Error("Sam's study is indexed for Alex")
		}
		if got := skipReason(res, r.studies["twin-alex"].StudyInstanceUID); got != search.SkipRemoteView {
			t.Errorf("remote-view source: skip %q, want %q", got, search.SkipRemoteView)
		}
	})

	// A Patient written in JP Core's way lists the ideographic and phonetic
	// writings of the name first; the remote's DICOM name is compared with
	// the alphabetic one.
	t.Run("demographics: the alphabetic writing of a name in several scripts", func(t *testing.T) {
		l := newLocal(t)
		rep := func(code string) []any {
			return []any{map[string]any{"url": fhir.ENRepresentation, "valueCode": code}}
		}
		ref := "Patient/" + l.put(t, map[string]any{"resourceType": "Patient",
			"identifier": []any{map[string]any{"system": "urn:hosp-a:mrn", "value": "A3"}},
			"name": []any{
				map[string]any{"extension": rep("IDE"), "family": "双子", "given": []any{"亜列"}},
				map[string]any{"extension": rep("SYL"), "family": "ふたご", "given": []any{"あれっくす"}},
				map[string]any{"extension": rep("ABC"), "family": "Twin", "given": []any{"Alex"}},
			},
			"birthDate": "2000-02-02", "gender": "male"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b-demo", r.url, search.MatchDemographics, search.ModeRemoteView))
		res, err := s.Search(ctx, search.Job{ID: "job-3j", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref})
		if err != nil {
			t.Fatal(err)
		}
		if o := outcome(res, "hospital-b-demo"); o.Status != search.StatusOK || o.Accepted != 1 {
			t.Fatalf("outcome %+v, want Alex's study accepted", o)
		}
		if _, ok := res.Indexed[r.studies["twin-alex"].StudyInstanceUID]; !ok {
			t.Error("Alex's study is not indexed")
		}
	})

	t.Run("demographics: two matching patients make a review task and import nothing", func(t *testing.T) {
		l := newLocal(t)
		ref := localPatient(t, l, "Smith", []string{"John"}, "1960-03-03", "male", map[string]any{"system": "urn:hosp-a:mrn", "value": "A4"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b-demo", r.url, search.MatchDemographics, search.ModeImport))
		res, err := s.Search(ctx, search.Job{ID: "job-4", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReviewTasks) != 1 || len(res.Retrieve) != 0 || len(res.Indexed) != 0 {
			t.Fatalf("review %v, retrieve %d, indexed %d; want one task and nothing else", res.ReviewTasks, len(res.Retrieve), len(res.Indexed))
		}
		tasks := l.resources(t, "Task")
		if len(tasks) != 1 {
			t.Fatalf("%d tasks", len(tasks))
		}
		code := tasks[0]["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
		if code != search.TaskReviewIdentity || len(tasks[0]["input"].([]any)) != 2 {
			t.Errorf("task code %v inputs %v", code, tasks[0]["input"])
		}
	})

	// Zero matches: the source knows patients who resemble ours (same
	// family name, birth date and sex) but none is ours. Someone must
	// look; nothing is imported. A source that returns nobody at all is
	// not a review: the patient simply has no studies there.
	t.Run("demographics: resembling patients but none matching make a review task", func(t *testing.T) {
		l := newLocal(t)
		ref := localPatient(t, l, "Twin", []string{"Jordan"}, "2000-02-02", "male", map[string]any{"system": "urn:hosp-a:mrn", "value": "A5"})
		s := newSearcher(t, l, dicomwebSource(t, "hospital-b-demo", r.url, search.MatchDemographics, search.ModeImport))
		res, err := s.Search(ctx, search.Job{ID: "job-5", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref})
		if err != nil {
			t.Fatal(err)
		}
		if o := outcome(res, "hospital-b-demo"); o.Status != search.StatusReview {
			t.Errorf("outcome %+v, want review", o)
		}
		if len(res.ReviewTasks) != 1 || len(res.Retrieve) != 0 || len(res.Indexed) != 0 {
			t.Fatalf("review %v, retrieve %d, indexed %d; want one task and nothing else", res.ReviewTasks, len(res.Retrieve), len(res.Indexed))
		}
		tasks := l.resources(t, "Task")
		if len(tasks) != 1 || len(tasks[0]["input"].([]any)) != 2 {
			t.Fatalf("tasks %v, want one naming both twins as candidates", tasks)
		}

		l2 := newLocal(t)
		ref2 := localPatient(t, l2, "Nobodyhere", []string{"Pat"}, "1970-01-01", "female", map[string]any{"system": "urn:hosp-a:mrn", "value": "A6"})
		s2 := newSearcher(t, l2, dicomwebSource(t, "hospital-b-demo", r.url, search.MatchDemographics, search.ModeImport))
		res2, err := s2.Search(ctx, search.Job{ID: "job-6", Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref2})
		if err != nil {
			t.Fatal(err)
		}
		if len(res2.ReviewTasks) != 0 || len(res2.Retrieve) != 0 || len(l2.resources(t, "Task")) != 0 {
			t.Errorf("a patient unknown at the source: review %v, retrieve %d; want neither", res2.ReviewTasks, len(res2.Retrieve))
		}
	})
}

// What a remote archive says of a study is written into FHIR: a control
// character in one description (Orthanc serves them as it was sent them)
// made the whole job fail at indexing, so that none of the patient's priors,
// from any source, were fetched. The text is now read with U+FFFD in its
// place; padding the standard calls insignificant (a modality " CT", which
// Orthanc keeps) is dropped; a study whose description still makes no
// valid ImagingStudy (a modality "C  T", no FHIR code) is left unindexed,
// retrieved all the same, and the others go on.
func TestSearcher_DICOMweb_ControlCharacters(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	studies := map[string]*dicomtest.Study{
		"soh":   study(t, g, jane, day(2025, 6, 1), "CT", "CHEST", dicomtest.WithStudyDescription("CT\x01CHEST")),
		"stx":   study(t, g, jane, day(2025, 5, 1), "CT", "CHEST", dicomtest.WithStudyDescription("CT CHEST"), dicomtest.WithEdits(dicomtest.Set(tag.SeriesDescription, "AX\x02IAL"))),
		"space": study(t, g, jane, day(2025, 4, 1), " CT", "CHEST", dicomtest.WithStudyDescription("LEADING SPACE")),
		"inner": study(t, g, jane, day(2025, 3, 1), "C  T", "CHEST", dicomtest.WithStudyDescription("INNER SPACES")),
	}
	for _, st := range studies {
		o.UploadStudy(t, st)
	}
	l := newLocal(t)
	ref := localPatient(t, l, "Doe", []string{"Jane"}, "1980-01-01", "female", map[string]any{"system": "urn:priorflow:issuer:HOSP-B", "value": "B100"})
	s := newSearcher(t, l, dicomwebSource(t, "hospital-b", o.URL+"/dicom-web", search.MatchIdentifier, search.ModeImport))
	// Any modality, the chest (which asks for the series): the four are
	// wanted.
	since := day(2020, 1, 1)
	res, err := s.Search(context.Background(), search.Job{ID: "job-cc", Rule: "priors", Criteria: rules.Criteria{Since: &since, MaxPriors: 5, BodyRegions: []string{rules.RegionChest}}, PatientRef: ref})
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	var retrieve, want []string
	for _, sel := range res.Retrieve {
		retrieve = append(retrieve, sel.Study.StudyInstanceUID)
	}
	for _, st := range studies {
		want = append(want, st.StudyInstanceUID)
	}
	slices.Sort(retrieve)
	slices.Sort(want)
	if !slices.Equal(retrieve, want) {
		t.Errorf("retrieve %v, want all four %v", retrieve, want)
	}
	descs := map[string]bool{}
	for _, is := range l.resources(t, "ImagingStudy") {
		d, _ := is["description"].(string)
		descs[d] = true
		if d == "LEADING SPACE" {
			mods, _ := is["modality"].([]any)
			if len(mods) != 1 || mods[0].(map[string]any)["code"] != "CT" {
				t.Errorf("the study sent with modality %q is indexed with %v, want CT", " CT", mods)
			}
		}
		series, _ := is["series"].([]any)
		for _, se := range series {
			if sd, _ := se.(map[string]any)["description"].(string); sd != "" {
				descs[sd] = true
			}
		}
	}
	for _, d := range []string{"CT\uFFFDCHEST", "AX\uFFFDIAL"} {
		if !descs[d] {
			t.Errorf("no remote ImagingStudy says %q; descriptions %v", d, descs)
		}
	}
	if !descs["LEADING SPACE"] {
		t.Errorf("the study with modality %q was not indexed", " CT")
	}
	if descs["INNER SPACES"] {
		t.Errorf("the study with modality %q was indexed", "C  T")
	}
}

// Orthanc 1.10 with DICOMweb 1.7 (Debian 12's) does not percent-decode
// QIDO-RS query values: PatientName=VAN%20DER* or M%C3%9CLLER* and
// PatientID=B%20900 found nothing there, so such patients' priors were
// never found. The values now go as wildcards where they would be escaped,
// and what comes back is still checked exactly: the decoys the broader
// match brings are refused.
func TestSearcher_DICOMweb_ValuesOrthancDoesNotDecode(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	g := dicomtest.NewGenerator(t)
	studies := map[string]*dicomtest.Study{
		"anna":       study(t, g, person{"B800", "HOSP-B", "VAN DER BERG^ANNA", "19700101", "F"}, day(2025, 6, 1), "CT", "CHEST"),
		"anna-decoy": study(t, g, person{"B801", "HOSP-B", "VANADER BERG^ANNA", "19700101", "F"}, day(2025, 6, 2), "CT", "CHEST"),
		"hans":       study(t, g, person{"B810", "HOSP-B", "MÜLLER^HANS", "19600101", "M"}, day(2025, 6, 3), "CT", "CHEST"),
		"hans-decoy": study(t, g, person{"B811", "HOSP-B", "MOELLER^HANS", "19600101", "M"}, day(2025, 6, 4), "CT", "CHEST"),
		"space":      study(t, g, person{"B 900", "HOSP-B", "SPACE^IN ID", "19500101", "M"}, day(2025, 6, 5), "CT", "CHEST"),
		"space-dec":  study(t, g, person{"B-900", "HOSP-B", "SPACE^IN ID", "19500101", "M"}, day(2025, 6, 6), "CT", "CHEST"),
	}
	for _, st := range studies {
		o.UploadStudy(t, st)
	}
	url := o.URL + "/dicom-web"
	for _, tc := range []struct {
		name, family, given, birth, sex string
		ids                             []map[string]any
		match                           search.Match
		want                            string
	}{
		{"family name with spaces", "van der Berg", "Anna", "1970-01-01", "female",
			[]map[string]any{{"system": "urn:hosp-a:mrn", "value": "A800"}}, search.MatchDemographics, "anna"},
		{"family name beyond ASCII", "Müller", "Hans", "1960-01-01", "male",
			[]map[string]any{{"system": "urn:hosp-a:mrn", "value": "A810"}}, search.MatchDemographics, "hans"},
		{"patient ID with a space", "Space", "In Id", "1950-01-01", "male",
			[]map[string]any{{"system": "urn:priorflow:issuer:HOSP-B", "value": "B 900"}}, search.MatchIdentifier, "space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(t)
			ref := localPatient(t, l, tc.family, []string{tc.given}, tc.birth, tc.sex, tc.ids...)
			s := newSearcher(t, l, dicomwebSource(t, "hospital-b", url, tc.match, search.ModeImport))
			res, err := s.Search(context.Background(), search.Job{ID: "job-" + tc.want, Rule: "priors", Criteria: chestCTCriteria(), PatientRef: ref})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, sel := range res.Retrieve {
				got = append(got, sel.Study.StudyInstanceUID)
			}
			if want := []string{studies[tc.want].StudyInstanceUID}; !slices.Equal(got, want) {
				t.Errorf("retrieve %v, want %s's study %v (outcome %+v)", got, tc.want, want, outcome(res, "hospital-b"))
			}
		})
	}
}
