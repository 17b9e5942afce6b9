package hl7v2

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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
	} {
		f.Add([]byte(s))
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
		if _, perr := Parse(ack.Encode()); perr != nil {
			t.Fatalf("ACK does not parse: %v\n%q", perr, ack.Encode())
		}
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
