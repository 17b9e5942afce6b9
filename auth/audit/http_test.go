package audit

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassifyFHIR(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         fhirRequest
		skip         bool
	}{
		{"GET", "/ImagingStudy/s1", fhirRequest{Read, "ImagingStudy", "s1", ""}, false},
		{"HEAD", "/ImagingStudy/s1", fhirRequest{Read, "ImagingStudy", "s1", ""}, false},
		{"GET", "/ImagingStudy/s1/_history/3", fhirRequest{VRead, "ImagingStudy", "s1", "3"}, false},
		{"GET", "/ImagingStudy/s1/_history", fhirRequest{HistoryInstance, "ImagingStudy", "s1", ""}, false},
		{"GET", "/ImagingStudy/_history", fhirRequest{HistoryType, "ImagingStudy", "", ""}, false},
		{"GET", "/ImagingStudy", fhirRequest{SearchType, "ImagingStudy", "", ""}, false},
		{"GET", "/ImagingStudy/", fhirRequest{SearchType, "ImagingStudy", "", ""}, false},
		{"POST", "/ImagingStudy/_search", fhirRequest{SearchType, "ImagingStudy", "", ""}, false},
		{"POST", "/ImagingStudy", fhirRequest{Create, "ImagingStudy", "", ""}, false},
		{"PUT", "/ImagingStudy", fhirRequest{Update, "ImagingStudy", "", ""}, false},
		{"PUT", "/ImagingStudy/s1", fhirRequest{Update, "ImagingStudy", "s1", ""}, false},
		{"PATCH", "/ImagingStudy/s1", fhirRequest{Patch, "ImagingStudy", "s1", ""}, false},
		{"DELETE", "/ImagingStudy/s1", fhirRequest{Delete, "ImagingStudy", "s1", ""}, false},
		{"POST", "/", fhirRequest{Batch, "", "", ""}, false},
		{"POST", "", fhirRequest{Batch, "", "", ""}, false},
		{"GET", "/Subscription/sub1/$status", fhirRequest{Read, "Subscription", "sub1", ""}, false},
		{"GET", "/Subscription/sub1/%24events", fhirRequest{Read, "Subscription", "sub1", ""}, false},
		{"POST", "/Patient/$match", fhirRequest{Operation, "Patient", "", ""}, false},
		{"GET", "/$export", fhirRequest{Operation, "", "", ""}, false},
		{"GET", "/metadata", fhirRequest{}, true},
		{"GET", "/.well-known/smart-configuration", fhirRequest{}, true},
		{"GET", "/subscription-ws", fhirRequest{}, true},
		{"OPTIONS", "/ImagingStudy", fhirRequest{}, true},
	} {
		got, ok := classifyFHIR(c.method, c.path)
		if ok == c.skip || got != c.want {
			t.Errorf("%s %s = %+v audited %v, want %+v audited %v", c.method, c.path, got, ok, c.want, !c.skip)
		}
	}
}

func TestClassifyDICOMweb(t *testing.T) {
	const uid = "1.2.840.1"
	for _, c := range []struct {
		method, path string
		want         Interaction
		study        string
	}{
		{"GET", "/studies", QIDORS, ""},
		{"GET", "/series", QIDORS, ""},
		{"GET", "/instances", QIDORS, ""},
		{"GET", "/studies/" + uid + "/series", QIDORS, uid},
		{"GET", "/studies/" + uid + "/instances", QIDORS, uid},
		{"GET", "/studies/" + uid + "/series/1.2/instances", QIDORS, uid},
		{"GET", "/studies/" + uid, WADORS, uid},
		{"GET", "/studies/" + uid + "/metadata", WADORS, uid},
		{"GET", "/studies/" + uid + "/rendered", WADORS, uid},
		{"GET", "/studies/" + uid + "/thumbnail", WADORS, uid},
		{"GET", "/studies/" + uid + "/series/1.2/instances/1.3/frames/1", WADORS, uid},
		{"GET", "/studies/" + uid + "/series/1.2/instances/1.3/bulkdata/x", WADORS, uid},
		{"POST", "/studies", STOWRS, ""},
		{"POST", "/studies/" + uid, STOWRS, uid},
		{"DELETE", "/studies/" + uid, DICOMDelete, uid},
		{"GET", "/studies/not-a-uid", WADORS, ""},
	} {
		got, study, ok := classifyDICOMweb(c.method, c.path)
		if !ok || got != c.want || study != c.study {
			t.Errorf("%s %s = %s %q %v, want %s %q", c.method, c.path, got, study, ok, c.want, c.study)
		}
	}
	if _, _, ok := classifyDICOMweb("OPTIONS", "/studies"); ok {
		t.Error("OPTIONS is audited")
	}
}

