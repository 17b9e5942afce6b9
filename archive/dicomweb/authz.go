package dicomweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/auth"
	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/fhir/search"
)

// SMART on FHIR scopes on DICOMweb. The archive's studies are the
// ImagingStudy resources of the FHIR API, so DICOMweb asks for ImagingStudy
// scopes: QIDO-RS searches (s), WADO-RS and the rendered resources read
// (r), STOW-RS creates and updates (c and u), DELETE deletes (d).

// Option configures a Handler.
type Option func(*Handler)

// WithAuth enforces SMART scopes on every request: it needs the Principal
// that the token middleware puts in the request context
// (auth.WithPrincipal). store is the FHIR store the archive indexes its
// studies in (the one given to archive.New): a patient-narrowed grant is
// checked against the subject of each study's ImagingStudy there.
func WithAuth(store *postgres.Store) Option {
	return func(h *Handler) {
		h.auth = true
		h.fhir = store
	}
}

// realm names the protection space in WWW-Authenticate (RFC 6750 3).
const realm = "priorflow"

// access is the kind of DICOMweb transaction a route serves.
type access int

const (
	accessSearch   access = iota // QIDO-RS
	accessRetrieve               // WADO-RS, rendered, thumbnail, frames, bulkdata
	accessStore                  // STOW-RS
	accessDelete                 // DELETE of a study
)

// perms are the ImagingStudy permissions (SMART v2) of each access.
func (a access) perms() []auth.Perm {
	switch a {
	case accessSearch:
		return []auth.Perm{auth.PermSearch}
	case accessRetrieve:
		return []auth.Perm{auth.PermRead}
	case accessStore:
		// STOW-RS creates a study or adds to one (an update of its
		// ImagingStudy); which one is known only once the objects are read.
		return []auth.Perm{auth.PermCreate, auth.PermUpdate}
	}
	return []auth.Perm{auth.PermDelete}
}

type patientKey struct{}

// narrowedPatient returns the patient a QIDO-RS search is confined to, or
// "" when the caller's grant is not narrowed.
func narrowedPatient(ctx context.Context) string {
	p, _ := ctx.Value(patientKey{}).(string)
	return p
}

