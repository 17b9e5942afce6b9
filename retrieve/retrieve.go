// Package retrieve pulls the studies a network search selected into the
// local archive over WADO-RS (DICOM PS3.18 10.4): original bytes
// (transfer-syntax=*), streamed part by part from the multipart/related
// response through archive.Spool into archive.Store, so memory stays bounded
// whatever the study's size and instances are indexed as they arrive. A
// DIMSE source is pulled from with C-GET or C-MOVE the same way (dimse.go,
// move.go).
//
// A study partly present locally is completed with series- or
// instance-level requests for what the archive's index lacks, so a pull
// interrupted by a crash resumes where it stopped. Every instance must carry
// the StudyInstanceUID and patient identity the search selected; one that
// does not is quarantined (kept apart, never indexed) and reported.
//
// The prefetch worker that drives retrievals from the job stream is
// retrieve/worker.
package retrieve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"
	"gocloud.dev/blob"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/archive/multipart"
	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/search"
)

// AcceptDICOM asks a WADO-RS server for the original Part 10 objects in
// whatever transfer syntax they are stored (PS3.18 8.7.3.5.2).
const AcceptDICOM = `multipart/related; type="application/dicom"; transfer-syntax=*`

// Errors a retrieval reports (wrapped).
var (
	// ErrUnavailable: the source could not be reached, failed on its side,
	// or broke off the response; the retrieval may be retried.
	ErrUnavailable = errors.New("source unavailable")
	// ErrRejected: the source refused the request (4xx other than 408 and
	// 429); retrying does not help.
	ErrRejected = errors.New("request rejected by source")
	// ErrUnknownSource: the study names a source the retriever has no
	// client for.
	ErrUnknownSource = errors.New("unknown source")
)

// Source is a remote source studies are retrieved from.
type Source struct {
	Name string
	// Client talks to a WADO-RS source: credentials and TLS of its
	// config, DisableCompression set (search.NewHTTPClient).
	Client *http.Client
	// DIMSE talks to a DIMSE source instead (C-FIND, and C-GET or
	// C-MOVE); its IdleTimeout is set from IdleTimeout.
	DIMSE *dimse.Client
	// Move pulls from the DIMSE source with C-MOVE to
	// Config.MoveDestination rather than C-GET; the source sends the
	// objects under StoreAETitle (default its called AE title).
	Move         bool
	StoreAETitle string
	// Concurrency bounds the requests (or associations) in flight to the
	// source (default 2).
	Concurrency int
	// IdleTimeout is how long a retrieval waits for a byte from the source,
	// for the response headers and between reads of the body (default
	// search.DefaultRetrieveTimeout); a request silent for longer is
	// abandoned and retried.
	IdleTimeout time.Duration
}

// Backoff is the retry policy of one study: Tries attempts in all, the
// first retry after Initial, each next one Multiplier times later, at most
// Max apart.
type Backoff struct {
	Tries      int
	Initial    time.Duration
	Multiplier float64
	Max        time.Duration
}

// DefaultBackoff is 10 tries, 30 s first delay, ×2, at most 10 min apart.
func DefaultBackoff() Backoff {
	return Backoff{Tries: 10, Initial: 30 * time.Second, Multiplier: 2, Max: 10 * time.Minute}
}

// Delay returns the wait before attempt n+1 (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < n; i++ {
		d *= b.Multiplier
		if d >= float64(b.Max) {
			return b.Max
		}
	}
	return min(time.Duration(d), b.Max)
}

// Observer receives the retriever's counts (the worker's metrics).
type Observer interface {
	Received(source string, instances int, bytes int64)
	Retried(source string)
	// Refused counts an object sent to the Storage SCP that no C-MOVE
	// asked for.
	Refused()
}

// Config holds a Retriever's dependencies.
type Config struct {
	Archive *archive.Archive
	Sources []Source
	Logger  *slog.Logger
	// Quarantine, when set, keeps the bytes of refused instances under
	// QuarantinePrefix; otherwise they are dropped (and still reported).
	Quarantine *blob.Bucket
	Retry      Backoff
	// BatchSize is the fewest objects one archive.Store call indexes
	// (default 16); batches grow with the study (a quarter of the instances
	// already in) up to MaxBatchBytes, so the study's reindex, which every
	// batch ends in, costs linear time in all.
	BatchSize int
	// MaxBatchBytes bounds the bytes of one batch (default 256 MiB): what a
	// crash makes fetch again, and half the spool a retrieval may fill.
	MaxBatchBytes int64
	// MaxPartSize bounds one instance (default 4 GiB).
	MaxPartSize int64
	Observer    Observer
	// MoveDestination is the AE title of Priorflow's Storage SCP, where
	// the C-MOVEs of sources with Move send their objects; the SCP hands
	// them to Receive. Required when a source has Move.
	MoveDestination string
}

