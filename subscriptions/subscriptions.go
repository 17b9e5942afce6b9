// Package subscriptions tells EHR apps and viewers when priors arrive: FHIR
// R4 Subscriptions (criteria-based, FHIR R4 subscription.html) and
// topic-based subscriptions of the Subscriptions R5 Backport IG on R4
// (http://hl7.org/fhir/uv/subscriptions-backport). It holds the model, the
// matching of events against criteria and topics, the notification Bundles,
// and the delivery state machine with per-subscription event numbers; the
// adapters (subscriptions/postgres, subscriptions/jetstream,
// subscriptions/resthook, subscriptions/websocket) plug into the interfaces
// declared here.
//
// The flow: a write of an ImagingStudy enqueues a ResourceChanged event in
// the same transaction (subscriptions/postgres), which is relayed to
// JetStream; the prefetcher publishes StudyAvailable events there directly.
// The dispatcher (subscriptions/jetstream) consumes both, matches them
// against the active subscriptions, and stores one Notification per matching
// subscription with the next event number, in one transaction, before it
// acks. The Deliverer sends each subscription's notifications in event-number
// order, retrying with backoff for hours.
package subscriptions

import (
	"encoding/json"
	"time"
)

// Status is Subscription.status (FHIR R4 ValueSet subscription-status).
type Status string

const (
	StatusRequested Status = "requested"
	StatusActive    Status = "active"
	StatusError     Status = "error"
	StatusOff       Status = "off"
)

// ChannelType is Subscription.channel.type.
type ChannelType string

const (
	ChannelRestHook  ChannelType = "rest-hook"
	ChannelWebsocket ChannelType = "websocket"
)

// Content is the backport payload content (backport-payload-content):
// how much of the focus resource a notification carries.
type Content string

const (
	ContentEmpty        Content = "empty"
	ContentIDOnly       Content = "id-only"
	ContentFullResource Content = "full-resource"
)

// Canonical URLs of the Subscriptions R5 Backport IG (STU 1.1) used on R4.
const (
	BackportBase        = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	ProfileSubscription = BackportBase + "backport-subscription"
	ProfileStatus       = BackportBase + "backport-subscription-status-r4"
	ProfileNotification = BackportBase + "backport-subscription-notification-r4"
	ExtFilterCriteria   = BackportBase + "backport-filter-criteria"
	ExtPayloadContent   = BackportBase + "backport-payload-content"
	ExtHeartbeatPeriod  = BackportBase + "backport-heartbeat-period"
	ExtTimeout          = BackportBase + "backport-timeout"
	ExtMaxCount         = BackportBase + "backport-max-count"
	ExtChannelType      = BackportBase + "backport-channel-type"
)

// Topics Priorflow offers (SubscriptionTopic canonical URLs).
const (
	// TopicStudyAvailable fires when the prefetcher has made an
	// ImagingStudy available (StudyAvailable); filters: patient, modality.
	TopicStudyAvailable = "urn:priorflow:topic:imagingstudy-available"
	// TopicStudyChanged fires on every create, update and delete of an
	// ImagingStudy; filters are ImagingStudy search parameters.
	TopicStudyChanged = "urn:priorflow:topic:imagingstudy-changed"
)

// Subscription is the parsed, validated form of a Subscription resource that
// matching and delivery work with.
type Subscription struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Topic is set for topic-based subscriptions; Criteria holds the
	// criteria of a criteria-based one, or the filter criteria of a topic
	// ("ImagingStudy?patient=Patient/1&modality=CT"), possibly empty.
	Topic    string `json:"topic,omitempty"`
	Criteria string `json:"criteria,omitempty"`

	Channel  ChannelType `json:"channel"`
	Endpoint string      `json:"endpoint,omitempty"`
	// Headers are "Name: value" lines sent with every rest-hook request.
	Headers []string `json:"headers,omitempty"`
	// PayloadMIME is channel.payload: empty means no body (R4 "ping").
	PayloadMIME string  `json:"payloadMime,omitempty"`
	Content     Content `json:"content,omitempty"`
	// Heartbeat, when set, asks for a heartbeat notification after this
	// long without one (backport-heartbeat-period).
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	// Timeout bounds one delivery (backport-timeout); zero means the
	// sender's default.
	Timeout time.Duration `json:"timeout,omitempty"`
	End     time.Time     `json:"end,omitzero"`
}

// TopicBased reports whether s follows the backport IG.
func (s *Subscription) TopicBased() bool { return s.Topic != "" }

// Kind says what happened in an Event.
type Kind string

const (
	KindResourceChanged Kind = "resource-changed"
	KindStudyAvailable  Kind = "study-available"
)

// Event is one thing subscriptions can be notified of, as the dispatcher
// reads it from JetStream.
type Event struct {
	// ID is unique per event; a redelivered event has the same ID, which
	// keeps its notifications from being stored twice.
	ID   string
	Kind Kind
	// Focus is the reference of the resource the event is about
	// ("ImagingStudy/123").
	Focus string
	// FocusType is the resource type of Focus.
	FocusType string
	// Method is the interaction of a change: POST, PUT or DELETE.
	Method string
	// Resource is the focus's JSON at the event, nil when deleted or
	// unknown.
	Resource json.RawMessage
	// Patient and Modalities come with StudyAvailable.
	Patient    string
	Modalities []string
	Time       time.Time
}

// Notification is one event queued for one subscription under its event
// number (events-since-subscription-start after it).
type Notification struct {
	SubscriptionID string
	EventNumber    int64
	EventID        string
	Focus          string
	Method         string
	Resource       json.RawMessage
	Time           time.Time
	// Attempts is the number of failed deliveries so far.
	Attempts  int
	Delivered bool
	// Abandoned notifications were given up after the retry window; a
	// client finds them with $events.
	Abandoned bool
}
