package rest_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// conformanceData loads the fixture the search conformance tables run on.
func conformanceData(t *testing.T, s *server) {
	t.Helper()
	put := func(path, body string) {
		id := path[strings.LastIndex(path, "/")+1:]
		if !strings.Contains(body, `"id":`) {
			body = strings.Replace(body, `{"resourceType":"ImagingStudy",`, `{"resourceType":"ImagingStudy","id":"`+id+`",`, 1)
		}
		s.must(201, "PUT", path, body)
	}
	put("/Patient/pA", `{"resourceType":"Patient","id":"pA","identifier":[{"system":"urn:oid:1.2.3","value":"A"}],"name":[{"family":"Müller","given":["Jane","Ann"]}],"birthDate":"1970-05-06","gender":"female","active":true}`)
	put("/Patient/pB", `{"resourceType":"Patient","id":"pB","identifier":[{"system":"urn:oid:1.2.3","value":"B"},{"system":"urn:oid:9.9","value":"B-OTHER"}],"name":[{"family":"Smith","given":["John"]}],"birthDate":"1980","gender":"male"}`)
	put("/Endpoint/e1", `{"resourceType":"Endpoint","id":"e1","status":"active","name":"Local WADO-RS","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://localhost/dicomweb"}`)
	put("/ImagingStudy/s1", `{"resourceType":"ImagingStudy","id":"s1",
	  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.1"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"system":"urn:oid:7.7","value":"ACC1"}],
	  "status":"available","subject":{"reference":"Patient/pA"},"encounter":{"reference":"Encounter/enc1"},
	  "started":"2021-03-04T10:00:00+01:00","basedOn":[{"reference":"ServiceRequest/sr1"}],"referrer":{"reference":"Practitioner/dr1"},
	  "interpreter":[{"reference":"Practitioner/dr2"}],"endpoint":[{"reference":"Endpoint/e1"}],
	  "reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"22298006"}]}],
	  "series":[{"uid":"1.1.1","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},
	    "bodySite":{"system":"http://snomed.info/sct","code":"51185008"},
	    "performer":[{"actor":{"reference":"Practitioner/tech1"}}],
	    "instance":[{"uid":"1.1.1.1","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"}}]}]}`)
	put("/ImagingStudy/s2", study("2.2", "Patient/pA", "2019-12-31", "MR"))
	put("/ImagingStudy/s3", strings.Replace(study("3.3", "Patient/pB", "2021-03-04T23:30:00-05:00", "CR"), `"available"`, `"registered"`, 1))
	put("/ImagingStudy/s4", `{"resourceType":"ImagingStudy","id":"s4","status":"available","subject":{"reference":"Patient/pB"}}`)
}