// QuarantinePrefix is where quarantined objects are kept in the blob store.
const QuarantinePrefix = "quarantine/"

// Retriever pulls studies into the archive.
type Retriever struct {
	cfg     Config
	log     *slog.Logger
	sources map[string]*source
	moves   moves
}

type source struct {
	Source
	sem chan struct{}
}

// New returns a Retriever; archive and logger are required.
func New(cfg Config) (*Retriever, error) {
	if cfg.Archive == nil || cfg.Logger == nil {
		return nil, errors.New("retrieve: archive and logger are required")
	}
	if cfg.Retry.Tries <= 0 {
		cfg.Retry = DefaultBackoff()
	}
	if cfg.Retry.Multiplier < 1 {
		cfg.Retry.Multiplier = 2
	}
	if cfg.Retry.Max <= 0 {
		cfg.Retry.Max = 10 * time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 16
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 256 << 20
	}
	if cfg.MaxPartSize <= 0 {
		cfg.MaxPartSize = 4 << 30
	}
	r := &Retriever{cfg: cfg, log: cfg.Logger, sources: map[string]*source{}}
	for _, s := range cfg.Sources {
		if s.Name == "" || (s.Client == nil) == (s.DIMSE == nil) {
			return nil, errors.New("retrieve: a source needs a name and either an HTTP or a DIMSE client")
		}
		if s.Concurrency <= 0 {
			s.Concurrency = 2
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = search.DefaultRetrieveTimeout
		}
		if s.Move && (s.DIMSE == nil || dimse.CheckAETitle(cfg.MoveDestination) != nil) {
			return nil, fmt.Errorf("retrieve: source %s pulls by C-MOVE: it needs a DIMSE client and a move destination AE title", s.Name)
		}
		if s.DIMSE != nil {
			c := *s.DIMSE
			c.Config.IdleTimeout = s.IdleTimeout
			s.DIMSE = &c
		}
		r.sources[s.Name] = &source{Source: s, sem: make(chan struct{}, s.Concurrency)}
	}
	return r, nil
}

// Study is what to retrieve: a study the search selected.
type Study struct {
	StudyInstanceUID string
	// Source names the source, Base is its WADO-RS root.
	Source, Base string
	// Patient is the identity the search accepted; every instance must
	// carry it.
	Patient search.PatientIdentity
	// NumberOfInstances is the source's count, 0 when unknown.
	NumberOfInstances int
}

// FromSelected returns the Study of a search selection.
func FromSelected(sel search.Selected) Study {
	st := sel.Study
	return Study{StudyInstanceUID: st.StudyInstanceUID, Source: st.Source, Base: st.RetrieveBase, Patient: st.Patient,
		NumberOfInstances: st.NumberOfInstances}
}

// Outcome is what retrieving one study did.
type Outcome struct {
	// Stored counts instances newly indexed, Existed those the archive
	// already held (sent again), Bytes the bytes received.
	Stored, Existed int
	Bytes           int64
	Quarantined     []Quarantined
	// Attempts is how many pulls it took.
	Attempts int
	// Requests lists what was asked for: WADO-RS paths relative to the
	// base, or C-GETs and C-MOVEs by level and UID.
	Requests []string
	// Unsent are the instances the source said it could not send (failed
	// sub-operations of a C-GET or C-MOVE); they are not asked for again.
	Unsent []string
}

// Quarantined is an instance refused for safety.
type Quarantined struct {
	SOPInstanceUID string
	Reason         string
	// BlobKey is where its bytes are kept, "" when dropped.
	BlobKey string
}

