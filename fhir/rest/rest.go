// Package rest serves the FHIR R4 RESTful API (FHIR R4 http.html) over a
// resource store: instance and type interactions, search, history, batch and
// transaction Bundles, and the CapabilityStatement. With Config.Auth it
// enforces the SMART on FHIR scopes of the caller (see authz.go).
package rest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
)

const contentType = "application/fhir+json; charset=utf-8"

// Config holds what the handler needs besides its dependencies.
type Config struct {
	// BaseURL is the absolute FHIR base, e.g. http://host:8080/fhir.
	BaseURL string
	// MaxBody bounds request bodies (transactions included).
	MaxBody int64
	// Software names this server in the CapabilityStatement.
	Software, Version string
	// Auth enforces SMART on FHIR scopes: every interaction but the
	// CapabilityStatement needs the Principal that the token middleware
	// puts in the request context (auth.WithPrincipal), and its scopes
	// must grant the interaction. Off, every request is served as it
	// comes (authorization off, or enforced in front of this handler).
	Auth bool
	// TokenURL is the OAuth token endpoint the CapabilityStatement
	// advertises when Auth is on (SMART oauth-uris extension).
	TokenURL string
}

// Handler serves the FHIR API.
type Handler struct {
	store *postgres.Store
	reg   *fhir.Registry
	codec *fhir.Codec
	log   *slog.Logger
	cfg   Config
	start time.Time
}

// New returns a FHIR API handler.
func New(store *postgres.Store, codec *fhir.Codec, log *slog.Logger, cfg Config) (*Handler, error) {
	if store == nil || codec == nil || log == nil {
		return nil, errors.New("fhir rest: store, codec and logger are required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("fhir rest: base URL is required")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	return &Handler{store: store, reg: store.Registry(), codec: codec, log: log, cfg: cfg, start: time.Now()}, nil
}

// Routes returns the FHIR API mounted at its root (mount it under /fhir).
func (h *Handler) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(h.negotiate)
	r.Get("/metadata", h.metadata)
	r.Group(func(r chi.Router) {
		r.Use(h.authenticated)
		r.Post("/", h.bundle)
		r.Route("/{type}", func(r chi.Router) {
			r.Use(h.knownType)
			r.Get("/", h.searchType)
			r.Post("/", h.create)
			r.Put("/", h.conditionalUpdate)
			r.Post("/_search", h.searchType)
			r.Get("/_history", h.history)
			r.Get("/{id}", h.read)
			r.Put("/{id}", h.update)
			r.Delete("/{id}", h.delete)
			r.Get("/{id}/_history", h.history)
			r.Get("/{id}/_history/{vid}", h.vread)
		})
	})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, fhir.Errorf(fhir.KindNotFound, "no FHIR interaction at %s", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, r, fhir.Errorf(fhir.KindNotAllowed, "%s is not supported at %s", r.Method, r.URL.Path))
	})
	return r
}

// negotiate enforces JSON in both directions: FHIR JSON is all we speak.
func (h *Handler) negotiate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := r.URL.Query().Get("_format"); f != "" && !jsonFormat(f) {
			writeJSON(w, http.StatusNotAcceptable, outcomeFor(fhir.Errorf(fhir.KindInvalid, "_format %q is not supported; this server speaks application/fhir+json", f)))
			return
		}
		if a := r.Header.Get("Accept"); a != "" && r.URL.Query().Get("_format") == "" && !acceptsJSON(a) {
			writeJSON(w, http.StatusNotAcceptable, outcomeFor(fhir.Errorf(fhir.KindInvalid, "Accept %q cannot be served; this server speaks application/fhir+json", a)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func jsonFormat(f string) bool {
	switch strings.TrimSpace(strings.SplitN(f, ";", 2)[0]) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir":
		return true
	}
	return false
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if mt == "*/*" || mt == "application/*" || jsonFormat(mt) {
			return true
		}
	}
	return false
}

func (h *Handler) knownType(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		typ := chi.URLParam(r, "type")
		if h.reg.Type(typ) == nil {
			h.writeError(w, r, fhir.Errorf(fhir.KindNotFound, "resource type %q is not supported by this server", typ))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		return rc.RoutePattern()
	}
	return "unmatched"
}

// readBody reads a FHIR JSON request body within the size limit.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !jsonFormat(mt) {
		return nil, fhir.Errorf(fhir.KindUnsupportedMedia, "Content-Type %q is not supported; send application/fhir+json", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fhir.Errorf(fhir.KindTooLarge, "the body is larger than %d bytes", h.cfg.MaxBody)
		}
		return nil, fhir.Errorf(fhir.KindInvalid, "reading the body failed: %v", err)
	}
	return body, nil
}

// parseETag reads a version from W/"n" or "n".
func parseETag(s string) (int, error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fhir.Errorf(fhir.KindInvalid, "ETag %q is not a version (expected W/\"n\")", s)
	}
	return n, nil
}

func etag(version int) string { return fmt.Sprintf(`W/"%d"`, version) }

// prefer returns the return= preference (FHIR R4 http.html#ops).
func prefer(r *http.Request, name string) string {
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ";") {
			for _, kv := range strings.Split(part, ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if ok && strings.EqualFold(k, name) {
					return strings.Trim(v, `"`)
				}
			}
		}
	}
	return ""
}

func (h *Handler) location(res *fhir.Resource) string {
	return fmt.Sprintf("%s/%s/%s/_history/%d", h.cfg.BaseURL, res.Type, res.ID, res.Version)
}

func setVersionHeaders(w http.ResponseWriter, res *fhir.Resource) {
	w.Header().Set("ETag", etag(res.Version))
	w.Header().Set("Last-Modified", res.LastUpdated.UTC().Format(http.TimeFormat))
}

// writeResult writes the outcome of a write according to Prefer: return.
func (h *Handler) writeResult(w http.ResponseWriter, r *http.Request, status int, res *fhir.Resource, msg string) {
	setVersionHeaders(w, res)
	if status == http.StatusCreated {
		w.Header().Set("Location", h.location(res))
	}
	switch prefer(r, "return") {
	case "minimal":
		w.WriteHeader(status)
	case "OperationOutcome":
		writeJSON(w, status, informationOutcome(msg))
	default:
		writeJSON(w, status, res.Body)
	}
}
