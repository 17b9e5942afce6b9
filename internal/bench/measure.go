package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Client talks to the FHIR server over loopback with keep-alive connections
// and without compression (Go's transport would otherwise ask for gzip).
type Client struct {
	http *http.Client
	base string
}

// NewClient returns a client of the FHIR base, which must be on a loopback
// address: the benchmark never leaves the machine.
func NewClient(base string, conns int) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("fhir base %q: %w", base, err)
	}
	if !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("fhir base %q is not a loopback address", base)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, base: u.String()}, nil
}

// IsLoopback reports whether host names this machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// get fetches an absolute URL and returns its body.
func (c *Client) get(ctx context.Context, u string, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 64<<20)); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %.300s", u, resp.StatusCode, buf.Bytes())
	}
	return nil
}

// Options bound the latency measurement.
type Options struct {
	Requests int           // per query and side (pages, for a paged query)
	Clients  int           // concurrent clients
	Block    int           // requests per alternating FHIR/SQL block
	MaxTime  time.Duration // per query, both sides together
	Pages    int           // pages per walk of a paged query
	Verify   int           // samples whose FHIR and SQL results are compared id by id
}

// Side is one way of running a query.
type Side int

const (
	FHIR Side = iota
	SQL
)

func (s Side) String() string { return [...]string{"FHIR", "SQL"}[s] }

// Result is one query measured on both sides.
type Result struct {
	Query    *Query
	FHIR     Stats
	SQL      Stats
	Bytes    int64 // mean FHIR response size
	Verified int   // samples compared with identical results
	Rows     float64
}

// Runner measures queries through the FHIR API and directly through pgx.
type Runner struct {
	c    *Client
	db   *pgxpool.Pool
	opt  Options
	base string
}

// NewRunner returns a runner; db is the pool for the raw SQL side.
func NewRunner(c *Client, db *pgxpool.Pool, opt Options) *Runner {
	return &Runner{c: c, db: db, opt: opt, base: c.base}
}

// unit is one walk: one request, or up to Pages pages of a paged query.
type unitResult struct {
	lat   []time.Duration
	bytes int64
	rows  int
	ids   [][]string // per page, when verifying
}

// Measure runs q over samples: alternating blocks of FHIR and SQL requests
// (so both sides see the same machine load), until Requests have run on each
// side or MaxTime has passed.
func (r *Runner) Measure(ctx context.Context, q *Query, samples []*Sample) (*Result, error) {
	res := &Result{Query: q}
	for i := 0; i < min(r.opt.Verify, len(samples)); i++ {
		var got [2]unitResult
		for _, side := range []Side{FHIR, SQL} {
			u, err := r.walk(ctx, side, q, samples[i], true)
			if err != nil {
				return nil, err
			}
			got[side] = u
		}
		if a, b := fmt.Sprint(got[FHIR].ids), fmt.Sprint(got[SQL].ids); a != b {
			return nil, fmt.Errorf("%s: sample %d: FHIR returned %.200s, SQL %.200s", q.Name, i, a, b)
		}
		res.Verified++
	}

	perUnit := 1
	if q.Paged {
		perUnit = r.opt.Pages
	}
	units := max(1, r.opt.Block/perUnit)
	var lat [2][]time.Duration
	var wall [2]time.Duration
	var nbytes, rows int64
	var nunits int
	deadline := time.Now().Add(r.opt.MaxTime)
	next := 0
	for block := 0; len(lat[FHIR]) < r.opt.Requests && time.Now().Before(deadline); block++ {
		batch := make([]*Sample, units)
		for i := range batch {
			batch[i] = samples[next%len(samples)]
			next++
		}
		order := []Side{SQL, FHIR}
		if block%2 == 1 {
			order = []Side{FHIR, SQL}
		}
		for _, side := range order {
			t0 := time.Now()
			out, err := r.run(ctx, side, q, batch)
			if err != nil {
				return nil, err
			}
			wall[side] += time.Since(t0)
			for _, u := range out {
				lat[side] = append(lat[side], u.lat...)
				if side == FHIR {
					nbytes += u.bytes
					rows += int64(u.rows)
					nunits++
				}
			}
		}
	}
	res.FHIR = Summarize(lat[FHIR], wall[FHIR])
	res.SQL = Summarize(lat[SQL], wall[SQL])
	if n := len(lat[FHIR]); n > 0 {
		res.Bytes = nbytes / int64(n)
		res.Rows = float64(rows) / float64(n)
	}
	return res, nil
}

// run runs one block of walks on one side with Clients workers.
func (r *Runner) run(ctx context.Context, side Side, q *Query, batch []*Sample) ([]unitResult, error) {
	out := make([]unitResult, len(batch))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, r.opt.Clients)
	for w := range r.opt.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) || ctx.Err() != nil {
					return
				}
				u, err := r.walk(ctx, side, q, batch[i], false)
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = u
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