// Retrieve pulls what the archive lacks of st, retrying with the backoff
// policy. progress is called as parts arrive and while waiting to retry
// (the worker reports it to JetStream); it may be nil. The error wraps
// ErrUnavailable or ErrRejected when the source is at fault, and the last
// attempt's error after the tries are spent.
func (r *Retriever) Retrieve(ctx context.Context, st Study, progress func()) (*Outcome, error) {
	if progress == nil {
		progress = func() {}
	}
	src, ok := r.sources[st.Source]
	if !ok {
		return nil, fmt.Errorf("retrieve %s: %w %q", st.StudyInstanceUID, ErrUnknownSource, st.Source)
	}
	if st.Base == "" && src.DIMSE == nil {
		return nil, fmt.Errorf("retrieve %s: %w: no WADO-RS base", st.StudyInstanceUID, ErrRejected)
	}
	st.Base = strings.TrimSuffix(st.Base, "/")
	out := &Outcome{}
	for {
		out.Attempts++
		err := r.pull(ctx, src, st, out, progress)
		if err == nil && len(out.Unsent) > 0 {
			// Everything else is here; asking again would not help.
			return out, fmt.Errorf("retrieve %s: %w: the source could not send %d instances (%s)", st.StudyInstanceUID, ErrRejected,
				len(out.Unsent), listed(out.Unsent, 5))
		}
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return out, fmt.Errorf("retrieve %s: %w", st.StudyInstanceUID, ctx.Err())
		}
		if errors.Is(err, ErrRejected) || out.Attempts >= r.cfg.Retry.Tries {
			return out, fmt.Errorf("retrieve %s after %d attempts: %w", st.StudyInstanceUID, out.Attempts, err)
		}
		delay := r.cfg.Retry.Delay(out.Attempts)
		r.log.WarnContext(ctx, "retrieve: retrying", "study", st.StudyInstanceUID, "source", st.Source, "attempt", out.Attempts, "in", delay, "err", err)
		if r.cfg.Observer != nil {
			r.cfg.Observer.Retried(st.Source)
		}
		if err := sleep(ctx, delay, progress); err != nil {
			return out, fmt.Errorf("retrieve %s: %w", st.StudyInstanceUID, err)
		}
	}
}

// sleep waits d, calling progress every few seconds.
func sleep(ctx context.Context, d time.Duration, progress func()) error {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case <-tick.C:
			progress()
		}
	}
}

// pull is one attempt: it asks only for what the index lacks, the study
// when nothing of it is here, otherwise each series it lacks whole and each
// instance of the others.
func (r *Retriever) pull(ctx context.Context, src *source, st Study, out *Outcome, progress func()) error {
	var p puller = &wadoPuller{r: r, src: src, st: st, out: out, progress: progress}
	if src.DIMSE != nil {
		p = &dimsePuller{r: r, src: src, st: st, out: out, progress: progress}
	}
	have, err := r.local(ctx, st.StudyInstanceUID)
	if err != nil {
		return err
	}
	if len(have) == 0 && len(out.Unsent) == 0 {
		return p.study(ctx)
	}
	if st.NumberOfInstances > 0 && len(have) >= st.NumberOfInstances {
		return nil
	}
	remote, err := p.list(ctx)
	if err != nil {
		return err
	}
	// What the source could not send is not asked for again: a peer that
	// stops a C-GET at its first failure (Orthanc) would stop there again.
	skip := maps.Clone(have)
	for _, sop := range out.Unsent {
		skip[sop] = true
	}
	order, missing, present := missingBySeries(remote, skip)
	known := len(have)
	for _, se := range order {
		if present[se] == 0 {
			err = p.series(ctx, se, known)
		} else {
			err = p.instances(ctx, se, missing[se], known)
		}
		if err != nil {
			return err
		}
		known += len(missing[se])
	}
	return nil
}

// puller is what a pull asks a source for, in its protocol (WADO-RS,
// C-GET). known is how many instances of the study the archive held
// before the request; it sizes the batches.
type puller interface {
	study(ctx context.Context) error
	// list returns the study's instances at the source.
	list(ctx context.Context) ([]remoteInstance, error)
	series(ctx context.Context, series string, known int) error
	instances(ctx context.Context, series string, sops []string, known int) error
}

// wadoPuller pulls over WADO-RS: the study, a series or an instance per
// request.
type wadoPuller struct {
	r        *Retriever
	src      *source
	st       Study
	out      *Outcome
	progress func()
}

