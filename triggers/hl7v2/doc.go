// Package hl7v2 parses and encodes HL7 Version 2.x messages (v2.3 to v2.8)
// and builds original-mode acknowledgements, following HL7 v2.5.1 Chapter 2
// ("Control").
//
// A message is parsed once into segments whose fields are kept in their wire
// (escaped) form; fields are split into repetitions, components and
// subcomponents and unescaped when they are read. Keeping the wire form means
// a parsed message encodes back byte for byte (apart from segment
// terminators), so escape sequences this package does not interpret, such as
// \H\ or \Cxxyy\, survive a round trip.
//
// Text is UTF-8 once parsed: [Parser.Parse] decodes the character set
// MSH-18 declares (ASCII, UNICODE UTF-8, ISO 8859 parts 1 to 9 and 15) and
// [Message.Encode] writes it back in it. A message with more than ASCII in a
// set it does not read, or whose bytes are not text in its set, is refused
// rather than read as bytes: a name or identifier must reach the care event
// as it was sent, or not at all.
//
// Values are addressed either structurally,
//
//	pid := msg.Segment("PID")
//	mrn := pid.Field(3).Repetition(1).Component(1).String()
//
// or with a terser-style path (see [ParsePath] for the syntax):
//
//	mrn, err := msg.Get("PID-3(1)-1")
//
// The typed helpers on [Message] cover the header (MSH) and the patient
// identifier list (PID-3) that Priorflow needs to find prior images.
//
// [ToCareEvent] maps SIU, ADT, ORM, OMI and OMG messages to a
// triggers.CareEvent, and [Intake] (an mllp.Handler) stores and publishes
// them before acknowledging.
//
// Message, Segment and the value types deliberately do not implement
// fmt.Stringer for whole messages: messages carry patient data and must not
// end up in logs by accident.
package hl7v2
