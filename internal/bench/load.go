package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// LoadOptions shape the bulk load.
type LoadOptions struct {
	BundleStudies int // studies per transaction Bundle (whole patients, so a few more)
	Clients       int // concurrent HTTP clients
	// Analyze, when set, refreshes planner statistics as the archive grows
	// (after 1,000 studies, then whenever it has doubled), standing in for
	// autovacuum's analyze where autovacuum is off. Without it the server plans its
	// conditional-create searches for the empty tables of the start.
	Analyze func(context.Context) error
	// Loaded, when set, resumes a load: it reports which of the given
	// MRNs are already stored, and those patients are skipped with their
	// studies. A patient and its studies always travel in one transaction
	// Bundle, so a stored patient means its studies are stored too,
	// whichever Bundles an interrupted load committed.
	Loaded func(ctx context.Context, mrns []string) (map[string]bool, error)
}

// resumeBatch is how many patients one Loaded call checks.
const resumeBatch = 2000

// LoadResult is what the load measured.
type LoadResult struct {
	Studies, Patients, Bundles int
	Skipped                    int // studies already loaded (a resumed load)
	Bytes                      int64
	Elapsed                    time.Duration
	BundleLatency              Stats
}

// StudiesPerSecond is the load rate.
func (r *LoadResult) StudiesPerSecond() float64 { return float64(r.Studies) / r.Elapsed.Seconds() }

// Load posts the generator's archive to the FHIR base as transaction
// Bundles from opt.Clients concurrent clients. It stops at the first failed
// Bundle (each committed whole or not at all; opt.Loaded resumes).
func Load(ctx context.Context, c *Client, g *Generator, opt LoadOptions, log *slog.Logger) (*LoadResult, error) {
	if opt.BundleStudies < 1 || opt.Clients < 1 {
		return nil, fmt.Errorf("load: bundle size and clients must be positive")
	}
	type job struct {
		body              []byte
		studies, patients int
	}
	jobs := make(chan job, opt.Clients)
	res := &LoadResult{}
	var studies, patients, bundles, nbytes, skipped atomic.Int64
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		defer close(jobs)
		var batch []*PatientData
		n := 0
		send := func() bool {
			j := job{body: g.Bundle(batch), studies: n, patients: len(batch)}
			batch, n = nil, 0
			select {
			case jobs <- j:
				return true
			case <-ctx.Done():
				return false
			}
		}
		ok := true
		add := func(pd *PatientData) {
			batch = append(batch, pd)
			n += len(pd.Studies)
			if n >= opt.BundleStudies {
				ok = send()
			}
		}
		var pending []*PatientData
		var resumeErr error
		flushPending := func() {
			loaded, err := opt.Loaded(ctx, mrnsOf(pending))
			if err != nil {
				resumeErr, ok = err, false
				return
			}
			for _, pd := range pending {
				if !loaded[pd.MRN] {
					add(pd)
				} else {
					skipped.Add(int64(len(pd.Studies)))
				}
				if !ok {
					return
				}
			}
			pending = pending[:0]
		}
		g.Walk(func(pd *PatientData) bool {
			if opt.Loaded == nil {
				add(pd)
				return ok
			}
			if pending = append(pending, pd); len(pending) == resumeBatch {
				flushPending()
			}
			return ok
		})
		if ok && len(pending) > 0 {
			flushPending()
		}
		if ok && len(batch) > 0 {
			send()
		}
		if resumeErr != nil {
			return fmt.Errorf("resume: %w", resumeErr)
		}
		return ctx.Err()
	})

	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	for range opt.Clients {
		eg.Go(func() error {
			for j := range jobs {
				t0 := time.Now()
				if err := c.postTransaction(ctx, j.body, j.studies+j.patients); err != nil {
					return err
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				studies.Add(int64(j.studies))
				patients.Add(int64(j.patients))
				bundles.Add(1)
				nbytes.Add(int64(len(j.body)))
			}
			return nil
		})
	}
	done := make(chan struct{})
	analyzed := make(chan error, 1)
	go func() { analyzed <- analyzeWhileGrowing(ctx, done, &studies, opt.Analyze) }()
	go func() {
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				n, el := studies.Load(), time.Since(start)
				log.Info("loading", "studies", n, "elapsed", el.Round(time.Second),
					"studies_per_s", int(float64(n)/el.Seconds()))
			}
		}
	}()
	err := eg.Wait()
	close(done)
	err = errors.Join(err, <-analyzed)
	res.Elapsed = time.Since(start)
	res.Studies, res.Patients, res.Bundles = int(studies.Load()), int(patients.Load()), int(bundles.Load())
	res.Bytes = nbytes.Load()
	res.Skipped = int(skipped.Load())
	res.BundleLatency = Summarize(lat, res.Elapsed)
	if err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	return res, nil
}

func mrnsOf(pds []*PatientData) []string {
	out := make([]string, len(pds))
	for i, pd := range pds {
		out[i] = pd.MRN
	}
	return out
}

// analyzeWhileGrowing runs analyze after 1,000 studies and then whenever
// the count has doubled, until done is closed.
func analyzeWhileGrowing(ctx context.Context, done <-chan struct{}, studies *atomic.Int64, analyze func(context.Context) error) error {
	if analyze == nil {
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	next := int64(1000)
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if n := studies.Load(); n >= next {
			if err := analyze(ctx); err != nil {
				return fmt.Errorf("analyze: %w", err)
			}
			next = 2 * n
		}
	}
}

// postTransaction posts one transaction Bundle and checks that every entry
// succeeded.
func (c *Client) postTransaction(ctx context.Context, body []byte, entries int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("post transaction: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("post transaction: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post transaction: HTTP %d: %.500s", resp.StatusCode, rb)
	}
	var out struct {
		Entry []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return fmt.Errorf("post transaction: response: %w", err)
	}
	if len(out.Entry) != entries {
		return fmt.Errorf("post transaction: %d response entries for %d requests", len(out.Entry), entries)
	}
	for i, e := range out.Entry {
		if s := e.Response.Status; len(s) < 3 || s[0] != '2' {
			return fmt.Errorf("post transaction: entry %d: status %q", i, s)
		}
	}
	return nil
}