func (p *wadoPuller) path() string { return "/studies/" + p.st.StudyInstanceUID }

func (p *wadoPuller) study(ctx context.Context) error {
	return p.r.fetch(ctx, p.src, p.st, p.path(), 0, p.out, p.progress)
}

func (p *wadoPuller) list(ctx context.Context) ([]remoteInstance, error) {
	return p.r.remoteInstances(ctx, p.src, p.st)
}

func (p *wadoPuller) series(ctx context.Context, se string, known int) error {
	return p.r.fetch(ctx, p.src, p.st, p.path()+"/series/"+se, known, p.out, p.progress)
}

func (p *wadoPuller) instances(ctx context.Context, se string, sops []string, known int) error {
	for i, sop := range sops {
		if err := p.r.fetch(ctx, p.src, p.st, p.path()+"/series/"+se+"/instances/"+sop, known+i, p.out, p.progress); err != nil {
			return err
		}
	}
	return nil
}

// local returns the SOP Instance UIDs the archive holds of a study.
func (r *Retriever) local(ctx context.Context, study string) (map[string]bool, error) {
	have := map[string]bool{}
	for offset := 0; ; offset += archive.MaxSearchResults {
		rows, more, err := r.cfg.Archive.SearchInstances(ctx, archive.Query{StudyInstanceUID: []string{study},
			Limit: archive.MaxSearchResults, Offset: offset})
		if err != nil {
			return nil, fmt.Errorf("local index of %s: %w", study, err)
		}
		for _, row := range rows {
			have[row.SOPInstanceUID] = true
		}
		if !more {
			return have, nil
		}
	}
}

type remoteInstance struct{ series, sop string }

