package dimse

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// SOP classes of the services this package uses (PS3.4 A.4, C.6).
const (
	Verification         = "1.2.840.10008.1.1"
	StudyRootFind        = "1.2.840.10008.5.1.4.1.2.2.1"
	StudyRootMove        = "1.2.840.10008.5.1.4.1.2.2.2"
	StudyRootGet         = "1.2.840.10008.5.1.4.1.2.2.3"
	priorityMedium       = 0x0000
	maxIdentifierDataSet = 1 << 20
)

// Echo verifies the association (C-ECHO, PS3.7 9.1.5); it needs an
// accepted Verification context.
func (a *Association) Echo() error {
	pc, err := a.context(Verification)
	if err != nil {
		return err
	}
	id := a.nextMessageID()
	if err := a.send(pc, &Command{Field: CEchoRQ, AffectedSOPClassUID: Verification, MessageID: id}, nil); err != nil {
		return fmt.Errorf("dimse: C-ECHO: %w", err)
	}
	m, err := a.response(CEchoRSP, id)
	if err != nil {
		return fmt.Errorf("dimse: C-ECHO: %w", err)
	}
	return final(m.cmd)
}

// Find sends a C-FIND request of the information model (StudyRootFind)
// and calls each with every matching identifier the peer returns (PS3.7
// 9.1.2, PS3.4 C.4.1). An error from each ends the operation with a
// C-CANCEL and is returned; the association should then be aborted, as
// after any error other than a *StatusError.
func (a *Association) Find(model string, q Identifier, each func(dicom.Dataset) error) error {
	id := a.nextMessageID()
	pc, err := a.request(&Command{Field: CFindRQ, AffectedSOPClassUID: model, MessageID: id}, q)
	if err != nil {
		return err
	}
	for {
		m, err := a.response(CFindRSP, id)
		if err != nil {
			return fmt.Errorf("dimse: C-FIND: %w", err)
		}
		if !isPending(m.cmd.Status) {
			return final(m.cmd)
		}
		if m.data == nil {
			return fmt.Errorf("dimse: C-FIND: %w: a pending response without an identifier", ErrProtocol)
		}
		b, err := m.data.readAll(maxIdentifierDataSet)
		if err != nil {
			return fmt.Errorf("dimse: C-FIND: %w", err)
		}
		ds, err := parseDataSet(m.context.TransferSyntax, b)
		if err != nil {
			return fmt.Errorf("dimse: C-FIND: %w: unreadable identifier: %v", ErrProtocol, err)
		}
		if err := each(ds); err != nil {
			a.cancel(pc, id)
			return err
		}
	}
}

// request sends cmd, a C-FIND, C-GET or C-MOVE request, with the
// identifier q on the context of its SOP class, and returns the context.
func (a *Association) request(cmd *Command, q Identifier) (*PresentationContext, error) {
	pc, err := a.context(cmd.AffectedSOPClassUID)
	if err != nil {
		return nil, err
	}
	data, err := q.encode(pc.TransferSyntax)
	if err != nil {
		return nil, err
	}
	cmd.Priority = priorityMedium
	if err := a.send(pc, cmd, data); err != nil {
		return nil, fmt.Errorf("dimse: %s: %w", commandName(cmd.Field), err)
	}
	return pc, nil
}

// cancel asks the peer to stop the operation id (C-CANCEL, PS3.7 9.3.2.3).
func (a *Association) cancel(pc *PresentationContext, id uint16) {
	_ = a.send(pc, &Command{Field: CCancelRQ, MessageIDBeingRespondedTo: id}, nil)
}

// StoreRequest is one object a peer sends with C-STORE: a sub-operation
// of a C-GET on its association (PS3.4 C.4.3.3), or one sent to a Server,
// as a C-MOVE's sub-operations are (PS3.4 C.4.2.3).
type StoreRequest struct {
	SOPClassUID, SOPInstanceUID, TransferSyntax string
	// CallingAE is the AE title of the peer that sent the object.
	CallingAE string
	// MoveOriginatorAE and MoveOriginatorMessageID name the C-MOVE the
	// object answers, when the peer says (PS3.7 9.1.1.1); the AE title is
	// "" otherwise.
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
	// Object is the instance as a Part 10 stream: File Meta Information
	// written by this side (the peer's AE title as Source Application
	// Entity Title), then the data set as the peer sent it.
	Object io.Reader
	// ErrorComment, set by a StoreFunc that refuses the object, says why
	// in the C-STORE-RSP (at most 64 characters), for the peer's log.
	ErrorComment string
}

