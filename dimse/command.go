package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Command fields (PS3.7 E.1).
const (
	CStoreRQ  uint16 = 0x0001
	CStoreRSP uint16 = 0x8001
	CGetRQ    uint16 = 0x0010
	CGetRSP   uint16 = 0x8010
	CFindRQ   uint16 = 0x0020
	CFindRSP  uint16 = 0x8020
	CMoveRQ   uint16 = 0x0021
	CMoveRSP  uint16 = 0x8021
	CEchoRQ   uint16 = 0x0030
	CEchoRSP  uint16 = 0x8030
	CCancelRQ uint16 = 0x0FFF
)

// noDataSet is the Command Data Set Type of a message without a data set
// (PS3.7 E.1).
const noDataSet = 0x0101

// Elements of the command set (group 0000, PS3.7 E.1).
const (
	elemGroupLength          = 0x0000
	elemAffectedSOPClass     = 0x0002
	elemRequestedSOPClass    = 0x0003
	elemCommandField         = 0x0100
	elemMessageID            = 0x0110
	elemMessageIDRespondedTo = 0x0120
	elemMoveDestination      = 0x0600
	elemPriority             = 0x0700
	elemDataSetType          = 0x0800
	elemStatus               = 0x0900
	elemErrorComment         = 0x0902
	elemAffectedSOPInstance  = 0x1000
	elemRemaining            = 0x1020
	elemCompleted            = 0x1021
	elemFailed               = 0x1022
	elemWarning              = 0x1023
	elemMoveOriginatorAE     = 0x1030
	elemMoveOriginatorID     = 0x1031
)

// maxCommandSet bounds a command set read (a few hundred bytes in
// practice).
const maxCommandSet = 64 << 10

// Command is a DIMSE command set (PS3.7 9.3, 10.3): the fields the
// services of this package send and read.
type Command struct {
	Field                     uint16
	AffectedSOPClassUID       string
	MessageID                 uint16
	MessageIDBeingRespondedTo uint16
	Priority                  uint16
	// HasDataSet: a data set follows the command.
	HasDataSet             bool
	Status                 uint16
	ErrorComment           string
	AffectedSOPInstanceUID string
	// Sub-operation counts of C-GET and C-MOVE responses, -1 when absent.
	Remaining, Completed, Failed, Warning int
	// MoveDestination is the AE title a C-MOVE-RQ sends the objects to.
	MoveDestination string
	// MoveOriginatorAE and MoveOriginatorMessageID name the C-MOVE a
	// C-STORE-RQ is a sub-operation of (PS3.7 9.1.1.1): the AE title that
	// asked for it and its Message ID. The AE title is "" when the
	// peer did not say.
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
	// Extra holds elements of other groups that followed the command's
	// (Implicit VR Little Endian), which a command set should not have.
	Extra []byte
}

// isResponse reports whether the command field is a response's.
func (c *Command) isResponse() bool { return c.Field&0x8000 != 0 }

// marshal encodes the command set in Implicit VR Little Endian, as every
// command set is (PS3.7 6.3.1), elements in ascending order behind the
// group length.
func (c *Command) marshal() []byte {
	var body []byte
	ui := func(elem uint16, s string) {
		if s == "" {
			return
		}
		if len(s)%2 == 1 {
			s += "\x00" // UI values are padded with NUL (PS3.5 6.2)
		}
		body = appendElement(body, elem, []byte(s))
	}
	us := func(elem uint16, v uint16) {
		body = appendElement(body, elem, binary.LittleEndian.AppendUint16(nil, v))
	}
	// Text (AE, LO) is padded with a space (PS3.5 6.2).
	text := func(elem uint16, s string) {
		if s == "" {
			return
		}
		if len(s)%2 == 1 {
			s += " "
		}
		body = appendElement(body, elem, []byte(s))
	}
	ui(elemAffectedSOPClass, c.AffectedSOPClassUID)
	us(elemCommandField, c.Field)
	if !c.isResponse() && c.Field != CCancelRQ {
		us(elemMessageID, c.MessageID)
	} else {
		us(elemMessageIDRespondedTo, c.MessageIDBeingRespondedTo)
	}
	text(elemMoveDestination, c.MoveDestination)
	if !c.isResponse() && c.Field != CCancelRQ {
		us(elemPriority, c.Priority)
	}
	if c.HasDataSet {
		us(elemDataSetType, 0x0000)
	} else {
		us(elemDataSetType, noDataSet)
	}
	if c.isResponse() {
		us(elemStatus, c.Status)
		text(elemErrorComment, c.ErrorComment)
	}
	ui(elemAffectedSOPInstance, c.AffectedSOPInstanceUID)
	if c.MoveOriginatorAE != "" {
		text(elemMoveOriginatorAE, c.MoveOriginatorAE)
		us(elemMoveOriginatorID, c.MoveOriginatorMessageID)
	}
	out := appendElement(nil, elemGroupLength, binary.LittleEndian.AppendUint32(nil, uint32(len(body))))
	return append(out, body...)
}

