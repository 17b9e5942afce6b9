package retrieve

import (
	"cmp"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/priorflow/priorflow/archive"
	"github.com/priorflow/priorflow/dimse"
)

// A source that serves no C-GET (most PACS in service) is pulled from with
// C-MOVE: the PACS opens associations of its own to Priorflow's Storage
// SCP (the prefetcher's dimse.Server, at the address the PACS knows for
// Config.MoveDestination) and sends the objects there. Receive routes each
// to the retrieval whose C-MOVE it answers, by the Move Originator Message
// ID the PACS repeats in every C-STORE: the objects of a C-MOVE go through
// the same sink, checks and quarantine as those of a C-GET.
//
// The routing table lives in this process: the PACS sends to one address
// per AE title, so each prefetcher replica that pulls by C-MOVE has an AE
// title and address of its own (see docs/architecture.md).

// moves is the table of the C-MOVEs in progress.
type moves struct {
	mu   sync.Mutex
	byID map[uint16]*move
	next uint16
}

// move is one C-MOVE in progress: who was asked, for which study, and the
// taker of its objects.
type move struct {
	id uint16
	// originator is the AE title the C-MOVE was sent from, peer the AE
	// title of the source, which sends the objects.
	originator, peer, study string
	t                       *taker
}

// add registers a C-MOVE of study from src's peer, with a Message ID no
// other C-MOVE in progress has.
func (ms *moves) add(src *source, study string, t *taker) *move {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byID == nil {
		ms.byID = map[uint16]*move{}
		// Not 1 after every start: a PACS may still be sending objects
		// of a C-MOVE of the process before.
		ms.next = uint16(rand.N(1 << 16))
	}
	for {
		ms.next++
		if ms.next != 0 && ms.byID[ms.next] == nil {
			break
		}
	}
	m := &move{id: ms.next, originator: src.DIMSE.Config.CallingAE, peer: cmp.Or(src.StoreAETitle, src.DIMSE.Config.CalledAE),
		study: study, t: t}
	ms.byID[m.id] = m
	return m
}

// remove ends a C-MOVE: its objects are refused from now on. It waits for
// an object being taken.
func (ms *moves) remove(m *move) {
	ms.mu.Lock()
	delete(ms.byID, m.id)
	ms.mu.Unlock()
	m.t.close()
}

// candidates returns the C-MOVEs an object may answer: the one its Move
// Originator names, when it names one; otherwise those asked of its sender.
func (ms *moves) candidates(req *dimse.StoreRequest) []*move {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if req.MoveOriginatorAE != "" {
		m := ms.byID[req.MoveOriginatorMessageID]
		if m == nil || m.originator != req.MoveOriginatorAE || m.peer != req.CallingAE {
			return nil
		}
		return []*move{m}
	}
	var out []*move
	for _, m := range ms.byID {
		if m.peer == req.CallingAE {
			out = append(out, m)
		}
	}
	return out
}

// Receive takes an object a peer sent to Priorflow's Storage SCP: it is
// the dimse.Server's StoreFunc. An object that answers no C-MOVE of this
// retriever in progress is refused (Not Authorized): whatever sends
// objects unasked is not a source of the network search, and nothing
// would check them against a patient.
func (r *Retriever) Receive(req *dimse.StoreRequest) (uint16, error) {
	ms := r.moves.candidates(req)
	switch {
	case len(ms) == 0:
		r.refused()
		r.log.Warn("retrieve: refused an object no C-MOVE asked for", "calling_ae", req.CallingAE,
			"move_originator", req.MoveOriginatorAE, "message_id", req.MoveOriginatorMessageID)
		req.ErrorComment = "no C-MOVE of this destination in progress asked for it"
		return dimse.StatusNotAuthorized, nil
	case req.MoveOriginatorAE != "":
		// Named: an object of another study is the source's error about
		// this C-MOVE, quarantined by the checks.
		return ms[0].t.take(req, nil)
	}
	// A peer that does not name the C-MOVE: the object's study tells
	// which, if any (one of a C-MOVE of the process before a restart is
	// not this one's).
	o, err := r.cfg.Archive.Spool(req.Object)
	if err != nil {
		return dimse.StatusOutOfResources, nil
	}
	for _, m := range ms {
		if o.Err == nil && o.Header.StudyInstanceUID == m.study {
			return m.t.take(req, o)
		}
	}
	o.Remove()
	r.refused()
	r.log.Warn("retrieve: refused an object of no study a C-MOVE asked for", "calling_ae", req.CallingAE)
	req.ErrorComment = "no C-MOVE in progress asked for its study"
	return dimse.StatusNotAuthorized, nil
}

func (r *Retriever) refused() {
	if r.cfg.Observer != nil {
		r.cfg.Observer.Refused()
	}
}

// taker hands the objects of one C-GET or C-MOVE to its sink, one at a
// time (a PACS may send a C-MOVE's on several associations at once), and
// keeps what a C-MOVE's association needs to know: which objects came, and
// whether more are on their way.
type taker struct {
	k *sink
	// fail ends the request when an object cannot be taken (C-MOVE); nil
	// makes take return the error instead (C-GET, which then ends).
	fail func(error)
	idle time.Duration

	// serial lets one object in at a time; mu guards the fields below.
	serial sync.Mutex
	mu     sync.Mutex
	got    map[string]bool
	closed bool
	// active counts the objects being received; last is when the last
	// one ended.
	active int
	last   time.Time
}

func newTaker(k *sink, fail func(error), idle time.Duration) *taker {
	return &taker{k: k, fail: fail, idle: idle, got: map[string]bool{}}
}

// take takes the object of req, spooled already when o is not nil.
func (t *taker) take(req *dimse.StoreRequest, o *archive.Object) (uint16, error) {
	if !t.begin(req.SOPInstanceUID) {
		if o != nil {
			o.Remove()
		}
		req.ErrorComment = "the C-MOVE it answers has ended"
		return dimse.StatusNotAuthorized, nil
	}
	defer t.end()
	t.serial.Lock()
	defer t.serial.Unlock()
	if t.isClosed() {
		// Ended while this object waited for the one before.
		if o != nil {
			o.Remove()
		}
		req.ErrorComment = "the C-MOVE it answers has ended"
		return dimse.StatusNotAuthorized, nil
	}
	var err error
	if o != nil {
		err = t.k.add(o)
	} else {
		err = t.k.take(req.Object)
	}
	// A quarantined object is answered as taken: it is kept and
	// reported, and asking for it again would not change it.
	switch {
	case err == nil:
		return dimse.StatusSuccess, nil
	case t.fail == nil:
		return 0, err
	}
	t.fail(err)
	return dimse.StatusOutOfResources, nil
}

// begin counts an object in, unless the request has ended.
func (t *taker) begin(sop string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.active++
	t.got[sop] = true
	return true
}

func (t *taker) end() {
	t.mu.Lock()
	t.active--
	t.last = time.Now()
	t.mu.Unlock()
}

// busy reports whether objects are still arriving: one is being taken, or
// one ended within the idle timeout.
func (t *taker) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active > 0 || time.Since(t.last) < t.idle
}

// receivedAny reports whether any object came.
func (t *taker) receivedAny() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.got) > 0
}

// received reports whether an object came.
func (t *taker) received(sop string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.got[sop]
}

// close refuses further objects and waits for the one being taken.
func (t *taker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.serial.Lock() // waits for the object being taken
	t.serial.Unlock()
}

func (t *taker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}