// StoreFunc takes one object. The status it returns answers the C-STORE:
// StatusSuccess once the object is safe, a failure status (such as
// StatusOutOfResources, StatusCannotUnderstand, StatusNotAuthorized) when
// it is refused. An error ends the operation (a C-GET) or aborts the
// association (a Server's).
type StoreFunc func(*StoreRequest) (uint16, error)

// RetrieveResult is the final response of a C-GET or C-MOVE.
type RetrieveResult struct {
	Status uint16
	// Sub-operation counts as the peer reports them (0 when absent).
	Completed, Failed, Warning int
	// FailedSOPInstanceUIDs are the instances the peer could not send,
	// when it names them.
	FailedSOPInstanceUIDs []string
}

// Get sends a C-GET request of the information model (StudyRootGet) and
// hands each object the peer sends on this association to store (PS3.7
// 9.1.3, PS3.4 C.4.3). Only objects of a SOP class with an accepted
// storage context (SCPRole) can come. It returns the final response, which
// reports sub-operations that failed with status
// StatusSubOperationsWarning; a failure status is a *StatusError.
func (a *Association) Get(model string, q Identifier, store StoreFunc) (*RetrieveResult, error) {
	id := a.nextMessageID()
	pc, err := a.request(&Command{Field: CGetRQ, AffectedSOPClassUID: model, MessageID: id}, q)
	if err != nil {
		return nil, err
	}
	for {
		m, err := a.readMessage()
		if err != nil {
			return nil, fmt.Errorf("dimse: C-GET: %w", err)
		}
		if m.cmd.Field == CStoreRQ {
			if err := a.storeSubOperation(m, store); err != nil {
				a.cancel(pc, id)
				return nil, fmt.Errorf("dimse: C-GET: %w", err)
			}
			continue
		}
		if err := checkResponse(m, CGetRSP, id); err != nil {
			return nil, fmt.Errorf("dimse: C-GET: %w", err)
		}
		if !isPending(m.cmd.Status) {
			return retrieveResult(m), final(m.cmd)
		}
	}
}

// Move sends a C-MOVE request of the information model (StudyRootMove)
// asking the peer to send what q names to the AE title dest (PS3.7 9.1.4,
// PS3.4 C.4.2), and waits for its final response, which it returns as Get
// does. The objects travel on associations the peer opens to dest, each
// C-STORE naming this side's AE title and id as its Move Originator: id
// is the request's Message ID, chosen by the caller so that a Server can
// tell which of several C-MOVEs an object answers.
//
// The peer may say nothing on this association while it sends; busy
// reports whether it is still sending (an object of this C-MOVE arrived
// within the idle timeout, or is being taken), and while it is, silence
// is waited through.
func (a *Association) Move(model string, q Identifier, dest string, id uint16, busy func() bool) (*RetrieveResult, error) {
	if err := CheckAETitle(dest); err != nil {
		return nil, fmt.Errorf("dimse: C-MOVE destination %w", err)
	}
	if _, err := a.request(&Command{Field: CMoveRQ, AffectedSOPClassUID: model, MessageID: id, MoveDestination: dest}, q); err != nil {
		return nil, err
	}
	for {
		if err := a.await(busy); err != nil {
			return nil, fmt.Errorf("dimse: C-MOVE: %w", err)
		}
		m, err := a.response(CMoveRSP, id)
		if err != nil {
			return nil, fmt.Errorf("dimse: C-MOVE: %w", err)
		}
		if !isPending(m.cmd.Status) {
			return retrieveResult(m), final(m.cmd)
		}
	}
}

