package hl7v2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/priorflow/priorflow/triggers"
)

// Publisher stores care events durably (triggers/jetstream.Publisher).
// Publish returns only once the event is stored; duplicate reports that an
// event with the same id was stored before.
type Publisher interface {
	Publish(ctx context.Context, ev *triggers.CareEvent) (duplicate bool, err error)
}

// RawStore keeps the raw messages behind care events
// (triggers/postgres.RawStore).
type RawStore interface {
	// Save stores msg unless its id is already stored, reporting whether
	// it inserted it.
	Save(ctx context.Context, msg *triggers.RawMessage) (inserted bool, err error)
	// Get returns the message stored under id.
	Get(ctx context.Context, id string) (*triggers.RawMessage, error)
}

// IntakeConfig tunes an Intake. The zero value works.
type IntakeConfig struct {
	// Map holds the site-specific mapping options.
	Map MapOptions
	// MaxMessageSize limits a message; 0 means DefaultMaxSize.
	MaxMessageSize int
	// DefaultCharset is the parser's: see [Parser.DefaultCharset].
	DefaultCharset string
	// Timeout bounds storing and publishing one message; 0 means
	// DefaultIntakeTimeout. A sender waits this long at most for an AE when
	// the database or NATS is down.
	Timeout time.Duration
	// DuplicateWindow is the stream's duplicate window
	// (jetstream.StreamConfig.DuplicateWindow); 0 means one hour. Within it,
	// a different message reusing a control ID is refused (AE 205) rather
	// than dropped by JetStream as a duplicate.
	DuplicateWindow time.Duration
	// Registerer, if set, receives the intake's metrics.
	Registerer prometheus.Registerer
}

// DefaultIntakeTimeout is IntakeConfig.Timeout's default.
const DefaultIntakeTimeout = 10 * time.Second

// Intake receives HL7 v2 messages over MLLP (it is a mllp.Handler): it
// parses each message, maps it to a care event, stores the raw message,
// publishes the event, and only then acknowledges with AA (HL7 v2.5.1
// section 2.9.2, original mode). It answers
//
//   - AR for an unparseable message or an unsupported message type,
//     trigger event or order control (ERR-3 1xx or 200/201);
//   - AE for a message lacking what the event needs (101) or with a bad
//     date/time (102), with ERR-2 naming the field;
//   - AE 205 for a control ID reused for a different message;
//   - AE 207 when the database or NATS fails: the sender keeps the message
//     and resends it, and the event id (MSH-3, MSH-4, MSH-10) makes the
//     resend land once.
//
// Nothing of a message's content is logged: only its size, type, control
// ID and event id.
type Intake struct {
	store   RawStore
	pub     Publisher
	log     *slog.Logger
	parser  Parser
	opts    MapOptions
	timeout time.Duration
	window  time.Duration

	messages *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewIntake returns an intake storing raw messages in store and publishing
// events with pub. It refuses missing dependencies.
func NewIntake(store RawStore, pub Publisher, logger *slog.Logger, cfg IntakeConfig) (*Intake, error) {
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("nil raw store"))
	}
	if pub == nil {
		errs = append(errs, errors.New("nil publisher"))
	}
	if logger == nil {
		errs = append(errs, errors.New("nil logger"))
	}
	if cfg.Timeout < 0 || cfg.DuplicateWindow < 0 || cfg.MaxMessageSize < 0 {
		errs = append(errs, errors.New("negative Timeout, DuplicateWindow or MaxMessageSize"))
	}
	if err := CheckCharset(cfg.DefaultCharset); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hl7v2: new intake: %w", err)
	}
	in := &Intake{
		store:   store,
		pub:     pub,
		log:     logger,
		parser:  Parser{MaxSize: cfg.MaxMessageSize, DefaultCharset: cfg.DefaultCharset},
		opts:    cfg.Map,
		timeout: cfg.Timeout,
		window:  cfg.DuplicateWindow,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "priorflow", Subsystem: "hl7v2", Name: "messages_total",
			Help: "HL7 v2 messages received, by message type and acknowledgment code.",
		}, []string{"message_type", "ack_code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "priorflow", Subsystem: "hl7v2", Name: "intake_duration_seconds",
			Help:    "Time from receiving an HL7 v2 message to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if in.timeout == 0 {
		in.timeout = DefaultIntakeTimeout
	}
	if in.window == 0 {
		in.window = time.Hour
	}
	if r := cfg.Registerer; r != nil {
		for _, c := range []prometheus.Collector{in.messages, in.duration} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("hl7v2: new intake: metrics: %w", err)
			}
		}
	}
	return in, nil
}

