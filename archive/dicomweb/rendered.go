package dicomweb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/frames"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/archive/render"
)

// maxRenderedInstances bounds a study- or series-level rendered response.
const maxRenderedInstances = 100

func (h *Handler) renderRoutes(r chi.Router) {
	inst := "/studies/{study}/series/{series}/instances/{instance}"
	r.Get(inst+"/frames/{frames}", h.frames)
	r.Get(inst+"/frames/{frames}/rendered", h.rendered)
	r.Get(inst+"/rendered", h.rendered)
	r.Get("/studies/{study}/series/{series}/rendered", h.rendered)
	r.Get("/studies/{study}/rendered", h.rendered)
	r.Get(inst+"/frames/{frames}/thumbnail", h.thumbnail)
	r.Get(inst+"/thumbnail", h.thumbnail)
	r.Get("/studies/{study}/series/{series}/thumbnail", h.thumbnail)
	r.Get("/studies/{study}/thumbnail", h.thumbnail)
}

// blobReaderAt gives frames.Open random access to a blob through range
// reads, with one block of read-ahead: header walking issues many small
// reads close together.
type blobReaderAt struct {
	ctx      context.Context
	a        *archive.Archive
	key      string
	size     int64
	blockOff int64
	block    []byte
}

const readAhead = 64 << 10

func (b *blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < b.size {
		if b.block == nil || off < b.blockOff || off >= b.blockOff+int64(len(b.block)) {
			length := int64(readAhead)
			if want := int64(len(p) - n); want > length {
				length = want // a whole frame: read it in one request
			}
			if off+length > b.size {
				length = b.size - off
			}
			r, err := b.a.OpenRange(b.ctx, b.key, off, length)
			if err != nil {
				return n, err
			}
			buf := make([]byte, length)
			_, err = io.ReadFull(r, buf)
			r.Close()
			if err != nil {
				return n, err
			}
			b.blockOff, b.block = off, buf
		}
		c := copy(p[n:], b.block[off-b.blockOff:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *Handler) openPixels(ctx context.Context, in archive.StoredInstance) (*frames.PixelData, error) {
	return frames.Open(&blobReaderAt{ctx: ctx, a: h.a, key: in.BlobKey, size: in.Size}, in.Size)
}

// parseFrameList reads "1,2,3" (PS3.18 10.4.1.1.6: frame numbers from 1).
func parseFrameList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("frame list %q: frame numbers are positive integers", s)
		}
		out = append(out, n)
	}
	if len(out) > 1000 {
		return nil, errors.New("at most 1000 frames per request")
	}
	return out, nil
}

// frameMediaType is the media type of a frame in its stored transfer syntax
// (PS3.18 8.7.3.5.2, Table 8.7.3-2/3).
func frameMediaType(ts string) string {
	switch ts {
	case "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70":
		return "image/jpeg"
	case "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81":
		return "image/jls"
	case "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91":
		return "image/jp2"
	case "1.2.840.10008.1.2.5":
		return "image/x-dicom-rle"
	}
	return mediaOctetStream
}

