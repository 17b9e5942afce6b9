package retrieve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/dimse"
)

// A DIMSE source is pulled from with C-GET (PS3.4 C.4.3), where the
// objects come back as C-STORE sub-operations on the association that
// asked for them, so Priorflow needs no port of its own that the PACS must
// be told about; or, from a source that serves no C-GET, with C-MOVE
// (PS3.4 C.4.2; see move.go). What the archive lacks is found as over
// WADO-RS: the study's series, then each series' instances, by C-FIND.

// dimseQueue is how many batches of a C-GET or C-MOVE may wait for the
// storer. Such a pull cannot wait in the connection as a WADO-RS answer
// does: the peer waits for each C-STORE-RSP, and one that does not come
// within its DIMSE timeout (Orthanc's DicomScpTimeout, 30 s by default)
// breaks the association. So the objects are answered once spooled, and a
// store slowed down (a busy database, a slow blob store) costs spool space
// rather than the pull, up to this many batches (of MaxBatchBytes at
// most).
const dimseQueue = 4

// maxUIDsPerRequest bounds the SOP Instance UIDs of one IMAGE-level C-GET
// or C-MOVE, a list the identifier carries (PS3.4 C.4.3.1.3.1).
const maxUIDsPerRequest = 100

// dimsePuller pulls by C-GET or C-MOVE (src.Move): the study, a series, or
// up to maxUIDsPerRequest instances of a series per request.
type dimsePuller struct {
	r        *Retriever
	src      *source
	st       Study
	out      *Outcome
	progress func()
}

func (p *dimsePuller) studyKey() dimse.Attribute {
	return dimse.Attribute{Tag: tag.StudyInstanceUID, VR: "UI", Value: p.st.StudyInstanceUID}
}

func (p *dimsePuller) study(ctx context.Context) error {
	return p.r.dimsePull(ctx, p.src, p.st, "STUDY", dimse.Identifier{p.studyKey()}, 0, p.out, p.progress)
}

func (p *dimsePuller) list(ctx context.Context) ([]remoteInstance, error) {
	return p.r.remoteInstancesDIMSE(ctx, p.src, p.st)
}

func (p *dimsePuller) series(ctx context.Context, se string, known int) error {
	q := dimse.Identifier{p.studyKey(), {Tag: tag.SeriesInstanceUID, VR: "UI", Value: se}}
	return p.r.dimsePull(ctx, p.src, p.st, "SERIES", q, known, p.out, p.progress)
}

