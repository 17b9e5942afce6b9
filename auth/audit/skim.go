package audit

import (
	"encoding/json"
	"strings"
)

// skimResource reads the fields of resourceFields from body as
// decodeResource does, in one pass that skips everything else without
// decoding it. A page of 100 ImagingStudy is ~350 kB of series and
// instances of which the audit reads one reference per entry; encoding/json
// scans it twice (validity, then decoding) at a fraction of the speed.
//
// It answers only when it is sure to agree with encoding/json: sure is
// false for anything unusual — invalid JSON, a key that matches a field
// only case-insensitively, a duplicate or null field, a value of the wrong
// shape, deep nesting — and the caller then decodes with encoding/json.
// FuzzSkimResource holds it to that.
func skimResource(body []byte) (r *resourceFields, ok, sure bool) {
	s := &skimmer{b: body}
	r = &resourceFields{}
	s.ws()
	s.resource(r, 0)
	s.ws()
	if s.unsure || s.i != len(s.b) {
		return nil, false, false
	}
	return r, r.ResourceType != "", true
}

// skimmer reads JSON from b at i; unsure stops it.
type skimmer struct {
	b      []byte
	i      int
	unsure bool
}

// maxSkimDepth bounds nesting (encoding/json refuses past 10,000); deeper
// input is left to encoding/json.
const maxSkimDepth = 64

func (s *skimmer) fail() { s.unsure = true }

func (s *skimmer) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *skimmer) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// expect consumes c after optional whitespace.
func (s *skimmer) expect(c byte) {
	s.ws()
	if s.peek() != c {
		s.fail()
		return
	}
	s.i++
}

