package search

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/fhir/postgres"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/rules"
)

// Job is what the prefetch worker asks the search for: the fields of a
// planner.JobMessage the search needs.
type Job struct {
	ID   string
	Rule string
	// Patient are the identifiers the care event named.
	Patient []triggers.Identifier
	// PatientRef is the local Patient ("Patient/…") the event identified,
	// empty when the patient has no resource here (then nothing is
	// indexed: a remote study is never attached to a guessed patient).
	PatientRef string
	Criteria   rules.Criteria
}

// Entry is one configured source with its operating limits.
type Entry struct {
	Source Source
	// Timeout bounds the whole search of this source, retries included.
	Timeout time.Duration
	// Retries after the first attempt, with exponential backoff.
	Retries int
	// Concurrency bounds the searches in flight to this source.
	Concurrency int
}

// LocalIndex is the local archive as the search compares with it;
// *archive.Archive implements it.
type LocalIndex interface {
	SearchInstances(ctx context.Context, q archive.Query) ([]archive.InstanceRow, bool, error)
}

// Config holds a Searcher's dependencies.
type Config struct {
	Sources []Entry
	// Store is the local FHIR store: Patient cross-references, the
	// ImagingStudy index, Endpoints, review Tasks and AuditEvents. Task and
	// AuditEvent are written only when its registry holds them.
	Store  *postgres.Store
	Local  LocalIndex
	Logger *slog.Logger
	// BreakerFailures consecutive failed searches open a source's breaker
	// for BreakerCooldown (defaults 5 and 30s).
	BreakerFailures int
	BreakerCooldown time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// InitialBackoff is the first retry delay (default 200ms).
	InitialBackoff time.Duration
	// IssuerSystems is the site's table of assigning authority to
	// identifier system (PRIORFLOW_CONFIG identifiers.authorities), as
	// the archive and the HL7 v2 intake have it: a local Patient's
	// identifier is in a source's issuer domain when its system is the
	// issuer's.
	IssuerSystems map[string]string
}

// Searcher fans a job out to the sources and selects the priors.
type Searcher struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	sources []*source
}

type source struct {
	Entry
	info    SourceInfo
	breaker *Breaker
	sem     chan struct{}
}

