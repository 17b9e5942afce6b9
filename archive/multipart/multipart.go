// Package multipart reads and writes the multipart/related bodies of
// DICOMweb (PS3.18 8.6, RFC 2387): STOW-RS requests and WADO-RS responses.
// Both directions stream: parts are read and written one at a time through
// io.Readers, so memory does not grow with the body.
package multipart

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// Errors of ParseContentType. Test for them with errors.Is. The DICOMweb
// handlers answer ErrNotMultipartRelated and ErrUnsupportedType with 415
// Unsupported Media Type and ErrMissingBoundary with 400 Bad Request
// (PS3.18 8.6.3, 10.5.3).
var (
	ErrNotMultipartRelated = errors.New("media type is not multipart/related")
	ErrUnsupportedType     = errors.New("missing or unsupported multipart/related type parameter")
	ErrMissingBoundary     = errors.New("missing or invalid multipart boundary")
)

// Errors of Reader. ErrPartTooLarge and ErrBodyTooLarge map to 413 Content
// Too Large.
var (
	ErrPartTooLarge = errors.New("multipart part exceeds the size limit")
	ErrBodyTooLarge = errors.New("multipart body exceeds the size limit")
)

// MediaTypeDICOM is the media type of a DICOM Part 10 file (PS3.18 8.7.3).
const MediaTypeDICOM = "application/dicom"

// ContentType is a parsed multipart/related Content-Type (RFC 2387 3).
type ContentType struct {
	Type     string // the "type" parameter, lower-cased, without parameters
	Boundary string
	Start    string            // the "start" parameter, if any
	Params   map[string]string // every parameter, keys lower-cased
}

// ParseContentType parses a request Content-Type header such as
// `multipart/related; type="application/dicom"; boundary=XYZ` and checks that
// its type parameter is one of types (compared without parameters and case).
// It reports ErrNotMultipartRelated, ErrUnsupportedType or ErrMissingBoundary,
// in that order of checking.
func ParseContentType(v string, types ...string) (ContentType, error) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		// Clients commonly send type=application/dicom unquoted, which RFC
		// 2045 forbids ("/" is a tspecial) and mime rejects.
		mt, params, err = parseLenient(v)
	}
	if err != nil {
		return ContentType{}, fmt.Errorf("multipart.ParseContentType: %w: %v", ErrNotMultipartRelated, err)
	}
	if mt != "multipart/related" {
		return ContentType{}, fmt.Errorf("multipart.ParseContentType: %w: got %q", ErrNotMultipartRelated, mt)
	}
	ct := ContentType{Boundary: params["boundary"], Start: params["start"], Params: params}
	if t := params["type"]; t != "" {
		if pt, _, err := mime.ParseMediaType(t); err == nil {
			ct.Type = pt
		}
	}
	if ct.Type == "" {
		return ContentType{}, fmt.Errorf("multipart.ParseContentType: %w: no type parameter", ErrUnsupportedType)
	}
	if len(types) > 0 && !containsFold(types, ct.Type) {
		return ContentType{}, fmt.Errorf("multipart.ParseContentType: %w: %q, want one of %q", ErrUnsupportedType, ct.Type, types)
	}
	if err := checkBoundary(ct.Boundary); err != nil {
		return ContentType{}, fmt.Errorf("multipart.ParseContentType: %w", err)
	}
	return ct, nil
}

// ParseSTOWContentType is ParseContentType for a STOW-RS request of DICOM
// Part 10 files: type must be application/dicom (PS3.18 10.5.1.2).
func ParseSTOWContentType(v string) (ContentType, error) {
	return ParseContentType(v, MediaTypeDICOM)
}

