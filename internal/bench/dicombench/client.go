package dicombench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dwmultipart "github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/internal/bench"
)

// Server is a DICOMweb server under test.
type Server struct {
	Name     string
	DICOMweb string // DICOMweb root, e.g. http://127.0.0.1:8099/dicomweb
}

// Client is the one HTTP client every server is measured with: loopback
// only, keep-alive connections, no compression (Go's transport would
// otherwise ask for gzip, and Orthanc would spend its time compressing).
type Client struct {
	hc *http.Client
}

// NewClient returns a client keeping up to conns idle connections per
// server.
func NewClient(conns int) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// CheckLoopback refuses a URL that does not name this machine over http.
func CheckLoopback(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("url %q: %w", u, err)
	}
	if pu.Scheme != "http" || !bench.IsLoopback(pu.Hostname()) {
		return fmt.Errorf("url %q is not http on a loopback address", u)
	}
	return nil
}

func (c *Client) do(req *http.Request, body *bytes.Buffer, limit int64) (int, error) {
	if err := CheckLoopback(req.URL.String()); err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body.Reset()
	if _, err := body.ReadFrom(io.LimitReader(resp.Body, limit)); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: reading body: %w", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, nil
}

// IngestResult is the outcome of storing a set of files.
type IngestResult struct {
	Instances int
	Requests  int
	Bytes     int64
	Elapsed   time.Duration
}

// PerSecond returns instances stored per second.
func (r *IngestResult) PerSecond() float64 {
	if r == nil || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Instances) / r.Elapsed.Seconds()
}

