package audit

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/fhir/go/jsonformat"
	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	aepb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/audit_event_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/priorflow/priorflow/fhir"
)

// message is ae as the proto the codec parses from ae's JSON (held to it by
// TestEncode_SameAsParsedJSON and FuzzEncode_SameAsParsedJSON), built
// without the JSON: printing and parsing it was a fifth of the API's CPU.
// It is not validated; the caller checks it with the codec, as Parse would.
func (ae *auditEvent) message() (*aepb.AuditEvent, error) {
	recorded, err := instantProto(ae.Recorded)
	if err != nil {
		return nil, fmt.Errorf("AuditEvent.recorded: %w", err)
	}
	m := &aepb.AuditEvent{
		Type:        ae.Type.proto(),
		Subtype:     codings(ae.Subtype),
		Recorded:    recorded,
		OutcomeDesc: stringProto(ae.OutcomeDesc),
		Source:      &aepb.AuditEvent_Source{Type: codings(ae.Source.Type)},
	}
	if ae.Action != "" {
		m.Action = &aepb.AuditEvent_ActionCode{}
		if m.Action.Value, err = enumCode[cpb.AuditEventActionCode_Value](ae.Action); err != nil {
			return nil, fmt.Errorf("AuditEvent.action: %w", err)
		}
	}
	if ae.Outcome != "" {
		m.Outcome = &aepb.AuditEvent_OutcomeCode{}
		if m.Outcome.Value, err = enumCode[cpb.AuditEventOutcomeCode_Value](ae.Outcome); err != nil {
			return nil, fmt.Errorf("AuditEvent.outcome: %w", err)
		}
	}
	if p := ae.Period; p != nil {
		m.Period = &dpb.Period{}
		if m.Period.Start, err = dateTimeProto(p.Start); err != nil {
			return nil, fmt.Errorf("AuditEvent.period.start: %w", err)
		}
		if m.Period.End, err = dateTimeProto(p.End); err != nil {
			return nil, fmt.Errorf("AuditEvent.period.end: %w", err)
		}
	}
	for i := range ae.Agent {
		a, err := ae.Agent[i].proto()
		if err != nil {
			return nil, fmt.Errorf("AuditEvent.agent[%d]: %w", i, err)
		}
		m.Agent = append(m.Agent, a)
	}
	if m.Source.Observer, err = ae.Source.Observer.proto(); err != nil {
		return nil, fmt.Errorf("AuditEvent.source.observer: %w", err)
	}
	for i := range ae.Entity {
		e, err := ae.Entity[i].proto()
		if err != nil {
			return nil, fmt.Errorf("AuditEvent.entity[%d]: %w", i, err)
		}
		m.Entity = append(m.Entity, e)
	}
	return m, nil
}

func (a *agent) proto() (*aepb.AuditEvent_Agent, error) {
	m := &aepb.AuditEvent_Agent{
		Type:         a.Type.proto(),
		Role:         concepts(a.Role),
		Name:         stringProto(a.Name),
		Requestor:    &dpb.Boolean{Value: a.Requestor},
		PurposeOfUse: concepts(a.PurposeOfUse),
	}
	var err error
	if m.Who, err = a.Who.proto(); err != nil {
		return nil, fmt.Errorf("who: %w", err)
	}
	for _, p := range a.Policy {
		m.Policy = append(m.Policy, &dpb.Uri{Value: fhir.ValidUTF8(p)})
	}
	if n := a.Network; n != nil {
		m.Network = &aepb.AuditEvent_Agent_Network{Address: stringProto(n.Address)}
		if n.Type != "" {
			m.Network.Type = &aepb.AuditEvent_Agent_Network_TypeCode{}
			if m.Network.Type.Value, err = enumCode[cpb.AuditEventAgentNetworkTypeCode_Value](n.Type); err != nil {
				return nil, fmt.Errorf("network.type: %w", err)
			}
		}
	}
	return m, nil
}

func (e *entity) proto() (*aepb.AuditEvent_Entity, error) {
	m := &aepb.AuditEvent_Entity{
		Type:        e.Type.proto(),
		Role:        e.Role.proto(),
		Description: stringProto(e.Description),
	}
	if len(e.Query) > 0 {
		m.Query = &dpb.Base64Binary{Value: e.Query}
	}
	var err error
	if m.What, err = e.What.proto(); err != nil {
		return nil, fmt.Errorf("what: %w", err)
	}
	return m, nil
}

