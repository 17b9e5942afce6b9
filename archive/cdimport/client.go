package cdimport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/internal/printable"
)

// ErrSearchUnsupported is returned (wrapped) by Client.FindInstances when the
// server does not serve QIDO-RS (404 without a DICOM JSON body, 405 or 501).
var ErrSearchUnsupported = errors.New("the server does not support QIDO-RS")

// maxResponse bounds the response bodies the Client reads.
const maxResponse = 32 << 20

// Client talks DICOMweb (PS3.18) to one server.
type Client struct {
	root string
	hc   *http.Client
}

// NewClient returns a Client of the DICOMweb root, such as
// http://localhost:8080/dicomweb.
func NewClient(root string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(root)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cdimport.NewClient: DICOMweb root %q is not an absolute http(s) URL", root)
	}
	if hc == nil {
		return nil, errors.New("cdimport.NewClient: an HTTP client is required")
	}
	return &Client{root: strings.TrimSuffix(root, "/"), hc: hc}, nil
}

// FindInstances asks which of the SOP Instance UIDs of one study the server
// holds, with a QIDO-RS search for instances (PS3.18 10.6) matching the list
// of UIDs (PS3.18 8.3.4.1). A 404 with a DICOM JSON or JSON body means the
// study is unknown, so none is held.
func (c *Client) FindInstances(ctx context.Context, study string, sopInstanceUIDs []string) (map[string]bool, error) {
	q := url.Values{"SOPInstanceUID": {strings.Join(sopInstanceUIDs, ",")}, "limit": {strconv.Itoa(len(sopInstanceUIDs))}}
	u := c.root + "/studies/" + url.PathEscape(study) + "/instances?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("cdimport.FindInstances: %w", err)
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cdimport.FindInstances: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("cdimport.FindInstances: reading the response: %w", err)
	}
	found := map[string]bool{}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return found, nil
	case resp.StatusCode == http.StatusNotFound && isJSON(resp.Header.Get("Content-Type")):
		return found, nil
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusNotImplemented:
		return nil, fmt.Errorf("cdimport.FindInstances: HTTP %d: %w", resp.StatusCode, ErrSearchUnsupported)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("cdimport.FindInstances: HTTP %d: %s", resp.StatusCode, errorMessage(body))
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return found, nil
	}
	objs, err := dicomjson.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("cdimport.FindInstances: %w", err)
	}
	for _, o := range objs {
		if uid := stringValue(o, tag.SOPInstanceUID); uid != "" {
			found[uid] = true
		}
	}
	return found, nil
}

// StorePart is one file of a STOW-RS request.
type StorePart struct {
	Open func() (io.ReadCloser, error)
}

// StoreResponse is the outcome of a STOW-RS request: the Store Instances
// Response Module (PS3.18 10.5.3).
type StoreResponse struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Stored holds the SOP Instance UIDs of the ReferencedSOPSequence
	// (0008,1199).
	Stored map[string]bool
	// Failed maps the SOP Instance UIDs of the FailedSOPSequence (0008,1198)
	// to their FailureReason (0008,1197).
	Failed map[string]int
	// FailedWithoutUID holds the FailureReason of failed items that name no
	// SOP Instance (objects the server could not read).
	FailedWithoutUID []int
	// Message is the server's explanation when the body is no response
	// data set, such as for 400 or 413.
	Message string
	// OpenErrs maps the index of each part that could not be opened, and
	// was left out of the request, to the error.
	OpenErrs map[int]error
}