// deny answers a request the caller may not make: 401 with a challenge
// when it carries no Principal, 403 insufficient_scope otherwise.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, status int, reason string) {
	challenge := `Bearer realm="` + realm + `"`
	if status == http.StatusForbidden {
		challenge += `, error="insufficient_scope"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	h.fail(w, r, status, reason)
}

// guard authorizes the requests of one kind of access. Under a patient
// scope, QIDO-RS is confined to that patient's studies (see patientStudies)
// and WADO-RS served only for a study whose ImagingStudy names the patient;
// stores and deletes need an unnarrowed grant, and no DICOMweb request can
// honour a scope's search query, whose parameters are FHIR's.
func (h *Handler) guard(a access) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if !h.auth {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := auth.FromContext(r.Context())
			if p == nil {
				h.deny(w, r, http.StatusUnauthorized, "this request needs an access token (Authorization: Bearer)")
				return
			}
			var n auth.Narrowing
			for _, perm := range a.perms() {
				pn, err := p.Allow("ImagingStudy", perm)
				var denied *auth.DeniedError
				if errors.As(err, &denied) {
					h.deny(w, r, http.StatusForbidden, denied.Error())
					return
				}
				if err != nil {
					h.log.ErrorContext(r.Context(), "dicomweb: authorize", "err", err)
					h.fail(w, r, http.StatusInternalServerError, "the request could not be authorized")
					return
				}
				if !pn.None() {
					n = pn
				}
			}
			switch {
			case n.None():
				next.ServeHTTP(w, r)
			case len(n.Query) > 0:
				h.deny(w, r, http.StatusForbidden, "scopes with search restrictions cannot be applied to DICOMweb")
			case a == accessStore || a == accessDelete:
				h.deny(w, r, http.StatusForbidden, "the access token grants ImagingStudy only within a patient compartment; storing or deleting studies needs a system/ or user/ scope")
			case !fhir.ValidID(n.Patient):
				h.deny(w, r, http.StatusForbidden, "the access token's patient is not a valid FHIR id")
			case a == accessSearch:
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), patientKey{}, n.Patient)))
			default:
				study, ok := h.uidParam(w, r, "study")
				if !ok {
					return
				}
				inside, err := h.studyOfPatient(r.Context(), study, n.Patient)
				switch {
				case errors.Is(err, archive.ErrNotFound):
					h.fail(w, r, http.StatusNotFound, "no such study "+study)
				case err != nil:
					h.internal(w, r, "checking the study's patient", err)
				case !inside:
					h.deny(w, r, http.StatusForbidden, "study "+study+" is outside the access token's patient compartment")
				default:
					next.ServeHTTP(w, r)
				}
			}
		})
	}
}

// imagingStudyQuery parses a search of ImagingStudy.
func (h *Handler) imagingStudyQuery(params url.Values) (*search.Query, error) {
	reg := h.fhir.Registry()
	rt := reg.Type("ImagingStudy")
	if rt == nil {
		return nil, errors.New("the FHIR registry has no ImagingStudy")
	}
	return search.Parse(reg, rt, params, search.Options{})
}

// studyOfPatient reports whether the ImagingStudy of a stored study names
// patient as its subject. The ImagingStudy is the one the archive keeps for
// the study, and its subject is read through the FHIR search index, exactly
// as a FHIR search with the same patient scope would see it.
func (h *Handler) studyOfPatient(ctx context.Context, study, patient string) (bool, error) {
	id, err := h.a.StudyFHIRID(ctx, study)
	if err != nil {
		return false, err
	}
	q, err := h.imagingStudyQuery(url.Values{"_id": {id}, "patient": {"Patient/" + patient}})
	if err != nil {
		return false, fmt.Errorf("patient of study %s: %w", study, err)
	}
	q.Count, q.Total = 1, "none"
	res, err := h.fhir.Search(ctx, q)
	if err != nil {
		return false, fmt.Errorf("patient of study %s: %w", study, err)
	}
	return len(res.Matches) == 1, nil
}

// patientStudies returns the StudyInstanceUIDs of the stored studies whose
// ImagingStudy names patient as its subject. The QIDO-RS index keeps the
// Patient the archive filed a study under, which an update of the
// ImagingStudy through FHIR does not change; so the patient's
// ImagingStudies are found through FHIR, and a StudyInstanceUID they
// carry counts only when the archive files that study under that very
// ImagingStudy (an ImagingStudy of a remote study may name a UID the
// archive holds for another patient).
func (h *Handler) patientStudies(ctx context.Context, patient string) ([]string, error) {
	q, err := h.imagingStudyQuery(url.Values{"patient": {"Patient/" + patient}})
	if err != nil {
		return nil, fmt.Errorf("studies of the patient: %w", err)
	}
	q.Count, q.Total = search.MaxCount, "none"
	var uids []string
	for {
		res, err := h.fhir.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("studies of the patient: %w", err)
		}
		for _, m := range res.Matches {
			var is struct {
				Identifier []struct {
					System string `json:"system"`
					Value  string `json:"value"`
				} `json:"identifier"`
			}
			if err := json.Unmarshal(m.Body, &is); err != nil {
				return nil, fmt.Errorf("studies of the patient: ImagingStudy/%s: %w", m.ID, err)
			}
			for _, ident := range is.Identifier {
				uid, ok := strings.CutPrefix(ident.Value, "urn:oid:")
				if ident.System != archive.SystemDICOMUID || !ok || !validUID(uid) {
					continue
				}
				id, err := h.a.StudyFHIRID(ctx, uid)
				if errors.Is(err, archive.ErrNotFound) {
					continue // a remote study: nothing stored here
				}
				if err != nil {
					return nil, fmt.Errorf("studies of the patient: %w", err)
				}
				if id == m.ID {
					uids = append(uids, uid)
				}
			}
		}
		if res.Next == nil {
			return uids, nil
		}
		q.Cursor = res.Next
	}
}

// confineQIDO restricts a QIDO-RS search to the studies of the patient its
// grant is narrowed to, through the StudyInstanceUID match key the index
// already serves. It reports false when nothing can match: an empty UID
// list would be universal matching, the opposite of what is meant.
func (h *Handler) confineQIDO(ctx context.Context, q *archive.Query) (bool, error) {
	patient := narrowedPatient(ctx)
	if patient == "" {
		return true, nil
	}
	uids, err := h.patientStudies(ctx, patient)
	if err != nil {
		return false, err
	}
	if len(q.StudyInstanceUID) > 0 {
		var both []string
		for _, u := range q.StudyInstanceUID {
			if slices.Contains(uids, u) {
				both = append(both, u)
			}
		}
		uids = both
	}
	q.StudyInstanceUID = uids
	return len(uids) > 0, nil
}

// authRoutes registers routes behind the guard of their access.
func (h *Handler) authRoutes(r chi.Router, a access, register func(chi.Router)) {
	r.Group(func(r chi.Router) {
		r.Use(h.guard(a))
		register(r)
	})
}
