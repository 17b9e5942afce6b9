package hl7v2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/priorflow/priorflow/triggers"
)

// decodedSegment is a fully decoded segment, for comparing messages by
// content rather than by wire text.
type decodedSegment struct {
	ID     string
	Fields []Field
}

func decodeAll(m *Message) []decodedSegment {
	var out []decodedSegment
	for _, s := range m.AllSegments() {
		d := decodedSegment{ID: s.ID()}
		for n := 1; n <= s.NumFields(); n++ {
			d.Fields = append(d.Fields, s.Field(n))
		}
		out = append(out, d)
	}
	return out
}

func addSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.hl7")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"MSH|^~\\&",
		"MSH#$*!@#A#B\rPID#1##X$$$Y@Z*W\r",
		"MSH|^~\\&#|A||||||ADT^A01|1|P|2.7\rNTE|1||\\P\\\\X0D0A\\\\.br\\\\H\\\r",
		"MSH|^~\\&|A\r\nPID|||\\F\\S\\T\\R\\E\\\r\n\r\n",
		"PID|1\rMSH|^~\\&\r",
		"MSH|^~\\&|A\rZZ1|x^y&z~w|||\r",
		// Character sets (MSH-18): 8859/1, 8859/7 with an alternate, UTF-8,
		// and a set not read here with an ISO 2022 escape in it.
		"MSH|^~\\&|ADT|H\xd4P|PF|PF|20240101||ADT^A01|L1|P|2.5|||||FR|8859/1\rPID|1||\xc4B1^^^H\xd4P^MR||M\xdcLLER\rPV1|1|I\r",
		"MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|G1|P|2.5|||||GR|8859/7~ISO IR87\rPID|1||1^^^A^MR||\xd0\xc1\r",
		"MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|U1|P|2.5|||||DE|UNICODE UTF-8\rPID|1||1^^^A^MR||MÜLLER\r",
		"MSH|^~\\&|A|F|PF|PF|20240101||ADT^A01|J1|P|2.5|||||JP|ISO IR87\rPID|1||1^^^A^MR||\x1b$B;3\x1b(B\r",
	} {
		f.Add([]byte(s))
	}
}

// checkAck fails t unless ack parses: as text when the message it answers
// did (it declares the same character set and echoes bytes in it), else at
// least as bytes (it echoes what the sender sent, whatever that was).
func checkAck(t *testing.T, ack *Message, text bool) {
	t.Helper()
	b := ack.Encode()
	if _, err := (Parser{Bytes: !text}).Parse(b); err != nil {
		t.Fatalf("ACK does not parse (as text: %v): %v\n%q", text, err, b)
	}
}

// FuzzParse checks that Parse never panics, that encoding a parsed message
// and parsing it again gives the same content, that re-escaping every
// decoded field is lossless, and that an acknowledgement can be built for
// any input.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		ack, aerr := NewAck(data, RejectSpec(err))
		if aerr != nil {
			t.Fatalf("NewAck: %v", aerr)
		}
		checkAck(t, ack, err == nil)
		if err != nil {
			return
		}
		m2, err := Parse(m.Encode())
		if err != nil {
			t.Fatalf("Parse(Encode(m)): %v", err)
		}
		if d := diff(decodeAll(m), decodeAll(m2)); d != "" {
			t.Fatalf("content changed by Encode: %s", d)
		}
		for _, s := range m.AllSegments() {
			for n := 1; n <= s.NumFields(); n++ {
				if s.ID() == "MSH" && n <= 2 {
					continue
				}
				f := s.Field(n)
				again := decodeField(encodeField(f, s.delims), s.delims)
				if d := diff(f, again); d != "" {
					t.Fatalf("%s-%d changed by re-escaping: %s", s.ID(), n, d)
				}
			}
		}
	})
}

