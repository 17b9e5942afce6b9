package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/internal/database/dbtest"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/jetstream"
	"github.com/priorflow/priorflow/triggers/mllp"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startAPI runs the api in-process on a fresh database and returns its base
// URL and a function that stops it and returns run's error.
func startAPI(t *testing.T) (string, func() error) {
	a := startAPIFull(t)
	return a.base, a.stop
}

type apiProcess struct {
	base, mllp, nats string
	logPath, dataDir string
	stop             func() error
}

// startAPIFull is startAPI that also returns the MLLP and NATS addresses.
func startAPIFull(t *testing.T, extra ...string) apiProcess {
	t.Helper()
	addr, mllpAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	logf, err := os.CreateTemp(t.TempDir(), "api-*.log")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	// Authorization is off unless a test turns it on (security_test.go):
	// a later -auth flag wins.
	go func() {
		errc <- run(ctx, append([]string{"-database-url", dbtest.NewDatabase(t), "-http-addr", addr, "-data-dir", dataDir,
			"-mllp-addr", mllpAddr, "-nats-listen", natsAddr, "-log-level", "debug", "-auth", "off"}, extra...), logf)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("api exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("api did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var stopped bool
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { _ = stop() })
	return apiProcess{base: base, mllp: mllpAddr, nats: "nats://" + natsAddr, logPath: logf.Name(), dataDir: dataDir, stop: stop}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI_HealthReadinessMetrics(t *testing.T) {
	t.Parallel()
	base, stop := startAPI(t)
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, body := get(t, base+"/fhir/metadata"); code != 200 || !strings.Contains(body, "CapabilityStatement") {
		t.Errorf("/fhir/metadata: %d", code)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `priorflow_http_request_duration_seconds_count{method="GET",route="/fhir/metadata",status="200"}`) {
		t.Errorf("/metrics: %d, no request metric for /fhir/metadata", code)
	}
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}

// A request in flight when the shutdown starts is finished, not dropped.
// The request asks for 100 Continue, and its body is held half-sent while
// the shutdown begins: the client sends the body only once the handler has
// started reading it, so the request is provably being served. (A request
// whose headers the server has not yet read when the shutdown begins is
// closed unanswered by net/http: it was never started, and the client sees
// a connection error, not a lost write.)
func TestAPI_GracefulShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	api := startAPIFull(t)
	base, stop := api.base, api.stop
	var entries []string
	for i := 0; i < 50; i++ {
		entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"G%d"}]},"request":{"method":"POST","url":"Patient"}}`, i))
	}
	body := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	pr, pw := io.Pipe()
	type outcome struct {
		code int
		err  error
	}
	done := make(chan outcome, 1)
	inflight := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: time.Minute}}
	go func() {
		req, _ := http.NewRequest("POST", base+"/fhir", pr)
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Expect", "100-continue")
		resp, err := inflight.Do(req)
		if err != nil {
			done <- outcome{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- outcome{code: resp.StatusCode}
	}()
	// Returns once the transport reads the body: after 100 Continue.
	if _, err := io.WriteString(pw, body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for { // wait until the listener is closed: the shutdown has begun
		resp, err := fresh.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
	}
	if _, err := io.WriteString(pw, body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if out := <-done; out.code != 200 {
		t.Errorf("in-flight transaction: status %d (%v), want 200", out.code, out.err)
		if b, err := os.ReadFile(api.logPath); err == nil {
			t.Logf("API log:\n%s", b)
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestConfig_ReportsEveryProblem(t *testing.T) {
	_, err := loadConfig([]string{"-http-addr", "nonsense", "-log-level", "loud", "-base-url", "ftp://x", "-blob-url", "gs://b", "-hl7-charset", "latin1", "-dicom-charset", "latin1"})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"PRIORFLOW_HTTP_ADDR", "PRIORFLOW_LOG_LEVEL", "PRIORFLOW_BASE_URL", "PRIORFLOW_BLOB_URL", "PRIORFLOW_HL7_CHARSET", "PRIORFLOW_DICOM_CHARSET"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestConfig_InvalidIdentifiersStopStartupWithTheLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "priorflow.yaml")
	if err := os.WriteFile(cfg, []byte("rules: []\nidentifiers:\n  authorities:\n    HOSP-A: hosp-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig([]string{"-config", cfg}); err == nil || !strings.Contains(err.Error(), cfg+":4:") {
		t.Errorf("err = %v, want one naming %s line 4", err, cfg)
	}
}

// Care events reach JetStream from both doors: an HL7 SIU^S12 over MLLP is
// acknowledged AA, and a FHIR Appointment write goes out through the outbox.
func TestAPI_CareEventsFromMLLPAndFHIR(t *testing.T) {
	t.Parallel()
	a := startAPIFull(t)
	sendSIU(t, a.mllp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	patient := `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.3","value":"MRN1"}]}`
	put(t, a.base+"/fhir/Patient/p1", patient)
	appt := `{"resourceType":"Appointment","status":"booked","start":"2030-01-02T09:00:00Z","end":"2030-01-02T09:30:00Z",
	  "participant":[{"actor":{"reference":"Patient/p1"},"status":"accepted"}]}`
	resp, err := http.Post(a.base+"/fhir/Appointment", "application/fhir+json", strings.NewReader(appt))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST Appointment: %v %v", resp, err)
	}
	resp.Body.Close()

	stream := careEvents(t, a.nats)
	var booked uint64
	for booked < 2 && ctx.Err() == nil { // the relay publishes asynchronously
		info, err := stream.Info(ctx, njs.WithSubjectFilter("priorflow.events.appointment-booked"))
		if err != nil {
			t.Fatal(err)
		}
		booked = info.State.Msgs
		if booked < 2 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if booked != 2 {
		t.Errorf("%d appointment-booked events, want 2 (one from HL7, one from FHIR)", booked)
	}
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %d", url, resp.StatusCode)
	}
}