// NewSearcher returns a Searcher; every dependency is required.
func NewSearcher(cfg Config) (*Searcher, error) {
	if cfg.Store == nil || cfg.Local == nil || cfg.Logger == nil {
		return nil, errors.New("search: store, local index and logger are required")
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = 30 * time.Second
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 200 * time.Millisecond
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Searcher{cfg: cfg, log: cfg.Logger, now: now}
	seen := map[string]bool{}
	for _, e := range cfg.Sources {
		if e.Source == nil {
			return nil, errors.New("search: a nil source")
		}
		info := e.Source.Describe()
		if seen[info.Name] {
			return nil, fmt.Errorf("search: source %q given twice", info.Name)
		}
		seen[info.Name] = true
		if e.Timeout <= 0 {
			e.Timeout = DefaultTimeout
		}
		if e.Concurrency <= 0 {
			e.Concurrency = DefaultConcurrency
		}
		s.sources = append(s.sources, &source{Entry: e, info: info,
			breaker: NewBreaker(cfg.BreakerFailures, cfg.BreakerCooldown, now), sem: make(chan struct{}, e.Concurrency)})
	}
	return s, nil
}

// Breaker returns the breaker of the named source, nil when unknown.
func (s *Searcher) Breaker(name string) *Breaker {
	for _, src := range s.sources {
		if src.info.Name == name {
			return src.breaker
		}
	}
	return nil
}

// Result is what a search found and decided.
type Result struct {
	// Retrieve are the selected studies to pull into the local archive.
	Retrieve []Selected
	// Skipped are studies found but not retrieved, with the reason.
	Skipped []Skipped
	// Sources tells how each source answered.
	Sources []SourceOutcome
	// ReviewTasks are the ids of review-identity Tasks created.
	ReviewTasks []string
	// Indexed maps StudyInstanceUID to the ImagingStudy id that describes
	// a found study here (created, updated or already local).
	Indexed map[string]string
}

// Selected is a study to retrieve.
type Selected struct {
	Study RemoteStudy
	// Partial is set when the local archive holds part of the study:
	// retrieve MissingSeries (when series are known) and skip the
	// HaveInstances already stored.
	Partial       bool
	MissingSeries []string
	HaveInstances []string
}

// Skipped is a study not retrieved.
type Skipped struct {
	StudyInstanceUID string
	Source           string
	Reason           SkipReason
	Detail           string
}

// SkipReason says why a study is not retrieved.
type SkipReason string

// Skip reasons.
const (
	SkipIdentity      SkipReason = "identity-mismatch"
	SkipLookback      SkipReason = "outside-lookback"
	SkipExcluded      SkipReason = "excluded-modality"
	SkipModality      SkipReason = "other-modality"
	SkipBodyRegion    SkipReason = "other-body-region"
	SkipBeyondMax     SkipReason = "beyond-max-priors"
	SkipPresent       SkipReason = "already-local"
	SkipRemoteView    SkipReason = "remote-view-source"
	SkipOtherPatient  SkipReason = "indexed-for-another-patient"
	SkipAmbiguousUID  SkipReason = "ambiguous-index"
	SkipIdentityCheck SkipReason = "identity-review"
	SkipInvalidUID    SkipReason = "invalid-uid"
)

// SourceOutcome is how one source answered a search.
type SourceOutcome struct {
	Source   string
	Status   SourceStatus
	Studies  int // studies the source returned
	Accepted int // studies that passed the identity check
	Attempts int
	Elapsed  time.Duration
	// Err is set for StatusFailed; it holds no credentials or query string.
	Err error
	// Detail explains a skip or a review.
	Detail string
}

// SourceStatus is the outcome of one source.
type SourceStatus string

// Source statuses.
const (
	StatusOK          SourceStatus = "ok"
	StatusFailed      SourceStatus = "failed"
	StatusCircuitOpen SourceStatus = "circuit-open"
	StatusSkipped     SourceStatus = "skipped" // nothing to ask it with
	StatusReview      SourceStatus = "review"  // identity not certain: review Task
)

// Search runs a job: identity mapping, fan-out, identity checks, merge,
// selection, local comparison, indexing, review Tasks and audit records.
// Failing sources do not fail the search; an error means the local store
// could not be read or written.
func (s *Searcher) Search(ctx context.Context, job Job) (*Result, error) {
	id, err := s.resolve(ctx, job)
	if err != nil {
		return nil, fmt.Errorf("search job %s: %w", job.ID, err)
	}
	wanted := s.sources
	if len(job.Criteria.Sources) > 0 {
		wanted = nil
		for _, src := range s.sources {
			if slices.Contains(job.Criteria.Sources, src.info.Name) {
				wanted = append(wanted, src)
			}
		}
	}
	withSeries := len(job.Criteria.BodyRegions) > 0
	outs := make([]sourceResult, len(wanted))
	var wg sync.WaitGroup
	for i, src := range wanted {
		wg.Go(func() { outs[i] = s.searchSource(ctx, src, id, job, withSeries) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("search job %s: %w", job.ID, err)
	}

	res := &Result{Indexed: map[string]string{}}
	merged := map[string]*RemoteStudy{}
	var order []string
	modeOf := map[string]Mode{}
	for i, o := range outs {
		res.Sources = append(res.Sources, o.outcome)
		res.Skipped = append(res.Skipped, o.rejected...)
		modeOf[wanted[i].info.Name] = wanted[i].info.Mode
		for _, st := range o.accepted {
			cur, ok := merged[st.StudyInstanceUID]
			if !ok {
				order = append(order, st.StudyInstanceUID)
				merged[st.StudyInstanceUID] = &st
				continue
			}
			if st.NumberOfInstances > cur.NumberOfInstances {
				merged[st.StudyInstanceUID] = &st
			}
		}
	}
	var found []RemoteStudy
	for _, uid := range order {
		found = append(found, *merged[uid])
	}

	if err := s.review(ctx, job, id, outs, res); err != nil {
		return nil, fmt.Errorf("search job %s: %w", job.ID, err)
	}
	if err := s.index(ctx, id, found, wanted, res); err != nil {
		return nil, fmt.Errorf("search job %s: %w", job.ID, err)
	}
	selected, skipped := Select(found, job.Criteria)
	res.Skipped = append(res.Skipped, skipped...)
	for _, st := range selected {
		if ref, ok := res.Indexed[st.StudyInstanceUID]; ok && ref == "" {
			continue // indexed for another patient: reported by index
		}
		if modeOf[st.Source] == ModeRemoteView {
			res.Skipped = append(res.Skipped, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: st.Source, Reason: SkipRemoteView})
			continue
		}
		sel, present, err := s.compare(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("search job %s: %w", job.ID, err)
		}
		if present {
			res.Skipped = append(res.Skipped, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: st.Source, Reason: SkipPresent})
			continue
		}
		res.Retrieve = append(res.Retrieve, sel)
	}
	if err := s.audit(ctx, job, id, res.Sources); err != nil {
		return nil, fmt.Errorf("search job %s: %w", job.ID, err)
	}
	return res, nil
}

type sourceResult struct {
	outcome  SourceOutcome
	accepted []RemoteStudy
	rejected []Skipped
	// candidates are the distinct patients a demographic search found
	// when not exactly one matched.
	candidates []PatientIdentity
}

// maxDomainIdentifiers bounds the identifiers a source is asked by: a
// merged patient carries its retired ones (use old) beside the current one
// in the same domain, and each is asked; more than a few in one domain is
// no merge history but a mix-up, and the source is not asked.
const maxDomainIdentifiers = 4

// searchSource asks one source, within its own timeout per query, and
// checks what it answers: by demographics, or by each of the patient's
// identifiers in the source's domain.
func (s *Searcher) searchSource(ctx context.Context, src *source, id *identity, job Job, withSeries bool) sourceResult {
	out := sourceResult{outcome: SourceOutcome{Source: src.info.Name}}
	q := PatientQuery{Modalities: job.Criteria.Modalities, WithSeries: withSeries}
	if job.Criteria.Since != nil {
		q.Since = *job.Criteria.Since
	}
	var queries []PatientQuery
	switch src.info.Match {
	case MatchDemographics:
		if id.demo == nil {
			out.outcome.Status, out.outcome.Detail = StatusSkipped, "demographics incomplete (family name and birth date are needed)"
			return out
		}
		q.Demographics = id.demo
		queries = append(queries, q)
	default:
		vals := id.inDomain(src.info.Issuer, s.cfg.IssuerSystems)
		switch {
		case len(vals) == 0:
			out.outcome.Status, out.outcome.Detail = StatusSkipped, "no patient identifier in the source's issuer domain"
			return out
		case len(vals) > maxDomainIdentifiers:
			out.outcome.Status, out.outcome.Detail = StatusSkipped, fmt.Sprintf("more than %d identifiers in the source's issuer domain", maxDomainIdentifiers)
			return out
		}
		for _, v := range vals {
			q.PatientID, q.Issuer = v, src.info.Issuer
			queries = append(queries, q)
		}
	}
	start := time.Now()
	seen := map[string]bool{}
	for _, q := range queries {
		studies, attempts, err := s.call(ctx, src, q)
		out.outcome.Elapsed, out.outcome.Attempts = time.Since(start), out.outcome.Attempts+attempts
		switch {
		case errors.Is(err, ErrCircuitOpen):
			out.outcome.Status, out.outcome.Err = StatusCircuitOpen, err
			out.accepted, out.rejected = nil, nil
			return out
		case err != nil:
			// All or nothing: a source that answered for one identifier
			// but not another has not said what it holds.
			out.outcome.Status, out.outcome.Err = StatusFailed, err
			out.accepted, out.rejected = nil, nil
			s.log.WarnContext(ctx, "source search failed", "source", src.info.Name, "job", job.ID, "attempts", attempts, "err", err)
			return out
		}
		out.outcome.Studies += len(studies)
		studies = validUIDs(&out, src, studies)
		if src.info.Match == MatchDemographics {
			s.checkDemographics(&out, src, id, studies)
			continue
		}
		for _, st := range studies {
			if why := id.checkIdentifier(st.Patient, q.PatientID, src.info.Issuer, s.cfg.IssuerSystems); why != "" {
				out.rejected = append(out.rejected, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: src.info.Name, Reason: SkipIdentity, Detail: why})
				continue
			}
			if !seen[st.StudyInstanceUID] {
				seen[st.StudyInstanceUID] = true
				out.accepted = append(out.accepted, st)
			}
		}
	}
	if out.outcome.Status == "" { // a demographic check may have asked for review
		out.outcome.Status = StatusOK
	}
	out.outcome.Accepted = len(out.accepted)
	return out
}