func (p *dimsePuller) instances(ctx context.Context, se string, sops []string, known int) error {
	for part := range chunks(sops, maxUIDsPerRequest) {
		q := dimse.Identifier{p.studyKey(), {Tag: tag.SeriesInstanceUID, VR: "UI", Value: se},
			{Tag: tag.SOPInstanceUID, VR: "UI", Value: strings.Join(part, `\`)}}
		if err := p.r.dimsePull(ctx, p.src, p.st, "IMAGE", q, known, p.out, p.progress); err != nil {
			return err
		}
		known += len(part)
	}
	return nil
}

func chunks(s []string, n int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// dimsePull retrieves what the identifier names at level into the archive
// through a sink, by C-GET or C-MOVE; known is how many instances of the
// study the archive held before.
func (r *Retriever) dimsePull(ctx context.Context, src *source, st Study, level string, q dimse.Identifier, known int,
	out *Outcome, progress func()) error {
	op := "C-GET"
	if src.Move {
		op = "C-MOVE"
	}
	out.Requests = append(out.Requests, op+" "+level+" "+lastValue(q))
	release, err := acquire(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q = append(dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: level}}, q...)
	k := r.newSink(ctx, cancel, st, known, dimseQueue, out, progress, nil, nil)
	var res *dimse.RetrieveResult
	var t *taker
	if src.Move {
		// The objects come on the PACS's associations, to Receive: one
		// that cannot be taken ends the C-MOVE.
		t = newTaker(k, cancel, src.IdleTimeout)
		m := r.moves.add(src, st.StudyInstanceUID, t)
		res, err = src.DIMSE.Move(ctx, dimse.StudyRootMove, q, r.cfg.MoveDestination, m.id, t.busy)
		r.moves.remove(m)
	} else {
		t = newTaker(k, nil, src.IdleTimeout)
		res, err = src.DIMSE.Get(ctx, dimse.StudyRootGet, q, func(req *dimse.StoreRequest) (uint16, error) {
			return t.take(req, nil)
		})
	}
	var se *dimse.StatusError
	failed := res != nil && res.Failed > 0 && (err == nil || errors.As(err, &se))
	if src.Move && !t.receivedAny() && (failed || errors.As(err, &se) && se.Status&0xF000 == 0xC000) {
		// Nothing reached the Storage SCP, and the source says it failed
		// to send (or could not at all: Orthanc answers 0xC000 when it
		// cannot connect): the path from the source to the SCP is at
		// fault, not the objects, and the study is asked for again later.
		return k.finish(fmt.Errorf("%w: no object reached %s (C-MOVE status 0x%04X): does the source know that AE title's address, "+
			"and can it reach Priorflow's Storage SCP there?", ErrUnavailable, r.cfg.MoveDestination, res.Status))
	}
	if failed {
		// Sub-operations failed (Orthanc then ends with a failure status,
		// and stops at the first). The next attempt asks for what the
		// archive still lacks, but for the instances the source named.
		for _, sop := range res.FailedSOPInstanceUIDs {
			// One received but answered too late for the source counts
			// as failed there, yet is here.
			if !t.received(sop) && !slices.Contains(out.Unsent, sop) {
				out.Unsent = append(out.Unsent, sop)
			}
		}
		err = fmt.Errorf("%w: the source could not send %d of the objects (%s status 0x%04X)", ErrUnavailable, res.Failed, op, res.Status)
	}
	return k.finish(dimseError(err))
}

// lastValue is the UID an identifier asks for, at its deepest level, or a
// count of them for a list.
func lastValue(q dimse.Identifier) string {
	v := q[len(q)-1].Value
	if n := strings.Count(v, `\`); n > 0 {
		return fmt.Sprintf("%d instances", n+1)
	}
	return v
}

// remoteInstancesDIMSE lists a study's instances at the source: its series
// (SERIES level), then each series' instances (IMAGE level), on one
// association, as a hierarchical query must (PS3.4 C.4.1.2.1).
func (r *Retriever) remoteInstancesDIMSE(ctx context.Context, src *source, st Study) ([]remoteInstance, error) {
	release, err := acquire(ctx, src)
	if err != nil {
		return nil, err
	}
	defer release()
	studyKey := dimse.Attribute{Tag: tag.StudyInstanceUID, VR: "UI", Value: st.StudyInstanceUID}
	var out []remoteInstance
	err = src.DIMSE.WithFind(ctx, dimse.StudyRootFind, func(a *dimse.Association) error {
		var series []string
		q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "SERIES"}, studyKey, {Tag: tag.SeriesInstanceUID, VR: "UI"}}
		err := a.Find(dimse.StudyRootFind, q, func(ds dicom.Dataset) error {
			if se := uidOf(ds, tag.SeriesInstanceUID); se != "" {
				series = append(series, se)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, se := range series {
			q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "IMAGE"}, studyKey,
				{Tag: tag.SeriesInstanceUID, VR: "UI", Value: se}, {Tag: tag.SOPInstanceUID, VR: "UI"}}
			err := a.Find(dimse.StudyRootFind, q, func(ds dicom.Dataset) error {
				if sop := uidOf(ds, tag.SOPInstanceUID); sop != "" {
					out = append(out, remoteInstance{series: se, sop: sop})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list instances of %s: %w", st.StudyInstanceUID, dimseError(err))
	}
	return out, nil
}

func uidOf(ds dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil {
		return ""
	}
	v, _ := e.Value.GetValue().([]string)
	if len(v) != 1 {
		return ""
	}
	return strings.TrimRight(v[0], "\x00 ")
}

// dimseError maps a DIMSE failure to the retrieval's error kinds: one that
// will recur (dimse.Permanent) is rejected; anything else (unreachable,
// silent, aborted, out of resources, a protocol error that may be a broken
// connection) may pass on a retry.
func dimseError(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnavailable), errors.Is(err, ErrRejected):
		return err
	case dimse.Permanent(err):
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
