package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/errorreporter"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec parses, validates and prints R4 JSON with google/fhir's jsonformat.
// It is safe for concurrent use.
type Codec struct {
	u *jsonformat.Unmarshaller
	m *jsonformat.Marshaller
}

// NewCodec returns a Codec for FHIR R4.
func NewCodec() (*Codec, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("new codec: %w", err)
	}
	// Deeply nested input is a denial-of-service vector; no legitimate
	// resource we store nests anywhere near this deep.
	u.MaxNestingDepth = 64
	m, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("new codec: %w", err)
	}
	return &Codec{u: u, m: m}, nil
}

// PeekType returns the resourceType of a JSON object without parsing the rest.
func PeekType(body []byte) (string, error) {
	var head struct {
		ResourceType *string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field == "resourceType":
			return "", Errorf(KindInvalid, "resourceType must be a string").At("resourceType")
		case errors.As(err, &te):
			return "", Errorf(KindInvalid, "the body is not a JSON object")
		}
		return "", Errorf(KindInvalid, "the body is not valid JSON: %s", jsonErr(err))
	}
	if head.ResourceType == nil {
		return "", Errorf(KindInvalid, "the body has no resourceType").At("resourceType")
	}
	return *head.ResourceType, nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if ok := asSyntax(err, &se); ok {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

func asSyntax(err error, target **json.SyntaxError) bool {
	se, ok := err.(*json.SyntaxError)
	if ok {
		*target = se
	}
	return ok
}

// errAt matches one line of a jsonformat error: `error at "path": details`.
var errAt = regexp.MustCompile(`^error at "((?:[^"\\]|\\.)*)": (.*)$`)

// Parse parses and validates a resource of any R4 type. Malformed JSON is
// KindInvalid; a resource that violates R4 (cardinality, value sets,
// reference types, primitive formats) is KindUnprocessable naming the path.
func (c *Codec) Parse(body []byte) (proto.Message, string, error) {
	typ, err := PeekType(body)
	if err != nil {
		return nil, "", err
	}
	if _, ok := containedFields()[typ]; !ok {
		return nil, "", Errorf(KindInvalid, "resourceType %q is not an R4 resource type", typ).At("resourceType")
	}
	msg, err := c.u.Unmarshal(body)
	if err != nil {
		return nil, typ, invalidResource(typ, err)
	}
	res, name := Unwrap(msg.(*rpb.ContainedResource))
	if res == nil {
		return nil, typ, Errorf(KindUnprocessable, "the body holds no resource")
	}
	if path, ok := emptyPrimitive(res.ProtoReflect(), name); ok {
		return nil, typ, Errorf(KindUnprocessable, "invalid %s: a value is empty", typ).At(path)
	}
	return res, name, nil
}

// Check validates a resource built in Go rather than parsed, with the rules
// Parse applies after reading JSON (primitive formats, required elements,
// reference types, no empty values), and reports a violation as Parse does.
// Building a resource and checking it costs a fifth of printing it as JSON
// and parsing that; the builder must give references the typed form Parse
// gives them (see Reference).
func (c *Codec) Check(res proto.Message) error {
	typ := TypeOf(res)
	fd, ok := containedFields()[typ]
	if !ok {
		return Errorf(KindInvalid, "%s is not an R4 resource type", typ)
	}
	// Validated inside a ContainedResource, as Parse does, so that the
	// paths of the errors are the same ("ImagingStudy.series[0]...").
	cr := &rpb.ContainedResource{}
	cr.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(res.ProtoReflect()))
	return validate(cr, res, typ)
}

// CheckPart validates part, an element of a resource (an AuditEvent's
// entity, say), with the rules of Check, which it applies to each element
// on its own: a resource checked whole stays valid when an element that
// passes CheckPart is added to a list of its that has no upper bound. The
// error's path is relative to part.
func (c *Codec) CheckPart(part proto.Message) error {
	return validate(part, part, string(part.ProtoReflect().Descriptor().Name()))
}

// validate applies google/fhir's validation to walk and looks for empty
// values in m, the message of name that walk is or holds.
func validate(walk, m proto.Message, name string) error {
	er := errorreporter.NewBasicErrorReporter()
	if err := fhirvalidate.ValidateWithErrorReporter(walk, er); err != nil {
		return invalidResource(name, err)
	}
	if len(er.Errors) > 0 {
		lines := make([]string, len(er.Errors))
		for i, e := range er.Errors {
			lines[i] = (*e).Error()
		}
		return invalidResource(name, errors.New(strings.Join(lines, "\n")))
	}
	if path, ok := emptyPrimitive(m.ProtoReflect(), name); ok {
		return Errorf(KindUnprocessable, "invalid %s: a value is empty", name).At(path)
	}
	return nil
}

// ValidUTF8 returns s with each byte that is not valid UTF-8 replaced by
// U+FFFD, as encoding/json prints it: a string set in a proto from outside
// input then equals the one parsed back from the stored JSON.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // each invalid byte ranges as one utf8.RuneError
		b.WriteRune(r)
	}
	return b.String()
}

// Reference returns the Reference to a resource of this server in the form
// Parse gives "Type/id": the typed id field (patient_id, endpoint_id ...).
func Reference(typ, id string) (*dpb.Reference, error) {
	r := &dpb.Reference{Reference: &dpb.Reference_Uri{Uri: &dpb.String{Value: typ + "/" + id}}}
	if err := jsonformat.NormalizeReference(r); err != nil {
		return nil, fmt.Errorf("reference %s/%s: %w", typ, id, err)
	}
	return r, nil
}