// sendSIU sends the SIU^S12 sample over MLLP and wants AA.
func sendSIU(t *testing.T, addr string) {
	t.Helper()
	siu, err := os.ReadFile("../../triggers/hl7v2/testdata/SIU-S12-01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mllp.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ack, err := c.Send(ctx, siu); err != nil || !strings.Contains(string(ack), "MSA|AA|") {
		t.Fatalf("SIU^S12: ack %q, err %v", ack, err)
	}
}

// careEvents is the CARE_EVENTS stream of the api's NATS at url.
func careEvents(t *testing.T, url string) njs.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), jetstream.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// stow stores a study over STOW-RS and wants 200.
func stow(t *testing.T, base string, st *dicomtest.Study) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf, "application/dicom")
	for _, in := range st.Instances() {
		if err := mw.WritePart("application/dicom", "", bytes.NewReader(in.Bytes)); err != nil {
			t.Fatal(err)
		}
	}
	mw.Close()
	resp, err := http.Post(base+"/dicomweb/studies", mw.ContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("STOW-RS: %d", resp.StatusCode)
	}
}

// A study stored over STOW-RS is indexed as an ImagingStudy; deleting that
// ImagingStudy through FHIR removes the study from DICOMweb too.
func TestAPI_STOWIndexesAndFHIRDeleteRemoves(t *testing.T) {
	t.Parallel()
	a := startAPIFull(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("E2E1", "HOSP-A", "DOE^JANE"))
	stow(t, a.base, st)
	code, body := get(t, a.base+"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:"+st.StudyInstanceUID+"&_include=ImagingStudy:patient")
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType, ID string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || code != 200 || len(b.Entry) != 2 {
		t.Fatalf("ImagingStudy search: %d %.300s", code, body)
	}
	id := b.Entry[0].Resource.ID
	req, _ := http.NewRequest("DELETE", a.base+"/fhir/ImagingStudy/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("FHIR DELETE: %d", resp.StatusCode)
	}
	if code, _ := get(t, a.base+"/dicomweb/studies/"+st.StudyInstanceUID+"/metadata"); code != http.StatusNotFound {
		t.Errorf("DICOMweb metadata after FHIR delete: %d, want 404", code)
	}
	if code, _ := get(t, a.base+"/fhir/ImagingStudy/"+id); code != http.StatusGone {
		t.Errorf("read after delete: %d, want 410", code)
	}
}