// Store sends the parts in one STOW-RS request (PS3.18 10.5), POST
// {root}/studies with a multipart/related; type="application/dicom" body that
// is streamed from the parts as the request is written, so memory stays flat
// whatever the parts' sizes. sent, if not nil, is called with the number of
// content bytes of each write. A part that cannot be opened is left out and
// reported in OpenErrs; a part that fails while being read aborts the
// request.
func (c *Client) Store(ctx context.Context, parts []StorePart, sent func(n int64)) (*StoreResponse, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw, multipart.MediaTypeDICOM)
	openErrs := map[int]error{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeParts(mw, parts, openErrs, sent))
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.root+"/studies", pr)
	if err != nil {
		pr.CloseWithError(err)
		<-done
		return nil, fmt.Errorf("cdimport.Store: %w", err)
	}
	req.Header.Set("Content-Type", mw.ContentType())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := c.hc.Do(req)
	// The body must be done with before openErrs is read.
	pr.CloseWithError(errors.New("request finished"))
	<-done
	if err != nil {
		return nil, fmt.Errorf("cdimport.Store: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("cdimport.Store: reading the response: %w", err)
	}
	out := &StoreResponse{StatusCode: resp.StatusCode, Stored: map[string]bool{}, Failed: map[string]int{}, OpenErrs: openErrs}
	objs, err := dicomjson.Unmarshal(body)
	if err != nil || len(objs) != 1 || !isResponseDataset(objs[0]) {
		out.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, errorMessage(body))
		return out, nil
	}
	o := objs[0]
	for _, item := range items(o, tag.FailedSOPSequence) {
		reason := intValue(item, tag.FailureReason)
		if uid := stringValue(item, tag.ReferencedSOPInstanceUID); uid != "" {
			out.Failed[uid] = reason
		} else {
			out.FailedWithoutUID = append(out.FailedWithoutUID, reason)
		}
	}
	for _, item := range items(o, tag.ReferencedSOPSequence) {
		if uid := stringValue(item, tag.ReferencedSOPInstanceUID); uid != "" {
			out.Stored[uid] = true
		}
	}
	return out, nil
}

func writeParts(mw *multipart.Writer, parts []StorePart, openErrs map[int]error, sent func(int64)) error {
	for i, p := range parts {
		rc, err := p.Open()
		if err != nil {
			openErrs[i] = err
			continue
		}
		pw, err := mw.CreatePart("", "")
		if err != nil {
			rc.Close()
			return err
		}
		var w io.Writer = pw
		if sent != nil {
			w = countingWriter{pw, sent}
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("sending part %d: %w", i, err)
		}
	}
	return mw.Close()
}

type countingWriter struct {
	w    io.Writer
	sent func(int64)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.sent(int64(n))
	return n, err
}

// FailureReasonText explains a STOW-RS FailureReason (PS3.18 10.5.3, PS3.4
// Annex GG.4, PS3.7 C).
func FailureReasonText(code int) string {
	var text string
	switch {
	case code == 0x0110:
		text = "processing failure"
	case code == 0x0111:
		text = "a different object is already stored under this SOP Instance UID"
	case code == 0x0122:
		text = "SOP Class not supported"
	case code == 0xC122:
		text = "transfer syntax not supported"
	case code&0xFF00 == 0xA700:
		text = "refused: out of resources"
	case code&0xFF00 == 0xA900:
		text = "data set does not match the SOP Class"
	case code&0xF000 == 0xC000:
		text = "the server cannot understand the object"
	default:
		text = "refused"
	}
	return fmt.Sprintf("%s (0x%04X)", text, code)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || mt == "application/dicom+json")
}

func isResponseDataset(o dicomjson.Object) bool {
	_, failed := o.Attribute(tag.FailedSOPSequence)
	_, stored := o.Attribute(tag.ReferencedSOPSequence)
	_, url := o.Attribute(tag.RetrieveURL)
	return failed || stored || url
}

// errorMessage returns the reason of a JSON error body, or the start of the
// body.
func errorMessage(body []byte) string {
	var e struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Reason != "" || e.Error != "") {
		if e.Reason != "" {
			return e.Reason
		}
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	s = printable.Truncate(s, 200)
	if s == "" {
		s = "no explanation"
	}
	return s
}

func items(o dicomjson.Object, t tag.Tag) []dicomjson.Object {
	a, ok := o.Attribute(t)
	if !ok {
		return nil
	}
	var out []dicomjson.Object
	for _, v := range a.Value {
		if item, ok := v.(dicomjson.Object); ok {
			out = append(out, item)
		}
	}
	return out
}

func stringValue(o dicomjson.Object, t tag.Tag) string {
	a, ok := o.Attribute(t)
	if !ok || len(a.Value) == 0 {
		return ""
	}
	s, _ := a.Value[0].(string)
	return s
}

func intValue(o dicomjson.Object, t tag.Tag) int {
	a, ok := o.Attribute(t)
	if !ok || len(a.Value) == 0 {
		return 0
	}
	n, _ := a.Value[0].(json.Number)
	i, _ := n.Int64()
	return int(i)
}
