package hl7v2

import "time"

// MessageType is the MSG data type of MSH-9 (HL7 v2.5.1 section 2.A.47).
type MessageType struct {
	Code         string // MSG.1, table 0076, e.g. "ADT"
	TriggerEvent string // MSG.2, table 0003, e.g. "A01"
	Structure    string // MSG.3, table 0354, e.g. "ADT_A01"; absent before v2.3.1
}

// HD is a hierarchic designator (HL7 v2.5.1 section 2.A.33), used for
// applications, facilities and assigning authorities.
type HD struct {
	NamespaceID     string // HD.1, a local name
	UniversalID     string // HD.2, e.g. an OID
	UniversalIDType string // HD.3, table 0301, e.g. "ISO"
}

// IsZero reports whether no part of h is set.
func (h HD) IsZero() bool { return h == HD{} }

// CX is an extended composite identifier (HL7 v2.5.1 section 2.A.14), the
// type of PID-3 and MRG-1.
type CX struct {
	ID                 string // CX.1
	CheckDigit         string // CX.2
	AssigningAuthority HD     // CX.4, subcomponents of one component
	IdentifierTypeCode string // CX.5, table 0203, e.g. "MR", "SS"
	AssigningFacility  HD     // CX.6
}

func (m *Message) msh() *Segment {
	if len(m.segments) == 0 || m.segments[0].id != "MSH" {
		return &Segment{}
	}
	return m.segments[0]
}

// MessageType returns MSH-9.
func (m *Message) MessageType() MessageType {
	r := m.msh().Field(9).Repetition(1)
	return MessageType{
		Code:         r.Component(1).String(),
		TriggerEvent: r.Component(2).String(),
		Structure:    r.Component(3).String(),
	}
}

// ControlID returns MSH-10, the message control ID that the acknowledgement
// echoes in MSA-2 (HL7 v2.5.1 section 2.14.9.10).
func (m *Message) ControlID() string { return m.msh().Field(10).String() }

// ProcessingID returns MSH-11.1: "P" production, "T" training, "D"
// debugging (table 0103).
func (m *Message) ProcessingID() string { return m.msh().Field(11).String() }

// Version returns MSH-12.1, the version ID such as "2.5.1" (table 0104).
func (m *Message) Version() string { return m.msh().Field(12).String() }

// SendingApplication returns MSH-3.
func (m *Message) SendingApplication() HD { return hdFromRepetition(m.msh().Field(3).Repetition(1)) }

// SendingFacility returns MSH-4.
func (m *Message) SendingFacility() HD { return hdFromRepetition(m.msh().Field(4).Repetition(1)) }

// ReceivingApplication returns MSH-5.
func (m *Message) ReceivingApplication() HD {
	return hdFromRepetition(m.msh().Field(5).Repetition(1))
}

// ReceivingFacility returns MSH-6.
func (m *Message) ReceivingFacility() HD { return hdFromRepetition(m.msh().Field(6).Repetition(1)) }

// Timestamp returns MSH-7, the date/time of the message, parsed as by
// [ParseDTM] with loc for a value without an offset.
func (m *Message) Timestamp(loc *time.Location) (time.Time, error) {
	return ParseDTM(m.msh().Field(7).String(), loc)
}

// PatientIdentifiers returns every repetition of PID-3 (patient identifier
// list) of the first PID segment, with its assigning authority, in message
// order. It returns nil when there is no PID segment. Repetitions with an
// empty ID are skipped: they identify nothing.
func (m *Message) PatientIdentifiers() []CX {
	pid := m.Segment("PID")
	if pid == nil {
		return nil
	}
	return CXList(pid.Field(3))
}

// CXList decodes each repetition of a CX field, such as PID-3 or MRG-1,
// skipping repetitions without an ID (CX.1).
func CXList(f Field) []CX {
	var out []CX
	for _, r := range f {
		cx := CX{
			ID:                 r.Component(1).String(),
			CheckDigit:         r.Component(2).String(),
			AssigningAuthority: hdFromComponent(r.Component(4)),
			IdentifierTypeCode: r.Component(5).String(),
			AssigningFacility:  hdFromComponent(r.Component(6)),
		}
		if cx.ID != "" {
			out = append(out, cx)
		}
	}
	return out
}

// hdFromRepetition reads an HD that is a whole field (components).
func hdFromRepetition(r Repetition) HD {
	return HD{
		NamespaceID:     r.Component(1).String(),
		UniversalID:     r.Component(2).String(),
		UniversalIDType: r.Component(3).String(),
	}
}

// hdFromComponent reads an HD that is a component of a composite such as
// CX, where its parts are subcomponents (HL7 v2.5.1 section 2.5.3.4).
func hdFromComponent(c Component) HD {
	return HD{
		NamespaceID:     c.Subcomponent(1),
		UniversalID:     c.Subcomponent(2),
		UniversalIDType: c.Subcomponent(3),
	}
}
