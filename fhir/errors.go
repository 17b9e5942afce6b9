package fhir

import (
	"errors"
	"fmt"
)

// Kind is the closed set of error kinds the FHIR layer distinguishes. Each
// kind maps to exactly one HTTP status and OperationOutcome issue type at the
// REST edge (see fhir/rest), so code below the edge never thinks in HTTP.
type Kind int

const (
	// KindInternal is the zero value on purpose: an error nobody classified
	// is treated as a server fault and its details never reach the client.
	KindInternal         Kind = iota
	KindInvalid               // the request is malformed (400)
	KindNotFound              // no such resource or type (404)
	KindNotAllowed            // interaction not supported on this resource (405)
	KindConflict              // version or uniqueness conflict (409)
	KindGone                  // resource was deleted (410)
	KindPrecondition          // If-Match / conditional failed (412)
	KindUnsupportedMedia      // body is not FHIR JSON (415)
	KindUnprocessable         // well-formed but invalid per R4 (422)
	KindTooLarge              // body over the limit (413)
	KindUnauthorized          // no or bad credentials (401)
	KindForbidden             // authenticated but not allowed (403)
	KindUnavailable           // a dependency is down (503)
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not-found"
	case KindNotAllowed:
		return "not-allowed"
	case KindConflict:
		return "conflict"
	case KindGone:
		return "gone"
	case KindPrecondition:
		return "precondition-failed"
	case KindUnsupportedMedia:
		return "unsupported-media-type"
	case KindUnprocessable:
		return "unprocessable"
	case KindTooLarge:
		return "too-large"
	case KindUnauthorized:
		return "unauthorized"
	case KindForbidden:
		return "forbidden"
	case KindUnavailable:
		return "unavailable"
	}
	return "internal"
}

// Error is an error meant to be shown to the client: Message is written for a
// person, Expression names the offending element or parameter (FHIRPath-like,
// e.g. "ImagingStudy.status" or a search parameter name).
type Error struct {
	Kind       Kind
	Message    string
	Expression []string
	// Err is the cause, logged but never shown to the client.
	Err error
}

func (e *Error) Error() string {
	msg := e.Message
	if len(e.Expression) > 0 {
		msg = fmt.Sprintf("%s (at %v)", msg, e.Expression)
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a client-facing message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// At returns a copy of e that names the offending elements.
func (e *Error) At(expr ...string) *Error {
	c := *e
	c.Expression = append(append([]string(nil), e.Expression...), expr...)
	return &c
}

// ErrorKind reports the kind of err: the Kind of the first *Error in its
// chain, or KindInternal.
func ErrorKind(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return KindInternal
}

// IsKind reports whether err carries the given kind.
func IsKind(err error, k Kind) bool {
	return err != nil && ErrorKind(err) == k
}
