package dimse

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// Status codes of the DIMSE-C services (PS3.7 C, PS3.4 C.4).
const (
	StatusSuccess                uint16 = 0x0000
	StatusPending                uint16 = 0xFF00
	StatusPendingWarning         uint16 = 0xFF01
	StatusCancel                 uint16 = 0xFE00
	StatusSubOperationsWarning   uint16 = 0xB000
	StatusOutOfResources         uint16 = 0xA700
	StatusCannotUnderstand       uint16 = 0xC000
	StatusNotAuthorized          uint16 = 0x0124
	StatusUnrecognized           uint16 = 0x0211
	StatusMoveDestinationUnknown uint16 = 0xA801
)

func isPending(s uint16) bool { return s == StatusPending || s == StatusPendingWarning }

func isWarning(s uint16) bool {
	return s == 0x0001 || s == 0x0107 || s == 0x0116 || s&0xF000 == 0xB000
}

// ErrCanceled: the peer ended the operation with status Cancel.
var ErrCanceled = errors.New("operation canceled by the peer")

// StatusError is a final response whose status is a failure.
type StatusError struct {
	Command uint16 // the response's command field
	Status  uint16
	Comment string // Error Comment (0000,0902), when given
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s failed: status 0x%04X (%s)", commandName(e.Command), e.Status, statusName(e.Status))
	if e.Comment != "" {
		s += ": " + e.Comment
	}
	return s
}

// Temporary reports whether the peer may succeed later: it was out of
// resources (PS3.4 C.4.1.1.4, C.4.3.1.4).
func (e *StatusError) Temporary() bool { return e.Status&0xFF00 == 0xA700 }

func statusName(s uint16) string {
	switch {
	case s == 0x0122:
		return "SOP class not supported"
	case s == StatusNotAuthorized:
		return "not authorized"
	case s == StatusUnrecognized:
		return "unrecognized operation"
	case s == 0xA701 || s == 0xA702:
		return "out of resources: unable to perform sub-operations"
	case s&0xFF00 == 0xA700:
		return "out of resources"
	case s == StatusMoveDestinationUnknown:
		return "move destination unknown"
	case s&0xFF00 == 0xA900:
		return "identifier does not match SOP class"
	case s == 0xAA00:
		return "none of the frames requested were found"
	case s&0xF000 == 0xC000:
		return "unable to process"
	}
	return "failure"
}

func commandName(field uint16) string {
	switch field &^ 0x8000 {
	case CStoreRQ:
		return "C-STORE"
	case CGetRQ:
		return "C-GET"
	case CFindRQ:
		return "C-FIND"
	case CMoveRQ:
		return "C-MOVE"
	case CEchoRQ:
		return "C-ECHO"
	}
	return fmt.Sprintf("command 0x%04X", field)
}

// Permanent reports whether an operation's failure will recur unchanged
// if it is retried: the peer rejected the association for good, accepted
// none of the contexts, or ended the operation with a failure status other
// than out of resources; or DICOM TLS failed on a certificate. Other
// failures (unreachable, silent, aborted, out of resources, a broken
// connection) may pass.
func Permanent(err error) bool {
	var rj *RejectedError
	var se *StatusError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &rj) && rj.Permanent || errors.Is(err, ErrNoContext) || errors.As(err, &se) && !se.Temporary() ||
		errors.As(err, &verify) || isTLSAlert(err)
}

// isTLSAlert reports whether err is a TLS alert from the peer, which
// crypto/tls returns as a *net.OpError of Op "remote error": the peer
// refused the handshake (a certificate it does not accept).
func isTLSAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}