func TestSearch_Conformance(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	conformanceData(t, s)
	base := url.QueryEscape(s.url + "/Patient/pA")
	cases := []struct {
		name  string
		query string
		want  []string
	}{
		// reference
		{"patient by id", "ImagingStudy?patient=pA", []string{"s1", "s2"}},
		{"patient by Type/id", "ImagingStudy?patient=Patient/pA", []string{"s1", "s2"}},
		{"patient by absolute URL of this server", "ImagingStudy?patient=" + base, []string{"s1", "s2"}},
		{"subject with type modifier", "ImagingStudy?subject:Patient=pB", []string{"s3", "s4"}},
		{"subject Type/id", "ImagingStudy?subject=Patient/pB", []string{"s3", "s4"}},
		{"patient OR", "ImagingStudy?patient=pA,pB", []string{"s1", "s2", "s3", "s4"}},
		{"basedon", "ImagingStudy?basedon=ServiceRequest/sr1", []string{"s1"}},
		{"endpoint", "ImagingStudy?endpoint=Endpoint/e1", []string{"s1"}},
		{"encounter", "ImagingStudy?encounter=enc1", []string{"s1"}},
		{"referrer", "ImagingStudy?referrer=Practitioner/dr1", []string{"s1"}},
		{"interpreter", "ImagingStudy?interpreter=Practitioner/dr2", []string{"s1"}},
		{"performer", "ImagingStudy?performer=Practitioner/tech1", []string{"s1"}},
		{"reference to nobody", "ImagingStudy?patient=nobody", nil},
		// token
		{"identifier system|code", "ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.1", []string{"s1"}},
		{"identifier code only", "ImagingStudy?identifier=urn:oid:1.1", []string{"s1"}},
		{"identifier system only", "ImagingStudy?identifier=urn:dicom:uid|", []string{"s1", "s2", "s3"}},
		{"identifier |code means no system", "ImagingStudy?identifier=|urn:oid:1.1", nil},
		{"accession", "ImagingStudy?identifier=urn:oid:7.7|ACC1", []string{"s1"}},
		{"modality", "ImagingStudy?modality=CT", []string{"s1"}},
		{"modality with system", "ImagingStudy?modality=http://dicom.nema.org/resources/ontology/DCM|MR", []string{"s2"}},
		{"modality wrong system", "ImagingStudy?modality=http://example.org|MR", nil},
		{"modality OR", "ImagingStudy?modality=CT,MR", []string{"s1", "s2"}},
		{"modality AND of repeats", "ImagingStudy?modality=CT&modality=MR", nil},
		{"modality :not includes missing", "ImagingStudy?modality:not=CT", []string{"s2", "s3", "s4"}},
		{"modality :missing=true", "ImagingStudy?modality:missing=true", []string{"s4"}},
		{"modality :missing=false", "ImagingStudy?modality:missing=false", []string{"s1", "s2", "s3"}},
		{"status", "ImagingStudy?status=registered", []string{"s3"}},
		{"status OR", "ImagingStudy?status=registered,available", []string{"s1", "s2", "s3", "s4"}},
		{"series", "ImagingStudy?series=1.1.1", []string{"s1"}},
		{"instance", "ImagingStudy?instance=1.1.1.1", []string{"s1"}},
		{"dicom-class", "ImagingStudy?dicom-class=urn:oid:1.2.840.10008.5.1.4.1.1.2", []string{"s1", "s2", "s3"}},
		{"bodysite", "ImagingStudy?bodysite=http://snomed.info/sct|51185008", []string{"s1"}},
		{"reason", "ImagingStudy?reason=22298006", []string{"s1"}},
		{"_id", "ImagingStudy?_id=s2,s3", []string{"s2", "s3"}},
		// date: s1 is 09:00Z on 2021-03-04, s3 04:30Z on 2021-03-05, s2 the whole day 2019-12-31
		{"started day in UTC", "ImagingStudy?started=2021-03-04", []string{"s1"}},
		{"started day in a zone", "ImagingStudy?started=2021-03-04T23:30:00-05:00", []string{"s3"}},
		{"started minute precision", "ImagingStudy?started=2021-03-04T10:00%2B01:00", []string{"s1"}},
		{"started year", "ImagingStudy?started=2021", []string{"s1", "s3"}},
		{"started month", "ImagingStudy?started=2019-12", []string{"s2"}},
		{"started ge", "ImagingStudy?started=ge2021-01-01", []string{"s1", "s3"}},
		{"started ge includes the same day", "ImagingStudy?started=ge2019-12-31", []string{"s1", "s2", "s3"}},
		{"started gt excludes the same day", "ImagingStudy?started=gt2019-12-31", []string{"s1", "s3"}},
		{"started lt", "ImagingStudy?started=lt2020", []string{"s2"}},
		{"started le", "ImagingStudy?started=le2021-03-04", []string{"s1", "s2"}},
		{"started sa", "ImagingStudy?started=sa2021-03-04", []string{"s3"}},
		{"started eb", "ImagingStudy?started=eb2021", []string{"s2"}},
		{"started ne", "ImagingStudy?started=ne2021-03-04", []string{"s2", "s3"}},
		{"started ap", "ImagingStudy?started=ap2021-03-04", []string{"s1", "s3"}},
		{"started range by AND", "ImagingStudy?started=ge2021-03-04&started=lt2021-03-05", []string{"s1"}},
		{"started :missing", "ImagingStudy?started:missing=true", []string{"s4"}},
		// AND across parameters
		{"patient and modality", "ImagingStudy?patient=pA&modality=CT", []string{"s1"}},
		{"patient and modality and started", "ImagingStudy?patient=pA&modality=CT,MR&started=ge2020-01-01", []string{"s1"}},
		// chains
		{"chain patient.identifier", "ImagingStudy?patient.identifier=urn:oid:1.2.3|A", []string{"s1", "s2"}},
		{"chain on second identifier", "ImagingStudy?patient.identifier=urn:oid:9.9|B-OTHER", []string{"s3", "s4"}},
		{"chain subject:Patient.name", "ImagingStudy?subject:Patient.name=smi", []string{"s3", "s4"}},
		{"chain patient.birthdate", "ImagingStudy?patient.birthdate=lt1975", []string{"s1", "s2"}},
		{"chain to deleted-free nobody", "ImagingStudy?patient.identifier=urn:oid:1.2.3|Z", nil},
		// string
		{"name prefix, case and accent folded", "Patient?name=MUL", []string{"pA"}},
		{"name given", "Patient?name=ann", []string{"pA"}},
		{"name not infix by default", "Patient?name=ller", nil},
		{"name :contains", "Patient?name:contains=LLE", []string{"pA"}},
		{"name :exact", "Patient?name:exact=Müller", []string{"pA"}},
		{"name :exact is exact", "Patient?name:exact=muller", nil},
		{"family", "Patient?family=smith", []string{"pB"}},
		{"given OR", "Patient?given=jane,john", []string{"pA", "pB"}},
		{"like wildcards are literal", "Patient?name=%25", nil},
		{"like underscore is literal", "Patient?name=M_ller", nil},
		{"gender", "Patient?gender=male", []string{"pB"}},
		{"birthdate day", "Patient?birthdate=1970-05-06", []string{"pA"}},
		{"birthdate year precision stored", "Patient?birthdate=1980-06-01", nil},
		{"birthdate year query covers year value", "Patient?birthdate=1980", []string{"pB"}},
		{"birthdate ge covers partial", "Patient?birthdate=ge1980-06-01", []string{"pB"}},
		{"active boolean", "Patient?active=true", []string{"pA"}},
		{"patient identifier", "Patient?identifier=B-OTHER", []string{"pB"}},
		{"endpoint connection-type", "Endpoint?connection-type=dicom-wado-rs", []string{"e1"}},
		{"endpoint status", "Endpoint?status=active", []string{"e1"}},
		{"endpoint name", "Endpoint?name=local", []string{"e1"}},
		{"injection as a value", "Patient?name=" + url.QueryEscape("x' OR '1'='1"), nil},
		{"_lastUpdated recent", "Patient?_lastUpdated=ge" + time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05Z"), []string{"pA", "pB"}},
		{"_lastUpdated long ago", "Patient?_lastUpdated=lt2000", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := s.on(t).must(200, "GET", "/"+c.query, "")
			got := ids(b)
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("%s = %v, want %v", c.query, got, c.want)
			}
			if total, ok := b["total"].(float64); ok && int(total) != len(c.want) {
				t.Errorf("total = %v, want %d", total, len(c.want))
			}
		})
	}
}