// listed names up to n of uids, and how many more there are.
func listed(uids []string, n int) string {
	if len(uids) <= n {
		return strings.Join(uids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(uids[:n], ", "), len(uids)-n)
}

// missingBySeries groups the instances of remote the archive does not
// have by series, in the source's order, and counts those it has.
func missingBySeries(remote []remoteInstance, have map[string]bool) (order []string, missing map[string][]string, present map[string]int) {
	missing, present = map[string][]string{}, map[string]int{}
	for _, in := range remote {
		if have[in.sop] {
			present[in.series]++
			continue
		}
		if _, ok := missing[in.series]; !ok {
			order = append(order, in.series)
		}
		missing[in.series] = append(missing[in.series], in.sop)
	}
	return order, missing, present
}

// remoteInstances lists a study's instances at the source (QIDO-RS
// /studies/{uid}/instances, PS3.18 10.6.1), page by page.
func (r *Retriever) remoteInstances(ctx context.Context, src *source, st Study) ([]remoteInstance, error) {
	const page = 1000
	var out []remoteInstance
	for offset := 0; ; offset += page {
		v := url.Values{"limit": {strconv.Itoa(page)}, "offset": {strconv.Itoa(offset)}}
		u := st.Base + "/studies/" + st.StudyInstanceUID + "/instances?" + v.Encode()
		body, err := r.get(ctx, src, u)
		if err != nil {
			return nil, err
		}
		var objs []dicomjson.Object
		if len(strings.TrimSpace(string(body))) > 0 {
			if objs, err = dicomjson.Unmarshal(body); err != nil {
				return nil, fmt.Errorf("list instances of %s: %w: %v", st.StudyInstanceUID, ErrUnavailable, err)
			}
		}
		for _, o := range objs {
			in := remoteInstance{series: o.String(tag.SeriesInstanceUID), sop: o.String(tag.SOPInstanceUID)}
			if in.series != "" && in.sop != "" {
				out = append(out, in)
			}
		}
		if len(objs) < page {
			return out, nil
		}
	}
}

func (r *Retriever) get(ctx context.Context, src *source, u string) ([]byte, error) {
	release, err := acquire(ctx, src)
	if err != nil {
		return nil, err
	}
	defer release()
	// The same watchdog as fetch: a listing that stops arriving must not
	// hold the job until its heartbeats run out.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(src.IdleTimeout, func() { cancel(errStalled) })
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := src.Client.Do(req)
	if err != nil {
		return nil, r.cause(ctx, src, fmt.Errorf("%w: %v", ErrUnavailable, stripURL(err)))
	}
	defer resp.Body.Close()
	idle.Reset(src.IdleTimeout)
	if err := statusError(resp); err != nil {
		return nil, err
	}
	body := &idleReader{r: resp.Body, t: idle, d: src.IdleTimeout}
	b, err := io.ReadAll(io.LimitReader(body, 256<<20))
	if err != nil {
		return nil, r.cause(ctx, src, fmt.Errorf("%w: %v", ErrUnavailable, err))
	}
	return b, nil
}

func acquire(ctx context.Context, src *source) (func(), error) {
	select {
	case src.sem <- struct{}{}:
		return func() { <-src.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func statusError(resp *http.Response) error {
	switch c := resp.StatusCode; {
	case c == http.StatusOK || c == http.StatusPartialContent:
		return nil
	case c == http.StatusNoContent:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("%w: HTTP %d", ErrUnavailable, c)
	default:
		return fmt.Errorf("%w: HTTP %d", ErrRejected, c)
	}
}

// stripURL drops the URL from a client error (it may carry a query).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// fetch asks for one study, series or instance over WADO-RS and streams
// its parts into the archive in batches (sink). known is how many
// instances of the study the archive held before the request.
func (r *Retriever) fetch(ctx context.Context, src *source, st Study, path string, known int, out *Outcome, progress func()) error {
	out.Requests = append(out.Requests, path)
	release, err := acquire(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog runs from the request on: the wait for the headers and
	// every silence of the body are bounded by IdleTimeout.
	idle := time.AfterFunc(src.IdleTimeout, func() { cancel(errStalled) })
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.Base+path, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	req.Header.Set("Accept", AcceptDICOM)
	resp, err := src.Client.Do(req)
	if err != nil {
		return r.cause(ctx, src, fmt.Errorf("%w: %v", ErrUnavailable, stripURL(err)))
	}
	defer resp.Body.Close()
	idle.Reset(src.IdleTimeout)
	if err := statusError(resp); err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	ct, err := multipart.ParseContentType(resp.Header.Get("Content-Type"), multipart.MediaTypeDICOM)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	body := &idleReader{r: resp.Body, t: idle, d: src.IdleTimeout}
	// The multipart reader reads a few KB at a time; a large buffer in
	// front of the connection makes each of its reads from the socket big.
	mr := multipart.NewReader(bufio.NewReaderSize(body, 256<<10), ct.Boundary, multipart.Limits{MaxPartSize: r.cfg.MaxPartSize})

	// A WADO-RS answer waits in the connection while the storer is busy:
	// no queue, the least spooled; and that wait is not the source's
	// silence, so the watchdog pauses for it.
	k := r.newSink(ctx, cancel, st, known, 0, out, progress, body.pause, body.resume)
	recvErr := func() error {
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			if err := k.take(part); err != nil {
				return err
			}
		}
	}()
	idle.Stop() // the answer is read: storing its last batch is not the source's silence
	if err := k.finish(recvErr); err != nil {
		return r.cause(ctx, src, err)
	}
	return nil
}

// errStalled cancels a request whose source sent nothing for IdleTimeout.
var errStalled = errors.New("source stalled")

// cause names a stalled source in place of the bare cancellation it caused.
func (r *Retriever) cause(ctx context.Context, src *source, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("%w: nothing received for %s", ErrUnavailable, src.IdleTimeout)
	}
	return err
}

// sink takes the objects of one answer, a WADO-RS response's parts or the
// C-STORE sub-operations of a C-GET or C-MOVE: it spools and checks each,
// quarantines the refused before any could be indexed, and hands batches
// of the others to a storer goroutine.
//
// Receiving and storing overlap: the receiver spools and checks each
// object while the storer stores the previous batch. Up to queue batches
// wait between the two, so at most queue+2 batches are spooled at once
// (one being stored, the queued, one being filled). A failure on either
// side cancels the request and ends both; every spooled file is removed
// whatever happens.
type sink struct {
	r        *Retriever
	ctx      context.Context
	st       Study
	known    int
	out      *Outcome
	progress func()
	// pause and resume stop the source's watchdog while the receiver
	// waits for the storer.
	pause, resume func()

	batch      []*archive.Object
	batchBytes int64
	batches    chan []*archive.Object
	stored     chan storeResult
}

type storeResult struct {
	out *Outcome
	err error
}

// newSink starts the storer of a request whose context cancel ends. known
// is how many instances of the study the archive held before the request;
// it sizes the batches (batchLimit). queue is how many batches may wait
// for the storer.
func (r *Retriever) newSink(ctx context.Context, cancel context.CancelCauseFunc, st Study, known, queue int, out *Outcome,
	progress, pause, resume func()) *sink {
	k := &sink{r: r, ctx: ctx, st: st, known: known, out: out, progress: progress, pause: pause, resume: resume,
		batches: make(chan []*archive.Object, queue), stored: make(chan storeResult, 1)}
	go func() {
		so := &Outcome{}
		var err error
		for b := range k.batches {
			if err != nil {
				removeAll(b) // the attempt has failed: drain what is left
				continue
			}
			if err = r.store(ctx, st, b, so); err != nil {
				cancel(err)
			}
		}
		k.stored <- storeResult{so, err}
	}()
	return k
}

// take spools one object from obj, checks it and adds it to the batch,
// handing the batch off when full; one refused is quarantined. An error
// ends the request.
func (k *sink) take(obj io.Reader) error {
	o, err := k.r.cfg.Archive.Spool(obj)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return k.add(o)
}

// add is take of an object spooled already.
func (k *sink) add(o *archive.Object) error {
	r := k.r
	k.out.Bytes += o.Size
	if r.cfg.Observer != nil {
		r.cfg.Observer.Received(k.st.Source, 1, o.Size)
	}
	k.progress()
	if why := check(o, k.st); why != "" {
		r.quarantine(k.ctx, k.st, o, why, k.out)
		o.Remove()
		return nil
	}
	k.batch = append(k.batch, o)
	k.batchBytes += o.Size
	if len(k.batch) >= r.batchLimit(k.known) || k.batchBytes >= r.cfg.MaxBatchBytes {
		return k.handOff()
	}
	return nil
}

func (k *sink) handOff() error {
	if len(k.batch) == 0 {
		return nil
	}
	if k.pause != nil {
		k.pause()
		defer k.resume()
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case k.batches <- k.batch:
			k.known += len(k.batch)
			k.batch, k.batchBytes = nil, 0
			return nil
		case <-tick.C:
			k.progress() // a long store still shows the retrieval alive
		case <-k.ctx.Done():
			return context.Cause(k.ctx)
		}
	}
}

// finish hands off the last batch when the answer was received whole
// (recvErr nil), waits for the storer and adds its counts to the outcome.
// A store failure comes first, then recvErr.
func (k *sink) finish(recvErr error) error {
	if recvErr == nil {
		recvErr = k.handOff()
	}
	removeAll(k.batch)
	k.batch = nil
	close(k.batches)
	res := <-k.stored
	k.out.merge(res.out)
	if res.err != nil {
		return res.err
	}
	return recvErr
}

// batchLimit is how many objects the next batch of a study may hold when
// indexed of its instances are already in (or on their way to) the
// archive. Every batch ends in a rebuild of the study's ImagingStudy, whose
// cost grows with the study; batches that grow by a quarter of the study
// keep the rebuilds to a logarithmic number and their total work linear in
// the study's size. MaxBatchBytes bounds what a crash makes fetch again.
func (r *Retriever) batchLimit(indexed int) int {
	return max(r.cfg.BatchSize, indexed/4)
}

func removeAll(objs []*archive.Object) {
	for _, o := range objs {
		o.Remove()
	}
}

// merge adds the counts and quarantined instances of o (a storer's part of
// one request) to out.
func (out *Outcome) merge(o *Outcome) {
	out.Stored += o.Stored
	out.Existed += o.Existed
	for _, q := range o.Quarantined {
		seen := false
		for _, x := range out.Quarantined {
			if x.SOPInstanceUID == q.SOPInstanceUID && q.SOPInstanceUID != "" {
				seen = true
				break
			}
		}
		if !seen {
			out.Quarantined = append(out.Quarantined, q)
		}
	}
}

// idleReader restarts the request's watchdog each time bytes arrive.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (b *idleReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.t.Reset(b.d)
	}
	return n, err
}

