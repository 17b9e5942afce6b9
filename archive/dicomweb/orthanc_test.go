package dicomweb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

// interop is Priorflow's DICOMweb on a test server, at the root it returns,
// and an Orthanc that knows it as the DICOMweb server "priorflow".
func interop(t *testing.T) (*archivetest.Env, *orthanctest.Orthanc, string) {
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
	return env, o, root
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
	env, o, _ := interop(t)
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
	env, o, _ := interop(t)
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
	env, o, _ := interop(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("OP1", "", "PUSH^PAT"), dicomtest.WithInstancesPerSeries(3))
	var study string
	o.UploadStudy(t, st)
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

// TestOrthanc_MetadataAgrees compares WADO-RS metadata (PS3.18 F.2) of the
// same objects stored in both servers, attribute by attribute and into
// sequence items: the real files of the dicom module, a deflated one, one
// whose attributes a gateway left UN (PS3.5 6.2.2) beside Latin-1 text, and
// names in Japanese, Korean and Chinese code extensions (PS3.5 Annexes H to
// J), GB18030, Greek, Cyrillic, Arabic and Hebrew.
// Orthanc's DICOM JSON comes from DCMTK, which reads UN with the
// dictionary's VR and Private Creators as LO, as Priorflow now does too.
//
// What PS3.18 leaves to the server is not compared: whether a binary value
// is inline or bulk data, and the bulk data URIs. Orthanc splits an ST, LT
// or UT at backslashes, which are text in these VRs (PS3.5 6.2); such a
// value is compared joined again.
func TestOrthanc_MetadataAgrees(t *testing.T) {
	t.Parallel()
	env, o, root := interop(t)
	var objects [][]byte
	for _, name := range []string{dicomtest.FilePET1, dicomtest.FilePET2, dicomtest.FileMR, dicomtest.FileCR, dicomtest.FileCTMulti} {
		b, err := os.ReadFile(dicomtest.TestdataPath(t, name))
		if err != nil {
			t.Fatal(err)
		}
		objects = append(objects, b)
	}
	// 6.dcm has no PatientID, which the archive refuses.
	deflated := dicomtest.NewStudy(t, dicomtest.WithTemplate(dicomtest.FileOTDeflated), dicomtest.WithPatient("MD1", "", "DEFLATED^PAT"), dicomtest.WithInstancesPerSeries(1))
	un := dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
		dicomtest.Set(tag.SpecificCharacterSet, "ISO_IR 100"),
		// Of even length: Orthanc keeps the padding of a value it reads
		// from UN, and drops Rows held as UN (dicomheader's test covers
		// both in Priorflow).
		dicomtest.SetUN(tag.PatientID, []byte("MD22")),
		dicomtest.SetUN(tag.PatientName, []byte("M\xfcller^Hanna")),
		dicomtest.SetUN(tag.StudyDate, []byte("20090306")),
		dicomtest.SetUN(tag.Modality, []byte("MR")),
	))
	studies := []*dicomtest.Study{deflated, un}
	// Names in the character sets of PS3.5 Annexes H to J and in
	// single-byte sets, the raw bytes as a modality writes them.
	for _, n := range []struct {
		charset []string
		name    string
	}{
		{[]string{"", "ISO 2022 IR 87"}, "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"},
		{[]string{"", "ISO 2022 IR 149"}, "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf"},
		{[]string{"", "ISO 2022 IR 58"}, "Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="},
		{[]string{"GB18030"}, "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab="},
		{[]string{"ISO_IR 126"}, "\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"},
		{[]string{"ISO_IR 144"}, "\xbb\xee\xda\xe2\xd5\xdc\xd1\xe3\xe0\xd3"},
		{[]string{"ISO_IR 127"}, "\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1"},
		{[]string{"ISO_IR 138"}, "\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4"},
	} {
		studies = append(studies, dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(1), dicomtest.WithEdits(
			dicomtest.Set(tag.SpecificCharacterSet, n.charset...), dicomtest.Set(tag.PatientName, n.name))))
	}
	for _, st := range studies {
		for _, in := range st.Instances() {
			objects = append(objects, in.Bytes)
		}
	}
	stored := map[string]bool{}
	for _, b := range objects {
		obj, err := env.Archive.Spool(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range env.Archive.Store(context.Background(), []*archive.Object{obj}, "") {
			if r.Err != nil {
				t.Fatalf("store: %v", r.Err)
			}
		}
		obj.Remove()
		o.Upload(t, b)
		stored[obj.Header.StudyInstanceUID] = true
	}
	for study := range stored {
		code, body := o.Do(t, "GET", "/dicom-web/studies/"+study+"/metadata", nil)
		if code != 200 {
			t.Fatalf("Orthanc metadata of %s: %d %s", study, code, body)
		}
		theirs := instancesBySOP(t, body)
		resp, err := http.Get(root + "/studies/" + study + "/metadata")
		if err != nil {
			t.Fatal(err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("Priorflow metadata of %s: %d %s %v", study, resp.StatusCode, body, err)
		}
		ours := instancesBySOP(t, body)
		if len(ours) != len(theirs) {
			t.Errorf("study %s: %d instances in Priorflow's metadata, %d in Orthanc's", study, len(ours), len(theirs))
		}
		for sop, them := range theirs {
			for _, d := range diffDICOMJSON("", them, ours[sop]) {
				t.Errorf("instance %s: %s", sop, d)
			}
		}
	}
}

// instancesBySOP reads a metadata response by SOP Instance UID.
func instancesBySOP(t *testing.T, body []byte) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("metadata: %v: %.200s", err, body)
	}
	out := map[string]map[string]any{}
	for _, in := range list {
		sop, _ := in["00080018"].(map[string]any)
		vs, _ := sop["Value"].([]any)
		if len(vs) != 1 {
			t.Fatalf("an instance without one SOP Instance UID: %v", sop)
		}
		out[vs[0].(string)] = in
	}
	return out
}