func TestSearch_SortIncludeElementsSummary(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	conformanceData(t, s)

	if got, want := ids(s.must(200, "GET", "/ImagingStudy?_sort=started", "")), []string{"s2", "s1", "s3", "s4"}; !slices.Equal(got, want) {
		t.Errorf("_sort=started: %v, want %v (missing last)", got, want)
	}
	if got, want := ids(s.must(200, "GET", "/ImagingStudy?_sort=-started", "")), []string{"s3", "s1", "s2", "s4"}; !slices.Equal(got, want) {
		t.Errorf("_sort=-started: %v, want %v (missing last)", got, want)
	}
	if got, want := ids(s.must(200, "GET", "/ImagingStudy?_sort=-_id", "")), []string{"s4", "s3", "s2", "s1"}; !slices.Equal(got, want) {
		t.Errorf("_sort=-_id: %v, want %v", got, want)
	}

	b := s.must(200, "GET", "/ImagingStudy?patient=pA&_include=ImagingStudy:patient&_include=ImagingStudy:endpoint", "")
	var included []string
	for _, e := range b["entry"].([]any) {
		em := e.(map[string]any)
		if em["search"].(map[string]any)["mode"] == "include" {
			r := em["resource"].(map[string]any)
			included = append(included, r["resourceType"].(string)+"/"+r["id"].(string))
		}
	}
	slices.Sort(included)
	if want := []string{"Endpoint/e1", "Patient/pA"}; !slices.Equal(included, want) {
		t.Errorf("_include: %v, want %v", included, want)
	}

	b = s.must(200, "GET", "/Patient?_id=pA&_revinclude=ImagingStudy:patient", "")
	var rev []string
	for _, e := range b["entry"].([]any) {
		em := e.(map[string]any)
		if em["search"].(map[string]any)["mode"] == "include" {
			rev = append(rev, em["resource"].(map[string]any)["id"].(string))
		}
	}
	slices.Sort(rev)
	if want := []string{"s1", "s2"}; !slices.Equal(rev, want) {
		t.Errorf("_revinclude: %v, want %v", rev, want)
	}

	b = s.must(200, "GET", "/ImagingStudy?_summary=count", "")
	if b["total"] != float64(4) || b["entry"] != nil {
		t.Errorf("_summary=count: total %v, entries %v", b["total"], b["entry"])
	}
	b = s.must(200, "GET", "/ImagingStudy?_total=accurate&_count=1", "")
	if b["total"] != float64(4) || len(ids(b)) != 1 || link(b, "next") == "" {
		t.Errorf("_total=accurate&_count=1: total %v, %d entries, next %q", b["total"], len(ids(b)), link(b, "next"))
	}

	// POST _search takes the same parameters as a form.
	b = s.must(200, "POST", "/ImagingStudy/_search", "patient=pA&modality=CT", "Content-Type", "application/x-www-form-urlencoded")
	if got := ids(b); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("POST _search patient=pA&modality=CT: %v, want [s1]", got)
	}
	if self := link(b, "self"); !strings.Contains(self, "modality=CT") {
		t.Errorf("POST _search self link %q lacks the form parameters", self)
	}

	// _summary=data drops the narrative and says the resource is subsetted.
	s.must(201, "PUT", "/Endpoint/e2", `{"resourceType":"Endpoint","id":"e2","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"status":"off","connectionType":{"code":"x"},"payloadType":[{"text":"x"}],"address":"http://x"}`)
	b = s.must(200, "GET", "/Endpoint?_id=e2&_summary=data", "")
	res := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if _, ok := res["text"]; ok || !strings.Contains(fmt.Sprint(res["meta"]), "SUBSETTED") {
		t.Errorf("_summary=data: text kept or not tagged: %v", res)
	}

	b = s.must(200, "GET", "/ImagingStudy?_id=s1&_elements=identifier,status", "")
	res = b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if _, ok := res["series"]; ok {
		t.Error("_elements kept series")
	}
	if _, ok := res["identifier"]; !ok {
		t.Error("_elements dropped identifier")
	}
	if tags := fmt.Sprint(res["meta"]); !strings.Contains(tags, "SUBSETTED") {
		t.Errorf("_elements result not tagged SUBSETTED: %s", tags)
	}
}

