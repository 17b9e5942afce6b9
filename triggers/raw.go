package triggers

import (
	"errors"
	"time"
)

// ErrNotFound means a stored message or event does not exist.
var ErrNotFound = errors.New("not found")

// RawMessage is an inbound message exactly as it was received, kept so that
// an event can be traced back to (and rebuilt from) what the sender sent.
// It holds patient data: store it, never log it.
type RawMessage struct {
	// ID is the id of the care event made from the message (see EventID).
	ID         string
	ReceivedAt time.Time
	// Remote is the sender's network address.
	Remote string
	// SendingApplication and SendingFacility are MSH-3 and MSH-4 (HD.1, or
	// HD.2 when HD.1 is empty).
	SendingApplication string
	SendingFacility    string
	// MessageType is MSH-9 (e.g. "SIU^S12^SIU_S12"), ControlID MSH-10.
	MessageType string
	ControlID   string
	// Data is the message as received, segment terminators included.
	Data []byte
}
