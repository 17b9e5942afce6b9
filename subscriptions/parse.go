package subscriptions

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/priorflow/priorflow/fhir"
	"github.com/priorflow/priorflow/internal/printable"
)

// r4Subscription is the part of an R4 Subscription's JSON (with the backport
// extensions) that the model needs.
type r4Subscription struct {
	ID        string     `json:"id"`
	Status    string     `json:"status"`
	Criteria  string     `json:"criteria"`
	CriteriaX *element   `json:"_criteria"`
	End       string     `json:"end"`
	Channel   r4Channel  `json:"channel"`
	Extension []extValue `json:"extension"`
}

type r4Channel struct {
	Type      string     `json:"type"`
	TypeX     *element   `json:"_type"`
	Endpoint  string     `json:"endpoint"`
	Payload   string     `json:"payload"`
	PayloadX  *element   `json:"_payload"`
	Header    []string   `json:"header"`
	Extension []extValue `json:"extension"`
}

type element struct {
	Extension []extValue `json:"extension"`
}

type extValue struct {
	URL              string  `json:"url"`
	ValueString      *string `json:"valueString"`
	ValueCode        *string `json:"valueCode"`
	ValueUnsignedInt *int    `json:"valueUnsignedInt"`
	ValuePositiveInt *int    `json:"valuePositiveInt"`
	ValueCoding      *struct {
		Code string `json:"code"`
	} `json:"valueCoding"`
}

func findExt(exts []extValue, url string) *extValue {
	for i := range exts {
		if exts[i].URL == url {
			return &exts[i]
		}
	}
	return nil
}

func elementExts(e *element) []extValue {
	if e == nil {
		return nil
	}
	return e.Extension
}

// MaxHeaders bounds channel.header; a header line is at most 4 KiB.
const MaxHeaders = 16

// Decode reads a Subscription resource (R4 JSON, as stored) into the model
// and checks what Priorflow can serve but the topic and criteria, which
// Compile checks (a subscription stored under criteria this server no
// longer accepts is still decoded): the channel type, the endpoint's
// presence, the payload. Every problem is a fhir.KindUnprocessable error
// naming the element, which the REST API answers with 422 (FHIR R4
// http.html#2.21.0.16). The endpoint's allow-list is checked by the
// channel (resthook.Guard), not here.
func (m *Matcher) Decode(body []byte) (*Subscription, error) {
	var r r4Subscription
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "Subscription is not valid JSON")
	}
	s := &Subscription{ID: r.ID, Status: Status(r.Status), Endpoint: r.Channel.Endpoint, PayloadMIME: r.Channel.Payload}
	switch s.Status {
	case StatusRequested, StatusActive, StatusError, StatusOff:
	default:
		return nil, unprocessable("Subscription.status", "status %q is not one of requested, active, error, off", r.Status)
	}
	s.Channel = ChannelType(r.Channel.Type)
	if e := findExt(elementExts(r.Channel.TypeX), ExtChannelType); e != nil && e.ValueCoding != nil {
		s.Channel = ChannelType(e.ValueCoding.Code)
	}
	switch s.Channel {
	case ChannelRestHook:
		if s.Endpoint == "" {
			return nil, unprocessable("Subscription.channel.endpoint", "a rest-hook subscription needs channel.endpoint")
		}
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, unprocessable("Subscription.channel.endpoint", "channel.endpoint must be an absolute http or https URL")
		}
	case ChannelWebsocket:
	default:
		return nil, unprocessable("Subscription.channel.type", "channel type %q is not supported (rest-hook, websocket)", r.Channel.Type)
	}
	if s.PayloadMIME != "" && s.PayloadMIME != "application/fhir+json" && s.PayloadMIME != "application/json" {
		return nil, unprocessable("Subscription.channel.payload", "payload %q is not supported (application/fhir+json)", s.PayloadMIME)
	}
	if len(r.Channel.Header) > MaxHeaders {
		return nil, unprocessable("Subscription.channel.header", "at most %d headers", MaxHeaders)
	}
	for _, h := range r.Channel.Header {
		name, _, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" || len(h) > 4096 || strings.ContainsAny(h, "\r\n") {
			return nil, unprocessable("Subscription.channel.header", "header %q is not \"Name: value\"", printable.Truncate(h, 40))
		}
	}
	s.Headers = r.Channel.Header
	if e := findExt(r.Channel.Extension, ExtHeartbeatPeriod); e != nil && e.ValueUnsignedInt != nil {
		s.Heartbeat = time.Duration(*e.ValueUnsignedInt) * time.Second
	}
	if e := findExt(r.Channel.Extension, ExtTimeout); e != nil && e.ValueUnsignedInt != nil {
		s.Timeout = time.Duration(*e.ValueUnsignedInt) * time.Second
	}
	if r.End != "" {
		if t, err := time.Parse(time.RFC3339, r.End); err == nil {
			s.End = t
		}
	}

	if isCanonical(r.Criteria) {
		s.Topic = r.Criteria
		if e := findExt(elementExts(r.CriteriaX), ExtFilterCriteria); e != nil && e.ValueString != nil {
			s.Criteria = *e.ValueString
		}
		s.Content = ContentIDOnly
		if e := findExt(elementExts(r.Channel.PayloadX), ExtPayloadContent); e != nil && e.ValueCode != nil {
			s.Content = Content(*e.ValueCode)
		}
		switch s.Content {
		case ContentEmpty, ContentIDOnly, ContentFullResource:
		default:
			return nil, unprocessable("Subscription.channel.payload", "payload content %q is not one of empty, id-only, full-resource", s.Content)
		}
	} else {
		s.Criteria = r.Criteria
		s.Content = ContentEmpty
		if s.PayloadMIME != "" {
			s.Content = ContentFullResource
		}
	}
	if s.Channel == ChannelWebsocket && s.Content == ContentFullResource {
		// "bind <id>" authenticates nobody: a websocket client gets
		// references at most, and reads the resources with its own
		// credentials.
		return nil, unprocessable("Subscription.channel.payload", "full-resource payloads are not sent over websocket; use id-only")
	}
	return s, nil
}

func isCanonical(s string) bool {
	return strings.HasPrefix(s, "urn:") || strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func unprocessable(expr, format string, args ...any) error {
	return fhir.Errorf(fhir.KindUnprocessable, format, args...).At(expr)
}

// splitCriteria splits "Type?query" into the type and the parsed query.
func splitCriteria(c string) (string, url.Values, error) {
	typ, q, _ := strings.Cut(c, "?")
	vals, err := url.ParseQuery(q)
	if err != nil {
		return "", nil, fmt.Errorf("criteria query: %w", err)
	}
	return typ, vals, nil
}
