package dicomweb_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/archivetest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/archive/dicomweb"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

// TestMain drops the migrated template database when the tests are done;
// every test file of this package shares it.
func TestMain(m *testing.M) { dbtest.Main(m) }

// server is an archive served over DICOMweb at URL + "/dicomweb", and a
// client that never asks for gzip, so that tests see the bytes as served.
type server struct {
	*archivetest.Env
	URL    string // the DICOMweb root
	Client *http.Client
}

// newServer starts the DICOMweb API of a fresh archive. The server is
// created unstarted first, so that the archive's DICOMweb URL can be its
// address.
func newServer(t *testing.T) *server {
	t.Helper()
	return startServer(t, false)
}

// startServer starts the DICOMweb API of a fresh archive; with auth it
// enforces SMART scopes, and requests authenticate as asCaller says.
func startServer(t *testing.T, auth bool) *server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String() + "/dicomweb"
	env := archivetest.New(t, base)
	var opts []dicomweb.Option
	if auth {
		opts = append(opts, dicomweb.WithAuth(env.Store))
	}
	h, err := dicomweb.New(env.Archive, slog.New(slog.NewTextHandler(io.Discard, nil)), 0, opts...)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	if auth {
		r.Use(asCaller(t))
	}
	r.Mount("/dicomweb", h.Routes())
	srv.Config.Handler = r
	srv.Start()
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &server{Env: env, URL: base, Client: &http.Client{Transport: tr}}
}

// store stores the studies' instances straight through the archive.
func (s *server) store(t *testing.T, studies ...*dicomtest.Study) {
	t.Helper()
	for _, st := range studies {
		var objs []*archive.Object
		for _, in := range st.Instances() {
			o, err := s.Archive.Spool(bytes.NewReader(in.Bytes))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(o.Remove)
			objs = append(objs, o)
		}
		for _, r := range s.Archive.Store(context.Background(), objs, "") {
			if r.Err != nil {
				t.Fatalf("store %s: %v", r.SOPInstanceUID, r.Err)
			}
		}
	}
}

// get sends a GET to path under the DICOMweb root with an optional Accept
// header and returns the response with its body read.
func (s *server) get(t *testing.T, path string, accept ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	return s.do(t, req)
}

func (s *server) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", req.URL, err)
	}
	return resp, b
}