// Paging follows keyset links: every resource that existed when paging
// started is seen exactly once, whatever is inserted meanwhile.
func TestSearch_PagingUnderConcurrentInserts(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.must(201, "PUT", "/Patient/pp", `{"resourceType":"Patient","id":"pp"}`)
	const n = 45
	for i := 0; i < n; i++ {
		s.must(201, "POST", "/ImagingStudy", study(fmt.Sprintf("9.%d", i), "Patient/pp", fmt.Sprintf("2020-01-%02dT10:00:00Z", 1+i%28), "CT"))
	}
	original := map[string]bool{}
	for _, id := range ids(s.must(200, "GET", "/ImagingStudy?patient=pp&_count=1000", "")) {
		original[id] = true
	}
	if len(original) != n {
		t.Fatalf("%d studies, want %d", len(original), n)
	}
	for _, sort := range []string{"", "&_sort=_lastUpdated", "&_sort=-started", "&_sort=started,-_id"} {
		t.Run("sort"+sort, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // concurrent writer: new matching studies
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if r := s.on(t).do("POST", "/ImagingStudy", study(fmt.Sprintf("8.%d", i), "Patient/pp", "2020-01-15T10:00:00Z", "CT")); r.status != 201 {
						t.Errorf("concurrent insert: status %d", r.status)
						return
					}
				}
			}()
			seen := map[string]int{}
			next := s.url + "/ImagingStudy?patient=pp&_count=7" + sort
			pages := 0
			var second string
			for next != "" && pages < 100 {
				b := s.on(t).must(200, "GET", strings.TrimPrefix(next, s.url), "")
				for _, id := range ids(b) {
					seen[id]++
				}
				pages++
				if pages == 2 {
					second = next
				}
				next = link(b, "next")
			}
			close(stop)
			wg.Wait()
			for id := range original {
				if seen[id] != 1 {
					t.Errorf("study %s seen %d times", id, seen[id])
				}
			}
			for id, c := range seen {
				if c > 1 {
					t.Errorf("study %s repeated %d times", id, c)
				}
			}
			// previous of page 2 is page 1.
			b := s.on(t).must(200, "GET", strings.TrimPrefix(second, s.url), "")
			prev := link(b, "previous")
			if prev == "" {
				t.Fatal("page 2 has no previous link")
			}
			if got := len(ids(s.on(t).must(200, "GET", strings.TrimPrefix(prev, s.url), ""))); got != 7 {
				t.Errorf("previous page has %d entries, want 7", got)
			}
		})
	}
}

