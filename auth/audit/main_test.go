package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"gocloud.dev/blob/fileblob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/auth/audit"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/fhir/search"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const issuer = "https://issuer.example.org"

// callers are the principals the test token middleware puts in the
// context, by the X-Test-Caller header.
var callers = map[string]*auth.Principal{
	// A clinician in a SMART app: a user apart from the client.
	"clinician": {Issuer: issuer, Subject: "u-42", ClientID: "viewer", FHIRUser: "Practitioner/pr1",
		Scopes: scopes("user/*.cruds"), PurposeOfUse: []string{"TREAT"}, TokenID: "jti-clinician"},
	// A backend service: the client is the caller.
	"backend": {Issuer: issuer, Subject: "pacs-sync", ClientID: "pacs-sync", Scopes: scopes("system/*.cruds"), TokenID: "jti-backend"},
	// A client granted Endpoints only.
	"endpoints": {Issuer: issuer, Subject: "ep-admin", ClientID: "ep-admin", Scopes: scopes("system/Endpoint.cruds"), TokenID: "jti-ep"},
}

func scopes(s string) auth.Scopes {
	ss, err := auth.ParseScopes(s)
	if err != nil {
		panic(err)
	}
	return ss
}

// asCaller stands in for the token middleware, which runs before the audit
// middleware: it authenticates a request as the caller its X-Test-Caller
// header names; without one, the request carries no Principal.
func asCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := callers[r.Header.Get("X-Test-Caller")]; p != nil {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

// syncBuffer collects the recorder's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is the FHIR API at /fhir and the DICOMweb API at /dicomweb of one
// database, both audited as cmd/api wires them, with the recorder running.
type env struct {
	t      *testing.T
	store  *postgres.Store
	rec    *audit.Recorder
	url    string
	client *http.Client
	logs   *syncBuffer
	stop   func() error // stops the writer, after starting it if need be
}

func registry(t testing.TB) *fhir.Registry {
	t.Helper()
	reg, err := fhir.NewRegistry(fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint(), fhir.AuditEvent())
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newStore(t testing.TB) *postgres.Store {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(dbtest.NewPool(t), registry(t), codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func newRecorder(t testing.TB, store *postgres.Store, cfg audit.Config) (*audit.Recorder, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	rec, err := audit.NewRecorder(store, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rec, logs
}

// run starts rec.Run and returns the function that stops it and waits for
// its result; it is called at cleanup too.
func run(t testing.TB, rec *audit.Recorder) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e, start := newIdleEnv(t)
	start()
	return e
}

// newIdleEnv is newEnv with the writer not yet running: events queue until
// start (or stop) is called, so that their lookups run after every request.
func newIdleEnv(t *testing.T) (e *env, start func()) {
	t.Helper()
	store := newStore(t)
	rec, logs := newRecorder(t, store, audit.Config{Observer: "Priorflow test"})
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	api, err := rest.New(store, store.Codec(), dbtest.Logger(), rest.Config{BaseURL: base + "/fhir", MaxBody: 1 << 20,
		Software: "Priorflow", Version: "test", Auth: true, TokenURL: issuer + "/token"})
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := fileblob.OpenBucket(t.TempDir(), &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	arch, err := archive.New(store, bucket, dbtest.Logger(), archive.Config{DICOMwebURL: base + "/dicomweb", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dw, err := dicomweb.New(arch, dbtest.Logger(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(asCaller)
	r.Mount("/fhir", rec.FHIR()(api.Routes()))
	r.Mount("/dicomweb", rec.DICOMweb(audit.StudyPatientLookup(store))(dw.Routes()))
	srv.Config.Handler = r
	srv.Start()
	t.Cleanup(srv.Close)
	var stopRun func() error
	start = sync.OnceFunc(func() { stopRun = run(t, rec) })
	stop := func() error {
		start()
		return stopRun()
	}
	return &env{t: t, store: store, rec: rec, url: base, client: srv.Client(), logs: logs, stop: stop}, start
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %s", r.body)
	}
	return m
}

// do sends a request as caller ("" for none); headers are name, value pairs.
func (e *env) do(caller, method, path, contentType string, body []byte, headers ...string) *response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if caller != "" {
		req.Header.Set("X-Test-Caller", caller)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// fhir sends a FHIR request and checks its status.
func (e *env) fhir(caller, method, path, body string, status int, headers ...string) *response {
	e.t.Helper()
	var b []byte
	ct := ""
	if body != "" {
		b, ct = []byte(body), "application/fhir+json"
	}
	r := e.do(caller, method, "/fhir"+path, ct, b, headers...)
	if r.status != status {
		e.t.Fatalf("%s %s as %q: status %d, want %d: %s", method, path, caller, r.status, status, r.body)
	}
	return r
}

// auditEvents searches AuditEvents through the FHIR API (as the backend
// service) and returns the matches.
func (e *env) auditEvents(query string) []map[string]any {
	e.t.Helper()
	b := e.fhir("backend", "GET", "/AuditEvent?_count=200&"+query, "", http.StatusOK).json(e.t)
	var out []map[string]any
	entries, _ := b["entry"].([]any)
	for _, en := range entries {
		em := en.(map[string]any)
		if s, _ := em["search"].(map[string]any); s != nil && s["mode"] != "match" {
			continue
		}
		ae := em["resource"].(map[string]any)
		if strings.HasPrefix(queryOf(e.t, ae), "/fhir/AuditEvent?") {
			continue // the test's own searches of the trail
		}
		out = append(out, ae)
	}
	return out
}

// countAuditEvents counts the stored AuditEvents, bypassing the API.
func countAuditEvents(t *testing.T, store *postgres.Store) int {
	t.Helper()
	res, err := store.Search(context.Background(), &search.Query{Type: store.Registry().Type("AuditEvent"), Summary: "count"})
	if err != nil {
		t.Fatal(err)
	}
	return res.Total
}

// subtype is the subtype code of a record ("system|code" for DICOMweb).
func subtype(ae map[string]any) string {
	st, _ := ae["subtype"].([]any)
	if len(st) == 0 {
		return ""
	}
	c := st[0].(map[string]any)
	if c["system"] == audit.SystemRESTInteraction {
		return c["code"].(string)
	}
	return c["system"].(string) + "|" + c["code"].(string)
}

// entities returns the entities of a record with the given object role.
func entities(ae map[string]any, role string) []map[string]any {
	var out []map[string]any
	list, _ := ae["entity"].([]any)
	for _, e := range list {
		em := e.(map[string]any)
		if r, _ := em["role"].(map[string]any); r != nil && r["code"] == role {
			out = append(out, em)
		}
	}
	return out
}

func patientsOf(ae map[string]any) []string {
	var out []string
	for _, e := range entities(ae, "1") {
		out = append(out, e["what"].(map[string]any)["reference"].(string))
	}
	return out
}

func dataOf(ae map[string]any) string {
	for _, e := range entities(ae, "4") {
		return e["what"].(map[string]any)["reference"].(string)
	}
	return ""
}

// requestor is the agent that made the request.
func requestor(ae map[string]any) map[string]any {
	for _, a := range ae["agent"].([]any) {
		if am := a.(map[string]any); am["requestor"] == true {
			return am
		}
	}
	return nil
}

func queryOf(t *testing.T, ae map[string]any) string {
	t.Helper()
	q := entities(ae, "24")
	if len(q) != 1 {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(q[0]["query"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// summary is "subtype outcome data" for each record, to compare sets.
func summary(ae map[string]any) string {
	s := subtype(ae) + " " + ae["outcome"].(string)
	if d := dataOf(ae); d != "" {
		s += " " + strings.Split(d, "/_history/")[0]
	}
	return s
}

func mustQuery(raw string) url.Values {
	q, err := url.ParseQuery(raw)
	if err != nil {
		panic(err)
	}
	return q
}
