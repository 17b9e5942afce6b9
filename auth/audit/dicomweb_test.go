package audit_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/auth/audit"
)

func TestDICOMweb_RecordsQIDOWADOSTOWAndDelete(t *testing.T) {
	t.Parallel()
	// The writer runs only after the DELETE, so the patients of the
	// deleted study's earlier records are looked up once it is gone.
	e, _ := newIdleEnv(t)
	a := dicomtest.NewStudy(t, dicomtest.WithPatient("PA", "", "ALPHA^ANN"))
	b := dicomtest.NewStudy(t, dicomtest.WithPatient("PB", "", "BETA^BOB"))

	// One STOW-RS of both studies: the studies come from the response.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body, "application/dicom")
	for _, st := range []*dicomtest.Study{a, b} {
		for _, in := range st.Instances() {
			if err := mw.WritePart("application/dicom", "", bytes.NewReader(in.Bytes)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	if r := e.do("backend", "POST", "/dicomweb/studies", mw.ContentType(), body.Bytes()); r.status != http.StatusOK {
		t.Fatalf("STOW-RS: status %d: %s", r.status, r.body)
	}
	lookup := audit.StudyPatientLookup(e.store)
	found, err := lookup(context.Background(), []string{a.StudyInstanceUID, "1.2.3.4.5.6.7", b.StudyInstanceUID, "../x"})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := found[a.StudyInstanceUID], found[b.StudyInstanceUID]
	if !strings.HasPrefix(pa, "Patient/") {
		t.Errorf("patient of study A: %q", pa)
	}
	if !strings.HasPrefix(pb, "Patient/") || pb == pa {
		t.Errorf("patient of study B: %q (A: %q)", pb, pa)
	}
	if len(found) != 2 {
		t.Errorf("found %v, want only the two stored studies", found)
	}

	// QIDO-RS at study level finds both.
	if r := e.do("clinician", "GET", "/dicomweb/studies?limit=50", "", nil, "Accept", "application/dicom+json"); r.status != http.StatusOK {
		t.Fatalf("QIDO-RS: status %d: %s", r.status, r.body)
	}
	// WADO-RS metadata and the study itself, whose multipart body passes
	// through untouched.
	if r := e.do("clinician", "GET", "/dicomweb/studies/"+a.StudyInstanceUID+"/metadata", "", nil, "Accept", "application/dicom+json"); r.status != http.StatusOK {
		t.Fatalf("WADO-RS metadata: status %d: %s", r.status, r.body)
	}
	r := e.do("clinician", "GET", "/dicomweb/studies/"+a.StudyInstanceUID, "", nil, "Accept", `multipart/related; type="application/dicom"`)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "multipart/related") {
		t.Fatalf("WADO-RS: status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
	for _, in := range a.Instances() {
		if !bytes.Contains(r.body, in.Bytes) {
			t.Errorf("WADO-RS body lacks instance %s", in.SOPInstanceUID)
		}
	}
	// A retrieval of a study that is not there fails, and is recorded so.
	if r := e.do("clinician", "GET", "/dicomweb/studies/1.2.3.4.5.6.7/metadata", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("WADO-RS of a missing study: status %d", r.status)
	}
	// DELETE: the patient is looked up before the study is gone.
	if r := e.do("backend", "DELETE", "/dicomweb/studies/"+b.StudyInstanceUID, "", nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: status %d: %s", r.status, r.body)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}

	const sys = audit.SystemDICOMwebInteraction + "|"
	studiesOf := func(ae map[string]any) []string {
		var out []string
		for _, en := range entities(ae, "3") {
			id := en["what"].(map[string]any)["identifier"].(map[string]any)
			if id["system"] != audit.SystemDICOMUID {
				t.Errorf("study identifier system %v", id["system"])
			}
			out = append(out, strings.TrimPrefix(id["value"].(string), "urn:oid:"))
		}
		return out
	}
	for _, c := range []struct {
		patient, uid string
		want         []string
	}{
		{pa, a.StudyInstanceUID, []string{sys + "qido-rs 0", sys + "stow-rs 0", sys + "wado-rs 0", sys + "wado-rs 0"}},
		{pb, b.StudyInstanceUID, []string{sys + "delete 0", sys + "qido-rs 0", sys + "stow-rs 0"}},
	} {
		var got []string
		for _, ae := range e.auditEvents("patient=" + url.QueryEscape(c.patient) + "&type=" + url.QueryEscape(audit.SystemDCM+"|110103,"+audit.SystemDCM+"|110112")) {
			got = append(got, summary(ae))
			if diff := cmp.Diff([]string{c.uid}, studiesOf(ae)); diff != "" {
				t.Errorf("%s %s: studies (-want +got):\n%s", c.patient, subtype(ae), diff)
			}
			if subtype(ae) == sys+"qido-rs" {
				if got, want := queryOf(t, ae), "/dicomweb/studies?limit=50"; got != want {
					t.Errorf("QIDO-RS query %q, want %q", got, want)
				}
				if ty := ae["type"].(map[string]any); ty["code"] != "110112" || ae["action"] != "E" {
					t.Errorf("QIDO-RS type %v action %v", ty, ae["action"])
				}
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("records of %s (-want +got):\n%s", c.patient, diff)
		}
	}
	failed := e.auditEvents("outcome=4&subtype=" + url.QueryEscape(sys+"wado-rs"))
	if len(failed) != 1 || len(patientsOf(failed[0])) != 0 || !cmp.Equal(studiesOf(failed[0]), []string{"1.2.3.4.5.6.7"}) {
		t.Errorf("the failed retrieval: %v", failed)
	}
	if logs := e.logs.String(); strings.Contains(logs, "Patient/") || strings.Contains(logs, "ALPHA") {
		t.Errorf("the recorder's log names a patient:\n%s", logs)
	}
}