// emptyPrimitive finds a string or code element with neither a value nor an
// extension, as jsonformat lets `"status": ""` through. R4 forbids it (JSON
// 2.6.2: a string value is never empty; ele-1), and printing drops it, so a
// required element would vanish from the stored JSON. It returns the path.
func emptyPrimitive(m protoreflect.Message, typ string) (string, bool) {
	suffix, ok := emptyIn(m)
	return typ + suffix, ok
}

// emptyIn returns the path below m of its first empty primitive. The path
// is put together only on the way back from one: every valid resource is
// walked whole, and building each element's path cost more than the walk.
func emptyIn(m protoreflect.Message) (string, bool) {
	if fd := m.Descriptor().Fields().ByName("value"); fd != nil && fd.Message() == nil {
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.EnumKind, protoreflect.BytesKind:
			empty := true
			m.Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool {
				empty = false
				return false
			})
			return "", empty
		}
	}
	var found string
	var ok bool
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		if fd.IsList() {
			for i, l := 0, v.List(); i < l.Len(); i++ {
				if s, empty := emptyIn(l.Get(i).Message()); empty {
					found, ok = pathStep(fd)+"["+strconv.Itoa(i)+"]"+s, true
					return false
				}
			}
			return true
		}
		if s, empty := emptyIn(v.Message()); empty {
			found, ok = pathStep(fd)+s, true
			return false
		}
		return true
	})
	return found, ok
}

// pathStep is the path segment of field fd: a choice or reference variant is
// part of its parent.
func pathStep(fd protoreflect.FieldDescriptor) string {
	if fd.ContainingOneof() != nil {
		return ""
	}
	return "." + fd.JSONName()
}

func invalidResource(typ string, err error) error {
	fe := &Error{Kind: KindUnprocessable, Err: err}
	if err.Error() == "invalid JSON" {
		// jsonformat's JSON reader refused what encoding/json accepted.
		fe.Kind, fe.Message = KindInvalid, "the body is not valid JSON"
		return fe
	}
	// jsonformat reports every problem, one per line, in no fixed order;
	// name them all, sorted.
	lines := strings.Split(err.Error(), "\n")
	slices.Sort(lines)
	var details []string
	for _, line := range lines {
		detail := line
		if m := errAt.FindStringSubmatch(line); m != nil {
			path, uerr := strconv.Unquote(`"` + m[1] + `"`)
			if uerr != nil {
				path = m[1]
			}
			if !slices.Contains(fe.Expression, path) {
				fe.Expression = append(fe.Expression, path)
			}
			detail = m[2]
		}
		if detail != "" && !slices.Contains(details, detail) {
			details = append(details, detail)
		}
	}
	fe.Message = fmt.Sprintf("invalid %s: %s", typ, strings.Join(details, "; "))
	return fe
}

// Marshal prints a typed resource as compact R4 JSON. res is not changed.
func (c *Codec) Marshal(res proto.Message) ([]byte, error) {
	// jsonformat rewrites the references of what it prints in place
	// (Patient/1 from the typed patient_id back into uri); print a copy so
	// that res stays as parsed and can be printed concurrently.
	return c.MarshalOwned(proto.Clone(res))
}

// MarshalOwned is Marshal without the copy, for a resource the caller owns
// and is done with: printing changes its references back to their uri form
// (Patient/1 from the typed patient_id), so res must not be printed again
// or have its search values read afterwards.
func (c *Codec) MarshalOwned(res proto.Message) ([]byte, error) {
	b, err := c.m.MarshalResource(res)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", res.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

// TypeOf returns the resource type name of a typed resource proto.
func TypeOf(res proto.Message) string {
	return string(res.ProtoReflect().Descriptor().Name())
}

// ID returns the resource's logical id.
func ID(res proto.Message) string {
	m := res.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("id")
	if fd == nil || !m.Has(fd) {
		return ""
	}
	return m.Get(fd).Message().Interface().(*dpb.Id).GetValue()
}

// SetID sets the resource's logical id ("" clears it).
func SetID(res proto.Message, id string) {
	m := res.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("id")
	if id == "" {
		m.Clear(fd)
		return
	}
	m.Set(fd, protoreflect.ValueOfMessage((&dpb.Id{Value: id}).ProtoReflect()))
}

// SetMeta sets meta.versionId and meta.lastUpdated, keeping the rest of meta
// (profiles, tags, security labels, source) as the client sent it.
func SetMeta(res proto.Message, version int, lastUpdated time.Time) {
	m := res.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("meta")
	meta, _ := m.Get(fd).Message().Interface().(*dpb.Meta)
	if meta == nil || !m.Has(fd) {
		meta = &dpb.Meta{}
	} else {
		meta = proto.Clone(meta).(*dpb.Meta)
	}
	meta.VersionId = &dpb.Id{Value: strconv.Itoa(version)}
	meta.LastUpdated = &dpb.Instant{ValueUs: lastUpdated.UnixMicro(), Timezone: "Z", Precision: dpb.Instant_MICROSECOND}
	m.Set(fd, protoreflect.ValueOfMessage(meta.ProtoReflect()))
}

// IsJSONObject reports whether b holds a single JSON object.
func IsJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 1 && b[0] == '{' && json.Valid(b)
}