// MBPerSecond returns megabytes (10^6) stored per second.
func (r *IngestResult) MBPerSecond() float64 {
	if r == nil || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// ingest runs send over the files in consecutive groups of batch, on
// clients workers, and stops at the first error.
func ingest(ctx context.Context, files []string, batch, clients int, send func(ctx context.Context, group []string, buf *bytes.Buffer) (int64, error)) (*IngestResult, error) {
	if batch < 1 || clients < 1 {
		return nil, errors.New("batch and clients must be positive")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, requests, size atomic.Int64
	groups := (len(files) + batch - 1) / batch
	t0 := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var buf bytes.Buffer
			for ctx.Err() == nil {
				g := int(next.Add(1)) - 1
				if g >= groups {
					return
				}
				group := files[g*batch : min((g+1)*batch, len(files))]
				n, err := send(ctx, group, &buf)
				if err != nil {
					cancel(err)
					return
				}
				requests.Add(1)
				size.Add(n)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return &IngestResult{Instances: len(files), Requests: int(requests.Load()), Bytes: size.Load(), Elapsed: elapsed}, nil
}

// STOW stores the files with STOW-RS (PS3.18 10.5), POST {root}/studies,
// batch instances per multipart/related request, clients requests at a
// time. Every request must store all of its instances: 200 and a
// ReferencedSOPSequence (0008,1199) of batch items, no FailedSOPSequence.
// The files are read from disk per request, for every server alike.
func (c *Client) STOW(ctx context.Context, s Server, files []string, batch, clients int) (*IngestResult, error) {
	res, err := ingest(ctx, files, batch, clients, func(ctx context.Context, group []string, buf *bytes.Buffer) (int64, error) {
		var body bytes.Buffer
		mw := dwmultipart.NewWriter(&body, dwmultipart.MediaTypeDICOM)
		var n int64
		for _, f := range group {
			b, err := os.ReadFile(f)
			if err != nil {
				return 0, err
			}
			pw, err := mw.CreatePart("", "")
			if err != nil {
				return 0, err
			}
			if _, err := pw.Write(b); err != nil {
				return 0, err
			}
			n += int64(len(b))
		}
		if err := mw.Close(); err != nil {
			return 0, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.DICOMweb+"/studies", &body)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", mw.ContentType())
		req.Header.Set("Accept", "application/dicom+json")
		code, err := c.do(req, buf, 16<<20)
		if err != nil {
			return 0, fmt.Errorf("%s STOW-RS: %w", s.Name, err)
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("%s STOW-RS: HTTP %d: %.500s", s.Name, code, buf.Bytes())
		}
		var resp map[string]struct {
			Value []json.RawMessage
		}
		if err := json.Unmarshal(buf.Bytes(), &resp); err != nil {
			return 0, fmt.Errorf("%s STOW-RS: response: %w", s.Name, err)
		}
		if f := resp["00081198"].Value; len(f) > 0 {
			return 0, fmt.Errorf("%s STOW-RS: %d instances failed: %.500s", s.Name, len(f), buf.Bytes())
		}
		if got := len(resp["00081199"].Value); got != len(group) {
			return 0, fmt.Errorf("%s STOW-RS: %d of %d instances reported stored: %.500s", s.Name, got, len(group), buf.Bytes())
		}
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// OrthancInstances stores the files one per request with Orthanc's own REST
// API, POST {orthanc}/instances, clients requests at a time; each must
// answer 200 with Status "Success".
func (c *Client) OrthancInstances(ctx context.Context, orthanc string, files []string, clients int) (*IngestResult, error) {
	return ingest(ctx, files, 1, clients, func(ctx context.Context, group []string, buf *bytes.Buffer) (int64, error) {
		b, err := os.ReadFile(group[0])
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, orthanc+"/instances", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", dwmultipart.MediaTypeDICOM)
		code, err := c.do(req, buf, 1<<20)
		if err != nil {
			return 0, fmt.Errorf("Orthanc POST /instances: %w", err)
		}
		var r struct{ Status string }
		if code != http.StatusOK || json.Unmarshal(buf.Bytes(), &r) != nil || r.Status != "Success" {
			return 0, fmt.Errorf("Orthanc POST /instances: HTTP %d: %.300s", code, buf.Bytes())
		}
		return int64(len(b)), nil
	})
}

// SearchStudiesByPatient runs QIDO-RS GET {root}/studies?PatientID=id
// (PS3.18 10.6) and returns the number of studies matched. 204 No Content
// counts as none.
func (c *Client) SearchStudiesByPatient(ctx context.Context, s Server, patientID string, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.DICOMweb+"/studies?PatientID="+url.QueryEscape(patientID), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/dicom+json")
	code, err := c.do(req, buf, 64<<20)
	if err != nil {
		return 0, fmt.Errorf("%s QIDO-RS: %w", s.Name, err)
	}
	switch code {
	case http.StatusNoContent:
		return 0, nil
	case http.StatusOK:
	default:
		return 0, fmt.Errorf("%s QIDO-RS PatientID=%s: HTTP %d: %.300s", s.Name, patientID, code, buf.Bytes())
	}
	// Count the top-level objects without decoding them.
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return 0, fmt.Errorf("%s QIDO-RS: response is not a JSON array: %.300s", s.Name, buf.Bytes())
	}
	n := 0
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return 0, fmt.Errorf("%s QIDO-RS: response: %w", s.Name, err)
		}
		n++
	}
	return n, nil
}

// acceptStudy is the Accept header of a WADO-RS study retrieval: instances
// in their stored transfer syntax (PS3.18 8.7.3.5).
const acceptStudy = `multipart/related; type="application/dicom"; transfer-syntax=*`

// RetrieveStudy runs WADO-RS GET {root}/studies/{uid} (PS3.18 10.4.1.1.1)
// and returns the response body size. With parts set it also parses the
// multipart body and returns the sum of the part sizes and their number;
// otherwise the body is only counted, as a viewer's download would be.
func (c *Client) RetrieveStudy(ctx context.Context, s Server, uid string, parts bool) (body, payload int64, n int, err error) {
	u := s.DICOMweb + "/studies/" + uid
	if err := CheckLoopback(u); err != nil {
		return 0, 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Accept", acceptStudy)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s WADO-RS: %w", s.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return 0, 0, 0, fmt.Errorf("%s WADO-RS study %s: HTTP %d: %s", s.Name, uid, resp.StatusCode, b)
	}
	if resp.Header.Get("Content-Encoding") != "" {
		return 0, 0, 0, fmt.Errorf("%s WADO-RS: response is %s-encoded although the client did not ask for it", s.Name, resp.Header.Get("Content-Encoding"))
	}
	cr := &countingReader{r: resp.Body}
	if !parts {
		_, err := io.Copy(io.Discard, cr)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s WADO-RS: %w", s.Name, err)
		}
		return cr.n, 0, 0, nil
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, "multipart/related") || params["boundary"] == "" {
		return 0, 0, 0, fmt.Errorf("%s WADO-RS: Content-Type %q", s.Name, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(cr, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s WADO-RS: part %d: %w", s.Name, n+1, err)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, dwmultipart.MediaTypeDICOM) {
			return 0, 0, 0, fmt.Errorf("%s WADO-RS: part %d of type %q", s.Name, n+1, ct)
		}
		k, err := io.Copy(io.Discard, p)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s WADO-RS: part %d: %w", s.Name, n+1, err)
		}
		payload += k
		n++
	}
	return cr.n, payload, n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// WaitReady polls url until it answers 200, the process exits (exited
// closed) or the timeout passes.
func (c *Client) WaitReady(ctx context.Context, u string, timeout time.Duration, exited <-chan struct{}) error {
	if err := CheckLoopback(u); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("the server exited before %s answered", u)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer 200 within %s: %v", u, timeout, last)
}