func TestMetadata_ClaimsOnlyWhatWorks(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cs := s.must(200, "GET", "/metadata", "")
	if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata: %v %v", cs["resourceType"], cs["fhirVersion"])
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	count := 0
	for _, r := range rest["resource"].([]any) {
		rm := r.(map[string]any)
		typ := rm["type"].(string)
		for _, p := range rm["searchParam"].([]any) {
			pm := p.(map[string]any)
			name := pm["name"].(string)
			q := "/" + typ + "?" + name + ":missing=true"
			if name == "_id" {
				q = "/" + typ + "?_id=x"
			}
			if r := s.do("GET", q, ""); r.status != 200 {
				t.Errorf("advertised %s.%s fails: %d %s", typ, name, r.status, r.body)
			}
			count++
		}
		incs, _ := rm["searchInclude"].([]any)
		for _, inc := range incs {
			if r := s.do("GET", "/"+typ+"?_include="+inc.(string), ""); r.status != 200 {
				t.Errorf("advertised _include=%s fails: %d", inc, r.status)
			}
		}
		if revs, ok := rm["searchRevInclude"].([]any); ok {
			for _, inc := range revs {
				if r := s.do("GET", "/"+typ+"?_revinclude="+inc.(string), ""); r.status != 200 {
					t.Errorf("advertised _revinclude=%s on %s fails: %d %s", inc, typ, r.status, r.body)
				}
			}
		}
	}
	if count < 17+2 {
		t.Errorf("only %d search parameters advertised", count)
	}
}

// A reference written as an absolute URL under this server's base names the
// local resource (FHIR R4 references.html), so searches, includes and
// revincludes find it as they find a relative one; the same Type/id on
// another server is another resource and is found only by its own URL.
func TestSearch_AbsoluteReferences(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.must(201, "PUT", "/Patient/pA", `{"resourceType":"Patient","id":"pA"}`)
	for id, subject := range map[string]string{
		"relative": "Patient/pA",
		"own":      s.url + "/Patient/pA",
		"version":  s.url + "/Patient/pA/_history/1",
		"foreign":  "https://other.example/fhir/Patient/pA",
		"deeper":   s.url + "/x/Patient/pA",
	} {
		body := strings.Replace(study("1."+fmt.Sprint(len(id)), subject, "2021-03-04", "CT"), `{"resourceType":"ImagingStudy",`, `{"resourceType":"ImagingStudy","id":"`+id+`",`, 1)
		s.must(201, "PUT", "/ImagingStudy/"+id, body)
	}
	local := []string{"own", "relative", "version"}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"ImagingStudy?patient=pA", local},
		{"ImagingStudy?subject=Patient/pA", local},
		{"ImagingStudy?patient=" + url.QueryEscape(s.url+"/Patient/pA"), local},
		{"ImagingStudy?patient=" + url.QueryEscape("https://other.example/fhir/Patient/pA"), []string{"foreign"}},
		{"ImagingStudy?patient:missing=true", nil},
	} {
		got := ids(s.must(200, "GET", "/"+tc.query, ""))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	b := s.must(200, "GET", "/Patient?_id=pA&_revinclude=ImagingStudy:patient", "")
	var rev []string
	for _, e := range b["entry"].([]any) {
		if r := e.(map[string]any)["resource"].(map[string]any); r["resourceType"] == "ImagingStudy" {
			rev = append(rev, r["id"].(string))
		}
	}
	slices.Sort(rev)
	if !slices.Equal(rev, local) {
		t.Errorf("_revinclude=ImagingStudy:patient = %v, want %v", rev, local)
	}
	b = s.must(200, "GET", "/ImagingStudy?_id=own,foreign&_include=ImagingStudy:patient", "")
	var inc []string
	for _, e := range b["entry"].([]any) {
		if r := e.(map[string]any)["resource"].(map[string]any); r["resourceType"] == "Patient" {
			inc = append(inc, r["id"].(string))
		}
	}
	if !slices.Equal(inc, []string{"pA"}) {
		t.Errorf("_include=ImagingStudy:patient of own and foreign = %v, want [pA] once", inc)
	}
}