func appendElement(b []byte, elem uint16, value []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, 0x0000)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}

// parseCommand decodes a command set. Elements it does not use are
// skipped, and elements of other groups after the command's are kept in
// Extra; a length that overruns the set, or a missing Command Field or
// Command Data Set Type is an error.
func parseCommand(b []byte) (*Command, error) {
	c := &Command{Remaining: -1, Completed: -1, Failed: -1, Warning: -1}
	var haveField, haveType bool
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("%w: command element header of %d bytes", ErrProtocol, len(b))
		}
		group, elem := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
		n := binary.LittleEndian.Uint32(b[4:])
		if group != 0x0000 {
			// Orthanc 1.10 (DCMTK 3.6.7) writes the identifier of a
			// C-GET-RSP with failures, the Failed SOP Instance UID List,
			// into the command set itself: kept for the caller.
			c.Extra = b
			break
		}
		if uint64(n) > uint64(len(b)-8) {
			return nil, fmt.Errorf("%w: command element (0000,%04X) of %d bytes overruns the command set", ErrProtocol, elem, n)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		us := func() (uint16, error) {
			if len(v) != 2 {
				return 0, fmt.Errorf("%w: command element (0000,%04X) of %d bytes, want 2", ErrProtocol, elem, len(v))
			}
			return binary.LittleEndian.Uint16(v), nil
		}
		var err error
		var x uint16
		switch elem {
		case elemAffectedSOPClass:
			c.AffectedSOPClassUID = uid(v)
		case elemCommandField:
			c.Field, err = us()
			haveField = true
		case elemMessageID:
			c.MessageID, err = us()
		case elemMessageIDRespondedTo:
			c.MessageIDBeingRespondedTo, err = us()
		case elemPriority:
			c.Priority, err = us()
		case elemDataSetType:
			x, err = us()
			c.HasDataSet, haveType = x != noDataSet, true
		case elemStatus:
			c.Status, err = us()
		case elemErrorComment:
			c.ErrorComment = strings.TrimRight(string(v), " \x00")
		case elemAffectedSOPInstance:
			c.AffectedSOPInstanceUID = uid(v)
		case elemRemaining, elemCompleted, elemFailed, elemWarning:
			x, err = us()
			*c.count(elem) = int(x)
		case elemMoveDestination:
			c.MoveDestination = strings.TrimSpace(string(v))
		case elemMoveOriginatorAE:
			c.MoveOriginatorAE = strings.TrimSpace(string(v))
		case elemMoveOriginatorID:
			c.MoveOriginatorMessageID, err = us()
		}
		if err != nil {
			return nil, err
		}
	}
	if !haveField || !haveType {
		return nil, fmt.Errorf("%w: command set without Command Field or Command Data Set Type", ErrProtocol)
	}
	return c, nil
}

func (c *Command) count(elem uint16) *int {
	switch elem {
	case elemRemaining:
		return &c.Remaining
	case elemCompleted:
		return &c.Completed
	case elemFailed:
		return &c.Failed
	}
	return &c.Warning
}
