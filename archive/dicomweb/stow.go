package dicomweb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/multipart"
)

// Failure reasons of STOW-RS (PS3.18 10.5.3, PS3.4 Annex GG.4).
const (
	reasonProcessingFailure = 0x0110
	reasonDuplicate         = 0x0111
	reasonOutOfResources    = 0xA700
	reasonCannotUnderstand  = 0xC000
)

func validUID(s string) bool { return dicomheader.ValidUID(s) }

// stow implements STOW-RS (PS3.18 10.5): every part is spooled to disk (memory
// stays flat whatever the request size), parsed, then stored study by study.
// A broken multipart body stores nothing.
func (h *Handler) stow(w http.ResponseWriter, r *http.Request) {
	var study string
	if chi.URLParam(r, "study") != "" {
		var ok bool
		if study, ok = h.uidParam(w, r, "study"); !ok {
			return
		}
	}
	ct, err := multipart.ParseSTOWContentType(r.Header.Get("Content-Type"))
	switch {
	case errors.Is(err, multipart.ErrNotMultipartRelated), errors.Is(err, multipart.ErrUnsupportedType):
		h.fail(w, r, http.StatusUnsupportedMediaType, `STOW-RS takes multipart/related; type="application/dicom"`)
		return
	case err != nil:
		h.fail(w, r, http.StatusBadRequest, "bad Content-Type: "+err.Error())
		return
	}
	cfg := h.a.Config()
	mr := multipart.NewReader(r.Body, ct.Boundary, multipart.Limits{MaxPartSize: cfg.MaxObjectSize, MaxTotalSize: h.maxRequest})
	var objs []*archive.Object
	defer func() {
		for _, o := range objs {
			o.Remove()
		}
	}()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, multipart.ErrBodyTooLarge) || errors.Is(err, multipart.ErrPartTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			h.fail(w, r, status, "the multipart body cannot be read: "+err.Error()+"; nothing was stored")
			return
		}
		if mt := part.MediaType(); mt != "" && mt != "application/dicom" {
			objs = append(objs, &archive.Object{Err: fmt.Errorf("%w: part of type %s", archive.ErrInvalidObject, mt)})
			continue
		}
		o, err := h.a.Spool(part)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, multipart.ErrBodyTooLarge) || errors.Is(err, multipart.ErrPartTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			h.fail(w, r, status, "the multipart body cannot be read: "+err.Error()+"; nothing was stored")
			return
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		h.fail(w, r, http.StatusBadRequest, "the request holds no DICOM part")
		return
	}
	results := h.a.Store(r.Context(), objs, study)
	h.stowResponse(w, r, study, results)
}

// stowResponse writes the Store Instances Response Module (PS3.18 10.5.3).
func (h *Handler) stowResponse(w http.ResponseWriter, r *http.Request, study string, results []archive.Result) {
	resp := map[string]any{}
	var failed, stored []any
	for _, res := range results {
		item := map[string]any{}
		if res.SOPClassUID != "" {
			item["00081150"] = attr("UI", res.SOPClassUID)
		}
		if res.SOPInstanceUID != "" {
			item["00081155"] = attr("UI", res.SOPInstanceUID)
		}
		if res.Err != nil {
			item["00081197"] = attr("US", failureReason(res.Err))
			failed = append(failed, item)
			h.log.InfoContext(r.Context(), "stow: instance refused", "reason", fmt.Sprintf("0x%04X", failureReason(res.Err)),
				"sop", res.SOPInstanceUID, "kind", refusalKind(res.Err))
			continue
		}
		item["00081190"] = attr("UR", fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", h.base, res.StudyUID, seriesOf(res), res.SOPInstanceUID))
		stored = append(stored, item)
		if study == "" {
			study = res.StudyUID
		}
	}
	if study != "" && len(stored) > 0 {
		resp["00081190"] = attr("UR", h.base+"/studies/"+study)
	}
	if len(failed) > 0 {
		resp["00081198"] = map[string]any{"vr": "SQ", "Value": failed}
	}
	if len(stored) > 0 {
		resp["00081199"] = map[string]any{"vr": "SQ", "Value": stored}
	}
	status := http.StatusOK
	switch {
	case len(stored) == 0 && allConflicts(results):
		status = http.StatusConflict
	case len(stored) == 0:
		status = http.StatusConflict // PS3.18 10.5.3: none stored
		if allInvalid(results) {
			status = http.StatusBadRequest
		}
	case len(failed) > 0:
		status = http.StatusAccepted
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

func seriesOf(res archive.Result) string { return res.SeriesUID }

func attr(vr string, v any) map[string]any {
	return map[string]any{"vr": vr, "Value": []any{v}}
}

func failureReason(err error) int {
	switch {
	case errors.Is(err, archive.ErrConflict):
		return reasonDuplicate
	case errors.Is(err, archive.ErrInvalidObject), errors.Is(err, archive.ErrNoPatientID), errors.Is(err, archive.ErrStudyMismatch):
		return reasonCannotUnderstand
	case errors.Is(err, archive.ErrPatientMismatch):
		return reasonProcessingFailure
	}
	return reasonOutOfResources
}

// refusalKind names why an instance was refused without the error's
// details, which may quote attribute values (patient data stays out of logs).
func refusalKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{archive.ErrConflict, "conflict"}, {archive.ErrPatientMismatch, "patient-mismatch"},
		{archive.ErrNoPatientID, "no-patient-id"}, {archive.ErrStudyMismatch, "study-mismatch"},
		{archive.ErrInvalidObject, "invalid-object"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "storage-failure"
}

func allConflicts(rs []archive.Result) bool {
	for _, r := range rs {
		if !errors.Is(r.Err, archive.ErrConflict) && !errors.Is(r.Err, archive.ErrPatientMismatch) {
			return false
		}
	}
	return true
}

func allInvalid(rs []archive.Result) bool {
	for _, r := range rs {
		if failureReason(r.Err) != reasonCannotUnderstand {
			return false
		}
	}
	return true
}