// proto gives the reference the typed form the codec parses it into
// (Patient/x → patient_id); other references, absolute URLs among them,
// stay in uri.
func (r *reference) proto() (*dpb.Reference, error) {
	if r == nil {
		return nil, nil
	}
	m := &dpb.Reference{Identifier: r.Identifier.proto(), Display: stringProto(r.Display)}
	if r.Reference != "" {
		m.Reference = &dpb.Reference_Uri{Uri: &dpb.String{Value: fhir.ValidUTF8(r.Reference)}}
		if err := jsonformat.NormalizeReference(m); err != nil {
			// The error names the reference's type, not its id (which
			// may be a patient's): errAttr logs the text of errors.
			return nil, fmt.Errorf("reference: %w", err)
		}
	}
	return m, nil
}

func (id *identifier) proto() *dpb.Identifier {
	if id == nil {
		return nil
	}
	return &dpb.Identifier{Type: id.Type.proto(), System: uriProto(id.System), Value: stringProto(id.Value)}
}

func (c *concept) proto() *dpb.CodeableConcept {
	if c == nil {
		return nil
	}
	return &dpb.CodeableConcept{Coding: codings(c.Coding), Text: stringProto(c.Text)}
}

func (c *coding) proto() *dpb.Coding {
	if c == nil {
		return nil
	}
	m := &dpb.Coding{System: uriProto(c.System), Display: stringProto(c.Display)}
	if c.Code != "" {
		m.Code = &dpb.Code{Value: fhir.ValidUTF8(c.Code)}
	}
	return m
}

func codings(cs []coding) []*dpb.Coding {
	var out []*dpb.Coding
	for i := range cs {
		out = append(out, cs[i].proto())
	}
	return out
}

func concepts(cs []concept) []*dpb.CodeableConcept {
	var out []*dpb.CodeableConcept
	for i := range cs {
		out = append(out, cs[i].proto())
	}
	return out
}

// stringProto and uriProto leave "" out, as the JSON's omitempty does.
func stringProto(s string) *dpb.String {
	if s == "" {
		return nil
	}
	return &dpb.String{Value: fhir.ValidUTF8(s)}
}

func uriProto(s string) *dpb.Uri {
	if s == "" {
		return nil
	}
	return &dpb.Uri{Value: fhir.ValidUTF8(s)}
}

// instantLayout is how instant prints; the codec reads it as an instant or
// dateTime at microsecond precision in UTC ("Z"), and refuses the years
// outside 0000–9999 that Format prints in other shapes.
const instantLayout = "2006-01-02T15:04:05.000000Z07:00"

func instantProto(s string) (*dpb.Instant, error) {
	t, err := time.Parse(instantLayout, s)
	if err != nil {
		return nil, fmt.Errorf("not an instant: %w", err)
	}
	return &dpb.Instant{ValueUs: micros(t), Timezone: "Z", Precision: dpb.Instant_MICROSECOND}, nil
}

func dateTimeProto(s string) (*dpb.DateTime, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(instantLayout, s)
	if err != nil {
		return nil, fmt.Errorf("not a dateTime: %w", err)
	}
	return &dpb.DateTime{ValueUs: micros(t), Timezone: "Z", Precision: dpb.DateTime_MICROSECOND}, nil
}

// micros is t in microseconds as jsonformat reads it, which drops the
// fraction of a second from times it cannot hold in nanoseconds (after
// 2262, before 1678).
func micros(t time.Time) int64 {
	if s := t.Unix(); s >= math.MaxInt64/int64(time.Second) || s <= math.MinInt64/int64(time.Second) {
		return s * 1e6
	}
	return t.UnixMicro()
}

// enumCode is the value of a FHIR code in its enum the way jsonformat reads
// it: by name (upper-cased, - as _), else by the code as FHIR spells it
// ("0" for SUCCESS).
func enumCode[E interface {
	~int32
	Descriptor() protoreflect.EnumDescriptor
}](code string) (E, error) {
	var zero E
	code = fhir.ValidUTF8(code)
	ed := zero.Descriptor()
	vs := ed.Values()
	if v := vs.ByName(protoreflect.Name(strings.ReplaceAll(strings.ToUpper(code), "-", "_"))); v != nil && v.Number() != 0 {
		return E(v.Number()), nil
	}
	for i := range vs.Len() {
		if v := vs.Get(i); proto.GetExtension(v.Options(), apb.E_FhirOriginalCode).(string) == code {
			return E(v.Number()), nil
		}
	}
	return zero, fmt.Errorf("%q is not a %s", code, ed.FullName().Parent().Name())
}
