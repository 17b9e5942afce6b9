package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// asCaller stands in for the token middleware in these tests: a request
// naming its scopes in X-Test-Scopes (and its launch patient in
// X-Test-Patient) is authenticated as a caller with those; any other
// request carries no Principal.
func asCaller(t *testing.T) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if raw := r.Header.Get("X-Test-Scopes"); raw != "" {
				scopes, err := auth.ParseScopes(raw)
				if err != nil {
					t.Errorf("test scopes %q: %v", raw, err)
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				p := &auth.Principal{Subject: "test-client", Scopes: scopes, Patient: r.Header.Get("X-Test-Patient")}
				r = r.WithContext(auth.WithPrincipal(r.Context(), p))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// caller is who a request is sent as: no scopes means no Principal.
type caller struct{ scopes, patient string }

// call sends a request as c; body, when set, is a STOW-RS multipart body
// of content type ct.
func (s *server) call(t *testing.T, c caller, method, path string, body []byte, ct string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.scopes != "" {
		req.Header.Set("X-Test-Scopes", c.scopes)
	}
	if c.patient != "" {
		req.Header.Set("X-Test-Patient", c.patient)
	}
	return s.do(t, req)
}

// studyUIDs runs a QIDO-RS search as c and returns the sorted
// StudyInstanceUIDs found (distinct).
func (s *server) studyUIDs(t *testing.T, c caller, path string) []string {
	t.Helper()
	resp, body := s.call(t, c, "GET", path, nil, "")
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
	default:
		t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
	}
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	// A search within a study does not repeat its StudyInstanceUID
	// (PS3.18 Table 6.7.1-2a): the path names it.
	inStudy := ""
	if rest, ok := strings.CutPrefix(path, "/studies/"); ok {
		inStudy, _, _ = strings.Cut(rest, "/")
	}
	var uids []string
	for _, o := range objs {
		u := inStudy
		if a, ok := o.Attribute(tag.StudyInstanceUID); ok && len(a.Value) == 1 {
			u = a.Value[0].(string)
		}
		if u == "" {
			t.Fatalf("%s: a result without StudyInstanceUID", path)
		}
		if !slices.Contains(uids, u) {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	return uids
}

// wantRefused asserts a 401 or 403 in the package's error form, with the
// challenge RFC 6750 asks for, and a reason that says want.
func wantRefused(t *testing.T, resp *http.Response, body []byte, status int, want string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %.200q", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if !strings.Contains(e["reason"], want) {
		t.Errorf("%s: reason %q does not say %q", resp.Request.URL.Path, e["reason"], want)
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	switch status {
	case http.StatusUnauthorized:
		if challenge != `Bearer realm="priorflow"` {
			t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
		}
	case http.StatusForbidden:
		if !strings.HasPrefix(challenge, "Bearer ") || !strings.Contains(challenge, `error="insufficient_scope"`) {
			t.Errorf("WWW-Authenticate = %q, want insufficient_scope", challenge)
		}
	}
}

// authStudies is an archive with scopes enforced: two CT and MR studies of
// one patient and a PT study of another.
type authStudies struct {
	*server
	ct1, mr1, pt2 *dicomtest.Study
	// p1 and p2 are the FHIR Patient ids the archive filed them under.
	p1, p2 string
}

func newAuthStudies(t *testing.T) *authStudies {
	t.Helper()
	s := &authStudies{server: startServer(t, true)}
	s.ct1 = dicomtest.NewStudy(t, dicomtest.WithPatient("A1", "HOSP-A", "ONE^PAT"), dicomtest.WithModality("CT"), dicomtest.WithSeries(2))
	s.mr1 = dicomtest.NewStudy(t, dicomtest.WithPatient("A1", "HOSP-A", "ONE^PAT"), dicomtest.WithModality("MR"))
	s.pt2 = dicomtest.NewStudy(t, dicomtest.WithPatient("A2", "HOSP-A", "TWO^PAT"), dicomtest.WithModality("PT"))
	s.store(t, s.ct1, s.mr1, s.pt2)
	s.p1 = s.subject(t, s.ct1.StudyInstanceUID)
	s.p2 = s.subject(t, s.pt2.StudyInstanceUID)
	if s.p1 == "" || s.p1 == s.p2 || s.subject(t, s.mr1.StudyInstanceUID) != s.p1 {
		t.Fatalf("patients %q and %q", s.p1, s.p2)
	}
	return s
}

// subject returns the Patient id the ImagingStudy of a stored study names.
func (s *authStudies) subject(t *testing.T, study string) string {
	t.Helper()
	is := s.imagingStudy(t, study)
	return strings.TrimPrefix(is["subject"].(map[string]any)["reference"].(string), "Patient/")
}

func (s *authStudies) imagingStudy(t *testing.T, study string) map[string]any {
	t.Helper()
	id, err := s.Archive.StudyFHIRID(context.Background(), study)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Store.Read(context.Background(), "ImagingStudy", id)
	if err != nil {
		t.Fatal(err)
	}
	var is map[string]any
	if err := json.Unmarshal(res.Body, &is); err != nil {
		t.Fatal(err)
	}
	return is
}

// putImagingStudy writes is through the FHIR store, as a FHIR client would.
func (s *authStudies) putImagingStudy(t *testing.T, is map[string]any) {
	t.Helper()
	b, err := json.Marshal(is)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := s.Store.Codec().Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Store.InTx(context.Background(), func(tx *postgres.Tx) error {
		_, _, err := tx.Put(context.Background(), res, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func stowBody(t *testing.T, st *dicomtest.Study) (string, []byte) {
	t.Helper()
	var parts [][]byte
	for _, in := range st.Instances() {
		parts = append(parts, in.Bytes)
	}
	return multipartBody(t, parts...)
}

func TestAuth_NoPrincipal(t *testing.T) {
	t.Parallel()
	s := newAuthStudies(t)
	st := s.ct1.StudyInstanceUID
	ct, body := stowBody(t, dicomtest.NewStudy(t))
	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/studies", nil},
		{"GET", "/series", nil},
		{"GET", "/studies/" + st + "/instances", nil},
		{"GET", "/studies/" + st, nil},
		{"GET", "/studies/" + st + "/metadata", nil},
		{"GET", "/studies/" + st + "/thumbnail", nil},
		{"POST", "/studies", body},
		{"DELETE", "/studies/" + st, nil},
	} {
		resp, b := s.call(t, caller{}, tc.method, tc.path, tc.body, ct)
		wantRefused(t, resp, b, http.StatusUnauthorized, "access token")
	}
}

func TestAuth_ScopePerTransaction(t *testing.T) {
	t.Parallel()
	s := newAuthStudies(t)
	st, se := s.ct1.StudyInstanceUID, s.ct1.Series[0].SeriesInstanceUID
	in := s.ct1.Series[0].Instances[0].SOPInstanceUID
	inst := fmt.Sprintf("/studies/%s/series/%s/instances/%s", st, se, in)
	retrieves := []string{
		"/studies/" + st, "/studies/" + st + "/series/" + se, inst,
		"/studies/" + st + "/metadata", "/studies/" + st + "/series/" + se + "/metadata", inst + "/metadata",
		inst + "/frames/1", inst + "/rendered", inst + "/thumbnail", "/studies/" + st + "/thumbnail",
		"/studies/" + st + "/rendered", "/studies/" + st + "/series/" + se + "/thumbnail",
	}
	searches := []string{"/studies", "/series", "/instances", "/studies/" + st + "/series", "/studies/" + st + "/instances",
		"/studies/" + st + "/series/" + se + "/instances"}

	for _, scopes := range []string{"system/ImagingStudy.r", "user/Patient.rs", "system/ImagingStudy.cud"} {
		for _, p := range searches {
			resp, b := s.call(t, caller{scopes: scopes}, "GET", p, nil, "")
			wantRefused(t, resp, b, http.StatusForbidden, `the access token's scopes do not grant "s" on ImagingStudy`)
		}
	}
	for _, scopes := range []string{"system/ImagingStudy.s", "system/ImagingStudy.rs", "user/*.read"} {
		for _, p := range searches {
			if resp, b := s.call(t, caller{scopes: scopes}, "GET", p, nil, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("%s as %s: status %d: %s", p, scopes, resp.StatusCode, b)
			}
		}
	}
	for _, scopes := range []string{"system/ImagingStudy.s", "system/Patient.cruds"} {
		for _, p := range retrieves {
			resp, b := s.call(t, caller{scopes: scopes}, "GET", p, nil, "")
			wantRefused(t, resp, b, http.StatusForbidden, `"r" on ImagingStudy`)
		}
	}
	for _, scopes := range []string{"system/ImagingStudy.r", "system/ImagingStudy.read", "system/*.cruds"} {
		for _, p := range retrieves {
			if resp, b := s.call(t, caller{scopes: scopes}, "GET", p, nil, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("%s as %s: status %d: %.200s", p, scopes, resp.StatusCode, b)
			}
		}
	}

	// STOW-RS creates or adds to a study: it needs c and u.
	for scopes, want := range map[string]string{
		"system/ImagingStudy.c":     `"u" on ImagingStudy`,
		"system/ImagingStudy.rus":   `"c" on ImagingStudy`,
		"system/ImagingStudy.rs":    `"c" on ImagingStudy`,
		"system/ImagingStudy.read":  `"c" on ImagingStudy`,
		"system/Patient.cruds":      `"c" on ImagingStudy`,
		"patient/ImagingStudy.read": `"c" on ImagingStudy`,
	} {
		ct, body := stowBody(t, dicomtest.NewStudy(t))
		resp, b := s.call(t, caller{scopes: scopes, patient: s.p1}, "POST", "/studies", body, ct)
		wantRefused(t, resp, b, http.StatusForbidden, want)
	}
	for _, scopes := range []string{"system/ImagingStudy.cu", "system/ImagingStudy.write", "user/ImagingStudy.c user/ImagingStudy.u"} {
		ct, body := stowBody(t, dicomtest.NewStudy(t))
		if resp, b := s.call(t, caller{scopes: scopes}, "POST", "/studies", body, ct); resp.StatusCode != http.StatusOK {
			t.Errorf("STOW as %s: status %d: %s", scopes, resp.StatusCode, b)
		}
	}

	// DELETE needs d.
	for _, scopes := range []string{"system/ImagingStudy.crus", "system/ImagingStudy.read"} {
		resp, b := s.call(t, caller{scopes: scopes}, "DELETE", "/studies/"+s.pt2.StudyInstanceUID, nil, "")
		wantRefused(t, resp, b, http.StatusForbidden, `"d" on ImagingStudy`)
	}
	if resp, b := s.call(t, caller{scopes: "system/ImagingStudy.d"}, "DELETE", "/studies/"+s.pt2.StudyInstanceUID, nil, ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE with d: status %d: %s", resp.StatusCode, b)
	}
}

func TestAuth_PatientScope(t *testing.T) {
	t.Parallel()
	s := newAuthStudies(t)
	p1 := caller{scopes: "patient/ImagingStudy.rs", patient: s.p1}
	p2 := caller{scopes: "patient/*.read", patient: s.p2}
	mine := []string{s.ct1.StudyInstanceUID, s.mr1.StudyInstanceUID}
	slices.Sort(mine)

	for path, want := range map[string][]string{
		"/studies":                      mine,
		"/series":                       mine,
		"/instances":                    mine,
		"/studies?ModalitiesInStudy=CT": {s.ct1.StudyInstanceUID},
		"/studies?PatientID=A2":         nil,
		"/studies?StudyInstanceUID=" + s.pt2.StudyInstanceUID:                                nil,
		"/studies?StudyInstanceUID=" + s.pt2.StudyInstanceUID + "," + s.ct1.StudyInstanceUID: {s.ct1.StudyInstanceUID},
		"/studies/" + s.pt2.StudyInstanceUID + "/series":                                     nil,
		"/studies/" + s.pt2.StudyInstanceUID + "/instances":                                  nil,
		"/studies/" + s.mr1.StudyInstanceUID + "/series":                                     {s.mr1.StudyInstanceUID},
	} {
		if got := s.studyUIDs(t, p1, path); !slices.Equal(got, want) {
			t.Errorf("%s as p1: %v, want %v", path, got, want)
		}
	}
	if got := s.studyUIDs(t, p2, "/studies"); !slices.Equal(got, []string{s.pt2.StudyInstanceUID}) {
		t.Errorf("/studies as p2: %v", got)
	}
	if got := s.studyUIDs(t, caller{scopes: "patient/ImagingStudy.rs", patient: "nobody"}, "/studies"); len(got) != 0 {
		t.Errorf("/studies as a patient without studies: %v", got)
	}

	// WADO-RS: only the patient's own studies.
	for _, path := range []string{"/studies/" + s.ct1.StudyInstanceUID + "/metadata", "/studies/" + s.mr1.StudyInstanceUID} {
		if resp, b := s.call(t, p1, "GET", path, nil, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s as p1: status %d: %.200s", path, resp.StatusCode, b)
		}
	}
	se := s.pt2.Series[0]
	for _, path := range []string{
		"/studies/" + s.pt2.StudyInstanceUID,
		"/studies/" + s.pt2.StudyInstanceUID + "/metadata",
		"/studies/" + s.pt2.StudyInstanceUID + "/series/" + se.SeriesInstanceUID + "/instances/" + se.Instances[0].SOPInstanceUID + "/thumbnail",
	} {
		resp, b := s.call(t, p1, "GET", path, nil, "")
		wantRefused(t, resp, b, http.StatusForbidden, "outside the access token's patient compartment")
	}
	if resp, _ := s.call(t, p1, "GET", "/studies/1.2.3.4.5/metadata", nil, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown study as p1: status %d, want 404", resp.StatusCode)
	}

	// Stores and deletes need an unnarrowed grant.
	ct, body := stowBody(t, dicomtest.NewStudy(t, dicomtest.WithPatient("A1", "HOSP-A", "ONE^PAT")))
	resp, b := s.call(t, caller{scopes: "patient/ImagingStudy.cruds", patient: s.p1}, "POST", "/studies", body, ct)
	wantRefused(t, resp, b, http.StatusForbidden, "storing or deleting studies needs a system/ or user/ scope")
	resp, b = s.call(t, caller{scopes: "patient/ImagingStudy.cruds", patient: s.p1}, "DELETE", "/studies/"+s.ct1.StudyInstanceUID, nil, "")
	wantRefused(t, resp, b, http.StatusForbidden, "storing or deleting studies needs a system/ or user/ scope")

	// A patient scope without a launch patient grants nothing.
	resp, b = s.call(t, caller{scopes: "patient/ImagingStudy.rs"}, "GET", "/studies", nil, "")
	wantRefused(t, resp, b, http.StatusForbidden, "patient launch context")
}

// The ImagingStudy's subject decides, not the Patient the archive first
// filed the study under; and an ImagingStudy of another patient that merely
// names a stored study's UID reaches nothing.
func TestAuth_PatientScope_FollowsImagingStudySubject(t *testing.T) {
	t.Parallel()
	s := newAuthStudies(t)
	p1 := caller{scopes: "patient/ImagingStudy.rs", patient: s.p1}
	p2 := caller{scopes: "patient/ImagingStudy.rs", patient: s.p2}

	// A remote prior of p2 that claims ct1's StudyInstanceUID.
	s.putImagingStudy(t, map[string]any{"resourceType": "ImagingStudy", "id": "remote", "status": "available",
		"identifier": []any{map[string]any{"system": "urn:dicom:uid", "value": "urn:oid:" + s.ct1.StudyInstanceUID}},
		"subject":    map[string]any{"reference": "Patient/" + s.p2}})
	if got := s.studyUIDs(t, p2, "/studies"); !slices.Equal(got, []string{s.pt2.StudyInstanceUID}) {
		t.Errorf("p2 with a claiming remote ImagingStudy: %v", got)
	}
	resp, b := s.call(t, p2, "GET", "/studies/"+s.ct1.StudyInstanceUID+"/metadata", nil, "")
	wantRefused(t, resp, b, http.StatusForbidden, "outside")

	// mr1 is refiled under p2 through FHIR.
	is := s.imagingStudy(t, s.mr1.StudyInstanceUID)
	is["subject"] = map[string]any{"reference": "Patient/" + s.p2}
	delete(is, "meta")
	s.putImagingStudy(t, is)
	if got := s.studyUIDs(t, p1, "/studies"); !slices.Equal(got, []string{s.ct1.StudyInstanceUID}) {
		t.Errorf("p1 after mr1 moved: %v", got)
	}
	want := []string{s.mr1.StudyInstanceUID, s.pt2.StudyInstanceUID}
	slices.Sort(want)
	if got := s.studyUIDs(t, p2, "/studies"); !slices.Equal(got, want) {
		t.Errorf("p2 after mr1 moved: %v, want %v", got, want)
	}
	resp, b = s.call(t, p1, "GET", "/studies/"+s.mr1.StudyInstanceUID+"/metadata", nil, "")
	wantRefused(t, resp, b, http.StatusForbidden, "outside")
	if resp, b := s.call(t, p2, "GET", "/studies/"+s.mr1.StudyInstanceUID+"/metadata", nil, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("mr1 as p2: status %d: %.200s", resp.StatusCode, b)
	}
}

func TestAuth_QueryScopesRefused(t *testing.T) {
	t.Parallel()
	s := newAuthStudies(t)
	for _, c := range []caller{
		{scopes: "system/ImagingStudy.rs?modality=CT"},
		{scopes: "patient/ImagingStudy.rs?modality=CT", patient: s.p1},
	} {
		for _, path := range []string{"/studies", "/studies/" + s.ct1.StudyInstanceUID + "/metadata"} {
			resp, b := s.call(t, c, "GET", path, nil, "")
			wantRefused(t, resp, b, http.StatusForbidden, "scopes with search restrictions cannot be applied to DICOMweb")
		}
	}
	// An unrestricted scope beside it wins (auth.Allow takes the widest).
	c := caller{scopes: "system/ImagingStudy.rs?modality=CT system/ImagingStudy.rs"}
	if got := s.studyUIDs(t, c, "/studies"); len(got) != 3 {
		t.Errorf("with an unrestricted scope too: %v", got)
	}
}

// Without WithAuth, a request needs no Principal (every other test of the
// package runs so too).
func TestAuth_Off(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	st := dicomtest.NewStudy(t)
	s.store(t, st)
	if resp, b := s.call(t, caller{}, "GET", "/studies/"+st.StudyInstanceUID+"/metadata", nil, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("metadata: status %d: %s", resp.StatusCode, b)
	}
	if resp, b := s.call(t, caller{}, "DELETE", "/studies/"+st.StudyInstanceUID, nil, ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete: status %d: %s", resp.StatusCode, b)
	}
}
