package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/internal/demo"
	"github.com/priorflow/priorflow/internal/orthanctest"
)

// The README walkthrough on real processes: a remote site (Orthanc) seeded
// with `priorflow demo seed`, the api and the prefetcher as built binaries
// with their own database, ports and data dir and the default rules plus a
// dicomweb source, the sample SIU^S12 sent with `priorflow hl7 send`; the
// priors appear under ImagingStudy?patient= with the local Endpoint, and
// their thumbnails render. Then the FHIR route (a Patient and a booked
// Appointment) for a second patient, and no patient data in the logs.
func TestWalkthrough_SIU_LoadsPriorsFromDemoRemote(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binaries and runs Orthanc")
	}
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "../api", "../prefetcher", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := orthanctest.Start(t)
	if out, err := exec.Command(filepath.Join(bin, "priorflow"), "demo", "seed", "-url", o.URL+"/dicom-web").CombinedOutput(); err != nil {
		t.Fatalf("priorflow demo seed: %v\n%s", err, out)
	} else {
		t.Logf("priorflow demo seed:\n%s", out)
	}

	dir := t.TempDir()
	rulesYAML, err := os.ReadFile("../../config/priorflow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "priorflow.yaml")
	cfg := string(rulesYAML) + fmt.Sprintf(`
sources:
  - name: demo-remote
    kind: dicomweb
    url: %s/dicom-web
    issuer: %s
`, o.URL, demo.SIUIssuer)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, mllpAddr, natsAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	base := "http://" + httpAddr
	env := append(os.Environ(),
		"DATABASE_URL="+dbtest.NewDatabase(t),
		"PRIORFLOW_CONFIG="+cfgPath,
		"PRIORFLOW_DATA_DIR="+filepath.Join(dir, "data"),
		"PRIORFLOW_HTTP_ADDR="+httpAddr,
		"PRIORFLOW_BASE_URL="+base,
		"PRIORFLOW_MLLP_ADDR="+mllpAddr,
		"PRIORFLOW_NATS_LISTEN="+natsAddr,
		"PRIORFLOW_PREFETCHER_HTTP_ADDR="+metricsAddr,
		"PRIORFLOW_RETRIEVE_BACKOFF=200ms",
		"PRIORFLOW_RETRIEVE_BACKOFF_MAX=2s",
		"PRIORFLOW_AUTH=dev", // as make run: every FHIR and DICOMweb call below carries the dev token
	)
	start := func(name string, extra ...string) {
		t.Helper()
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, name))
		cmd.Env = append(env, extra...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, tailBytes(b, 4000))
			}
		})
	}
	start("api")
	eventually(t, 60*time.Second, "the api to be ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	start("prefetcher", "NATS_URL=nats://"+natsAddr)
	tok, err := os.ReadFile(filepath.Join(dir, "data", "dev-token"))
	if err != nil {
		t.Fatalf("the dev token make run prints: %v", err)
	}
	token := strings.TrimSpace(string(tok))
	if code := httpStatus(t, base+"/fhir/Task", ""); code != http.StatusUnauthorized {
		t.Errorf("FHIR without the token: HTTP %d, want 401", code)
	}

	// The sample as shipped: its appointment (2021) is past, so the job is
	// due at once; the 5-year lookback counts from the appointment, which
	// the seeded dates (at most 4 years old) satisfy.
	out, err := exec.Command(filepath.Join(bin, "priorflow"), "hl7", "send", "-addr", mllpAddr, "../../triggers/hl7v2/testdata/SIU-S12-01.hl7").CombinedOutput()
	if err != nil {
		t.Fatalf("priorflow hl7 send: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "MSA|AA") {
		t.Fatalf("ACK %q, want MSA|AA", out)
	}

	var studies []map[string]any
	eventually(t, 90*time.Second, "ImagingStudy?patient= to show the two priors", func() bool {
		studies = nil
		for _, p := range fhirSearch(t, base, token, "Patient?identifier="+demo.SIUPatientID) {
			studies = append(studies, fhirSearch(t, base, token, "ImagingStudy?patient=Patient/"+p["id"].(string))...)
		}
		return len(studies) >= 2
	})
	if len(studies) != 2 {
		t.Errorf("%d ImagingStudy resources, want 2 (maxPriors 2)", len(studies))
	}
	for _, is := range studies {
		ep, _ := json.Marshal(is["endpoint"])
		if !strings.Contains(string(ep), "Endpoint/"+archive.LocalEndpointID) {
			t.Errorf("ImagingStudy %v endpoint %s, want Endpoint/%s", is["id"], ep, archive.LocalEndpointID)
		}
		uid := studyUID(is)
		if uid == "" {
			t.Fatalf("ImagingStudy %v has no DICOM UID identifier", is["id"])
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/dicomweb/studies/"+uid+"/thumbnail", nil)
		req.Header.Set("Accept", "image/jpeg")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		img, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(img, []byte{0xFF, 0xD8}) {
			t.Errorf("thumbnail of %s: HTTP %d %s, %d bytes; want a JPEG", uid, resp.StatusCode, resp.Header.Get("Content-Type"), len(img))
		}
	}
	var tasks map[string]any
	getJSON(t, base+"/fhir/Task?code=prefetch", token, &tasks)
	if n, _ := tasks["total"].(float64); n < 1 && len(entries(tasks)) == 0 {
		t.Errorf("Task?code=prefetch shows no job: %v", tasks)
	}

	// The FHIR route, for the demo's second patient (DEMO-0002, one MR
	// study at the remote): a Patient carrying the identifier, then a booked
	// stat Appointment for an MR tomorrow (the rule's 5-year lookback counts
	// from the appointment). Its prior appears local, like the SIU's.
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour)
	sendFHIR(t, http.MethodPut, base+"/fhir/Patient/demo-doe", token, `{"resourceType": "Patient", "id": "demo-doe",
		"identifier": [{"system": "urn:priorflow:issuer:`+demo.SIUIssuer+`", "value": "DEMO-0002"}],
		"name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1975-02-03", "gender": "female"}`)
	sendFHIR(t, http.MethodPost, base+"/fhir/Appointment", token, `{"resourceType": "Appointment", "status": "booked", "priority": 2,
		"serviceType": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}]}],
		"start": "`+tomorrow.Format(time.RFC3339)+`", "end": "`+tomorrow.Add(30*time.Minute).Format(time.RFC3339)+`",
		"participant": [{"actor": {"reference": "Patient/demo-doe"}, "status": "accepted"}]}`)
	var mr []map[string]any
	eventually(t, 90*time.Second, "ImagingStudy?patient=Patient/demo-doe to show the local MR prior", func() bool {
		mr = nil
		for _, is := range fhirSearch(t, base, token, "ImagingStudy?patient=Patient/demo-doe") {
			if ep, _ := json.Marshal(is["endpoint"]); strings.Contains(string(ep), "Endpoint/"+archive.LocalEndpointID) {
				mr = append(mr, is)
			}
		}
		return len(mr) > 0
	})
	if len(mr) != 1 {
		t.Errorf("Patient/demo-doe: %d local ImagingStudy resources, want 1 (the MR BRAIN)", len(mr))
	} else if mods, _ := json.Marshal(mr[0]["modality"]); !strings.Contains(string(mods), `"MR"`) {
		t.Errorf("Patient/demo-doe's prior has modality %s, want MR", mods)
	}

	// No patient data in the logs of a whole care event → loaded prior
	// flow: not the identifiers of the HL7 message or the remote's
	// studies, not the names, not the birth date.
	for _, name := range []string{"api", "prefetcher"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			t.Errorf("%s wrote no log at all; the scan below would prove nothing", name)
		}
		for _, s := range []string{demo.SIUPatientID, "123456789", "PATID567", "EVERYMAN", "Everyman", "ADAM^", "Aniston", demo.SIUBirthDate,
			"DEMO-0002", "DOE^JANE", "Jane", "1975-02-03", "19750203"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the %s log contains patient data %q", name, s)
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// httpStatus is the HTTP status of GET u with the bearer token (none if empty).
func httpStatus(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sendFHIR sends a FHIR JSON resource with the bearer token and fails the
// test unless the server answers 200 or 201.
func sendFHIR(t *testing.T, method, u, token, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: HTTP %d %s", method, u, resp.StatusCode, b)
	}
}

func getJSON(t *testing.T, u, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func entries(bundle map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := bundle["entry"].([]any)
	for _, e := range list {
		if r, ok := e.(map[string]any)["resource"].(map[string]any); ok {
			out = append(out, r)
		}
	}
	return out
}

func fhirSearch(t *testing.T, base, token, q string) []map[string]any {
	t.Helper()
	var b map[string]any
	getJSON(t, base+"/fhir/"+q, token, &b)
	return entries(b)
}

func studyUID(is map[string]any) string {
	ids, _ := is["identifier"].([]any)
	for _, x := range ids {
		m, _ := x.(map[string]any)
		if m["system"] == archive.SystemDICOMUID {
			return strings.TrimPrefix(fmt.Sprint(m["value"]), "urn:oid:")
		}
	}
	return ""
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
