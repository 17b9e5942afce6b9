package dicomweb

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/bulkdata"
	"github.com/priorflow/priorflow/archive/multipart"
)

// wadoRoutes serves WADO-RS (PS3.18 10.4): the Study, Series and Instance
// resources, their metadata, and bulk data. The frames, rendered and
// thumbnail resources (PS3.18 10.4.1.1.3, 10.4.1.1.4, 10.4.1.1.6) are
// served by the render package and wired separately.
func (h *Handler) wadoRoutes(r chi.Router) {
	r.Get("/studies/{study}", h.retrieve)
	r.Get("/studies/{study}/series/{series}", h.retrieve)
	r.Get("/studies/{study}/series/{series}/instances/{instance}", h.retrieve)
	r.Get("/studies/{study}/metadata", h.metadata)
	r.Get("/studies/{study}/series/{series}/metadata", h.metadata)
	r.Get("/studies/{study}/series/{series}/instances/{instance}/metadata", h.metadata)
	r.Get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/*", h.bulkData)
}

// target is the study, series or instance a WADO-RS request names.
type target struct{ study, series, instance string }

// parseTarget validates the UIDs of the request path; it answers the
// request itself (400) when it returns false.
func (h *Handler) parseTarget(w http.ResponseWriter, r *http.Request) (target, bool) {
	var t target
	var ok bool
	if t.study, ok = h.uidParam(w, r, "study"); !ok {
		return t, false
	}
	if chi.URLParam(r, "series") != "" {
		if t.series, ok = h.uidParam(w, r, "series"); !ok {
			return t, false
		}
	}
	if chi.URLParam(r, "instance") != "" {
		if t.instance, ok = h.uidParam(w, r, "instance"); !ok {
			return t, false
		}
	}
	return t, true
}

func (t target) notFound() string {
	switch {
	case t.instance != "":
		return "no such instance " + t.instance + " in series " + t.series + " of study " + t.study
	case t.series != "":
		return "no such series " + t.series + " in study " + t.study
	}
	return "no such study " + t.study
}

// instances lists the target's stored instances; it answers the request
// itself when it returns false.
func (h *Handler) instances(w http.ResponseWriter, r *http.Request, t target) ([]archive.StoredInstance, bool) {
	list, err := h.a.Instances(r.Context(), t.study, t.series, t.instance)
	switch {
	case errors.Is(err, archive.ErrNotFound):
		h.fail(w, r, http.StatusNotFound, t.notFound())
		return nil, false
	case err != nil:
		h.internal(w, r, "listing instances", err)
		return nil, false
	}
	return list, true
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.ErrorContext(r.Context(), "wado: "+op, "err", err)
	h.fail(w, r, http.StatusInternalServerError, "the archive could not serve the request")
}

// abort ends a response whose status has been sent: the client sees a
// broken body, never a short one that looks complete.
func (h *Handler) abort(r *http.Request, op string, err error) {
	if r.Context().Err() == nil {
		h.log.ErrorContext(r.Context(), "wado: "+op+"; response aborted", "err", err)
	}
	panic(http.ErrAbortHandler)
}

// retrieve serves the Study, Series and Instance resources (PS3.18
// 10.4.1.1.1) as multipart/related; type="application/dicom" (PS3.18
// 8.7.3.5.1), one part per instance, each streamed from blob storage: a
// study of any size is sent with a fixed amount of memory. Objects are sent
// in their stored transfer syntax; the archive does not transcode, so a
// request for another syntax is answered 406 (PS3.18 8.7.3.5.2).
func (h *Handler) retrieve(w http.ResponseWriter, r *http.Request) {
	t, ok := h.parseTarget(w, r)
	if !ok {
		return
	}
	accepted, ok := negotiateDICOM(r.Header.Values("Accept"))
	if !ok {
		h.fail(w, r, http.StatusNotAcceptable, `instances are sent as multipart/related; type="application/dicom"`)
		return
	}
	list, ok := h.instances(w, r, t)
	if !ok {
		return
	}
	for _, in := range list {
		if !accepted.accepts(in.TransferSyntaxUID) {
			h.fail(w, r, http.StatusNotAcceptable, "instance "+in.SOPInstanceUID+" is stored in transfer syntax "+in.TransferSyntaxUID+
				" and the archive does not transcode; ask for transfer-syntax=* or "+in.TransferSyntaxUID)
			return
		}
	}
	// The first blob is opened before the status is sent, so that a
	// missing blob is a clean 500.
	first, err := h.a.Open(r.Context(), list[0].BlobKey)
	if err != nil {
		h.internal(w, r, "opening blob", err)
		return
	}
	mw := multipart.NewWriter(w, mediaDICOM)
	w.Header().Set("Content-Type", mw.ContentType())
	w.WriteHeader(http.StatusOK)
	for i, in := range list {
		var rd io.ReadCloser = first
		if i > 0 {
			if rd, err = h.a.Open(r.Context(), in.BlobKey); err != nil {
				h.abort(r, "opening blob", err)
			}
		}
		err := mw.WritePart(mediaDICOM+"; transfer-syntax="+in.TransferSyntaxUID,
			h.instanceURL(in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID), rd)
		rd.Close()
		if err != nil {
			h.abort(r, "writing part", err)
		}
	}
	if err := mw.Close(); err != nil {
		h.abort(r, "closing multipart", err)
	}
}

// metadata serves the Metadata resources (PS3.18 10.4.1.1.2): a DICOM JSON
// array of the stored metadata of each instance (PS3.18 F.2), written
// instance by instance, with BulkDataURIs made absolute under the DICOMweb
// root (PS3.18 F.2.6).
func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	t, ok := h.parseTarget(w, r)
	if !ok {
		return
	}
	if !negotiateJSON(r.Header.Values("Accept")) {
		h.fail(w, r, http.StatusNotAcceptable, "metadata is sent as application/dicom+json")
		return
	}
	started := false
	err := h.a.Metadata(r.Context(), t.study, t.series, t.instance, func(in archive.StoredInstance) error {
		sep := []byte(",")
		if !started {
			w.Header().Set("Content-Type", mediaDICOMJSON)
			w.WriteHeader(http.StatusOK)
			started, sep = true, []byte("[")
		}
		if _, err := w.Write(sep); err != nil {
			return err
		}
		_, err := w.Write(absoluteBulkDataURIs(in.Metadata, h.base+"/"))
		return err
	})
	switch {
	case err == nil && started:
		if _, err := w.Write([]byte("]")); err != nil {
			h.abort(r, "writing metadata", err)
		}
	case errors.Is(err, archive.ErrNotFound) || (err == nil && !started):
		h.fail(w, r, http.StatusNotFound, t.notFound())
	case !started:
		h.internal(w, r, "reading metadata", err)
	default:
		h.abort(r, "writing metadata", err)
	}
}

// bulkURIKey is how the archive's DICOM JSON encoder writes a BulkDataURI.
// Inside a JSON string every quote is escaped, so these bytes only ever
// occur as the key itself.
var bulkURIKey = []byte(`"BulkDataURI":"`)

// absoluteBulkDataURIs prefixes the relative BulkDataURIs of stored DICOM
// JSON with base.
func absoluteBulkDataURIs(md []byte, base string) []byte {
	if !bytes.Contains(md, bulkURIKey) {
		return md
	}
	var out bytes.Buffer
	out.Grow(len(md) + 256)
	for {
		i := bytes.Index(md, bulkURIKey)
		if i < 0 {
			out.Write(md)
			return out.Bytes()
		}
		i += len(bulkURIKey)
		out.Write(md[:i])
		md = md[i:]
		if !bytes.HasPrefix(md, []byte("http://")) && !bytes.HasPrefix(md, []byte("https://")) {
			out.WriteString(base)
		}
	}
}

// bulkData serves the Bulkdata resource (PS3.18 10.4.1.1.5): the value of
// the element a BulkDataURI of the metadata names, read from the stored
// object. It is sent in multipart/related; type="application/octet-stream"
// (PS3.18 8.7.3.3.1), or as a single application/octet-stream body when the
// client prefers that. Values are little endian, as stored.
func (h *Handler) bulkData(w http.ResponseWriter, r *http.Request) {
	t, ok := h.parseTarget(w, r)
	if !ok {
		return
	}
	rawPath := chi.URLParam(r, "*")
	path, err := bulkdata.ParsePath(rawPath)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "the bulk data path is not tag[/item/tag]...: "+rawPath)
		return
	}
	inMultipart, ok := negotiateBulk(r.Header.Values("Accept"))
	if !ok {
		h.fail(w, r, http.StatusNotAcceptable, `bulk data is sent as multipart/related; type="application/octet-stream" or application/octet-stream`)
		return
	}
	list, ok := h.instances(w, r, t)
	if !ok {
		return
	}
	in := list[0]
	rd, err := h.a.Open(r.Context(), in.BlobKey)
	if err != nil {
		h.internal(w, r, "opening blob", err)
		return
	}
	defer rd.Close()
	v, err := bulkdata.Find(rd, path)
	switch {
	case errors.Is(err, bulkdata.ErrNotFound):
		h.fail(w, r, http.StatusNotFound, "instance "+t.instance+" has no element at "+path.String())
		return
	case errors.Is(err, bulkdata.ErrUnsupported):
		h.fail(w, r, http.StatusNotAcceptable, "the value at "+path.String()+" cannot be sent as application/octet-stream: "+
			strings.TrimPrefix(err.Error(), "bulkdata.Find "+path.String()+": "))
		return
	case err != nil:
		h.internal(w, r, "reading bulk data", err)
		return
	}
	if !inMultipart {
		w.Header().Set("Content-Type", mediaOctetStream)
		w.Header().Set("Content-Length", strconv.FormatInt(v.Length, 10))
		w.WriteHeader(http.StatusOK)
		if _, err := io.CopyN(w, v, v.Length); err != nil {
			h.abort(r, "writing bulk data", err)
		}
		return
	}
	mw := multipart.NewWriter(w, mediaOctetStream)
	w.Header().Set("Content-Type", mw.ContentType())
	w.WriteHeader(http.StatusOK)
	loc := h.instanceURL(t.study, t.series, t.instance) + "/bulkdata/" + path.String()
	pw, err := mw.CreatePart("", loc)
	if err == nil {
		_, err = io.CopyN(pw, v, v.Length) // a short value fails, never looks whole
	}
	if err != nil {
		h.abort(r, "writing bulk data", err)
	}
	if err := mw.Close(); err != nil {
		h.abort(r, "writing bulk data", err)
	}
}