func (r *Runner) walk(ctx context.Context, side Side, q *Query, s *Sample, verify bool) (unitResult, error) {
	pages := 1
	if q.Paged {
		pages = r.opt.Pages
	}
	if side == FHIR {
		return r.walkFHIR(ctx, q, s, pages, verify)
	}
	return r.walkSQL(ctx, q, s, pages, verify)
}

func (r *Runner) walkFHIR(ctx context.Context, q *Query, s *Sample, pages int, verify bool) (unitResult, error) {
	var u unitResult
	var buf bytes.Buffer
	link := r.base + "/" + q.Path(s)
	for p := 0; p < pages && link != ""; p++ {
		t0 := time.Now()
		if err := r.c.get(ctx, link, &buf); err != nil {
			return u, fmt.Errorf("%s: %w", q.Name, err)
		}
		u.lat = append(u.lat, time.Since(t0))
		u.bytes += int64(buf.Len())
		body := buf.Bytes()
		if verify {
			var b struct {
				Entry []struct {
					Resource struct {
						ID string `json:"id"`
					} `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				return u, fmt.Errorf("%s: searchset: %w", q.Name, err)
			}
			ids := []string{}
			for _, e := range b.Entry {
				ids = append(ids, e.Resource.ID)
			}
			u.ids = append(u.ids, ids)
		}
		u.rows += bytes.Count(body, []byte(`"search":{"mode":"match"}`))
		var err error
		if link, err = nextLink(body); err != nil {
			return u, fmt.Errorf("%s: %w", q.Name, err)
		}
	}
	return u, nil
}

// nextLink finds the next link of a searchset without decoding the entries:
// Bundle.link precedes Bundle.entry in what the server writes.
func nextLink(body []byte) (string, error) {
	const marker = `{"relation":"next","url":`
	head := body[:min(len(body), 16<<10)]
	i := bytes.Index(head, []byte(marker))
	if i < 0 {
		return "", nil
	}
	rest := head[i+len(marker):]
	end := bytes.IndexByte(rest[1:], '"')
	if len(rest) == 0 || rest[0] != '"' || end < 0 {
		return "", errors.New("searchset: next link is not a JSON string")
	}
	var s string
	if err := json.Unmarshal(rest[:end+2], &s); err != nil {
		return "", fmt.Errorf("searchset: next link: %w", err)
	}
	return s, nil
}

func (r *Runner) walkSQL(ctx context.Context, q *Query, s *Sample, pages int, verify bool) (unitResult, error) {
	var u unitResult
	sql, args := q.SQL, q.Args(s)
	for p := 0; p < pages && sql != ""; p++ {
		t0 := time.Now()
		// As fhir/postgres runs a search: an unnamed statement, planned for
		// its values (the description cached).
		rows, err := r.db.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
		if err != nil {
			return u, fmt.Errorf("%s: sql: %w", q.Name, err)
		}
		var (
			ids     []string
			lastKey string
			lastRID int64
			n       int
		)
		for rows.Next() {
			var (
				rid         int64
				id, body    string
				version     int
				lastUpdated time.Time
				key         string
			)
			dest := []any{&rid, &id, &version, &lastUpdated, &body}
			if q.Paged {
				dest = append(dest, &key)
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return u, fmt.Errorf("%s: sql: %w", q.Name, err)
			}
			if n++; n <= q.Count {
				ids = append(ids, id)
				lastKey, lastRID = key, rid
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return u, fmt.Errorf("%s: sql: %w", q.Name, err)
		}
		u.lat = append(u.lat, time.Since(t0))
		u.rows += len(ids)
		if verify {
			if ids == nil {
				ids = []string{}
			}
			u.ids = append(u.ids, ids)
		}
		sql = ""
		if q.Paged && n > q.Count {
			sql, args = q.NextSQL, q.NextArgs(s, lastKey, lastRID)
		}
	}
	return u, nil
}

// Stats summarizes the latencies of one side of one query.
type Stats struct {
	N        int
	P50, P99 time.Duration
	Mean     time.Duration
	Max      time.Duration
	PerSec   float64 // requests per second of wall time
}

// Summarize computes Stats; wall is the time the requests took together.
func Summarize(lat []time.Duration, wall time.Duration) Stats {
	if len(lat) == 0 {
		return Stats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	st := Stats{N: len(s), P50: Percentile(s, 50), P99: Percentile(s, 99), Mean: sum / time.Duration(len(s)), Max: s[len(s)-1]}
	if wall > 0 {
		st.PerSec = float64(len(s)) / wall.Seconds()
	}
	return st
}

// Percentile returns the nearest-rank p-th percentile of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