// `api migrate` creates a missing database, migrates it and exits.
func TestAPI_MigrateCreatesTheDatabase(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("pf_migrate_%d", time.Now().UnixNano())
	url := "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
	t.Cleanup(func() {
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, dbtest.AdminURL())
		if err == nil {
			_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			admin.Close(ctx)
		}
	})
	if err := run(context.Background(), []string{"migrate", "-database-url", url}, os.Stderr); err != nil {
		t.Fatalf("api migrate: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var version int
	if err := conn.QueryRow(context.Background(), "SELECT version FROM schema_version").Scan(&version); err != nil || version < 7 {
		t.Errorf("schema_version %d (err %v), want every migration applied", version, err)
	}
}

// The logs carry no patient data: a flow of HL7 (accepted and malformed),
// FHIR writes, STOW-RS (stored and refused) and searches leaves none of the
// test patients' names or identifiers in the log, at debug level.
func TestAPI_LogsCarryNoPatientData(t *testing.T) {
	t.Parallel()
	a := startAPIFull(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	siu, err := os.ReadFile("../../triggers/hl7v2/testdata/SIU-S12-01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	c, err := mllp.Dial(ctx, a.mllp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range [][]byte{siu, []byte("MSH|^~\\&|X|Y|Z|W|20240101||ADT^A01|C1|P|2.5\rPID|1||\rPV1|1|E")} {
		if _, err := c.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	put(t, a.base+"/fhir/Patient/lp1", `{"resourceType":"Patient","id":"lp1","identifier":[{"system":"urn:oid:1.2.3","value":"LOGMRN77"}],"name":[{"family":"Zebulonski","given":["Quirinus"]}]}`)
	get(t, a.base+"/fhir/Patient?family=Zebulonski")
	get(t, a.base+"/fhir/Patient?identifier=bogus|LOGMRN77&shoe=1")

	stow := func(st *dicomtest.Study) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf, "application/dicom")
		for _, in := range st.Instances() {
			_ = mw.WritePart("application/dicom", "", bytes.NewReader(in.Bytes))
		}
		mw.Close()
		resp, err := http.Post(a.base+"/dicomweb/studies", mw.ContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	first := dicomtest.NewStudy(t, dicomtest.WithPatient("LOGPID42", "HOSP-Q", "PLANTAGENET^ROSALIND"))
	stow(first)
	// The same study for another patient: refused, and the refusal is logged.
	stow(dicomtest.NewStudy(t, dicomtest.WithPatient("LOGPID43", "HOSP-Q", "TUDOR^MARGERY"), dicomtest.WithStudyInstanceUID(first.StudyInstanceUID)))
	get(t, a.base+"/dicomweb/studies?PatientID=LOGPID42")

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	logs, err := os.ReadFile(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs, []byte("stow: instance refused")) {
		t.Fatalf("the refusal was not logged; the scan would prove nothing:\n%s", logs)
	}
	for _, secret := range []string{"PATID1234", "EVERYMAN", "ADAM", "123456789", "LOGMRN77", "Zebulonski", "Quirinus",
		"LOGPID42", "LOGPID43", "PLANTAGENET", "ROSALIND", "TUDOR", "MARGERY"} {
		if bytes.Contains(logs, []byte(secret)) {
			t.Errorf("the log contains patient data %q", secret)
		}
	}
}

// A rest-hook Subscription made through the API is activated by a handshake
// with its (allow-listed) endpoint, and a study stored over STOW-RS that
// matches its criteria is notified to it.
func TestAPI_SubscriptionNotifiedWhenAStudyArrives(t *testing.T) {
	t.Parallel()
	got := make(chan string, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer rcv.Close()
	a := startAPIFull(t, "-subscription-endpoints", rcv.URL+"/")
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("SUB1", "HOSP-S", "DOE^JANE"))

	sub := `{"resourceType":"Subscription","status":"requested","reason":"priors","criteria":"ImagingStudy?identifier=urn:dicom:uid|urn:oid:` + st.StudyInstanceUID + `",
	  "channel":{"type":"rest-hook","endpoint":"` + rcv.URL + `/hook","payload":"application/fhir+json"}}`
	resp, err := http.Post(a.base+"/fhir/Subscription", "application/fhir+json", strings.NewReader(sub))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST Subscription: %d", resp.StatusCode)
	}
	outside := strings.Replace(sub, rcv.URL, "http://169.254.169.254", 1)
	resp, err = http.Post(a.base+"/fhir/Subscription", "application/fhir+json", strings.NewReader(outside))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("Subscription to an address outside the allow-list: %d, want 422", resp.StatusCode)
	}
	wait := func(what string) string {
		select {
		case b := <-got:
			return b
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s notification within 30 s", what)
			return ""
		}
	}
	wait("handshake")

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf, "application/dicom")
	for _, in := range st.Instances() {
		_ = mw.WritePart("application/dicom", "", bytes.NewReader(in.Bytes))
	}
	mw.Close()
	resp, err = http.Post(a.base+"/dicomweb/studies", mw.ContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("STOW-RS: %d", resp.StatusCode)
	}
	for {
		b := wait("ImagingStudy")
		if strings.Contains(b, `"resourceType":"ImagingStudy"`) && strings.Contains(b, st.StudyInstanceUID) {
			break // the notification carries the new ImagingStudy
		}
	}
}