// validUIDs sets aside the studies a source names by a StudyInstanceUID
// that is none (Orthanc serves what it was sent: "1.2.ABC/../x" among
// them), and drops such series from the rest. The archive could never hold
// them, and the UID would travel into URLs, FHIR identifiers and the job's
// record.
func validUIDs(out *sourceResult, src *source, studies []RemoteStudy) []RemoteStudy {
	kept := studies[:0]
	for _, st := range studies {
		if !dicomheader.ValidUID(st.StudyInstanceUID) {
			out.rejected = append(out.rejected, Skipped{Source: src.info.Name, Reason: SkipInvalidUID,
				Detail: "the source names a study by a StudyInstanceUID that is not a valid UID"})
			continue
		}
		var series []RemoteSeries
		for _, se := range st.Series {
			if dicomheader.ValidUID(se.SeriesInstanceUID) {
				series = append(series, se)
			}
		}
		st.Series = series
		kept = append(kept, st)
	}
	return kept
}

// checkDemographics accepts the studies of a demographic search only when
// exactly one distinct patient matches the expected demographics.
func (s *Searcher) checkDemographics(out *sourceResult, src *source, id *identity, studies []RemoteStudy) {
	matching := map[string]PatientIdentity{}
	all := map[string]PatientIdentity{}
	for _, st := range studies {
		all[st.Patient.Key()] = st.Patient
		if id.demo.matches(st.Patient) {
			matching[st.Patient.Key()] = st.Patient
		}
	}
	if len(matching) == 1 {
		for _, st := range studies {
			if _, ok := matching[st.Patient.Key()]; ok {
				out.accepted = append(out.accepted, st)
			} else {
				out.rejected = append(out.rejected, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: src.info.Name, Reason: SkipIdentity,
					Detail: "demographics differ"})
			}
		}
		return
	}
	if len(studies) == 0 {
		return // nobody at the source resembles the patient
	}
	cands := matching
	if len(cands) == 0 {
		cands = all
	}
	for _, p := range cands {
		out.candidates = append(out.candidates, p)
	}
	slices.SortFunc(out.candidates, func(a, b PatientIdentity) int { return strings.Compare(a.Key(), b.Key()) })
	out.outcome.Status = StatusReview
	out.outcome.Detail = fmt.Sprintf("%d patients match the demographics: review needed", len(matching))
	for _, st := range studies {
		out.rejected = append(out.rejected, Skipped{StudyInstanceUID: st.StudyInstanceUID, Source: src.info.Name, Reason: SkipIdentityCheck,
			Detail: out.outcome.Detail})
	}
}

// call runs the source's search with its concurrency bound, breaker,
// timeout and retries.
func (s *Searcher) call(ctx context.Context, src *source, q PatientQuery) ([]RemoteStudy, int, error) {
	ctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	select {
	case src.sem <- struct{}{}:
		defer func() { <-src.sem }()
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("source %s: %w: waiting for a free slot: %v", src.info.Name, ErrUnavailable, ctx.Err())
	}
	if !src.breaker.Allow() {
		return nil, 0, fmt.Errorf("source %s: %w", src.info.Name, ErrCircuitOpen)
	}
	attempts := 0
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = s.cfg.InitialBackoff
	studies, err := backoff.Retry(ctx, func() ([]RemoteStudy, error) {
		attempts++
		st, err := src.Source.FindStudies(ctx, q)
		if err != nil && errors.Is(err, ErrRejected) {
			return nil, backoff.Permanent(err)
		}
		return st, err
	}, backoff.WithBackOff(bo), backoff.WithMaxTries(uint(src.Retries+1)), backoff.WithMaxElapsedTime(src.Timeout))
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	src.breaker.Done(err == nil)
	if err != nil {
		return nil, attempts, fmt.Errorf("source %s: %w", src.info.Name, err)
	}
	return studies, attempts, nil
}