// object reads an object, handing each key among fields to read (which
// consumes its value) and skipping the others.
func (s *skimmer) object(fields []string, depth int, read func(key string)) {
	if depth > maxSkimDepth {
		s.fail()
		return
	}
	s.expect('{')
	s.ws()
	if s.peek() == '}' {
		s.i++
		return
	}
	var seen uint32 // fields read, by index: a duplicate is left to encoding/json
	for !s.unsure {
		s.ws()
		key := s.key()
		s.expect(':')
		if s.unsure {
			return
		}
		s.ws()
		switch f := fieldIndex(fields, key); {
		case f == -1:
			s.skip(depth + 1)
		case f < 0 || seen&(1<<f) != 0 || s.peek() == 'n':
			// A case-folded key, a duplicate, or null (which leaves
			// a field as it was).
			s.fail()
			return
		default:
			seen |= 1 << f
			read(fields[f])
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// fieldIndex is the index of key in fields, -1 when it is none of them.
// A key equal to one only ignoring case would be that field to
// encoding/json: such a key makes the skimmer unsure instead (-2).
func fieldIndex(fields []string, key []byte) int {
	for i, f := range fields {
		if string(key) == f {
			return i
		}
	}
	for _, f := range fields {
		if strings.EqualFold(string(key), f) {
			return -2
		}
	}
	return -1
}

// key reads an object key; one with escapes or non-ASCII bytes (which
// encoding/json might fold onto a field) makes the skimmer unsure.
func (s *skimmer) key() []byte {
	if s.peek() != '"' {
		s.fail()
		return nil
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j]
		case c == '\\' || c < 0x20 || c >= 0x80:
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

// array reads an array, calling item for each element.
func (s *skimmer) array(item func()) {
	s.expect('[')
	s.ws()
	if s.peek() == ']' {
		s.i++
		return
	}
	for !s.unsure {
		s.ws()
		item()
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// str reads a string value.
func (s *skimmer) str() string {
	start := s.i
	plain := s.skipString()
	if s.unsure {
		return ""
	}
	if plain {
		return string(s.b[start+1 : s.i-1])
	}
	var v string // escapes or non-ASCII: decoded exactly as encoding/json does
	if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
		s.fail()
	}
	return v
}

// skipString passes a string, reporting whether it has neither escapes nor
// non-ASCII bytes.
func (s *skimmer) skipString() (plain bool) {
	if s.peek() != '"' {
		s.fail()
		return false
	}
	plain = true
	b := s.b
	for j := s.i + 1; j < len(b); j++ {
		for j < len(b) && strClass[b[j]] == 0 {
			j++ // the common case: printable ASCII
		}
		if j >= len(b) {
			break
		}
		switch strClass[b[j]] {
		case classQuote:
			s.i = j + 1
			return plain
		case classControl:
			s.fail()
			return false
		case classHigh:
			plain = false
		case classEscape:
			plain = false
			if j+1 >= len(b) {
				s.fail()
				return false
			}
			j++
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					s.fail()
					return false
				}
				for _, h := range b[j+1 : j+5] {
					if !isHex(h) {
						s.fail()
						return false
					}
				}
				j += 4
			default:
				s.fail()
				return false
			}
		}
	}
	s.fail()
	return false
}

// Classes of the bytes in a JSON string.
const (
	classPlain = iota
	classQuote
	classEscape
	classControl
	classHigh
)

var strClass = func() (t [256]byte) {
	for c := range 0x20 {
		t[c] = classControl
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = classHigh
	}
	t['"'], t['\\'] = classQuote, classEscape
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skip passes any value, checking that it is valid JSON.
func (s *skimmer) skip(depth int) {
	if depth > maxSkimDepth {
		s.fail()
		return
	}
	switch c := s.peek(); {
	case c == '"':
		s.skipString()
	case c == '{':
		s.skipObject(depth)
	case c == '[':
		s.skipArray(depth)
	case c == '-' || c >= '0' && c <= '9':
		s.number()
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	default:
		s.fail()
	}
}

// skipObject passes an object; as object does without fields, but with no
// closure to allocate for each of the thousands a page holds.
func (s *skimmer) skipObject(depth int) {
	s.i++ // '{'
	s.ws()
	if s.peek() == '}' {
		s.i++
		return
	}
	for !s.unsure {
		s.ws()
		s.skipString()
		s.expect(':')
		s.ws()
		s.skip(depth + 1)
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// skipArray passes an array.
func (s *skimmer) skipArray(depth int) {
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return
	}
	for !s.unsure {
		s.ws()
		s.skip(depth + 1)
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

func (s *skimmer) literal(lit string) {
	if !strings.HasPrefix(string(s.b[s.i:min(len(s.b), s.i+len(lit))]), lit) {
		s.fail()
		return
	}
	s.i += len(lit)
}

// number passes a number of the JSON grammar (RFC 8259 §6).
func (s *skimmer) number() {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		s.fail()
		return
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			s.fail()
			return
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			s.fail()
		}
	}
}

func (s *skimmer) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// The fields of each object resourceFields reads (at most 32 each: seen).
var (
	resourceKeys    = []string{"resourceType", "id", "subject", "for", "participant", "entity", "target", "type", "entry", "issue"}
	refKeys         = []string{"reference"}
	actorKeys       = []string{"actor"}
	whatKeys        = []string{"what"}
	entryKeys       = []string{"resource", "request", "response"}
	urlKeys         = []string{"url"}
	locationKeys    = []string{"location"}
	diagnosticsKeys = []string{"diagnostics"}
)

// resource reads an object into r.
func (s *skimmer) resource(r *resourceFields, depth int) {
	s.object(resourceKeys, depth, func(key string) {
		switch key {
		case "resourceType":
			r.ResourceType = s.str()
		case "id":
			r.ID = s.str()
		case "subject":
			r.Subject = s.ref(depth + 1)
		case "for":
			r.For = s.ref(depth + 1)
		case "participant":
			r.Participant = objects(s, depth+1, actorKeys, func(p *participantField) { p.Actor = s.ref(depth + 3) })
		case "entity":
			r.Entity = objects(s, depth+1, whatKeys, func(e *entityField) { e.What = s.ref(depth + 3) })
		case "target":
			r.Target = objects(s, depth+1, refKeys, func(x *ref) { x.Reference = s.str() })
		case "type":
			start := s.i
			s.skip(depth + 1)
			r.Type = json.RawMessage(append([]byte(nil), s.b[start:s.i]...))
		case "entry":
			s.entries(r, depth+1)
		case "issue":
			r.Issue = objects(s, depth+1, diagnosticsKeys, func(is *issueField) { is.Diagnostics = s.str() })
		}
	})
}

// ref reads a Reference object.
func (s *skimmer) ref(depth int) *ref {
	x := &ref{}
	s.object(refKeys, depth, func(string) { x.Reference = s.str() })
	return x
}

// objects reads an array of objects, each of which has one field among
// keys that read fills in.
func objects[T any](s *skimmer, depth int, keys []string, read func(*T)) []T {
	out := []T{}
	s.array(func() {
		var v T
		s.object(keys, depth+1, func(string) { read(&v) })
		out = append(out, v)
	})
	return out
}

// entries reads Bundle.entry.
func (s *skimmer) entries(r *resourceFields, depth int) {
	r.Entry = []entryField{}
	s.array(func() {
		var e entryField
		// Each field is an object: object fails on anything else.
		s.object(entryKeys, depth+1, func(key string) {
			switch key {
			case "resource":
				e.Resource = &resourceFields{}
				s.resource(e.Resource, depth+2)
			case "request":
				e.Request = &requestField{}
				s.object(urlKeys, depth+2, func(string) { e.Request.URL = s.str() })
			case "response":
				e.Response = &responseField{}
				s.object(locationKeys, depth+2, func(string) { e.Response.Location = s.str() })
			}
		})
		r.Entry = append(r.Entry, e)
	})
}
