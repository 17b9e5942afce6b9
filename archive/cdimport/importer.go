package cdimport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// Status is what became of one file.
type Status int

const (
	// Pending means the file was not dealt with (the import was stopped).
	Pending Status = iota
	// Stored means the archive stored the file's instance.
	Stored
	// AlreadyPresent means the archive held the instance before.
	AlreadyPresent
	// Failed means the file is DICOM (or a DICOMDIR says it is) but was not
	// stored; Outcome.Reason says why.
	Failed
	// NotDICOM means the file is no DICOM Part 10 file (README, autorun.inf,
	// a viewer) and was skipped.
	NotDICOM
)

func (s Status) String() string {
	switch s {
	case Stored:
		return "stored"
	case AlreadyPresent:
		return "already present"
	case Failed:
		return "failed"
	case NotDICOM:
		return "not DICOM"
	}
	return "pending"
}

// Outcome is what became of one file of the Source.
type Outcome struct {
	Path   string
	Size   int64
	Status Status
	// Reason explains a Failed status.
	Reason string
}

// Report is the result of an import.
type Report struct {
	// Outcomes has one entry per file of the Source, in the Source's order.
	Outcomes []Outcome
	// Notes are things the operator should know, such as the server lacking
	// QIDO-RS, or the Source's warnings.
	Notes []string
}

// Count returns the number of files with status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Status == s {
			n++
		}
	}
	return n
}

// Failures returns the outcomes of the files that failed or were not dealt
// with.
func (r *Report) Failures() []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.Status == Failed || o.Status == Pending {
			out = append(out, o)
		}
	}
	return out
}

// Progress is a snapshot of a running import.
type Progress struct {
	Phase      string // "scanning", "checking", "sending" or "done"
	FilesTotal int
	FilesDone  int
	BytesTotal int64
	// BytesDone counts the bytes of files dealt with, and of files being
	// sent as they are sent.
	BytesDone      int64
	Stored         int
	AlreadyPresent int
	Failed         int
	NotDICOM       int
}

// Config configures an Importer.
type Config struct {
	// Parallel is the number of files read, and of STOW-RS requests sent,
	// at once (default 4).
	Parallel int
	// BatchFiles and BatchBytes bound one STOW-RS request (defaults 50 files
	// and 64 MiB; a file larger than BatchBytes goes alone).
	BatchFiles int
	BatchBytes int64
	// LookupBatch is the number of SOP Instance UIDs asked for in one QIDO-RS
	// request (default 50).
	LookupBatch int
}

// Importer imports one Source. Its Progress may be read while Import runs.
type Importer struct {
	client *Client
	cfg    Config

	mu       sync.Mutex
	phase    string
	outcomes []Outcome
	counts   [NotDICOM + 1]int
	done     int
	total    int64
	bytes    atomic.Int64
}