// PRIORFLOW_CONFIG's identifiers: section reaches both doors of the api: a
// DICOM object whose IssuerOfPatientID is listed files its Patient under
// the listed system, and an HL7 v2 message whose PID-3 names the same
// authority carries that system in its care event; its hl7: section
// reaches the MLLP intake.
func TestAPI_IdentifierSystemsFromConfig(t *testing.T) {
	t.Parallel()
	const system = "urn:oid:1.2.840.99999.7"
	cfg := filepath.Join(t.TempDir(), "priorflow.yaml")
	if err := os.WriteFile(cfg, []byte("identifiers:\n  authorities:\n    test1: "+system+"\nhl7:\n  modalityPrefixes:\n    \"7616\": ES\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAPIFull(t, "-config", cfg)

	stow(t, a.base, dicomtest.NewStudy(t, dicomtest.WithPatient("PATID1234", "test1", "EVERYMAN^ADAM")))
	if code, body := get(t, a.base+"/fhir/Patient?identifier="+url.QueryEscape(system+"|PATID1234")+"&_summary=count"); code != 200 || !strings.Contains(body, `"total":1`) {
		t.Errorf("Patient by the listed system: %d %.200s, want one", code, body)
	}

	sendSIU(t, a.mllp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := careEvents(t, a.nats)
	msg, err := stream.GetLastMsgForSubject(ctx, "priorflow.events.appointment-booked")
	if err != nil {
		t.Fatal(err)
	}
	var ev triggers.CareEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if got := ev.Patient.Identifiers[0]; got.System != system || got.Value != "PATID1234" {
		t.Errorf("the care event's first identifier is %s|%s, want %s|PATID1234", got.System, got.Value, system)
	}
	if ev.Modality != "ES" {
		t.Errorf("the care event's modality is %q, want ES from the hl7: modalityPrefixes", ev.Modality)
	}
}
