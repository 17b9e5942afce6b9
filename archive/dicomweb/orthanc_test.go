package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

// interop is Priorflow's DICOMweb on a test server and an Orthanc that knows
// it as the DICOMweb server "priorflow".
func interop(t *testing.T) (*archivetest.Env, *orthanctest.Orthanc) {
	t.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	root := "http://" + ts.Listener.Addr().String() + "/dicomweb"
	env := archivetest.New(t, root)
	h, err := dicomweb.New(env.Archive, dbtest.Logger(), 0)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dicomweb/", http.StripPrefix("/dicomweb", h.Routes()))
	ts.Start()
	t.Cleanup(ts.Close)
	o := orthanctest.Start(t, orthanctest.Server{Name: "priorflow", URL: root + "/"})
	return env, o
}

func storeStudy(t *testing.T, a *archive.Archive, st *dicomtest.Study) {
	t.Helper()
	var objs []*archive.Object
	for _, in := range st.Instances() {
		o, err := a.Spool(bytes.NewReader(in.Bytes))
		if err != nil {
			t.Fatal(err)
		}
		defer o.Remove()
		objs = append(objs, o)
	}
	for _, r := range a.Store(context.Background(), objs, "") {
		if r.Err != nil {
			t.Fatalf("store: %v", r.Err)
		}
	}
}

func TestOrthanc_QueriesPriorflow(t *testing.T) {
	t.Parallel()
	env, o := interop(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("OQ1", "", "QUERY^PAT"), dicomtest.WithInstancesPerSeries(2))
	storeStudy(t, env.Archive, st)
	code, body := o.Do(t, "POST", "/dicom-web/servers/priorflow/get", map[string]any{
		"Uri": "/studies", "Arguments": map[string]string{"PatientID": "OQ1"}})
	if code != 200 {
		t.Fatalf("Orthanc QIDO through Priorflow: %d %s", code, body)
	}
	if !strings.Contains(string(body), st.StudyInstanceUID) {
		t.Errorf("Orthanc's QIDO result lacks the study: %s", body)
	}
}

func TestOrthanc_RetrievesFromPriorflowByteIdentical(t *testing.T) {
	t.Parallel()
	env, o := interop(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("OR1", "", "RETRIEVE^PAT"), dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2))
	storeStudy(t, env.Archive, st)
	code, body := o.Do(t, "POST", "/dicom-web/servers/priorflow/retrieve", map[string]any{
		"Resources": []any{map[string]any{"Study": st.StudyInstanceUID}}})
	if code != 200 {
		t.Fatalf("Orthanc WADO-RS retrieve from Priorflow: %d %s", code, body)
	}
	for _, in := range st.Instances() {
		code, body := o.Do(t, "POST", "/tools/lookup", []byte(in.SOPInstanceUID))
		var hits []struct{ ID, Type string }
		if code != 200 || json.Unmarshal(body, &hits) != nil || len(hits) != 1 {
			t.Errorf("instance %s not in Orthanc after retrieve: %d %s", in.SOPInstanceUID, code, body)
			continue
		}
		code, file := o.Do(t, "GET", "/instances/"+hits[0].ID+"/file", nil)
		if code != 200 || !bytes.Equal(file, in.Bytes) {
			t.Errorf("instance %s differs after the round trip (%d bytes vs %d)", in.SOPInstanceUID, len(file), len(in.Bytes))
		}
	}
}

func TestOrthanc_PushesToPriorflow(t *testing.T) {
	t.Parallel()
	env, o := interop(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("OP1", "", "PUSH^PAT"), dicomtest.WithInstancesPerSeries(3))
	var study string
	for _, in := range st.Instances() {
		o.Upload(t, in.Bytes)
	}
	code, body := o.Do(t, "POST", "/tools/lookup", []byte(st.StudyInstanceUID))
	var hits []struct{ ID string }
	if code != 200 || json.Unmarshal(body, &hits) != nil || len(hits) != 1 {
		t.Fatalf("study not in Orthanc: %d %s", code, body)
	}
	study = hits[0].ID
	code, body = o.Do(t, "POST", "/dicom-web/servers/priorflow/stow", map[string]any{"Resources": []string{study}})
	if code != 200 {
		t.Fatalf("Orthanc STOW-RS to Priorflow: %d %s", code, body)
	}
	id, err := env.Archive.StudyFHIRID(context.Background(), st.StudyInstanceUID)
	if err != nil {
		t.Fatalf("study not in Priorflow after Orthanc's STOW: %v", err)
	}
	res, err := env.Store.Read(context.Background(), "ImagingStudy", id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(res.Body, []byte(`"numberOfInstances":3`)) {
		t.Errorf("ImagingStudy after Orthanc's STOW: %s", res.Body)
	}
}