func (b *idleReader) pause()  { b.t.Stop() }
func (b *idleReader) resume() { b.t.Reset(b.d) }

// check returns why an object must not be indexed under the selected
// patient and study, "" when it may.
func check(o *archive.Object, st Study) string {
	if o.Err != nil {
		return "not a readable DICOM object: " + o.Err.Error()
	}
	h := o.Header
	switch {
	case h.StudyInstanceUID != st.StudyInstanceUID:
		return fmt.Sprintf("StudyInstanceUID %s is not the selected %s", h.StudyInstanceUID, st.StudyInstanceUID)
	case h.PatientID != st.Patient.ID:
		return fmt.Sprintf("PatientID %q is not the selected %q", h.PatientID, st.Patient.ID)
	case st.Patient.Issuer != "" && h.IssuerOfPatientID != st.Patient.Issuer:
		return fmt.Sprintf("IssuerOfPatientID %q is not the selected %q", h.IssuerOfPatientID, st.Patient.Issuer)
	case st.Patient.BirthDate != "" && h.PatientBirthDate != "" && isoDate(h.PatientBirthDate) != st.Patient.BirthDate:
		return fmt.Sprintf("PatientBirthDate %s is not the selected %s", h.PatientBirthDate, st.Patient.BirthDate)
	}
	return ""
}

