package bench

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func walkAll(g *Generator) (patients int, studies []json.RawMessage) {
	g.Walk(func(pd *PatientData) bool {
		patients++
		studies = append(studies, pd.Studies...)
		return true
	})
	return patients, studies
}

func TestGenerator_Deterministic(t *testing.T) {
	t.Parallel()
	p1, s1 := walkAll(NewGenerator(7, 500))
	p2, s2 := walkAll(NewGenerator(7, 500))
	if got, want := len(s1), 500; got != want {
		t.Fatalf("studies=%d, want %d", got, want)
	}
	if p1 != p2 || len(s1) != len(s2) {
		t.Fatalf("patients %d and %d, studies %d and %d: not deterministic", p1, p2, len(s1), len(s2))
	}
	for i := range s1 {
		if !bytes.Equal(s1[i], s2[i]) {
			t.Fatalf("study %d differs between two walks with the same seed", i)
		}
	}
	if _, s3 := walkAll(NewGenerator(8, 500)); bytes.Equal(s1[0], s3[0]) {
		t.Errorf("seeds 7 and 8 made the same first study")
	}
	// About five studies per patient.
	if p1 < 500/7 || p1 > 500/3 {
		t.Errorf("patients=%d for 500 studies, want about 100", p1)
	}
}

func TestGenerator_StudyShape(t *testing.T) {
	t.Parallel()
	_, studies := walkAll(NewGenerator(1, 300))
	uids := map[string]bool{}
	for i, raw := range studies {
		var st imagingStudy
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatalf("study %d: %v", i, err)
		}
		if got, want := st.Identifier[0].System, SystemDICOMUID; got != want {
			t.Errorf("study %d: identifier system=%q, want %q", i, got, want)
		}
		if uid := st.Identifier[0].Value; uids[uid] || len(uid) > len("urn:oid:")+64 {
			t.Errorf("study %d: StudyInstanceUID %q repeated or longer than 64 characters", i, uid)
		} else {
			uids[uid] = true
		}
		if n := len(st.Series); n < 1 || n > 5 || st.NumberOfSeries != n {
			t.Errorf("study %d: %d series, numberOfSeries %d", i, n, st.NumberOfSeries)
		}
		for _, se := range st.Series {
			if se.Modality.System != SystemDCM || len(se.Instance) < 1 || len(se.Instance) > 20 {
				t.Errorf("study %d: series %s: modality %+v with %d instances", i, se.UID, se.Modality, len(se.Instance))
			}
		}
		started, err := time.Parse(time.RFC3339, st.Started)
		if err != nil || started.Before(startedFrom) || started.Year() > 2025 {
			t.Errorf("study %d: started %q outside 2010-2025", i, st.Started)
		}
	}
}

func TestBundle_ReferencesPatientInBundle(t *testing.T) {
	t.Parallel()
	g := NewGenerator(1, 20)
	var pds []*PatientData
	g.Walk(func(pd *PatientData) bool { pds = append(pds, pd); return true })
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			FullURL  string `json:"fullUrl"`
			Resource struct {
				ResourceType string    `json:"resourceType"`
				Subject      reference `json:"subject"`
			} `json:"resource"`
			Request struct {
				Method, URL, IfNoneExist string
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(g.Bundle(pds), &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != "transaction" {
		t.Errorf("type=%q, want transaction", b.Type)
	}
	full := map[string]bool{}
	for _, e := range b.Entry {
		if full[e.FullURL] {
			t.Errorf("fullUrl %s repeated", e.FullURL)
		}
		full[e.FullURL] = true
	}
	for _, e := range b.Entry {
		switch e.Resource.ResourceType {
		case "Patient":
			if e.Request.IfNoneExist == "" {
				t.Errorf("patient %s is not created conditionally", e.FullURL)
			}
		case "ImagingStudy":
			if !full[e.Resource.Subject.Reference] {
				t.Errorf("study %s: subject %q is no entry of the bundle", e.FullURL, e.Resource.Subject.Reference)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100ms, %v)=%v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil)=%v, want 0", got)
	}
}

func TestNextLink(t *testing.T) {
	t.Parallel()
	body := []byte(`{"resourceType":"Bundle","link":[{"relation":"self","url":"http://h/fhir/X?a=1"},` +
		`{"relation":"next","url":"http://h/fhir/X?_count=100\u0026_cursor=abc"}],"entry":[]}`)
	got, err := nextLink(body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://h/fhir/X?_count=100&_cursor=abc"; got != want {
		t.Errorf("nextLink=%q, want %q", got, want)
	}
	if got, err := nextLink([]byte(`{"link":[{"relation":"self","url":"u"}]}`)); got != "" || err != nil {
		t.Errorf("nextLink without next=%q, %v; want empty", got, err)
	}
}
