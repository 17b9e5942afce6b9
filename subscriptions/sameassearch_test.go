package subscriptions_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/fhirtest"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/subscriptions"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// testBase is the FHIR base both sides are told they serve.
const testBase = "http://priorflow.test/fhir"

// corpusStudies are ImagingStudy resources whose values sit on the edges
// the two evaluations could read differently: dates at every precision and
// in several zones, codes with and without a system, and references that
// are relative, absolute on this server, and absolute on another one.
var corpusStudies = []string{
	`{"resourceType":"ImagingStudy","id":"year","status":"available","subject":{"reference":"Patient/p1"},"started":"2026",
	  "series":[{"uid":"1.2.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
	`{"resourceType":"ImagingStudy","id":"month","status":"registered","subject":{"reference":"Patient/p1"},"started":"2026-03",
	  "series":[{"uid":"1.2.2","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"MR"}}]}`,
	`{"resourceType":"ImagingStudy","id":"day","status":"available","subject":{"reference":"Patient/p2"},"started":"2026-03-04",
	  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],
	  "series":[{"uid":"1.2.3.1","modality":{"code":"CT"},"bodySite":{"system":"http://snomed.info/sct","code":"51185008"}}]}`,
	`{"resourceType":"ImagingStudy","id":"minute","status":"available","subject":{"reference":"Patient/p2"},"started":"2026-03-04T10:00:00Z",
	  "endpoint":[{"reference":"Endpoint/e1"}],
	  "series":[{"uid":"1.2.4","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
	`{"resourceType":"ImagingStudy","id":"zoned","status":"cancelled","subject":{"reference":"Patient/p1"},"started":"2026-03-31T23:30:00-05:00",
	  "series":[{"uid":"1.2.5","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"US"}}]}`,
	`{"resourceType":"ImagingStudy","id":"fraction","status":"available","subject":{"reference":"Patient/p3"},"started":"2026-03-04T10:00:00.250+02:00",
	  "series":[{"uid":"1.2.6","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"MR"}}]}`,
	`{"resourceType":"ImagingStudy","id":"nodate","status":"available","subject":{"reference":"Patient/p3"},
	  "series":[{"uid":"1.2.7","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CR"}}]}`,
	`{"resourceType":"ImagingStudy","id":"foreign","status":"available","subject":{"reference":"https://other.example/fhir/Patient/p1"},"started":"2026-03-04",
	  "series":[{"uid":"1.2.8","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
	`{"resourceType":"ImagingStudy","id":"ownbase","status":"available","subject":{"reference":"` + testBase + `/Patient/p2"},"started":"2026-03-05",
	  "series":[{"uid":"1.2.9","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
	`{"resourceType":"ImagingStudy","id":"group","status":"available","subject":{"reference":"Group/p1"},"started":"2025-12-31T23:59:59Z",
	  "series":[{"uid":"1.2.10","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
}

// corpusPatients add string parameters and date-only values (birthDate).
var corpusPatients = []string{
	`{"resourceType":"Patient","id":"p1","name":[{"family":"Müller","given":["José"]}],"gender":"male","birthDate":"1970"}`,
	`{"resourceType":"Patient","id":"p2","name":[{"family":"Muller","given":["Ann","Marie"]}],"gender":"female","birthDate":"1970-06"}`,
	`{"resourceType":"Patient","id":"p3","name":[{"family":"O'Neil-Smith","given":["Zoë"]}],"birthDate":"1970-06-15",
	  "identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"12345"},{"value":"NOSYS"}]}`,
}

// sameAsSearch is a database holding the corpus, and a matcher over it.
type sameAsSearch struct {
	store   *postgres.Store
	matcher *subscriptions.Matcher
	reg     *fhir.Registry
	// stored holds the bodies as stored, by type.
	stored map[string][]*fhir.Resource
}

// newSameAsSearch loads the corpus, and the R4 ImagingStudy and Patient
// examples, into a database of its own.
func newSameAsSearch(tb testing.TB) *sameAsSearch {
	tb.Helper()
	var bodies [][]byte
	for _, s := range append(slices.Clone(corpusStudies), corpusPatients...) {
		bodies = append(bodies, []byte(s))
	}
	for _, pattern := range []string{"ImagingStudy-*.json", "Patient-*.json"} {
		for _, name := range fhirtest.Examples(tb, pattern) {
			bodies = append(bodies, fhirtest.Example(tb, name))
		}
	}
	env, err := loadSameAsSearch(dbtest.NewPool(tb), bodies)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func loadSameAsSearch(pool *pgxpool.Pool, bodies [][]byte) (*sameAsSearch, error) {
	ctx := context.Background()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.Subscription())
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	store, err := postgres.New(pool, reg, codec, dbtest.Logger())
	if err != nil {
		return nil, err
	}
	store.SetBaseURL(testBase)
	m, err := subscriptions.NewMatcher(reg, codec, testBase, "ImagingStudy", "Patient")
	if err != nil {
		return nil, err
	}
	env := &sameAsSearch{store: store, matcher: m, reg: reg, stored: map[string][]*fhir.Resource{}}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		for _, b := range bodies {
			msg, _, err := codec.Parse(b)
			if err != nil {
				return fmt.Errorf("corpus: %w", err)
			}
			r, err := tx.CreateAs(ctx, msg, fhir.ID(msg))
			if err != nil {
				return fmt.Errorf("store %s: %w", fhir.ID(msg), err)
			}
			env.stored[r.Type] = append(env.stored[r.Type], r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return env, nil
}

// compare runs each criteria both ways: as a search of the database, and
// as a subscription matched against every stored resource's change event.
// It returns how many were comparable (criteria the matcher refuses by
// design, such as a chain, are not) and fails tb on every difference.
func (e *sameAsSearch) compare(tb testing.TB, typ string, criteria []url.Values) int {
	tb.Helper()
	rt := e.reg.Type(typ)
	var filters []*subscriptions.Filter
	var found []map[string]bool
	for _, vals := range criteria {
		q, err := search.Parse(e.reg, rt, vals, search.Options{BaseURL: testBase, Now: time.Now()})
		if err != nil || !comparable(q) {
			continue
		}
		c := typ + "?" + vals.Encode()
		f, err := e.matcher.Compile(&subscriptions.Subscription{ID: c, Criteria: c})
		if err != nil {
			tb.Errorf("%s: the search takes it, the matcher refuses it: %v", c, err)
			continue
		}
		q.Count = search.MaxCount
		res, err := e.store.Search(context.Background(), q)
		if err != nil {
			tb.Fatalf("%s: search: %v", c, err)
		}
		ids := map[string]bool{}
		for _, r := range res.Matches {
			ids[r.ID] = true
		}
		filters = append(filters, f)
		found = append(found, ids)
	}
	matched := make([]map[string]bool, len(filters))
	for i := range matched {
		matched[i] = map[string]bool{}
	}
	index := map[*subscriptions.Filter]int{}
	for i, f := range filters {
		index[f] = i
	}
	for _, r := range e.stored[typ] {
		ev := &subscriptions.Event{ID: "e", Kind: subscriptions.KindResourceChanged, Focus: typ + "/" + r.ID, FocusType: typ, Method: "PUT", Resource: r.Body}
		for _, f := range e.matcher.Match(ev, filters) {
			matched[index[f]][r.ID] = true
		}
	}
	for i, f := range filters {
		if !maps.Equal(found[i], matched[i]) {
			tb.Errorf("%s:\n  search finds   %v\n  matcher passes %v", f.Sub.Criteria, slices.Sorted(maps.Keys(found[i])), slices.Sorted(maps.Keys(matched[i])))
		}
	}
	return len(filters)
}

// comparable reports whether q is criteria a subscription may hold: no
// chains, no _lastUpdated, and nothing but search parameters.
func comparable(q *search.Query) bool {
	if q.Cursor != nil || len(q.Include) > 0 || len(q.RevInclude) > 0 || len(q.Sort) > 0 || q.Summary != "" || q.Total != "" || len(q.Elements) > 0 || q.Count != search.DefaultCount {
		return false
	}
	for _, c := range q.Clauses {
		if c.Chain != nil || c.Param == fhir.ParamLastUpdated {
			return false
		}
	}
	return true
}

// A subscription's criteria are a search (FHIR R4 subscription.html: "the
// criteria are the same as a search"), evaluated in memory on each change;
// the two must agree, or an app is told of a study its own search does not
// find, or never told of one it does. Every search parameter of the
// subscribable types is tried with values drawn from the corpus, with each
// modifier and, for dates, each prefix at several precisions.
func TestMatcher_SameAsSearch(t *testing.T) {
	env := newSameAsSearch(t)
	compared := 0
	for _, typ := range []string{"ImagingStudy", "Patient"} {
		compared += env.compare(t, typ, criteriaFor(env, typ))
	}
	if compared < 500 {
		t.Fatalf("only %d criteria compared; the generator lost its values", compared)
	}
	t.Logf("%d criteria compared", compared)
}

// criteriaFor derives criteria from the values the corpus's resources of
// typ hold: each alone, and ORs and ANDs of pairs of them.
func criteriaFor(env *sameAsSearch, typ string) []url.Values {
	rt := env.reg.Type(typ)
	codec, _ := fhir.NewCodec()
	var single []url.Values
	seen := map[string]bool{}
	add := func(vals url.Values) {
		if k := vals.Encode(); !seen[k] {
			seen[k] = true
			single = append(single, vals)
		}
	}
	for _, p := range append([]*fhir.SearchParam{fhir.ParamID}, rt.Params...) {
		add(url.Values{p.Name + ":missing": {"true"}})
		add(url.Values{p.Name + ":missing": {"false"}})
		for _, r := range env.stored[typ] {
			msg, _, err := codec.Parse(r.Body)
			if err != nil {
				continue
			}
			vs := []fhir.Value{{Token: fhir.Token{Code: r.ID}}}
			if p != fhir.ParamID {
				vs = p.Values(msg)
			}
			for _, v := range vs {
				for _, f := range valueForms(p, v) {
					name := p.Name
					if f.modifier != "" {
						name += ":" + f.modifier
					}
					add(url.Values{name: {f.value}})
				}
			}
		}
	}
	out := slices.Clone(single)
	pair := func(a, b url.Values) {
		for ka, va := range a {
			for kb, vb := range b {
				if ka == kb {
					out = append(out, url.Values{ka: {va[0] + "," + vb[0]}}, url.Values{ka: {va[0], vb[0]}})
				} else {
					out = append(out, url.Values{ka: va, kb: vb})
				}
			}
		}
	}
	// Neighbours share a parameter; a stride apart, they mostly do not.
	for i := 0; i+1 < len(single); i += 2 {
		pair(single[i], single[i+1])
	}
	for i := 0; i+37 < len(single); i += 5 {
		pair(single[i], single[i+37])
	}
	return out
}

type form struct{ modifier, value string }

// valueForms are the ways a search could name v, or come close to it.
func valueForms(p *fhir.SearchParam, v fhir.Value) []form {
	var out []form
	switch p.Type {
	case fhir.ParamToken:
		t := v.Token
		out = append(out, form{"", t.Code}, form{"not", t.Code}, form{"", t.System + "|" + t.Code}, form{"not", t.System + "|" + t.Code},
			form{"", "|" + t.Code}, form{"", strings.ToUpper(t.Code)})
		if t.System != "" {
			out = append(out, form{"", t.System + "|"}, form{"not", t.System + "|"})
		}
	case fhir.ParamString, fhir.ParamURI:
		s := v.String
		out = append(out, form{"", s}, form{"", strings.ToUpper(s)}, form{"exact", s}, form{"exact", strings.ToLower(s)},
			form{"contains", s}, form{"", "zz" + s})
		if r := []rune(s); len(r) > 2 {
			out = append(out, form{"", string(r[:2])}, form{"contains", string(r[1 : len(r)-1])}, form{"exact", string(r[:2])})
		}
	case fhir.ParamReference:
		r := v.Ref
		if r.URL != "" {
			out = append(out, form{"", r.URL})
		}
		if r.ID != "" {
			out = append(out, form{"", r.ID}, form{"", r.Type + "/" + r.ID}, form{r.Type, r.ID}, form{"", testBase + "/" + r.Type + "/" + r.ID},
				form{"", "https://other.example/fhir/" + r.Type + "/" + r.ID})
		}
	case fhir.ParamDate:
		// The value's own bounds, and a second before its end, at
		// coarser and finer precision than its own and in another zone.
		west := time.FixedZone("", -5*3600)
		for _, t := range []time.Time{v.Date.Start, v.Date.End, v.Date.End.Add(-time.Second)} {
			for _, s := range []string{t.UTC().Format("2006"), t.UTC().Format("2006-01"), t.UTC().Format("2006-01-02"),
				t.In(west).Format("2006-01-02"), t.UTC().Format(time.RFC3339), t.In(west).Format("2006-01-02T15:04Z07:00")} {
				for _, prefix := range []string{"", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"} {
					out = append(out, form{"", prefix + s})
				}
			}
		}
	}
	return out
}

// FuzzMatcher_SameAsSearch holds the matcher to the search on criteria of
// any shape: whatever the search takes, the matcher must take too and pass
// exactly the resources the search finds.
func FuzzMatcher_SameAsSearch(f *testing.F) {
	for _, seed := range []string{
		"patient=p1&started=ge2026-03",
		"subject=https://other.example/fhir/Patient/p1,Patient/p2",
		"patient=" + testBase + "/Patient/p2&modality=CT",
		"started=sa2026-03-04T10:00:00Z",
		"started=le2026&status:not=cancelled",
		"identifier=urn:dicom:uid|urn:oid:1.2.3",
		"started:missing=true",
		"birthdate=eb1970-06-15&family=mul",
		"name:contains=EIL&gender=male,female",
		"given:exact=Zoë",
	} {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	env := newSameAsSearch(f)
	f.Fuzz(func(t *testing.T, patient bool, query string) {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		typ := "ImagingStudy"
		if patient {
			typ = "Patient"
		}
		env.compare(t, typ, []url.Values{vals})
	})
}