func isoDate(da string) string {
	if len(da) == 8 {
		return da[:4] + "-" + da[4:6] + "-" + da[6:]
	}
	return da
}

// store indexes a batch; objects the archive refuses for identity reasons
// are quarantined, other failures make the attempt fail.
func (r *Retriever) store(ctx context.Context, st Study, batch []*archive.Object, out *Outcome) error {
	if len(batch) == 0 {
		return nil
	}
	defer func() {
		for _, o := range batch {
			o.Remove()
		}
	}()
	var errs []error
	for i, res := range r.cfg.Archive.Store(ctx, batch, st.StudyInstanceUID) {
		switch {
		case res.Err == nil && res.Existed:
			out.Existed++
		case res.Err == nil:
			out.Stored++
		case errors.Is(res.Err, archive.ErrPatientMismatch), errors.Is(res.Err, archive.ErrConflict),
			errors.Is(res.Err, archive.ErrStudyMismatch), errors.Is(res.Err, archive.ErrNoPatientID):
			r.quarantine(ctx, st, batch[i], res.Err.Error(), out)
		default:
			errs = append(errs, res.Err)
		}
	}
	if len(errs) > 0 {
		// The archive (database or blob store) failed: worth another try.
		return fmt.Errorf("%w: store: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// quarantine keeps a refused object apart from the archive and records it.
func (r *Retriever) quarantine(ctx context.Context, st Study, o *archive.Object, why string, out *Outcome) {
	q := Quarantined{Reason: why}
	name := o.SHA256
	if o.Header != nil {
		q.SOPInstanceUID = o.Header.SOPInstanceUID
		name = o.Header.SOPInstanceUID + "." + o.SHA256[:16]
	}
	for _, x := range out.Quarantined {
		if x.SOPInstanceUID == q.SOPInstanceUID && q.SOPInstanceUID != "" {
			return // seen again on a retry
		}
	}
	if r.cfg.Quarantine != nil {
		key := QuarantinePrefix + st.StudyInstanceUID + "/" + name + ".dcm"
		if err := copyToBucket(ctx, r.cfg.Quarantine, o.Path, key); err != nil {
			r.log.ErrorContext(ctx, "retrieve: could not keep a quarantined object; dropped", "study", st.StudyInstanceUID, "err", err)
		} else {
			q.BlobKey = key
		}
	}
	// The reason names identifiers and birth dates: it goes to the review
	// Task, and only the attribute it is about goes to the log.
	r.log.WarnContext(ctx, "retrieve: instance quarantined", "study", st.StudyInstanceUID, "source", st.Source,
		"sop", q.SOPInstanceUID, "about", reasonAttribute(why))
	out.Quarantined = append(out.Quarantined, q)
}

// reasonAttribute is the first word of a quarantine reason (the attribute
// that did not match, such as PatientID), free of patient data.
func reasonAttribute(why string) string {
	if f := strings.Fields(why); len(f) > 0 {
		return strings.Trim(f[0], ":")
	}
	return ""
}

func copyToBucket(ctx context.Context, b *blob.Bucket, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := b.NewWriter(ctx, key, nil)
	if err != nil {
		return err
	}
	if _, err := w.ReadFrom(f); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}