// frames serves the Frames resource (PS3.18 10.4.1.1.6) as
// multipart/related, each frame in the stored transfer syntax: native frames
// as application/octet-stream (little endian), encapsulated ones with their
// compressed media type. There is no transcoding.
func (h *Handler) frames(w http.ResponseWriter, r *http.Request) {
	t, ok := h.parseTarget(w, r)
	if !ok {
		return
	}
	list, err := parseFrameList(chi.URLParam(r, "frames"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ins, ok := h.instances(w, r, t)
	if !ok {
		return
	}
	in := ins[0]
	mt := frameMediaType(in.TransferSyntaxUID)
	if !acceptsFrames(r.Header.Values("Accept"), mt) {
		h.fail(w, r, http.StatusNotAcceptable, fmt.Sprintf("frames of this instance are %s (transfer syntax %s, sent as stored); accept multipart/related; type=%q", mt, in.TransferSyntaxUID, mt))
		return
	}
	px, err := h.openPixels(r.Context(), in)
	if err != nil {
		h.renderFailed(w, r, err)
		return
	}
	for _, n := range list {
		if n > px.NumberOfFrames() {
			h.fail(w, r, http.StatusNotFound, fmt.Sprintf("the instance has %d frames; there is no frame %d", px.NumberOfFrames(), n))
			return
		}
	}
	mw := multipart.NewWriter(w, mt)
	w.Header().Set("Content-Type", mw.ContentType())
	w.WriteHeader(http.StatusOK)
	partType := mt // native frames: little endian octets (PS3.18 8.7.3.3.2)
	if mt != mediaOctetStream {
		partType = mt + "; transfer-syntax=" + in.TransferSyntaxUID
	}
	for _, n := range list {
		f, err := px.Frame(n)
		if err != nil {
			h.abort(r, "reading frame", err)
		}
		loc := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/%d", h.base, in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID, n)
		if err := mw.WritePart(partType, loc, bytes.NewReader(f)); err != nil {
			h.abort(r, "writing frame", err)
		}
	}
	if err := mw.Close(); err != nil {
		h.abort(r, "closing frames response", err)
	}
}

func acceptsFrames(accept []string, mt string) bool {
	for _, m := range parseAccept(accept) {
		switch {
		case m.typ == "*/*", m.typ == "multipart/*":
			return true
		case m.typ == mediaMultipart:
			tp := m.typeParam()
			if tp == "" || tp == mt || tp == "*/*" || (strings.HasSuffix(tp, "/*") && strings.HasPrefix(mt, strings.TrimSuffix(tp, "*"))) {
				return true
			}
		}
	}
	return false
}

// renderedMediaType picks image/jpeg or image/png from the Accept header
// (PS3.18 8.3.5.1: JPEG is the default rendered type).
func renderedMediaType(accept []string) (string, bool) {
	for _, m := range parseAccept(accept) {
		switch m.typ {
		case "*/*", "image/*", render.MediaTypeJPEG:
			return render.MediaTypeJPEG, true
		case render.MediaTypePNG:
			return render.MediaTypePNG, true
		}
	}
	return "", false
}

func (h *Handler) renderParams(w http.ResponseWriter, r *http.Request) (render.Params, bool) {
	mt, ok := renderedMediaType(r.Header.Values("Accept"))
	if !ok {
		h.fail(w, r, http.StatusNotAcceptable, "rendered resources are image/jpeg or image/png")
		return render.Params{}, false
	}
	p, err := render.ParseParams(r.URL.Query())
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return render.Params{}, false
	}
	p.MediaType = mt
	return p, true
}

// startRender reads what the rendered and thumbnail resources share: the
// target, the rendering parameters, the one frame a frame-level URL names
// (0 when none) and the target's instances. It answers the request itself
// when it returns false.
func (h *Handler) startRender(w http.ResponseWriter, r *http.Request) (t target, params render.Params, frame int, ins []archive.StoredInstance, ok bool) {
	if t, ok = h.parseTarget(w, r); !ok {
		return
	}
	if params, ok = h.renderParams(w, r); !ok {
		return
	}
	if fl := chi.URLParam(r, "frames"); fl != "" {
		list, err := parseFrameList(fl)
		if err != nil || len(list) != 1 {
			h.fail(w, r, http.StatusBadRequest, "a rendered frame or frame thumbnail takes one frame number")
			return t, params, 0, nil, false
		}
		frame = list[0]
	}
	ins, ok = h.instances(w, r, t)
	return
}

// rendered serves the Rendered resources (PS3.18 10.4.1.1.3): one image for
// an instance or frame (its first frame unless a frame is named), and for a
// series or study a multipart/related of the rendered first frames of its
// instances.
func (h *Handler) rendered(w http.ResponseWriter, r *http.Request) {
	t, params, frame, ins, ok := h.startRender(w, r)
	if !ok {
		return
	}
	if frame == 0 {
		frame = 1
	}
	if t.instance != "" {
		px, err := h.openPixels(r.Context(), ins[0])
		if err != nil {
			h.renderFailed(w, r, err)
			return
		}
		h.writeImage(w, r, px, frame, params, false)
		return
	}
	if len(ins) > maxRenderedInstances {
		ins = ins[:maxRenderedInstances]
	}
	// Render before sending the status: a failure of the first image can
	// still be a clear error instead of a broken multipart body.
	mw := multipart.NewWriter(w, params.MediaType)
	started := false
	for _, in := range ins {
		px, err := h.openPixels(r.Context(), in)
		if errors.Is(err, frames.ErrNoPixelData) {
			continue // reports and key objects have nothing to render
		}
		var img []byte
		if err == nil {
			img, err = h.renderBytes(r.Context(), px, frame, params, false)
		}
		if err != nil {
			if !started {
				h.renderFailed(w, r, err)
				return
			}
			h.abort(r, "rendering", err)
		}
		if !started {
			w.Header().Set("Content-Type", mw.ContentType())
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := mw.WritePart(params.MediaType, "", bytes.NewReader(img)); err != nil {
			h.abort(r, "writing rendered part", err)
		}
	}
	if !started {
		h.fail(w, r, http.StatusNotFound, "nothing in "+t.notFound()[len("no such "):]+" has pixel data to render")
		return
	}
	if err := mw.Close(); err != nil {
		h.abort(r, "closing rendered response", err)
	}
}

// thumbnail serves the Thumbnail resources (Supplement 203, PS3.18
// 10.4.1.1.4): one small image representing the study, series, instance or
// frame — for a study or series the middle image of its first series with
// pixel data.
func (h *Handler) thumbnail(w http.ResponseWriter, r *http.Request) {
	t, params, frame, ins, ok := h.startRender(w, r) // frame 0: the middle frame
	if !ok {
		return
	}
	if t.instance == "" {
		ins = representative(ins)
	}
	var last error
	for _, in := range ins {
		px, err := h.openPixels(r.Context(), in)
		if errors.Is(err, frames.ErrNoPixelData) {
			last = err
			continue
		}
		if err != nil {
			h.renderFailed(w, r, err)
			return
		}
		h.writeImage(w, r, px, frame, params, true)
		return
	}
	h.renderFailed(w, r, last)
}

// representative orders a study's or series' instances so that the middle
// instance of the first series comes first, then the rest.
func representative(ins []archive.StoredInstance) []archive.StoredInstance {
	if len(ins) == 0 {
		return ins
	}
	first := ins[0].SeriesInstanceUID
	n := 0
	for n < len(ins) && ins[n].SeriesInstanceUID == first {
		n++
	}
	mid := n / 2
	out := append([]archive.StoredInstance{ins[mid]}, ins[:mid]...)
	return append(out, ins[mid+1:]...)
}

func (h *Handler) writeImage(w http.ResponseWriter, r *http.Request, px *frames.PixelData, frame int, params render.Params, thumb bool) {
	img, err := h.renderBytes(r.Context(), px, frame, params, thumb)
	if err != nil {
		h.renderFailed(w, r, err)
		return
	}
	w.Header().Set("Content-Type", params.MediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}

func (h *Handler) renderBytes(ctx context.Context, px *frames.PixelData, frame int, params render.Params, thumb bool) ([]byte, error) {
	if frame > px.NumberOfFrames() {
		return nil, fmt.Errorf("%w: the instance has %d frames", frames.ErrNoSuchFrame, px.NumberOfFrames())
	}
	var b bytes.Buffer
	var err error
	if thumb && frame == 0 {
		img, terr := h.renderer.Thumbnail(ctx, px, params)
		if terr != nil {
			return nil, terr
		}
		err = render.Encode(&b, img, params)
	} else {
		if frame == 0 {
			frame = 1
		}
		if thumb && params.Viewport.Width == 0 {
			params.Viewport = render.Viewport{Width: render.DefaultThumbnailSize, Height: render.DefaultThumbnailSize}
		}
		img, rerr := h.renderer.Render(ctx, px, frame, params)
		if rerr != nil {
			return nil, rerr
		}
		err = render.Encode(&b, img, params)
	}
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// renderFailed maps rendering errors to PS3.18 statuses with the reason.
func (h *Handler) renderFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, render.ErrUnsupportedTransferSyntax), errors.Is(err, render.ErrUnsupportedImage),
		errors.Is(err, render.ErrUnsupportedMediaType), errors.Is(err, frames.ErrUnsupported):
		h.fail(w, r, http.StatusNotAcceptable, err.Error())
	case errors.Is(err, frames.ErrNoPixelData):
		h.fail(w, r, http.StatusNotAcceptable, "the object has no pixel data to render")
	case errors.Is(err, frames.ErrNoSuchFrame):
		h.fail(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, render.ErrInvalidParameter):
		h.fail(w, r, http.StatusBadRequest, err.Error())
	default:
		h.internal(w, r, "rendering", err)
	}
}