// parseLenient parses a media type whose parameter values may be unquoted
// tokens containing "/". Quoted values may not contain ";".
func parseLenient(v string) (string, map[string]string, error) {
	fields := strings.Split(v, ";")
	mt := strings.ToLower(strings.TrimSpace(fields[0]))
	if mt == "" || strings.Count(mt, "/") != 1 {
		return "", nil, fmt.Errorf("invalid media type %q", v)
	}
	params := map[string]string{}
	for _, f := range fields[1:] {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return "", nil, fmt.Errorf("invalid parameter %q", f)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		params[strings.ToLower(strings.TrimSpace(k))] = val
	}
	return mt, params, nil
}

func containsFold(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

// checkBoundary checks a boundary against RFC 2046 5.1.1: 1 to 70
// characters from a restricted set, not ending in a space.
const maxBoundary = 256

func checkBoundary(b string) error {
	if b == "" {
		return ErrMissingBoundary
	}
	// RFC 2046 5.1.1 caps boundaries at 70 characters, but real senders
	// exceed it (Orthanc's STOW-RS client sends 73), and nothing breaks by
	// reading longer ones; the cap here only bounds the header.
	if len(b) > maxBoundary || strings.HasSuffix(b, " ") {
		return fmt.Errorf("%w: %q", ErrMissingBoundary, b)
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune("'()+_,-./:=? ", c)) {
			return fmt.Errorf("%w: %q", ErrMissingBoundary, b)
		}
	}
	return nil
}

// Limits bounds what a Reader accepts; zero means no limit.
type Limits struct {
	MaxPartSize  int64 // bytes of one part's content
	MaxTotalSize int64 // bytes of the whole body, boundaries and headers included
}

// Reader reads the parts of a multipart/related body in order.
type Reader struct {
	mr     *multipart.Reader
	limits Limits
	part   *Part
}

// NewReader returns a Reader of body with the given boundary, usually
// ContentType.Boundary.
func NewReader(body io.Reader, boundary string, limits Limits) *Reader {
	if limits.MaxTotalSize > 0 {
		body = &limitedReader{r: body, n: limits.MaxTotalSize, err: ErrBodyTooLarge}
	}
	return &Reader{mr: multipart.NewReader(body, boundary), limits: limits}
}

// Part is one part of a multipart/related body. Its content is read from the
// Part itself and is only valid until the next call of NextPart.
type Part struct {
	Header          textproto.MIMEHeader
	ContentType     string // the Content-Type header, "" when absent
	ContentLocation string // the Content-Location header, "" when absent
	r               io.Reader
}

// Read reads the part's content. It returns ErrPartTooLarge once the content
// exceeds Limits.MaxPartSize and ErrBodyTooLarge once the body exceeds
// Limits.MaxTotalSize.
func (p *Part) Read(b []byte) (int, error) { return p.r.Read(b) }

// MediaType returns the part's media type without parameters, lower-cased,
// or "" when it has none or it does not parse.
func (p *Part) MediaType() string {
	mt, _, err := mime.ParseMediaType(p.ContentType)
	if err != nil {
		return ""
	}
	return mt
}

// NextPart returns the next part, skipping what is left of the previous one,
// or io.EOF after the last part.
func (r *Reader) NextPart() (*Part, error) {
	mp, err := r.mr.NextPart()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("multipart.NextPart: %w", err)
	}
	var content io.Reader = mp
	if r.limits.MaxPartSize > 0 {
		content = &limitedReader{r: mp, n: r.limits.MaxPartSize, err: ErrPartTooLarge}
	}
	r.part = &Part{
		Header:          mp.Header,
		ContentType:     mp.Header.Get("Content-Type"),
		ContentLocation: mp.Header.Get("Content-Location"),
		r:               content,
	}
	return r.part, nil
}

// limitedReader reads at most n bytes from r and then fails with err, for
// good, as soon as one more byte is available.
type limitedReader struct {
	r    io.Reader
	n    int64
	err  error
	fail bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.fail {
		return 0, l.err
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.n {
		l.fail = true
		n = int(l.n)
		l.n = 0
		return n, l.err
	}
	l.n -= int64(n)
	return n, err
}
