package rest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/rest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// server is a FHIR API on its own database.
type server struct {
	t     *testing.T
	url   string // FHIR base
	http  *http.Client
	store *postgres.Store
	// headers are sent with every request (see as).
	headers []string
}

func newServer(t *testing.T) *server {
	t.Helper()
	return startServer(t, rest.Config{}, nil, fhir.ImagingStudy(), fhir.Patient(), fhir.Endpoint())
}

// startServer starts a FHIR API over the given types with cfg (BaseURL and
// the limits are filled in), behind mw when it is not nil.
func startServer(t *testing.T, cfg rest.Config, mw func(http.Handler) http.Handler, types ...*fhir.ResourceType) *server {
	t.Helper()
	pool := dbtest.NewPool(t)
	reg, err := fhir.NewRegistry(types...)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(pool, reg, codec, dbtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	base := "http://" + ts.Listener.Addr().String() + "/fhir"
	cfg.BaseURL, cfg.MaxBody, cfg.Software, cfg.Version = base, 1<<20, "Priorflow", "test"
	store.SetBaseURL(base)
	h, err := rest.New(store, codec, dbtest.Logger(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var api http.Handler = h.Routes()
	if mw != nil {
		api = mw(api)
	}
	mux.Handle("/fhir/", http.StripPrefix("/fhir", api))
	ts.Start()
	t.Cleanup(ts.Close)
	return &server{t: t, url: base, http: ts.Client(), store: store}
}

// on returns s reporting to t (a subtest).
func (s *server) on(t *testing.T) *server {
	c := *s
	c.t = t
	return &c
}

// response is a decoded reply.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		return map[string]any{"_raw": string(r.body)}
	}
	return m
}

func (s *server) do(method, path string, body string, headers ...string) *response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	headers = append(append([]string(nil), s.headers...), headers...)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must asserts the status and returns the decoded body.
func (s *server) must(status int, method, path, body string, headers ...string) map[string]any {
	s.t.Helper()
	r := s.do(method, path, body, headers...)
	if r.status != status {
		s.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, r.status, status, r.body)
	}
	return r.json()
}

// ids returns the ids of the match entries of a searchset, in order.
func ids(bundle map[string]any) []string {
	var out []string
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		em := e.(map[string]any)
		if s, _ := em["search"].(map[string]any); s != nil && s["mode"] != "match" {
			continue
		}
		res := em["resource"].(map[string]any)
		out = append(out, res["id"].(string))
	}
	return out
}

func link(bundle map[string]any, rel string) string {
	links, _ := bundle["link"].([]any)
	for _, l := range links {
		lm := l.(map[string]any)
		if lm["relation"] == rel {
			return lm["url"].(string)
		}
	}
	return ""
}

// outcome returns the first issue of an OperationOutcome.
func outcome(t *testing.T, r *response) map[string]any {
	t.Helper()
	m := r.json()
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("body is not an OperationOutcome: %s", r.body)
	}
	return m["issue"].([]any)[0].(map[string]any)
}

func compact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		panic(err)
	}
	return b.String()
}

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
