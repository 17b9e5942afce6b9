// Package dicomweb serves the local archive over DICOMweb (DICOM PS3.18):
// STOW-RS to store, QIDO-RS to search, WADO-RS to retrieve, and DELETE of
// studies. Failures follow PS3.18: HTTP status plus, for STOW-RS, a response
// data set with FailedSOPSequence and FailureReason (PS3.18 10.5.3). With
// WithAuth, requests need SMART on FHIR ImagingStudy scopes (see authz.go).
package dicomweb

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/render"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// Handler serves DICOMweb for one archive.
type Handler struct {
	a   *archive.Archive
	log *slog.Logger
	// base is the absolute DICOMweb root (RetrieveURL, BulkDataURI).
	base string
	// maxRequest bounds a STOW-RS body.
	maxRequest int64
	renderer   *render.Renderer

	// auth enforces SMART scopes (WithAuth); fhir is the store of the
	// archive's ImagingStudy resources, which narrowed grants are checked
	// against.
	auth bool
	fhir *postgres.Store
}

// New returns a DICOMweb handler. Without options it serves every request
// as it comes; WithAuth enforces SMART scopes.
func New(a *archive.Archive, log *slog.Logger, maxRequest int64, opts ...Option) (*Handler, error) {
	if a == nil || log == nil {
		return nil, errors.New("dicomweb: archive and logger are required")
	}
	if maxRequest <= 0 {
		maxRequest = 16 << 30
	}
	h := &Handler{a: a, log: log, base: a.Config().DICOMwebURL, maxRequest: maxRequest, renderer: render.New()}
	for _, o := range opts {
		o(h)
	}
	if h.auth && h.fhir == nil {
		return nil, errors.New("dicomweb: WithAuth needs the FHIR store")
	}
	return h, nil
}

// Routes returns the DICOMweb API (mount it at the DICOMweb root, /dicomweb).
func (h *Handler) Routes() http.Handler {
	r := chi.NewRouter()
	h.authRoutes(r, accessStore, func(r chi.Router) {
		r.Post("/studies", h.stow)
		r.Post("/studies/{study}", h.stow)
	})
	h.authRoutes(r, accessDelete, func(r chi.Router) {
		r.Delete("/studies/{study}", h.deleteStudy)
	})
	h.authRoutes(r, accessSearch, h.qidoRoutes)
	h.authRoutes(r, accessRetrieve, func(r chi.Router) {
		h.wadoRoutes(r)
		h.renderRoutes(r)
	})
	return r
}

// errorBody is the body of a non-STOW error: PS3.18 leaves it open; a short
// JSON object with the reason is what integration engineers can read.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, reason string) {
	if status >= 500 {
		h.log.ErrorContext(r.Context(), "dicomweb request failed", "method", r.Method, "status", status, "reason", reason)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(status), "reason": reason})
}

// uidParam returns a validated UID path parameter, or fails the request with
// 400: UIDs become blob keys and SQL values, never paths.
func (h *Handler) uidParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := chi.URLParam(r, name)
	if !validUID(v) {
		h.fail(w, r, http.StatusBadRequest, name+" is not a valid DICOM UID")
		return "", false
	}
	return v, true
}

func (h *Handler) deleteStudy(w http.ResponseWriter, r *http.Request) {
	study, ok := h.uidParam(w, r, "study")
	if !ok {
		return
	}
	err := h.a.DeleteStudy(r.Context(), study)
	switch {
	case errors.Is(err, archive.ErrNotFound):
		h.fail(w, r, http.StatusNotFound, "no such study")
	case err != nil:
		h.log.ErrorContext(r.Context(), "delete study failed", "err", err)
		h.fail(w, r, http.StatusInternalServerError, "the study could not be deleted")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
