package pullbench

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Proxy is a recording reverse proxy in front of the source: it times every
// request the prefetcher makes, from its arrival to the last byte of the
// answer written back, so that a job's transfer can be told apart from the
// rest of its life. It also notes the Accept-Encoding each request carried.
type Proxy struct {
	URL string // root the prefetcher is given instead of the source's

	srv *http.Server
	ln  net.Listener

	mu   sync.Mutex
	reqs []Request
}

// Request is one proxied request.
type Request struct {
	Path, RawQuery string
	AcceptEncoding string
	Status         int
	Bytes          int64 // answer body bytes
	Start, End     time.Time
}

// StartProxy proxies 127.0.0.1:<free port> to target (an http URL).
func StartProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The prefetcher's request goes on as it came: no Accept-Encoding
	// added (DisableCompression), one keep-alive connection pool.
	rp.Transport = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}
	p := &Proxy{URL: "http://" + ln.Addr().String(), ln: ln}
	p.srv = &http.Server{Handler: p.record(rp), ReadHeaderTimeout: 10 * time.Second}
	// Serve returns ErrServerClosed on Close; a failure otherwise shows as
	// the prefetcher's failed requests.
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *Proxy) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Wall clock only (Round(0)), as the prefetcher's records in the
		// database are: differences with them and among these agree.
		rec := Request{Path: r.URL.Path, RawQuery: r.URL.RawQuery, AcceptEncoding: r.Header.Get("Accept-Encoding"), Start: time.Now().Round(0)}
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(cw, r)
		rec.End, rec.Status, rec.Bytes = time.Now().Round(0), cw.status, cw.n
		p.mu.Lock()
		p.reqs = append(p.reqs, rec)
		p.mu.Unlock()
	})
}

// Requests returns the requests recorded so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// Of returns the requests about a patient or a study: QIDO-RS searches
// whose PatientID is patientID, and any path under /studies/{uid}.
func Of(reqs []Request, patientID, uid string) []Request {
	var out []Request
	for _, r := range reqs {
		if q, err := url.ParseQuery(r.RawQuery); err == nil && q.Get("PatientID") == patientID {
			out = append(out, r)
			continue
		}
		if _, rest, ok := strings.Cut(r.Path, "/studies/"+uid); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
			out = append(out, r)
		}
	}
	return out
}

// IsStudyRetrieve reports whether r is the WADO-RS retrieve of the whole
// study uid (PS3.18 10.4.1.1.1).
func IsStudyRetrieve(r Request, uid string) bool {
	return strings.HasSuffix(r.Path, "/studies/"+uid)
}
