package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// stowServer is a DICOMweb server on its own database.
func stowServer(t *testing.T) (*httptest.Server, *archivetest.Env) {
	t.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	env := archivetest.New(t, "http://"+ts.Listener.Addr().String()+"/dicomweb")
	h, err := dicomweb.New(env.Archive, dbtest.Logger(), 0)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dicomweb/", http.StripPrefix("/dicomweb", h.Routes()))
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, env
}

func multipartBody(t *testing.T, parts ...[]byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf, "application/dicom")
	for _, p := range parts {
		if err := w.WritePart("application/dicom", "", bytes.NewReader(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.ContentType(), buf.Bytes()
}

type stowReply struct {
	status int
	body   map[string]any
	raw    string
}

func stow(t *testing.T, url, ct string, body []byte) stowReply {
	t.Helper()
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := stowReply{status: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func seqLen(m map[string]any, tag string) int {
	a, ok := m[tag].(map[string]any)
	if !ok {
		return 0
	}
	v, _ := a["Value"].([]any)
	return len(v)
}

func TestSTOW_StoresAndReports(t *testing.T) {
	t.Parallel()
	ts, env := stowServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("S1", "", "DOE^JANE"), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2))
	var parts [][]byte
	for _, in := range st.Instances() {
		parts = append(parts, in.Bytes)
	}
	ct, body := multipartBody(t, parts...)
	r := stow(t, ts.URL+"/dicomweb/studies", ct, body)
	if r.status != 200 {
		t.Fatalf("status %d, want 200: %s", r.status, r.raw)
	}
	if got := seqLen(r.body, "00081199"); got != 4 {
		t.Errorf("ReferencedSOPSequence has %d items, want 4", got)
	}
	if got := seqLen(r.body, "00081198"); got != 0 {
		t.Errorf("FailedSOPSequence has %d items, want 0", got)
	}
	retrieve := r.body["00081190"].(map[string]any)["Value"].([]any)[0].(string)
	if want := ts.URL + "/dicomweb/studies/" + st.StudyInstanceUID; retrieve != want {
		t.Errorf("RetrieveURL = %s, want %s", retrieve, want)
	}
	// Re-sending is idempotent.
	if r := stow(t, ts.URL+"/dicomweb/studies", ct, body); r.status != 200 || seqLen(r.body, "00081199") != 4 {
		t.Errorf("resend: status %d, %d referenced: %s", r.status, seqLen(r.body, "00081199"), r.raw)
	}
	if n := env.BlobCount(t); n != 4 {
		t.Errorf("%d blobs, want 4", n)
	}
}

func TestSTOW_PartialFailureIs202(t *testing.T) {
	t.Parallel()
	ts, _ := stowServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("S2", "", "DOE^JANE"))
	ct, body := multipartBody(t, st.Instances()[0].Bytes, dicomtest.BrokenTruncated(t))
	r := stow(t, ts.URL+"/dicomweb/studies", ct, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.raw)
	}
	failed := r.body["00081198"].(map[string]any)["Value"].([]any)
	reason := failed[0].(map[string]any)["00081197"].(map[string]any)["Value"].([]any)[0]
	if reason != float64(0xC000) {
		t.Errorf("FailureReason = %v, want 0xC000", reason)
	}
}

func TestSTOW_StudyInPathMustMatch(t *testing.T) {
	t.Parallel()
	ts, _ := stowServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("S3", "", "DOE^JANE"))
	ct, body := multipartBody(t, st.Instances()[0].Bytes)
	r := stow(t, ts.URL+"/dicomweb/studies/1.2.3.4", ct, body)
	if r.status == 200 || seqLen(r.body, "00081198") != 1 {
		t.Errorf("object of another study: status %d, failed %d: %s", r.status, seqLen(r.body, "00081198"), r.raw)
	}
}

func TestSTOW_BadRequests(t *testing.T) {
	t.Parallel()
	ts, env := stowServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("S4", "", "DOE^JANE"))
	ct, body := multipartBody(t, st.Instances()[0].Bytes, st.Instances()[0].Bytes)
	broken := body[:len(body)/2] // the closing boundary and half an object are missing
	ctBad, bodyBad := multipartBody(t, dicomtest.BrokenNoPreamble(t))
	cases := []struct {
		name, path, ct string
		body           []byte
		status         int
	}{
		{"not multipart", "/dicomweb/studies", "application/dicom", st.Instances()[0].Bytes, 415},
		{"wrong type", "/dicomweb/studies", `multipart/related; type="application/json"; boundary=x`, body, 415},
		{"no boundary", "/dicomweb/studies", `multipart/related; type="application/dicom"`, body, 400},
		{"broken multipart", "/dicomweb/studies", ct, broken, 400},
		{"empty body", "/dicomweb/studies", ct, nil, 400},
		{"uid with path characters", "/dicomweb/studies/..%2F..%2Fetc", ct, body, 400},
		{"all invalid", "/dicomweb/studies", ctBad, bodyBad, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := stow(t, ts.URL+c.path, c.ct, c.body)
			if r.status != c.status {
				t.Errorf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.status != 200 && !strings.Contains(r.raw, "{") {
				t.Errorf("no explanation in body %q", r.raw)
			}
		})
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("%d blobs after bad requests, want 0 (no partial study)", n)
	}
}

// DELETE /studies/{study} removes the study's index, ImagingStudy and blobs;
// a second DELETE is 404.
func TestDELETE_Study(t *testing.T) {
	t.Parallel()
	ts, env := stowServer(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("D1", "", "DELETE^PAT"), dicomtest.WithInstancesPerSeries(2))
	var parts [][]byte
	for _, in := range st.Instances() {
		parts = append(parts, in.Bytes)
	}
	ct, body := multipartBody(t, parts...)
	if r := stow(t, ts.URL+"/dicomweb/studies", ct, body); r.status != 200 {
		t.Fatalf("stow: %d %s", r.status, r.raw)
	}
	del := func() int {
		req, _ := http.NewRequest("DELETE", ts.URL+"/dicomweb/studies/"+st.StudyInstanceUID, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := del(); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d, want 204", code)
	}
	if n := env.BlobCount(t); n != 0 {
		t.Errorf("%d blobs after DELETE, want 0", n)
	}
	resp, err := http.Get(ts.URL + "/dicomweb/studies/" + st.StudyInstanceUID + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("metadata after DELETE: %d, want 404", resp.StatusCode)
	}
	if code := del(); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", code)
	}
}
