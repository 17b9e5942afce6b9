package multipart

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"strings"
	"sync"
)

// Writer writes a multipart/related body part by part, as a WADO-RS response
// (PS3.18 8.6.1.2).
type Writer struct {
	mw       *multipart.Writer
	partType string
}

// NewWriter returns a Writer to w whose parts are, unless told otherwise, of
// partType, such as MediaTypeDICOM.
func NewWriter(w io.Writer, partType string) *Writer {
	return &Writer{mw: multipart.NewWriter(w), partType: partType}
}

// Boundary returns the boundary, random unless SetBoundary was called.
func (w *Writer) Boundary() string { return w.mw.Boundary() }

// SetBoundary replaces the random boundary; call it before the first part.
func (w *Writer) SetBoundary(b string) error {
	if err := w.mw.SetBoundary(b); err != nil {
		return fmt.Errorf("multipart.SetBoundary: %w", err)
	}
	return nil
}

// ContentType returns the Content-Type header value of the body, such as
// `multipart/related; type="application/dicom"; boundary=...`.
func (w *Writer) ContentType() string {
	return "multipart/related; type=" + quote(w.partType) + "; boundary=" + quoteIfNeeded(w.Boundary())
}

// CreatePart starts a part and returns the writer of its content. An empty
// contentType means the Writer's part type; an empty contentLocation leaves
// out the Content-Location header.
func (w *Writer) CreatePart(contentType, contentLocation string) (io.Writer, error) {
	if contentType == "" {
		contentType = w.partType
	}
	h := textproto.MIMEHeader{"Content-Type": {contentType}}
	if contentLocation != "" {
		h.Set("Content-Location", contentLocation)
	}
	pw, err := w.mw.CreatePart(h)
	if err != nil {
		return nil, fmt.Errorf("multipart.CreatePart: %w", err)
	}
	return pw, nil
}

// WritePart writes one part whose content is read from r.
func (w *Writer) WritePart(contentType, contentLocation string, r io.Reader) error {
	pw, err := w.CreatePart(contentType, contentLocation)
	if err != nil {
		return err
	}
	// A pooled buffer, and the reader hidden behind a plain io.Reader: blob
	// readers implement WriterTo with a fresh 1 MiB buffer per call, which
	// made the garbage collector the top cost of WADO-RS.
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(pw, struct{ io.Reader }{r}, *buf); err != nil {
		return fmt.Errorf("multipart.WritePart: %w", err)
	}
	return nil
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// Close writes the closing boundary. It does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.mw.Close(); err != nil {
		return fmt.Errorf("multipart.Close: %w", err)
	}
	return nil
}

// quote returns s as an RFC 2045 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// quoteIfNeeded quotes a parameter value that is not an RFC 2045 token.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " ()<>@,;:\\\"/[]?=") {
		return quote(s)
	}
	return s
}