func TestSanitizeQuery_DropsCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"patient=p1&access_token=SECRET&_count=5": "patient=p1&_count=5",
		"Access_Token=SECRET":                     "",
		"access%5Ftoken=SECRET&a=b%20c":           "a=b%20c",
		"client_secret=x&client_assertion=y&q":    "q",
	} {
		if got := sanitizeQuery(in); got != want {
			t.Errorf("sanitizeQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQueryPatients(t *testing.T) {
	var got patientSet
	q, _ := url.ParseQuery("patient=p1,Patient/p2&subject=Patient/p3&subject:Patient=p4&subject=Group/g&patient.identifier=x|y&modality=CT")
	queryPatients("ImagingStudy", q, got.add)
	slices.Sort(got)
	if diff := cmp.Diff(patientSet{"Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"}, got); diff != "" {
		t.Errorf("patients (-want +got):\n%s", diff)
	}
	got = nil
	q, _ = url.ParseQuery("_id=p5")
	queryPatients("Patient", q, got.add)
	if diff := cmp.Diff(patientSet{"Patient/p5"}, got); diff != "" {
		t.Errorf("Patient _id (-want +got):\n%s", diff)
	}
}

func TestPatientsIn_ByType(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       patientSet
	}{
		{"Patient", `{"resourceType":"Patient","id":"p1"}`, patientSet{"Patient/p1"}},
		{"ImagingStudy subject", `{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}}`, patientSet{"Patient/p1"}},
		{"ImagingStudy of a Group", `{"resourceType":"ImagingStudy","subject":{"reference":"Group/g1"}}`, nil},
		{"Appointment actors", `{"resourceType":"Appointment","participant":[{"actor":{"reference":"Practitioner/x"}},{"actor":{"reference":"Patient/p2"}}]}`, patientSet{"Patient/p2"}},
		{"Encounter participant has no actor", `{"resourceType":"Encounter","subject":{"reference":"Patient/p1"},"participant":[{"individual":{"reference":"Practitioner/x"}}]}`, patientSet{"Patient/p1"}},
		{"Task for", `{"resourceType":"Task","for":{"reference":"Patient/p3"}}`, patientSet{"Patient/p3"}},
		{"AuditEvent entities", `{"resourceType":"AuditEvent","type":{"code":"rest"},"entity":[{"what":{"reference":"Patient/p4"}},{"what":{"reference":"ImagingStudy/s"}}]}`, patientSet{"Patient/p4"}},
		{"Provenance targets", `{"resourceType":"Provenance","target":[{"reference":"Patient/p5"},{"reference":"ImagingStudy/s"}]}`, patientSet{"Patient/p5"}},
		{"Endpoint", `{"resourceType":"Endpoint","address":"x"}`, nil},
		{"searchset", `{"resourceType":"Bundle","type":"searchset","entry":[
			{"resource":{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}}},
			{"resource":{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p2"}}},
			{"resource":{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"}}},
			{"resource":{"resourceType":"Patient","id":"p9"},"search":{"mode":"include"}},
			{"resource":{"resourceType":"OperationOutcome","issue":[]}}]}`, patientSet{"Patient/p1", "Patient/p2", "Patient/p9"}},
		{"transaction-response", `{"resourceType":"Bundle","type":"transaction-response","entry":[
			{"response":{"status":"201","location":"Patient/p7/_history/1"}},
			{"response":{"status":"201","location":"ImagingStudy/s/_history/1"}}]}`, patientSet{"Patient/p7"}},
		{"transaction request", `{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"DELETE","url":"Patient/p8"}},
			{"resource":{"resourceType":"ImagingStudy","subject":{"reference":"urn:uuid:0b7c1e9f"}},"request":{"method":"POST","url":"ImagingStudy"}}]}`, patientSet{"Patient/p8"}},
		{"unexpected shapes elsewhere", `{"resourceType":"ImagingStudy","subject":{"reference":"Patient/p1"},"entity":"odd","target":7}`, patientSet{"Patient/p1"}},
	} {
		r, ok := decodeResource([]byte(c.body))
		if !ok {
			t.Errorf("%s: not decoded", c.name)
			continue
		}
		var got patientSet
		patientsIn(r, got.add, 0)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestDICOMStudies(t *testing.T) {
	var got []string
	add := func(s string) { got = append(got, s) }
	qidoStudies([]byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]}},{"0020000D":{"vr":"UI","Value":["1.2.4"]},"00100020":{"vr":"LO","Value":["X"]}}]`), add)
	stowStudies([]byte(`{"00081190":{"vr":"UR","Value":["http://h/dicomweb/studies/1.2.5"]},
		"00081199":{"vr":"SQ","Value":[{"00081190":{"vr":"UR","Value":["http://h/dicomweb/studies/1.2.6/series/1/instances/2"]}}]}}`), add)
	if diff := cmp.Diff([]string{"1.2.3", "1.2.4", "1.2.5", "1.2.6"}, got); diff != "" {
		t.Errorf("studies (-want +got):\n%s", diff)
	}
}

// TestTee_PassesResponsesThrough runs handlers with and without the tee and
// compares what the client gets.
func TestTee_PassesResponsesThrough(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"JSON with status": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Header().Set("ETag", `W/"2"`)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`)
		},
		"implicit 200, sniffed type": func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "<html><body>hello</body></html>")
		},
		"streamed multipart with flushes": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=b`)
			for i := 0; i < 3; i++ {
				_, _ = w.Write(bytes.Repeat([]byte{byte('a' + i)}, 40000))
				w.(http.Flusher).Flush()
			}
		},
		"io.Copy of a file": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/dicom")
			_, _ = io.Copy(w, strings.NewReader(strings.Repeat("x", 100000)))
		},
		"no body": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			direct := httptest.NewServer(h)
			defer direct.Close()
			var kept *tee
			teed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				kept = &tee{ResponseWriter: w, limit: 1 << 20, want: true}
				h(kept, r)
			}))
			defer teed.Close()
			get := func(u string) (*http.Response, []byte) {
				resp, err := http.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				resp.Header.Del("Date")
				return resp, b
			}
			r1, b1 := get(direct.URL)
			r2, b2 := get(teed.URL)
			if r1.StatusCode != r2.StatusCode || !bytes.Equal(b1, b2) {
				t.Errorf("status %d/%d, bodies equal %v", r1.StatusCode, r2.StatusCode, bytes.Equal(b1, b2))
			}
			if diff := cmp.Diff(r1.Header, r2.Header); diff != "" {
				t.Errorf("headers (-direct +teed):\n%s", diff)
			}
			if r1.TransferEncoding != nil && !slices.Equal(r1.TransferEncoding, r2.TransferEncoding) {
				t.Errorf("transfer encoding %v, teed %v", r1.TransferEncoding, r2.TransferEncoding)
			}
			if got, want := kept.statusOr200(), r1.StatusCode; got != want {
				t.Errorf("kept status %d, want %d", got, want)
			}
			jsonBody := strings.Contains(r1.Header.Get("Content-Type"), "json")
			if kept.capturing != jsonBody || (jsonBody && !bytes.Equal(kept.buf.Bytes(), b1)) {
				t.Errorf("captured %v %q; only JSON bodies are copied", kept.capturing, kept.buf.Bytes())
			}
		})
	}
}

func TestTee_CaptureIsBounded(t *testing.T) {
	rr := httptest.NewRecorder()
	tw := &tee{ResponseWriter: rr, limit: 10, want: true}
	tw.Header().Set("Content-Type", "application/json")
	_, _ = tw.Write([]byte("[1,2,3,"))
	_, _ = tw.Write([]byte("4,5,6,7]"))
	if !tw.over || tw.buf.Len() != 0 {
		t.Errorf("over %v, kept %d bytes", tw.over, tw.buf.Len())
	}
	if got := rr.Body.String(); got != "[1,2,3,4,5,6,7]" {
		t.Errorf("client got %q", got)
	}
}

func TestTee_Hijack(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &tee{ResponseWriter: w, limit: 10}
		conn, rw, err := http.NewResponseController(tw).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhi")
		_ = rw.Flush()
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// The patients of a response are read by the writer while the bodies
// waiting for it stay under maxDeferred; past it the request reads them.
// Either way every byte counted is given back.
func TestDeferResponse_BoundedAndGivenBack(t *testing.T) {
	rec := &Recorder{}
	body := []byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"ImagingStudy","id":"s1","subject":{"reference":"Patient/a"}}}]}`)
	ev := &Event{Patients: []string{"Patient/q"}}
	if !rec.deferResponse(ev, body, "") {
		t.Fatal("an empty queue refused to take a response")
	}
	if got := rec.deferred.Load(); got != int64(len(body)) {
		t.Errorf("deferred %d bytes, want %d", got, len(body))
	}

	rec.deferred.Add(maxDeferred - int64(len(body)) - 10)
	full := &Event{}
	if rec.deferResponse(full, body, "") || full.response != nil {
		t.Error("a response was deferred past maxDeferred")
	}
	if got, want := rec.deferred.Load(), int64(maxDeferred-10); got != want {
		t.Errorf("a refused response left %d bytes counted, want %d", got, want)
	}
	rec.deferred.Add(-(maxDeferred - int64(len(body)) - 10))

	rec.responsePatients(ev)
	if diff := cmp.Diff([]string{"Patient/q", "Patient/a"}, ev.Patients); diff != "" {
		t.Errorf("patients (-want +got):\n%s", diff)
	}
	if ev.response != nil || rec.deferred.Load() != 0 {
		t.Errorf("after reading: response kept %v, %d bytes still counted", ev.response != nil, rec.deferred.Load())
	}

	// A patient-scoped grant names its patient when the response has none.
	endpoints := []byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Endpoint","id":"e1"}}]}`)
	scoped := &Event{}
	if !rec.deferResponse(scoped, endpoints, "z") {
		t.Fatal("refused")
	}
	rec.responsePatients(scoped)
	if diff := cmp.Diff([]string{"Patient/z"}, scoped.Patients); diff != "" {
		t.Errorf("patients of a scoped search without any (-want +got):\n%s", diff)
	}
}