// HandleMLLP implements mllp.Handler.
func (in *Intake) HandleMLLP(ctx context.Context, msg []byte, remote net.Addr) []byte {
	start := time.Now()
	spec, label, attrs := in.handle(ctx, msg, remote, start)
	ack, err := NewAck(msg, spec)
	if err != nil {
		// Only an invalid spec fails, which handle never builds.
		in.log.Error("hl7v2 acknowledgement not built", "error", err)
		return nil
	}
	in.messages.WithLabelValues(label, string(spec.Code)).Inc()
	in.duration.Observe(time.Since(start).Seconds())
	attrs = append(attrs, "size", len(msg), "ack_code", string(spec.Code), "duration", time.Since(start))
	if remote != nil {
		attrs = append(attrs, "remote", remote.String())
	}
	if spec.Code == ApplicationAccept {
		in.log.Debug("hl7v2 message accepted", attrs...)
	} else {
		attrs = append(attrs, "error_code", int(spec.Error), "reason", spec.Text)
		in.log.Warn("hl7v2 message not accepted", attrs...)
	}
	return ack.Encode()
}

// handle processes one message and returns the acknowledgement it calls
// for, the message type label for metrics and the log attributes.
func (in *Intake) handle(ctx context.Context, msg []byte, remote net.Addr, received time.Time) (AckSpec, string, []any) {
	m, err := in.parser.Parse(msg)
	if err != nil {
		return RejectSpec(err), "unparsed", nil
	}
	mt := m.MessageType()
	label := safeCode(mt.Code) + "^" + safeCode(mt.TriggerEvent)
	attrs := []any{"message_type", label, "control_id", safeControlID(m.ControlID())}
	ev, err := ToCareEvent(m, in.opts)
	if err != nil {
		var merr *MappingError
		if !errors.As(err, &merr) {
			return internalError(), label, attrs
		}
		if errors.Is(err, ErrUnsupportedMessageType) || errors.Is(err, ErrUnsupportedEvent) {
			label = "unsupported"
		}
		return merr.AckSpec(), label, attrs
	}
	attrs = append(attrs, "event_id", ev.ID, "kind", string(ev.Kind))

	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	raw := &triggers.RawMessage{
		ID:                 ev.ID,
		ReceivedAt:         received,
		SendingApplication: firstNonEmpty(m.SendingApplication().NamespaceID, m.SendingApplication().UniversalID),
		SendingFacility:    firstNonEmpty(m.SendingFacility().NamespaceID, m.SendingFacility().UniversalID),
		MessageType:        ev.Origin.MessageType,
		ControlID:          ev.Origin.ControlID,
		Data:               msg,
	}
	if remote != nil {
		raw.Remote = remote.String()
	}
	inserted, err := in.store.Save(ctx, raw)
	if err != nil {
		return internalError(), label, append(attrs, "error", err)
	}
	if !inserted {
		prev, err := in.store.Get(ctx, ev.ID)
		if err != nil {
			return internalError(), label, append(attrs, "error", err)
		}
		if !sameMessage(prev.Data, msg) {
			if received.Sub(prev.ReceivedAt) < in.window {
				// JetStream would take the event for a resend and drop it.
				return AckSpec{Code: ApplicationError, Error: DuplicateKeyIdentifier,
					Text:     "message control ID already used for a different message; send it with a new one",
					Location: &ErrorLocation{Segment: "MSH", Sequence: 1, Field: 10}}, label, attrs
			}
			// Past the duplicate window the event goes through; the raw
			// store keeps the first message under this id.
			in.log.Warn("hl7v2 control ID reused after the duplicate window; raw message not stored", attrs...)
		}
	}
	duplicate, err := in.pub.Publish(ctx, ev)
	if err != nil {
		return internalError(), label, append(attrs, "error", err)
	}
	return AckSpec{Code: ApplicationAccept}, label, append(attrs, "duplicate", duplicate)
}

func internalError() AckSpec {
	return AckSpec{Code: ApplicationError, Error: ApplicationInternalError,
		Text: "application internal error; the message was not stored, please resend"}
}

// sameMessage reports whether a and b are the same message apart from
// segment terminators (CR, LF or CRLF), which engines change on resend.
func sameMessage(a, b []byte) bool {
	return bytes.Equal(normalizeTerminators(a), normalizeTerminators(b))
}

func normalizeTerminators(p []byte) []byte {
	p = bytes.TrimPrefix(p, []byte("\xef\xbb\xbf"))
	p = bytes.ReplaceAll(p, []byte("\r\n"), []byte("\r"))
	p = bytes.ReplaceAll(p, []byte("\n"), []byte("\r"))
	return bytes.TrimRight(p, "\r")
}

// safeControlID keeps a logged control ID short; MSH-10 is an identifier,
// not patient data, but the sender decides what is in it.
func safeControlID(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