// retrieveResult reads the final response of a C-GET or C-MOVE.
func retrieveResult(m *message) *RetrieveResult {
	res := &RetrieveResult{Status: m.cmd.Status, Completed: max(m.cmd.Completed, 0), Failed: max(m.cmd.Failed, 0),
		Warning: max(m.cmd.Warning, 0)}
	// The identifier of a final response with failures lists them
	// (PS3.4 C.4.2.1.3.2, C.4.3.1.3.2); one that cannot be read names
	// none.
	var ident []byte
	ts := m.context.TransferSyntax
	switch {
	case m.data != nil:
		ident, _ = m.data.readAll(maxIdentifierDataSet)
	case len(m.cmd.Extra) > 0:
		ident, ts = m.cmd.Extra, ImplicitVRLittleEndian
	}
	if len(ident) > 0 {
		if ds, err := parseDataSet(ts, ident); err == nil {
			res.FailedSOPInstanceUIDs = failedUIDs(ds)
		}
	}
	return res
}

// failedUIDs returns the Failed SOP Instance UID List (0008,0058) of a
// C-GET's or C-MOVE's final response identifier.
func failedUIDs(ds dicom.Dataset) []string {
	e, err := ds.FindElementByTag(tag.FailedSOPInstanceUIDList)
	if err != nil {
		return nil
	}
	v, _ := e.Value.GetValue().([]string)
	var out []string
	for _, u := range v {
		if u = strings.TrimRight(u, "\x00 "); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// storeSubOperation hands a C-STORE-RQ to store and answers it.
func (a *Association) storeSubOperation(m *message, store StoreFunc) error {
	c := m.cmd
	if m.data == nil {
		return fmt.Errorf("%w: C-STORE-RQ without a data set", ErrProtocol)
	}
	head := part10Header(c.AffectedSOPClassUID, c.AffectedSOPInstanceUID, m.context.TransferSyntax, a.cfg.CalledAE)
	req := &StoreRequest{SOPClassUID: c.AffectedSOPClassUID, SOPInstanceUID: c.AffectedSOPInstanceUID,
		TransferSyntax: m.context.TransferSyntax, CallingAE: a.cfg.CalledAE, MoveOriginatorAE: c.MoveOriginatorAE,
		MoveOriginatorMessageID: c.MoveOriginatorMessageID, Object: io.MultiReader(bytes.NewReader(head), m.data)}
	status, err := store(req)
	if err != nil {
		return err
	}
	// What store left unread is skipped before the answer: the peer may
	// send nothing else until it has sent the whole object.
	if err := a.drain(); err != nil {
		return err
	}
	rsp := &Command{Field: CStoreRSP, AffectedSOPClassUID: c.AffectedSOPClassUID, MessageIDBeingRespondedTo: c.MessageID,
		Status: status, AffectedSOPInstanceUID: c.AffectedSOPInstanceUID}
	if status != StatusSuccess && !isWarning(status) {
		rsp.ErrorComment = errorComment(req.ErrorComment)
	}
	return a.send(m.context, rsp, nil)
}

// errorComment makes s an Error Comment (LO, PS3.5 6.2): at most 64
// characters of the default repertoire, no backslash.
func errorComment(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7F && c != '\\' {
			b = append(b, c)
		}
	}
	return string(b)
}

// response reads the response to request id, of command field want.
func (a *Association) response(want, id uint16) (*message, error) {
	m, err := a.readMessage()
	if err != nil {
		return nil, err
	}
	if err := checkResponse(m, want, id); err != nil {
		return nil, err
	}
	return m, nil
}

func checkResponse(m *message, want, id uint16) error {
	switch {
	case m.cmd.Field != want:
		return fmt.Errorf("%w: %s where %s was expected", ErrProtocol, fieldName(m.cmd.Field), fieldName(want))
	case m.cmd.MessageIDBeingRespondedTo != id:
		return fmt.Errorf("%w: a response to message %d where %d was expected", ErrProtocol, m.cmd.MessageIDBeingRespondedTo, id)
	}
	return nil
}

func fieldName(f uint16) string {
	if f&0x8000 != 0 {
		return commandName(f) + "-RSP"
	}
	return commandName(f) + "-RQ"
}

// final returns nil for a final response's success or warning status,
// ErrCanceled for Cancel, and a *StatusError for a failure.
func final(c *Command) error {
	switch {
	case c.Status == StatusSuccess || isWarning(c.Status):
		return nil
	case c.Status == StatusCancel:
		return ErrCanceled
	}
	return &StatusError{Command: c.Field, Status: c.Status, Comment: c.ErrorComment}
}