// diffDICOMJSON lists the attributes in which two DICOM JSON objects differ
// beyond what the test's comment allows.
func diffDICOMJSON(path string, theirs, ours map[string]any) []string {
	keys := map[string]bool{}
	for k := range theirs {
		keys[k] = true
	}
	for k := range ours {
		keys[k] = true
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		a, _ := theirs[k].(map[string]any)
		b, _ := ours[k].(map[string]any)
		where := path + k
		switch {
		case a == nil || b == nil || a["vr"] != b["vr"]:
			out = append(out, fmt.Sprintf("%s: Orthanc %.200s, Priorflow %.200s", where, jsonText(a), jsonText(b)))
			continue
		case a["BulkDataURI"] != nil || b["BulkDataURI"] != nil:
			continue
		case a["vr"] == "SQ":
			ai, _ := a["Value"].([]any)
			bi, _ := b["Value"].([]any)
			if len(ai) != len(bi) {
				out = append(out, fmt.Sprintf("%s: %d items in Orthanc's, %d in Priorflow's", where, len(ai), len(bi)))
				continue
			}
			for i := range ai {
				x, _ := ai[i].(map[string]any)
				y, _ := bi[i].(map[string]any)
				out = append(out, diffDICOMJSON(fmt.Sprintf("%s[%d].", where, i), x, y)...)
			}
			continue
		case k == "00080005":
			// An empty first value (the default repertoire in G0, PS3.3
			// C.12.1.1.2) is null in DICOM JSON (PS3.18 F.2.5); Orthanc
			// leaves it out.
			vs, _ := b["Value"].([]any)
			b = map[string]any{"vr": b["vr"], "Value": slices.DeleteFunc(slices.Clone(vs), func(v any) bool { return v == nil })}
		case a["vr"] == "PN":
			// Orthanc writes an empty last component group; PS3.18 F.2.2
			// lets it be left out.
			a = map[string]any{"vr": "PN", "Value": withoutEmptyGroups(a["Value"])}
			b = map[string]any{"vr": "PN", "Value": withoutEmptyGroups(b["Value"])}
		case a["vr"] == "ST" || a["vr"] == "LT" || a["vr"] == "UT":
			if vs, ok := a["Value"].([]any); ok && len(vs) > 1 {
				parts := make([]string, len(vs))
				for i, v := range vs {
					parts[i], _ = v.(string)
				}
				a = map[string]any{"vr": a["vr"], "Value": []any{strings.Join(parts, `\`)}}
			}
		}
		if !reflect.DeepEqual(a, b) {
			out = append(out, fmt.Sprintf("%s: Orthanc %.200s, Priorflow %.200s", where, jsonText(a), jsonText(b)))
		}
	}
	return out
}

// withoutEmptyGroups returns the values of a PN attribute without the
// component groups that are empty strings.
func withoutEmptyGroups(v any) any {
	vs, _ := v.([]any)
	out := make([]any, len(vs))
	for i, x := range vs {
		groups, _ := x.(map[string]any)
		kept := map[string]any{}
		for k, g := range groups {
			if g != "" {
				kept[k] = g
			}
		}
		out[i] = kept
	}
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