// FuzzParseDTM checks that ParseDTM never panics and that what it accepts
// survives FormatDTM (to second precision).
func FuzzParseDTM(f *testing.F) {
	for _, s := range []string{"2021", "20210924093015.1234+0215", "198908181126-0500", "20240229", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseDTM(s, time.UTC)
		if err != nil {
			return
		}
		back, err := ParseDTM(FormatDTM(tm), time.UTC)
		if err != nil {
			t.Fatalf("ParseDTM(FormatDTM(%v)): %v", tm, err)
		}
		if !back.Equal(tm.Truncate(time.Second)) {
			t.Fatalf("round trip of %q: %v, want %v", s, back, tm)
		}
	})
}

// FuzzToCareEvent checks the mapping of any parsable message to a care
// event: it never panics, gives the same answer twice, fails only with a
// *MappingError whose acknowledgement can be built and parsed, and never
// with the error that says a required part was not checked (a mapping
// bug); an event it returns survives the JSON of the event stream.
func FuzzToCareEvent(f *testing.F) {
	addSeeds(f)
	const msh = "MSH|^~\\&|APP|FAC|PF|PF|20240310023000||"
	for _, s := range [][]byte{
		wire(msh+"SIU^S12|C1|P|2.5", "SCH|A1^P|F1|||||||30|min|^^30^20240310023000", "TQ1|||||||20240310023000", "PID|1||1^^^A^MR~2^^^&1.2.3&ISO^MR||DOE^JOHN||19800101|F", "AIS|1||CT1^CT HEAD^L"),
		wire(msh+"ADT^A01|C2|P|2.5", "EVN|A01|20240310023000-0500", "PID|1||1^^^A^MR", "PV1|1|E|ED^1^1"),
		wire(msh+"ADT^A02|C3|P|2.5", "PID|1||1^^^A^MR", "PV1|1|I|W2^3^1||||ED^1^1"),
		wire(msh+"ADT^A40|C4|P|2.5", "PID|1||1^^^A^MR", "MRG|9^^^A^MR"),
		wire(msh+"ORM^O01|C5|P|2.3", "PID|1||1^^^A^MR", "ORC|NW|P1||||||^^^20240310023000^^S", "OBR|1|P1||MRI1^MR KNEE^L|||||||||||^^^KNEE"),
		wire(msh+"OMI^O23|C6|P|2.5", "PID|1||1^^^A^MR", "ORC|CA|P1", "TQ1|1||||||20240310023000"),
	} {
		f.Add(s)
	}
	zones := []*time.Location{time.UTC, time.FixedZone("UTC+0530", 5*3600+1800)}
	if ny, err := time.LoadLocation("America/New_York"); err == nil {
		zones = append(zones, ny) // 2024-03-10 02:30 does not exist there
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		for _, loc := range zones {
			opts := MapOptions{TimeZone: loc}
			ev, err := ToCareEvent(m, opts)
			ev2, err2 := ToCareEvent(m, opts)
			if d := diff(ev, ev2); d != "" || fmt.Sprint(err) != fmt.Sprint(err2) {
				t.Fatalf("two mappings differ: %v / %v %s", err, err2, d)
			}
			if err != nil {
				var merr *MappingError
				if !errors.As(err, &merr) {
					t.Fatalf("error %T %v, want *MappingError", err, err)
				}
				if merr.What == "care event incomplete" {
					t.Fatalf("mapping bug: %v", err)
				}
				ack, aerr := NewAck(data, merr.AckSpec())
				if aerr != nil {
					t.Fatalf("NewAck(%v): %v", err, aerr)
				}
				checkAck(t, ack, true)
				continue
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("event does not validate: %v", err)
			}
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatalf("marshal event: %v", err)
			}
			var back triggers.CareEvent
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("unmarshal event: %v\n%s", err, b)
			}
			if err := back.Validate(); err != nil {
				t.Fatalf("event read back does not validate: %v\n%s", err, b)
			}
			b2, err := json.Marshal(&back)
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("event changed through JSON (%v):\n%s\n%s", err, b, b2)
			}
		}
	})
}