// NewImporter returns an Importer sending to client.
func NewImporter(client *Client, cfg Config) (*Importer, error) {
	if client == nil {
		return nil, errors.New("cdimport.NewImporter: a client is required")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	if cfg.BatchFiles <= 0 {
		cfg.BatchFiles = 50
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 64 << 20
	}
	if cfg.LookupBatch <= 0 {
		cfg.LookupBatch = 50
	}
	return &Importer{client: client, cfg: cfg, phase: "scanning"}, nil
}

// Progress returns a snapshot of the import.
func (im *Importer) Progress() Progress {
	im.mu.Lock()
	defer im.mu.Unlock()
	return Progress{
		Phase:          im.phase,
		FilesTotal:     len(im.outcomes),
		FilesDone:      im.done,
		BytesTotal:     im.total,
		BytesDone:      im.bytes.Load(),
		Stored:         im.counts[Stored],
		AlreadyPresent: im.counts[AlreadyPresent],
		Failed:         im.counts[Failed],
		NotDICOM:       im.counts[NotDICOM],
	}
}

// instance is a DICOM file of the Source, by index.
type instance struct {
	idx            int
	study, sop     string
	size           int64
	file           File
	duplicateRound int // 0 for the first file of a SOP Instance UID
}

// Import imports the files of src: reads each file's header (files that are
// no DICOM Part 10 file are skipped, unless a DICOMDIR references them),
// leaves out the instances the archive already holds (QIDO-RS; without it,
// the archive's idempotent STOW-RS tells), and stores the rest with STOW-RS
// in batches. Failures of single files are in the Report; the error is for
// an import that stopped, such as on ctx's end, and comes with the Report so
// far.
func (im *Importer) Import(ctx context.Context, src *Source) (*Report, error) {
	im.mu.Lock()
	im.outcomes = make([]Outcome, len(src.Files))
	for i, f := range src.Files {
		im.outcomes[i] = Outcome{Path: f.Path, Size: f.Size}
		im.total += f.Size
	}
	im.mu.Unlock()
	rep := &Report{Notes: slices.Clone(src.Warnings)}

	insts := im.scan(ctx, src)
	im.setPhase("checking")
	if note := im.lookup(ctx, insts); note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	im.setPhase("sending")
	im.send(ctx, insts)
	im.setPhase("done")

	im.mu.Lock()
	rep.Outcomes = slices.Clone(im.outcomes)
	im.mu.Unlock()
	for i := range rep.Outcomes {
		if rep.Outcomes[i].Status == Pending {
			rep.Outcomes[i].Reason = "not imported: the import was stopped"
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("cdimport.Import: %w", err)
	}
	return rep, nil
}

func (im *Importer) setPhase(p string) {
	im.mu.Lock()
	im.phase = p
	im.mu.Unlock()
}

// finish records the outcome of file idx. countBytes adds the file's size to
// BytesDone (files that were not sent).
func (im *Importer) finish(idx int, s Status, reason string, countBytes bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	o := &im.outcomes[idx]
	if o.Status != Pending {
		return
	}
	o.Status, o.Reason = s, reason
	im.counts[s]++
	im.done++
	if countBytes {
		im.bytes.Add(o.Size)
	}
}

// scan reads the header of every file in parallel and returns the DICOM
// instances, finishing the other files.
func (im *Importer) scan(ctx context.Context, src *Source) []*instance {
	idxs := make(chan int)
	results := make([]*instance, len(src.Files))
	var wg sync.WaitGroup
	for range im.cfg.Parallel {
		wg.Go(func() {
			for i := range idxs {
				results[i] = im.scanFile(i, src.Files[i])
			}
		})
	}
feed:
	for i := range src.Files {
		select {
		case idxs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(idxs)
	wg.Wait()

	var insts []*instance
	seen := map[string]int{}
	for _, in := range results {
		if in == nil {
			continue
		}
		in.duplicateRound = seen[in.sop]
		seen[in.sop]++
		insts = append(insts, in)
	}
	return insts
}

// partHeaderLen is the length of the preamble and "DICM" prefix (PS3.10 7.1).
const partHeaderLen = 128 + 4

// scanFile reads the header of one file: an instance, or nil when the file
// was finished.
func (im *Importer) scanFile(idx int, f File) *instance {
	rc, err := f.Open()
	if err != nil {
		im.finish(idx, Failed, reasonOf(err), true)
		return nil
	}
	defer rc.Close()
	pre := make([]byte, partHeaderLen)
	n, err := io.ReadFull(rc, pre)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		im.finish(idx, Failed, reasonOf(err), true)
		return nil
	}
	if n < partHeaderLen || string(pre[128:]) != "DICM" {
		if f.Referenced {
			im.finish(idx, Failed, "referenced by the DICOMDIR but not a DICOM Part 10 file (no preamble and DICM prefix)", true)
		} else {
			im.finish(idx, NotDICOM, "", true)
		}
		return nil
	}
	h, err := dicomheader.Parse(io.MultiReader(bytes.NewReader(pre), rc), f.Size)
	if err != nil {
		im.finish(idx, Failed, reasonOf(err), true)
		return nil
	}
	return &instance{idx: idx, study: h.StudyInstanceUID, sop: h.SOPInstanceUID, size: f.Size, file: f}
}

// reasonOf turns an error into a reason for the summary, without the
// operation prefixes that mean nothing to an operator.
func reasonOf(err error) string {
	s := err.Error()
	for _, p := range []string{"dicomheader.Parse: ", "cdimport.Store: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// lookup finishes the instances the archive already holds, asking per study
// with QIDO-RS. It returns a note when the server could not tell.
func (im *Importer) lookup(ctx context.Context, insts []*instance) string {
	type query struct {
		study string
		sops  []string
	}
	byStudy := map[string][]string{}
	var studies []string
	for _, in := range insts {
		if in.duplicateRound > 0 {
			continue
		}
		if _, ok := byStudy[in.study]; !ok {
			studies = append(studies, in.study)
		}
		byStudy[in.study] = append(byStudy[in.study], in.sop)
	}
	var queries []query
	for _, st := range studies {
		for chunk := range slices.Chunk(byStudy[st], im.cfg.LookupBatch) {
			queries = append(queries, query{st, chunk})
		}
	}

	var (
		mu          sync.Mutex
		present     = map[string]bool{}
		unsupported atomic.Bool
		failures    int
		lastErr     error
	)
	qs := make(chan query)
	var wg sync.WaitGroup
	for range im.cfg.Parallel {
		wg.Go(func() {
			for q := range qs {
				if unsupported.Load() {
					continue
				}
				found, err := im.client.FindInstances(ctx, q.study, q.sops)
				mu.Lock()
				switch {
				case errors.Is(err, ErrSearchUnsupported):
					unsupported.Store(true)
				case err != nil:
					failures++
					lastErr = err
				}
				for uid := range found {
					present[uid] = true
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, q := range queries {
		select {
		case qs <- q:
		case <-ctx.Done():
			break feed
		}
	}
	close(qs)
	wg.Wait()

	for _, in := range insts {
		if present[in.sop] {
			im.finish(in.idx, AlreadyPresent, "", true)
		}
	}
	switch {
	case unsupported.Load():
		return "the server does not answer QIDO-RS searches, so every instance was sent; instances it already held count as stored"
	case failures > 0 && ctx.Err() == nil:
		return fmt.Sprintf("%d QIDO-RS searches failed (last: %v); their instances were sent anyway", failures, lastErr)
	}
	return ""
}

// send stores the instances not yet finished with STOW-RS: batches of the
// first file of each SOP Instance UID, ordered by study, then batches of the
// files that repeat a SOP Instance UID, so that one request never holds two
// objects under one UID.
func (im *Importer) send(ctx context.Context, insts []*instance) {
	rounds := map[int][]*instance{}
	maxRound := 0
	for _, in := range insts {
		if im.finished(in.idx) {
			continue
		}
		rounds[in.duplicateRound] = append(rounds[in.duplicateRound], in)
		maxRound = max(maxRound, in.duplicateRound)
	}
	for r := 0; r <= maxRound; r++ {
		list := rounds[r]
		slices.SortStableFunc(list, func(a, b *instance) int { return strings.Compare(a.study, b.study) })
		batches := im.batches(list)
		ch := make(chan []*instance)
		var wg sync.WaitGroup
		for range im.cfg.Parallel {
			wg.Go(func() {
				for b := range ch {
					im.sendBatch(ctx, b, r > 0)
				}
			})
		}
	feed:
		for _, b := range batches {
			select {
			case ch <- b:
			case <-ctx.Done():
				break feed
			}
		}
		close(ch)
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
	}
}

func (im *Importer) finished(idx int) bool {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.outcomes[idx].Status != Pending
}

// batches cuts list into requests of at most BatchFiles files and BatchBytes
// bytes.
func (im *Importer) batches(list []*instance) [][]*instance {
	var out [][]*instance
	var cur []*instance
	var size int64
	for _, in := range list {
		if len(cur) > 0 && (len(cur) >= im.cfg.BatchFiles || size+in.size > im.cfg.BatchBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, in)
		size += in.size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sendBatch sends one STOW-RS request and attributes its outcome to the
// files. repeat marks files that repeat a SOP Instance UID sent before: the
// archive storing them again means they were present.
func (im *Importer) sendBatch(ctx context.Context, batch []*instance, repeat bool) {
	parts := make([]StorePart, len(batch))
	var total int64
	for i, in := range batch {
		parts[i] = StorePart{Open: in.file.Open}
		total += in.size
	}
	var sent atomic.Int64
	resp, err := im.client.Store(ctx, parts, func(n int64) {
		sent.Add(n)
		im.bytes.Add(n)
	})
	// Files count fully once their request is over, whatever was sent.
	if rest := total - sent.Load(); rest > 0 {
		im.bytes.Add(rest)
	}
	if err != nil {
		for _, in := range batch {
			im.finish(in.idx, Failed, reasonOf(err), false)
		}
		return
	}
	unattributed := resp.FailedWithoutUID
	for i, in := range batch {
		switch reason, failed := resp.Failed[in.sop]; {
		case resp.OpenErrs[i] != nil:
			im.finish(in.idx, Failed, reasonOf(resp.OpenErrs[i]), false)
		case failed:
			im.finish(in.idx, Failed, FailureReasonText(reason), false)
		case resp.Stored[in.sop] && repeat:
			im.finish(in.idx, AlreadyPresent, "", false)
		case resp.Stored[in.sop]:
			im.finish(in.idx, Stored, "", false)
		case len(unattributed) > 0:
			im.finish(in.idx, Failed, FailureReasonText(unattributed[0]), false)
			unattributed = unattributed[1:]
		case resp.Message != "":
			im.finish(in.idx, Failed, resp.Message, false)
		default:
			im.finish(in.idx, Failed, fmt.Sprintf("HTTP %d: the server did not report this instance", resp.StatusCode), false)
		}
	}
}
